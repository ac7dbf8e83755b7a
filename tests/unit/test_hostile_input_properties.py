"""Open-ended classes of hostile input, as properties: whatever is accepted can be stored, and
two spellings of one text are one id."""

from __future__ import annotations

import json
import unicodedata
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.events.contract import MAX_NESTING_DEPTH
from shared.events.models import UsageEvent
from shared.events.validation import InvalidEvent, check_event
from shared.json_input import JsonInputError, decode_json, nesting_depth
from shared.storage.dynamo import to_attribute

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


def an_event(**fields: Any) -> dict[str, Any]:
    return {
        "event_id": "e-1",
        "account_id": "a-1",
        "name": "api.calls",
        "occurred_at": "2026-11-23T10:00:00Z",
    } | (fields)


def storable_by_dynamodb(number: Decimal) -> bool:
    """DynamoDB's number type: 38 significant digits, magnitudes 1e-130 to 1e126 (or zero)."""
    if number == 0:
        return True
    digits = len(number.normalize().as_tuple().digits)
    return digits <= 38 and Decimal("1e-130") <= abs(number) < Decimal("1e126")


@given(st.floats(allow_nan=False, allow_infinity=False) | st.integers(min_value=-(10**40), max_value=10**40))
def test_any_value_the_contract_accepts_is_a_number_dynamodb_stores(value):
    checked = check_event(an_event(value=value))

    if not isinstance(checked, InvalidEvent):
        assert storable_by_dynamodb(Decimal(to_attribute(checked.value)["N"]))


@given(st.lists(st.floats(min_value=-1e15, max_value=1e15, allow_nan=False), min_size=1, max_size=20))
def test_any_sum_of_accepted_values_is_a_number_dynamodb_stores(values):
    accepted = [
        e.value for e in map(check_event, (an_event(value=v) for v in values)) if isinstance(e, UsageEvent)
    ]

    total = sum((Decimal(to_attribute(value)["N"]) for value in accepted), Decimal(0))

    assert storable_by_dynamodb(total)


@given(st.text(min_size=1, max_size=40))
def test_any_id_in_nfc_and_in_nfd_is_one_id(text):
    nfc = check_event(an_event(account_id=unicodedata.normalize("NFC", text)))
    nfd = check_event(an_event(account_id=unicodedata.normalize("NFD", text)))

    assert type(nfc) is type(nfd)
    if isinstance(nfc, UsageEvent) and isinstance(nfd, UsageEvent):
        assert nfc == nfd
        assert unicodedata.is_normalized("NFC", nfc.account_id)


json_documents = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False)
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=60,
)


@given(json_documents, st.integers(min_value=0, max_value=60))
def test_any_document_decodes_as_json_does_or_is_refused_for_its_depth(document, extra_depth):
    raw = "[" * extra_depth + json.dumps(document) + "]" * extra_depth
    expected = json.loads(raw)

    if nesting_depth(expected) > MAX_NESTING_DEPTH:
        with pytest.raises(JsonInputError, match="levels deep"):
            decode_json(raw)
    else:
        assert decode_json(raw) == expected


@given(st.integers(min_value=1, max_value=5_000))
def test_a_nesting_depth_is_accepted_exactly_up_to_the_limit(depth):
    raw = "[" * depth + "]" * depth

    if depth > MAX_NESTING_DEPTH:
        with pytest.raises(JsonInputError, match=f"more than {MAX_NESTING_DEPTH} levels deep"):
            decode_json(raw)
    else:
        assert nesting_depth(decode_json(raw)) == depth
