"""The acceptance test of ingestion: however often and however an event arrives, it counts once.

Two accounts get the same usage. One receives it exactly once over HTTPS; the other receives it
over and over: the same HTTPS batch retried, an overlapping batch, the EventBridge bus, and a
redelivered stream batch. Their counters must be identical.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from functions.aggregator.handler import process_stream_batch
from functions.bus_ingest.handler import intakes as bus_intakes
from functions.bus_ingest.handler import process_messages
from shared.counters.store import CounterStore
from shared.counters.view import bucket_view
from tests.conftest import TEST_RETENTION_DAYS, Aws
from tests.integration.builders import (
    an_hour,
    bus_event,
    call_api,
    post_events,
    rfc3339,
    stream_event,
    usage_event,
)
from upswing.local.lambda_runtime import LocalContext

ONCE, MANY = "acct-delivered-once", "acct-delivered-many-times"


def usage_of(account_id: str) -> dict[str, list[dict[str, Any]]]:
    """A day of usage plus two late events from three days earlier, sent after the newer ones."""
    day, earlier = an_hour(0, 0), an_hour(-3, 0)

    def at(moment: Any, hour: int) -> str:
        return rfc3339(moment.replace(hour=hour))

    def event(event_id: str, **fields: Any) -> dict[str, Any]:
        return usage_event(account_id=account_id, event_id=event_id, properties={}, **fields)

    return {
        "recent": [
            event("use-1", occurred_at=at(day, 9), dimensions={"team": "t-1", "user": "u-1"}),
            event("use-2", occurred_at=at(day, 10), value=4, dimensions={"team": "t-2", "user": "u-1"}),
            event("use-3", occurred_at=at(day, 11), dimensions={"team": "t-1", "user": "u-3"}),
            event(
                "seats-1", name="seats.active", kind="gauge", value=40, occurred_at=at(day, 15), dimensions={}
            ),
            event("ticket-1", name="ticket.created", occurred_at=at(day, 12), dimensions={"tag": "sso"}),
        ],
        # Out of order: an older gauge reading arrives after the newer one, and it must not win.
        "late": [
            event(
                "seats-0", name="seats.active", kind="gauge", value=35, occurred_at=at(day, 8), dimensions={}
            ),
            event("use-old-1", occurred_at=at(earlier, 14), value=2, dimensions={"team": "t-9"}),
            event("use-old-2", occurred_at=at(earlier, 16), dimensions={"team": "t-9"}),
        ],
    }


def counters(aws: Aws, account_id: str) -> list[dict[str, Any]]:
    store = CounterStore(aws.dynamodb, aws.counters_table, TEST_RETENTION_DAYS)
    return [bucket_view(bucket) for bucket in store.read_range(account_id, "2000-01-01", "2999-12-31")]


def aggregate(aws: Aws, records: list[dict[str, Any]]) -> dict[str, Any]:
    return process_stream_batch(
        stream_event(records), CounterStore(aws.dynamodb, aws.counters_table, TEST_RETENTION_DAYS)
    )


def test_given_events_delivered_many_times_over_every_channel_then_counters_equal_a_single_delivery(aws):
    stream = aws.events_stream()
    once, many = usage_of(ONCE), usage_of(MANY)

    # The reference account: every event sent once, newer ones first.
    assert call_api(post_events(once["recent"]))[1]["accepted"] == 5
    assert call_api(post_events(once["late"]))[1]["accepted"] == 3

    # (1) The same HTTPS batch, retried as a client does after a timeout.
    assert call_api(post_events(many["recent"]))[1] == {"accepted": 5, "duplicates": 0, "rejected": []}
    assert call_api(post_events(many["recent"]))[1] == {"accepted": 0, "duplicates": 5, "rejected": []}
    first_batch = stream.new_records()
    assert aggregate(aws, first_batch) == {"batchItemFailures": []}

    # (2) A different batch: the late events, plus some of the events already sent.
    overlapping = many["late"] + many["recent"][1:3]
    assert call_api(post_events(overlapping))[1] == {"accepted": 3, "duplicates": 2, "rejected": []}

    # (3) All of them once more, from another service, over the EventBridge bus.
    everything = many["recent"] + many["late"]
    bus_answer = process_messages(
        bus_event(everything, source="billing"),
        bus_intakes(),
        aws.sqs,
        aws.rejects_queue_url,
        datetime.now(UTC),
    )
    assert bus_answer == {"batchItemFailures": []}
    assert aws.queue_messages(aws.rejects_queue_url) == []

    # The stream: the new records, then the same batch again (a Lambda retry), then the first one.
    second_batch = stream.new_records()
    assert aggregate(aws, second_batch) == {"batchItemFailures": []}
    assert aggregate(aws, second_batch) == {"batchItemFailures": []}
    assert aggregate(aws, first_batch + second_batch) == {"batchItemFailures": []}

    # The ledger holds each event once; nothing else reached the stream.
    ledger = [item for item in aws.scan(aws.events_table) if item["pk"] == MANY]
    assert sorted(item["sk"] for item in ledger) == sorted(event["event_id"] for event in everything)
    assert all(item["channel"] == "https" for item in ledger)
    assert stream.new_records() == []

    assert counters(aws, MANY) == counters(aws, ONCE)


def test_given_late_and_out_of_order_events_then_each_lands_in_its_own_day_with_the_right_values(aws):
    usage = usage_of(MANY)
    call_api(post_events(usage["recent"]))
    call_api(post_events(usage["late"]))
    aggregate(aws, aws.events_stream().new_records())

    days = {entry["day"]: entry["metrics"] for entry in counters(aws, MANY)}

    recent_day, earlier_day = an_hour(0, 0).date().isoformat(), an_hour(-3, 0).date().isoformat()
    assert list(days) == [earlier_day, recent_day]
    assert days[earlier_day] == {
        "feature.analytics.used": {"kind": "count", "total": 3, "events": 2, "distinct": {"team": 1}}
    }
    assert days[recent_day]["feature.analytics.used"] == {
        "kind": "count",
        "total": 6,
        "events": 3,
        "distinct": {"team": 2, "user": 2},
    }
    seats = days[recent_day]["seats.active"]
    assert (seats["last"], seats["low"], seats["high"], seats["events"]) == (40, 35, 40, 2)
    assert seats["last_at"].startswith(f"{recent_day}T15:00:00")
    assert days[recent_day]["ticket.created"]["total"] == 1


def test_given_the_stream_through_the_deployed_handler_then_a_redelivered_batch_counts_once(aws):
    from functions.aggregator.handler import handler

    usage = usage_of(MANY)
    call_api(post_events(usage["recent"]))
    batch = stream_event(aws.events_stream().new_records())

    assert handler(batch, LocalContext("aggregator")) == {"batchItemFailures": []}
    assert handler(json.loads(json.dumps(batch, default=str)), LocalContext("aggregator")) == {
        "batchItemFailures": []
    }

    (day,) = counters(aws, MANY)
    assert day["metrics"]["feature.analytics.used"]["events"] == 3


def test_given_a_full_batch_of_500_written_in_parallel_then_every_event_is_counted_once(aws):
    events = [
        usage_event(account_id=MANY, event_id=f"bulk-{i:03}", value=1, dimensions={"user": f"u-{i % 50}"})
        for i in range(500)
    ]

    assert call_api(post_events(events))[1] == {"accepted": 500, "duplicates": 0, "rejected": []}
    records = aws.events_stream().new_records()
    assert aggregate(aws, records) == {"batchItemFailures": []}
    assert aggregate(aws, records[250:]) == {"batchItemFailures": []}  # a retry of the second half

    assert len(records) == len({record["dynamodb"]["SequenceNumber"] for record in records}) == 500
    (day,) = counters(aws, MANY)
    used = day["metrics"]["feature.analytics.used"]
    assert (used["total"], used["events"], used["distinct"]["user"]) == (500, 500, 50)
