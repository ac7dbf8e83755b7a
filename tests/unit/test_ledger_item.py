"""The ledger item of an accepted event: which UTC day it counts in, and what it records."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from shared.events.ledger import Channel, day_of, ledger_item
from shared.events.models import UsageEvent

RECEIVED = datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC)


def event(**overrides: Any) -> UsageEvent:
    raw = {
        "event_id": "evt-1",
        "account_id": "acct-northwind",
        "name": "feature.analytics.used",
        "occurred_at": "2026-11-22T10:15:00Z",
        "value": 2.5,
        "dimensions": {"team": "t-42"},
        "properties": {"dashboard": "revenue", "ratio": 0.1, "tags": ["a", "ü"]},
    } | overrides
    return UsageEvent.model_validate(raw)


def item_of(**overrides: Any) -> dict[str, Any]:
    return ledger_item(event(**overrides), "checkout-service", Channel.HTTPS, RECEIVED, 400)


def test_given_the_last_millisecond_of_a_day_and_the_first_of_the_next_then_they_land_in_different_days():
    late = item_of(occurred_at="2026-11-22T23:59:59.999Z")
    early = item_of(occurred_at="2026-11-23T00:00:00Z")

    assert late["day"] == "2026-11-22"
    assert early["day"] == "2026-11-23"


def test_given_an_event_with_a_plus_two_hours_offset_then_it_is_bucketed_by_its_utc_day():
    item = item_of(occurred_at="2026-11-23T01:30:00+02:00")

    assert item["day"] == "2026-11-22"
    assert item["occurred_at"] == "2026-11-22T23:30:00.000000Z"


def test_given_an_event_with_a_negative_offset_then_it_may_count_in_the_next_utc_day():
    assert item_of(occurred_at="2026-11-22T20:00:00-05:00")["day"] == "2026-11-23"


def test_given_day_of_a_utc_moment_then_it_is_the_iso_date():
    assert day_of(datetime(2026, 1, 5, 23, 59, 59, tzinfo=UTC)) == "2026-01-05"


def test_given_event_times_with_and_without_fractions_then_stored_times_sort_as_times_do():
    times = ["2026-11-22T10:00:00Z", "2026-11-22T10:00:00.5Z", "2026-11-22T09:59:59.999999Z"]

    stored = [item_of(occurred_at=moment)["occurred_at"] for moment in times]

    assert len({len(text) for text in stored}) == 1  # fixed width: string order is time order
    assert sorted(stored) == [stored[2], stored[0], stored[1]]


def test_given_an_accepted_event_then_the_item_is_keyed_by_account_and_event_id():
    item = item_of()

    assert (item["pk"], item["sk"]) == ("acct-northwind", "evt-1")


def test_given_an_accepted_event_then_the_item_records_producer_channel_and_arrival():
    item = ledger_item(event(), "eventbridge:billing", Channel.EVENTBRIDGE, RECEIVED, 400)

    assert item["producer"] == "eventbridge:billing"
    assert item["channel"] == "eventbridge"
    assert item["received_at"] == "2026-11-23T12:00:00.123Z"


def test_given_an_accepted_event_then_its_content_is_kept_exactly():
    item = item_of()

    assert item["name"] == "feature.analytics.used"
    assert item["kind"] == "count"
    assert item["value"] == Decimal("2.5")
    assert item["dimensions"] == {"team": "t-42"}
    assert json.loads(item["properties"]) == {"dashboard": "revenue", "ratio": 0.1, "tags": ["a", "ü"]}
    assert item["fingerprint"] == event().fingerprint()


def test_given_a_decimal_fraction_value_then_it_is_stored_without_binary_noise():
    assert item_of(value=0.1)["value"] == Decimal("0.1")


def test_given_the_retention_then_the_item_expires_a_day_after_its_event_leaves_the_window():
    item = item_of(occurred_at="2026-11-22T10:15:00Z")

    expected = datetime(2026, 11, 22, 10, 15, tzinfo=UTC) + timedelta(days=401)
    assert item["expires_at"] == int(expected.timestamp())
