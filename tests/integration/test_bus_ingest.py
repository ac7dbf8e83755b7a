"""Events from the EventBridge bus (delivered through SQS) take the same write path as HTTPS."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from functions.bus_ingest.handler import handler, process_messages
from shared.errors import StorageUnavailable
from shared.events.ingest import Ingestor, IngestSettings, ingestor_for
from shared.events.ledger import EventLedger
from shared.events.metric_kinds import MetricKinds
from shared.intake import BatchIntake
from shared.outcomes.intake import outcome_intake_for
from shared.resources import OUTCOME_DETAIL_TYPE, USAGE_EVENT_DETAIL_TYPE
from shared.settings import load_settings
from tests.conftest import TEST_RETENTION_DAYS, Aws
from tests.integration.builders import (
    bus_event,
    call_api,
    eventbridge_envelope,
    post_events,
    sqs_event,
    usage_event,
)
from upswing.local.lambda_runtime import LocalContext


def an_ingestor(aws: Aws) -> Ingestor:
    return ingestor_for(aws.dynamodb, load_settings(IngestSettings))  # from the fixture's environment


def intakes(aws: Aws, ingestor: Ingestor | None = None) -> dict[str, BatchIntake]:
    settings = load_settings(IngestSettings)
    return {
        USAGE_EVENT_DETAIL_TYPE: ingestor or an_ingestor(aws),
        OUTCOME_DETAIL_TYPE: outcome_intake_for(
            aws.dynamodb, settings.outcomes_table, settings.retention_days
        ),
    }


def deliver(aws: Aws, event: dict[str, Any], ingestor: Ingestor | None = None) -> dict[str, Any]:
    return process_messages(event, intakes(aws, ingestor), aws.sqs, aws.rejects_queue_url, datetime.now(UTC))


def rejects(aws: Aws) -> list[dict[str, Any]]:
    return [json.loads(message["Body"]) for message in aws.queue_messages(aws.rejects_queue_url)]


def ledger(aws: Aws) -> dict[str, dict[str, Any]]:
    return {item["sk"]: item for item in aws.scan(aws.events_table)}


def test_given_valid_bus_events_when_delivered_then_they_are_stored_with_the_bus_as_producer(aws):
    events = [usage_event(), usage_event(name="seats.active", kind="gauge", value=12)]

    answer = deliver(aws, bus_event(events, source="billing"))

    assert answer == {"batchItemFailures": []}
    stored = ledger(aws)
    assert set(stored) == {event["event_id"] for event in events}
    assert {(item["producer"], item["channel"]) for item in stored.values()} == {
        ("eventbridge:billing", "eventbridge")
    }
    assert rejects(aws) == []


def test_given_an_event_already_sent_over_https_when_it_comes_over_the_bus_then_it_is_a_silent_duplicate(aws):
    event = usage_event()
    call_api(post_events([event]))

    answer = deliver(aws, bus_event([event]))

    assert answer == {"batchItemFailures": []}
    assert ledger(aws)[event["event_id"]]["channel"] == "https"
    assert rejects(aws) == []


def test_given_an_invalid_event_when_delivered_then_it_goes_to_the_rejects_queue_not_back_to_sqs(aws):
    good, bad = usage_event(), usage_event(value="12", colour="red")

    answer = deliver(aws, bus_event([good, bad], source="crm-sync"))

    assert answer == {"batchItemFailures": []}
    assert set(ledger(aws)) == {good["event_id"]}
    (reject,) = rejects(aws)
    assert reject["event"] == bad
    assert reject["source"] == "crm-sync"
    assert "value must be a JSON number, got a string" in reject["errors"]
    assert any("unknown field 'colour'" in error for error in reject["errors"])
    assert reject["rejected_at"].endswith("Z")


def test_given_a_reused_event_id_with_other_content_when_delivered_then_it_is_rejected(aws):
    event = usage_event(value=1)
    deliver(aws, bus_event([event]))

    answer = deliver(aws, bus_event([{**event, "value": 9}]))

    assert answer == {"batchItemFailures": []}
    (reject,) = rejects(aws)
    assert "already accepted" in reject["errors"][0]
    assert ledger(aws)[event["event_id"]]["value"] == 1


def test_given_bodies_that_are_not_eventbridge_usage_events_when_delivered_then_they_are_rejected(aws):
    not_json = "seats=12"
    plain_event = json.dumps(usage_event())  # the event without the EventBridge envelope
    other_type = json.dumps(
        {"version": "0", "id": "1", "detail-type": "order.placed", "source": "shop", "detail": {}}
    )

    answer = deliver(aws, sqs_event([not_json, plain_event, other_type]))

    assert answer == {"batchItemFailures": []}
    assert ledger(aws) == {}
    reasons = {reject["errors"][0]: reject["event"] for reject in rejects(aws)}
    assert reasons == {
        "The message is not valid JSON: Expecting value: line 1 column 1 (char 0).": not_json,
        "the message is not an EventBridge event (no source/detail)": plain_event,
        "detail-type must be 'usage.event' or 'outcome', got 'order.placed'": other_type,
    }


def test_given_hostile_bodies_when_delivered_with_a_good_event_then_they_are_rejected_and_the_batch_goes_on(
    aws,
):
    good = usage_event()
    too_deep = '{"detail-type": "usage.event", "source": "x", "detail": ' + "[" * 3000 + "]" * 3000 + "}"
    huge_integer = '{"detail-type": "usage.event", "source": "x", "detail": {"value": ' + "9" * 5000 + "}}"
    batch = bus_event([good])
    batch["Records"] += sqs_event([too_deep, huge_integer])["Records"]

    answer = deliver(aws, batch)

    assert answer == {"batchItemFailures": []}
    assert set(ledger(aws)) == {good["event_id"]}
    reasons = sorted(reject["errors"][0] for reject in rejects(aws))
    assert reasons == [
        "The message holds an integer of 5,000 digits; numbers may have at most 38 digits.",
        "The message nests arrays and objects more than 32 levels deep; flatten event properties "
        "(they are context, not a tree).",
    ]


def test_given_a_detail_that_is_not_an_object_when_delivered_then_it_is_rejected(aws):
    answer = deliver(aws, bus_event(["just a string"]))

    assert answer == {"batchItemFailures": []}
    (reject,) = rejects(aws)
    assert "must be a JSON object" in reject["errors"][0]


class _ThrottledLedger(EventLedger):
    def __init__(self, throttled_event_id: str, *args: Any) -> None:
        super().__init__(*args)
        self._throttled = throttled_event_id

    def put_new(self, item: dict[str, Any]) -> Any:
        if item["sk"] == self._throttled:
            raise StorageUnavailable("ProvisionedThroughputExceededException")
        return super().put_new(item)


def test_given_a_storage_failure_when_delivered_then_only_that_message_is_a_batch_item_failure(aws):
    ok, unlucky = usage_event(), usage_event()
    event = bus_event([ok, unlucky])
    throttled = Ingestor(
        _ThrottledLedger(unlucky["event_id"], aws.dynamodb, aws.events_table),
        MetricKinds(aws.dynamodb, aws.registry_table),
        TEST_RETENTION_DAYS,
    )

    answer = deliver(aws, event, throttled)

    assert answer == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["messageId"]}]}
    assert set(ledger(aws)) == {ok["event_id"]}
    assert rejects(aws) == []
    # SQS delivers the failed message again; by then storage is back.
    assert deliver(aws, {"Records": [event["Records"][1]]}) == {"batchItemFailures": []}
    assert set(ledger(aws)) == {ok["event_id"], unlucky["event_id"]}


def test_given_the_rejects_queue_is_unreachable_then_rejected_messages_are_retried_not_lost(aws):
    valid, invalid = usage_event(), usage_event(value="x")
    event = bus_event([valid, invalid])

    answer = process_messages(
        event,
        intakes(aws),
        aws.sqs,
        aws.rejects_queue_url.replace("rejectsqueue", "no-such-queue"),
        datetime.now(UTC),
    )

    assert answer == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["messageId"]}]}
    assert set(ledger(aws)) == {valid["event_id"]}


def test_given_more_than_ten_rejects_when_delivered_then_all_are_recorded(aws):
    answer = deliver(aws, bus_event([usage_event(value="x") for _ in range(12)]))

    assert answer == {"batchItemFailures": []}
    assert len(rejects(aws)) == 12


def test_given_the_deployed_handler_when_invoked_then_it_reads_its_settings_from_the_environment(aws):
    event = usage_event()

    answer = handler(bus_event([event, usage_event(colour="red")]), LocalContext("bus_ingest"))

    assert answer == {"batchItemFailures": []}
    assert set(ledger(aws)) == {event["event_id"]}
    assert len(rejects(aws)) == 1


def test_given_an_envelope_missing_eventbridge_fields_when_delivered_then_the_reject_names_them(aws):
    # EventBridge always sends these; a hand-made message without them is not an EventBridge event
    envelope = eventbridge_envelope(usage_event())
    del envelope["time"], envelope["id"]

    answer = deliver(aws, sqs_event([json.dumps(envelope)]))

    assert answer == {"batchItemFailures": []}
    assert ledger(aws) == {}
    [reject] = rejects(aws)
    assert reject["errors"] == ["the message is not an EventBridge event: id is required; time is required"]
