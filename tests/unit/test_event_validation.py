"""The producer contract (v1): what a POST /v1/events body and each event must look like.

Every rejection must say, in a sentence a person can act on, what is wrong.
"""

from __future__ import annotations

import base64
import json
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.events.contract import (
    MAX_BODY_BYTES,
    MAX_DIMENSIONS,
    MAX_EVENTS_PER_REQUEST,
    MAX_PROPERTIES_BYTES,
)
from shared.events.models import EventKind, UsageEvent
from shared.events.validation import (
    BadRequest,
    InvalidEvent,
    TooLarge,
    UnsupportedMediaType,
    parse_events_request,
    validate_event,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
RETENTION_DAYS = 400


def an_event(**overrides: Any) -> dict[str, Any]:
    event = {
        "event_id": "evt-0001",
        "account_id": "acct-northwind",
        "name": "feature.analytics.used",
        "occurred_at": "2026-11-23T10:15:00Z",
        "value": 1,
        "dimensions": {"team": "t-42", "user": "u-7"},
        "properties": {"dashboard": "revenue"},
    }
    event.update(overrides)
    return event


def errors_of(raw: Any) -> list[str]:
    checked = validate_event(raw, NOW, RETENTION_DAYS)
    assert isinstance(checked, InvalidEvent), f"expected a rejection, got {checked!r}"
    assert checked.errors, "a rejection must say why"
    return checked.errors


def accepted(raw: Any) -> UsageEvent:
    checked = validate_event(raw, NOW, RETENTION_DAYS)
    assert isinstance(checked, UsageEvent), f"expected acceptance, got {checked!r}"
    return checked


def body_of(document: Any) -> str:
    return json.dumps(document)


# --- The request envelope ------------------------------------------------------------------------


def test_given_a_valid_body_when_parsed_then_the_raw_events_are_returned_unvalidated():
    events = [an_event(), {"anything": "goes here"}]

    assert parse_events_request(body_of({"events": events}), "application/json") == events


def test_given_json_with_a_charset_when_parsed_then_the_media_type_is_accepted():
    parsed = parse_events_request(body_of({"events": [an_event()]}), "Application/JSON; charset=utf-8")

    assert len(parsed) == 1


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_given_the_wrong_content_type_when_parsed_then_415_names_the_expected_type(content_type):
    with pytest.raises(BadRequest) as refused:
        parse_events_request(body_of({"events": [an_event()]}), content_type)

    assert isinstance(refused.value, UnsupportedMediaType)
    assert "application/json" in refused.value.message


@pytest.mark.parametrize("body", ["{not json", "", None, '{"events": [1, 2,]}'])
def test_given_a_body_that_is_not_json_when_parsed_then_400_says_so(body):
    with pytest.raises(BadRequest) as refused:
        parse_events_request(body, "application/json")

    assert type(refused.value) is BadRequest
    assert "not valid JSON" in refused.value.message


@pytest.mark.parametrize("document", [{}, {"event": []}, [an_event()], "events", 42])
def test_given_no_events_array_when_parsed_then_400_shows_the_expected_shape(document):
    with pytest.raises(BadRequest) as refused:
        parse_events_request(body_of(document), "application/json")

    assert type(refused.value) is BadRequest
    assert '{"events": [...]}' in refused.value.message


def test_given_events_that_is_not_an_array_when_parsed_then_400_says_it_must_be_one():
    with pytest.raises(BadRequest) as refused:
        parse_events_request(body_of({"events": an_event()}), "application/json")

    assert type(refused.value) is BadRequest
    assert "must be an array" in refused.value.message


def test_given_an_unknown_top_level_field_when_parsed_then_400_names_it():
    with pytest.raises(BadRequest) as refused:
        parse_events_request(body_of({"events": [an_event()], "batch_id": "b-1"}), "application/json")

    assert type(refused.value) is BadRequest
    assert "'batch_id'" in refused.value.message


def test_given_an_empty_events_list_when_parsed_then_400_gives_the_allowed_range():
    with pytest.raises(BadRequest) as refused:
        parse_events_request(body_of({"events": []}), "application/json")

    assert type(refused.value) is BadRequest
    assert "empty" in refused.value.message
    assert "between 1 and 500" in refused.value.message


def test_given_exactly_500_events_when_parsed_then_all_are_returned():
    events = [an_event(event_id=f"evt-{i}") for i in range(MAX_EVENTS_PER_REQUEST)]

    assert len(parse_events_request(body_of({"events": events}), "application/json")) == 500


def test_given_501_events_when_parsed_then_413_asks_to_split_the_batch():
    events = [an_event(event_id=f"evt-{i}") for i in range(MAX_EVENTS_PER_REQUEST + 1)]

    with pytest.raises(BadRequest) as refused:
        parse_events_request(body_of({"events": events}), "application/json")

    assert isinstance(refused.value, TooLarge)
    assert "501" in refused.value.message
    assert "limit is 500" in refused.value.message
    assert "Split" in refused.value.message


def test_given_a_2_mb_body_when_parsed_then_413_names_the_size_limit():
    fat_context = {"notes": "x" * 7_000}
    events = [an_event(event_id=f"evt-{i}", properties=fat_context) for i in range(300)]
    body = body_of({"events": events})
    assert len(body) > 2_000_000

    with pytest.raises(BadRequest) as refused:
        parse_events_request(body, "application/json")

    assert isinstance(refused.value, TooLarge)
    assert f"{MAX_BODY_BYTES:,} bytes" in refused.value.message


def test_given_a_body_just_under_the_size_limit_when_parsed_then_it_is_not_refused_for_size():
    frame = body_of({"events": [an_event(properties={"p": ""})]})
    body = frame.replace('"p": ""', '"p": "' + "x" * (MAX_BODY_BYTES - len(frame)) + '"')
    assert len(body.encode()) == MAX_BODY_BYTES

    assert len(parse_events_request(body, "application/json")) == 1


def test_given_a_base64_encoded_body_when_parsed_then_it_is_decoded_first():
    body = base64.b64encode(body_of({"events": [an_event()]}).encode()).decode()

    assert parse_events_request(body, "application/json", is_base64=True) == [an_event()]


def test_given_a_broken_base64_body_when_parsed_then_400():
    with pytest.raises(BadRequest) as refused:
        parse_events_request("%%%not-base64%%%", "application/json", is_base64=True)

    assert type(refused.value) is BadRequest


def test_given_a_body_that_is_not_utf8_when_parsed_then_400_not_a_crash():
    body = base64.b64encode(b'{"events": ["\xff\xfe"]}').decode()

    with pytest.raises(BadRequest) as refused:
        parse_events_request(body, "application/json", is_base64=True)

    assert type(refused.value) is BadRequest


# --- One event -----------------------------------------------------------------------------------


def test_given_a_complete_event_when_validated_then_it_is_accepted_as_sent():
    event = accepted(an_event(kind="gauge", value=12.5))

    assert event.event_id == "evt-0001"
    assert event.kind is EventKind.GAUGE
    assert event.value == 12.5
    assert event.occurred_at == datetime(2026, 11, 23, 10, 15, tzinfo=UTC)
    assert event.dimensions == {"team": "t-42", "user": "u-7"}


def test_given_only_the_required_fields_when_validated_then_value_1_and_kind_count_are_defaulted():
    event = accepted(
        {"event_id": "e", "account_id": "a", "name": "ticket.created", "occurred_at": "2026-11-23T10:00:00Z"}
    )

    assert event.value == 1
    assert event.kind is EventKind.COUNT
    assert event.dimensions == {}
    assert event.properties == {}


@pytest.mark.parametrize("missing", ["event_id", "account_id", "name", "occurred_at"])
def test_given_a_required_field_missing_when_validated_then_the_error_names_it(missing):
    raw = an_event()
    del raw[missing]

    assert errors_of(raw) == [f"{missing} is required"]


@pytest.mark.parametrize("raw", [[an_event()], "evt-1", 7, None])
def test_given_an_event_that_is_not_an_object_when_validated_then_it_is_rejected_by_type(raw):
    assert "must be a JSON object" in errors_of(raw)[0]


def test_given_an_unknown_field_when_validated_then_it_is_rejected_naming_the_field():
    errors = errors_of(an_event(colour="red"))

    assert len(errors) == 1
    assert "unknown field 'colour'" in errors[0]
    assert "event fields are" in errors[0]


def test_given_several_problems_when_validated_then_each_has_its_own_sentence():
    errors = errors_of(an_event(value="12", colour="red", occurred_at="yesterday"))

    assert len(errors) == 3


def test_given_nan_parsed_by_python_json_when_validated_then_the_event_is_rejected_as_not_finite():
    raw = json.loads('{"event_id": "e", "account_id": "a", "name": "n", '
                     '"occurred_at": "2026-11-23T10:00:00Z", "value": NaN}')  # fmt: skip

    assert any("finite" in error for error in errors_of(raw))


@pytest.mark.parametrize("literal", ["Infinity", "-Infinity"])
def test_given_infinity_when_validated_then_the_event_is_rejected_as_not_finite(literal):
    raw = json.loads(f'{{"value": {literal}}}') | {k: v for k, v in an_event().items() if k != "value"}

    assert any("finite" in error for error in errors_of(raw))


def test_given_nan_inside_properties_when_validated_then_the_event_is_rejected():
    errors = errors_of(an_event(properties={"ratio": float("nan")}))

    assert errors == ["properties: must not contain NaN or Infinity"]


@pytest.mark.parametrize(("value", "sent_as"), [("12", "a string"), (True, "a boolean"), (None, "null")])
def test_given_a_value_that_is_not_a_json_number_when_validated_then_the_error_says_what_was_sent(
    value, sent_as
):
    assert errors_of(an_event(value=value)) == [f"value must be a JSON number, got {sent_as}"]


def test_given_a_value_beyond_1e15_when_validated_then_it_is_rejected():
    assert "value" in errors_of(an_event(value=2e15))[0]


def test_given_an_integer_value_when_validated_then_it_is_accepted():
    assert accepted(an_event(value=42)).value == 42


def test_given_a_negative_value_when_validated_then_it_is_accepted_as_a_correction():
    assert accepted(an_event(value=-3)).value == -3


def test_given_occurred_at_far_in_the_future_when_validated_then_the_error_names_the_tolerance():
    errors = errors_of(an_event(occurred_at="2026-11-24T12:00:00Z"))

    assert len(errors) == 1
    assert "in the future" in errors[0]
    assert "5 minutes" in errors[0]
    assert "clock" in errors[0]


def test_given_occurred_at_a_little_ahead_of_the_clock_when_validated_then_skew_is_tolerated():
    accepted(an_event(occurred_at=(NOW + timedelta(minutes=4)).isoformat()))


def test_given_occurred_at_older_than_the_retention_when_validated_then_the_error_names_the_bound():
    too_old = NOW - timedelta(days=RETENTION_DAYS, minutes=1)

    errors = errors_of(an_event(occurred_at=too_old.isoformat()))

    assert len(errors) == 1
    assert "older than the 400-day retention" in errors[0]
    assert (NOW - timedelta(days=RETENTION_DAYS)).isoformat() in errors[0]


def test_given_occurred_at_just_inside_the_retention_when_validated_then_it_is_accepted():
    accepted(an_event(occurred_at=(NOW - timedelta(days=RETENTION_DAYS - 1)).isoformat()))


def test_given_a_naive_timestamp_when_validated_then_it_is_rejected_for_its_missing_timezone():
    errors = errors_of(an_event(occurred_at="2026-11-23T10:15:00"))

    assert errors == ["occurred_at: input should have timezone info"]


def test_given_an_offset_timestamp_when_validated_then_it_is_normalised_to_utc():
    event = accepted(an_event(occurred_at="2026-11-23T01:30:00+02:00"))

    assert event.occurred_at == datetime(2026, 11, 22, 23, 30, tzinfo=UTC)
    assert event.occurred_at.tzinfo is UTC


@pytest.mark.parametrize("occurred_at", [1795000000, "1795000000", "yesterday", "2026-11-23", "23/11/2026"])
def test_given_occurred_at_that_is_not_rfc3339_when_validated_then_it_is_rejected_with_an_example(
    occurred_at,
):
    errors = errors_of(an_event(occurred_at=occurred_at))

    assert len(errors) == 1
    assert errors[0].startswith("occurred_at:")


@pytest.mark.parametrize("occurred_at", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_given_a_timestamp_at_the_edge_of_the_calendar_when_validated_then_it_is_rejected_not_raised(
    occurred_at,
):
    errors = errors_of(an_event(occurred_at=occurred_at))

    assert errors[0].startswith("occurred_at:")


@pytest.mark.parametrize("account_id", ["société-générale", "株式会社-42", "Ωmega Ltd", "x" * 128])
def test_given_a_unicode_or_128_char_account_id_when_validated_then_it_is_accepted(account_id):
    assert accepted(an_event(account_id=account_id)).account_id == account_id


def test_given_a_129_char_account_id_when_validated_then_it_is_rejected_with_the_limit():
    errors = errors_of(an_event(account_id="a" * 129))

    assert errors == ["account_id: string should have at most 128 characters"]


@pytest.mark.parametrize("field", ["account_id", "event_id"])
@pytest.mark.parametrize("bad", ["acct\x00one", "acct\none", "acct\u200bone", "\x1b[31macct"])
def test_given_control_characters_in_an_id_when_validated_then_it_is_rejected(field, bad):
    errors = errors_of(an_event(**{field: bad}))

    assert errors == [f"{field}: must not contain control or non-printable characters"]


def test_given_an_id_with_surrounding_whitespace_when_validated_then_it_is_rejected():
    assert "whitespace" in errors_of(an_event(account_id=" acct-1"))[0]


def test_given_an_empty_event_id_when_validated_then_it_is_rejected():
    assert errors_of(an_event(event_id=""))[0].startswith("event_id:")


@pytest.mark.parametrize("name", ["feature analytics", ".hidden", "a" * 129, "", "emoji🙂"])
def test_given_a_bad_metric_name_when_validated_then_it_is_rejected(name):
    assert errors_of(an_event(name=name))[0].startswith("name:")


def test_given_as_many_dimensions_as_allowed_when_validated_then_they_are_kept():
    dimensions = {f"d{i}": f"v{i}" for i in range(MAX_DIMENSIONS)}

    assert accepted(an_event(dimensions=dimensions)).dimensions == dimensions


def test_given_one_dimension_too_many_when_validated_then_the_error_names_the_limit():
    errors = errors_of(an_event(dimensions={f"d{i}": "v" for i in range(MAX_DIMENSIONS + 1)}))

    assert len(errors) == 1
    assert errors[0].startswith("dimensions:")
    assert "16" in errors[0]


@pytest.mark.parametrize(
    "dimensions",
    [{"team": 42}, {"team": ""}, {"bad key": "v"}, {"team": "t\x00"}, {"team": "v" * 257}],
)
def test_given_a_bad_dimension_when_validated_then_it_is_rejected(dimensions):
    assert errors_of(an_event(dimensions=dimensions))[0].startswith("dimensions.")


def test_given_100_kb_of_properties_when_validated_then_the_event_is_rejected_naming_the_limit():
    errors = errors_of(an_event(properties={"html": "<p>" + "x" * 100_000 + "</p>"}))

    assert len(errors) == 1
    assert errors[0].startswith("properties:")
    assert f"{MAX_PROPERTIES_BYTES:,} bytes" in errors[0]
    assert "send a reference" in errors[0]


def test_given_nested_properties_when_validated_then_they_are_kept_as_sent():
    properties = {"order": {"lines": [{"sku": "A-1", "qty": 2}], "coupon": None}, "beta": True}

    assert accepted(an_event(properties=properties)).properties == properties


def test_given_an_unknown_kind_when_validated_then_it_is_rejected():
    assert errors_of(an_event(kind="histogram"))[0].startswith("kind:")


def test_given_a_rejected_event_when_validated_then_its_id_is_still_reported():
    checked = validate_event(an_event(event_id="evt-77", value="x"), NOW, RETENTION_DAYS)

    assert isinstance(checked, InvalidEvent)
    assert checked.item_id == "evt-77"


def test_given_the_same_event_twice_when_fingerprinted_then_the_fingerprints_match():
    first, again = accepted(an_event()), accepted(an_event())

    assert first.fingerprint() == again.fingerprint()


def test_given_the_same_instant_in_two_offsets_when_fingerprinted_then_the_fingerprints_match():
    utc = accepted(an_event(occurred_at="2026-11-23T10:15:00Z"))
    paris = accepted(an_event(occurred_at="2026-11-23T11:15:00+01:00"))

    assert utc.fingerprint() == paris.fingerprint()


def test_given_the_same_id_with_another_value_when_fingerprinted_then_the_fingerprints_differ():
    assert accepted(an_event(value=1)).fingerprint() != accepted(an_event(value=2)).fingerprint()


def test_given_an_integer_beyond_any_float_when_validated_then_the_message_names_the_range():
    from datetime import UTC, datetime

    from shared.events.validation import InvalidEvent, validate_event

    raw = {
        "event_id": "e",
        "account_id": "a",
        "name": "x",
        "occurred_at": "2026-11-23T10:00:00Z",
        "value": 10**400,
    }
    checked = validate_event(raw, datetime(2026, 11, 23, 12, tzinfo=UTC), 400)

    assert isinstance(checked, InvalidEvent)
    assert checked.errors == ["value must be between -1e+15 and 1e+15"]


# --- Numbers the store can hold, deep and huge documents, one identity per id -------------------


@pytest.mark.parametrize("value", [1e-200, -1e-131, 5e-10])
def test_given_a_value_too_small_to_mean_anything_when_validated_then_it_is_rejected(value):
    assert errors_of(an_event(value=value)) == [
        f"value: must be 0 or at least 1e-09 in magnitude (got {value!r})"
    ]


@pytest.mark.parametrize("value", [0, 1e-9, -1e-9, 1e15, 0.30000000000000004])
def test_given_a_value_within_the_stored_range_when_validated_then_it_is_accepted(value):
    assert accepted(an_event(value=value)).value == value


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ('{"events": [{"properties": ' + "[" * 3000 + "]" * 3000 + "}]}", "more than 32 levels deep"),
        ('{"events": [{"properties": ' + '{"a": ' * 40 + "1" + "}" * 40 + "}]}", "more than 32 levels"),
        ('{"events": [{"value": ' + "1" * 5000 + "}]}", "an integer of 5,000 digits"),
        ('{"events": [{"value": 1.' + "5" * 100 + "}]}", "written with 102 characters"),
    ],
)
def test_given_a_hostile_body_when_parsed_then_a_bad_request_with_the_limit_never_a_crash(body, words):
    with pytest.raises(BadRequest) as refused:
        parse_events_request(body, "application/json")

    assert type(refused.value) is BadRequest  # 400
    assert words in refused.value.message


def test_given_properties_nested_within_the_limit_when_parsed_then_they_are_accepted():
    properties: Any = "leaf"
    for _ in range(28):  # body → events → event → properties (+ 28) = 32 levels
        properties = {"a": properties}

    (raw,) = parse_events_request(
        json.dumps({"events": [an_event(properties=properties)]}), "application/json"
    )

    assert accepted(raw).properties == properties


def test_given_nfc_and_nfd_spellings_of_ids_when_validated_then_they_are_one_event():
    nfc, nfd = (
        an_event(
            event_id=unicodedata.normalize(form, "évt-1"),
            account_id=unicodedata.normalize(form, "société"),
            dimensions={"team": unicodedata.normalize(form, "équipe")},
        )
        for form in ("NFC", "NFD")
    )
    assert nfc != nfd

    first, second = accepted(nfc), accepted(nfd)

    assert first == second
    assert first.fingerprint() == second.fingerprint()
    assert first.account_id == unicodedata.normalize("NFC", "société")


def test_given_a_name_with_capitals_when_validated_then_it_is_folded_so_rules_on_the_lower_case_name_see_it():
    assert accepted(an_event(name="API.Calls")).name == "api.calls"
    assert (
        accepted(an_event(name="API.Calls")).fingerprint()
        == accepted(an_event(name="api.calls")).fingerprint()
    )


@pytest.mark.parametrize("account_id", [".", ".."])
def test_given_an_account_id_no_path_can_name_when_validated_then_it_is_rejected(account_id):
    assert errors_of(an_event(account_id=account_id)) == [
        "account_id: cannot be '.' or '..': no URL path can name such an account"
    ]
