"""Auto-closing stale HubSpot tasks, the acting half: the real HubSpot sender completes the task in the
loopback HubSpot sink with a note saying why — once, under redelivery and lost answers — leaves a task a
person completed or deleted alone, holds on 401 and 429, and the read-back never counts it as worked.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from functions.hubspot_sender.handler import FUNCTION_TIMEOUT, HubSpotSender, send_tasks
from shared.delivery.hubspot import HubSpotClient, HubSpotSettings
from shared.delivery.ledger import DeliveryLedger, DeliveryStatus
from shared.delivery.task_close import CLOSE_CHANNEL, TASK_BODY_LIMIT, marker, with_note
from shared.readback.tasks import PollerStateStore, TaskPoller, TaskRegistry
from shared.resources import DELIVERIES_TABLE, HUBSPOT_QUEUE, PLAYS_TABLE
from shared.routing.ledger import PlayLedger
from shared.routing.messages import PlayDelivery, TaskClose
from shared.routing.models import PlayRecord, PlayStatus
from shared.routing.views import play_state
from tests.conftest import TEST_RETENTION_DAYS, Aws
from tests.integration.builders import hubspot_queue, sqs_event

TOKEN = "pat-na1-auto-close-token"
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
PLAY = "c" * 24
DECISION = {"decided_at": "2026-11-28T16:00:00Z", "not_holding_since": "2026-11-25T16:00:00Z", "after": "3d"}


class Faults(httpx.BaseTransport):
    """Forwards to the sink, except for scripted answers: (method, response, forward first), used once
    each by the next request of that method. `forward`: the sink acts, and its answer is lost."""

    def __init__(self) -> None:
        self._real = httpx.HTTPTransport()
        self.script: list[tuple[str, httpx.Response, bool]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for index, (method, response, forward) in enumerate(self.script):
            if request.method == method:
                del self.script[index]
                if forward:
                    self._real.handle_request(request).read()
                return response
        return self._real.handle_request(request)


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[Any]:
    from upswing.local.hubspot_sink import HubSpotSink

    with HubSpotSink(tmp_path / "requests.jsonl", owners=["501"], companies=["77"]) as running:
        yield running


@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
def plays(aws: Aws) -> PlayLedger:
    return PlayLedger(aws.dynamodb, aws.tables[PLAYS_TABLE.env_var], TEST_RETENTION_DAYS)


@pytest.fixture
def registry(aws: Aws) -> TaskRegistry:
    return TaskRegistry(aws.dynamodb, aws.tables[PLAYS_TABLE.env_var], TEST_RETENTION_DAYS)


@pytest.fixture
def sender(aws: Aws, sink: Any, faults: Faults, plays: PlayLedger, registry: TaskRegistry) -> HubSpotSender:
    client = HubSpotClient(
        HubSpotSettings(base_url=sink.endpoint),
        token=lambda: TOKEN,
        http=httpx.Client(transport=faults),
        sleep=lambda seconds: None,
        jitter=lambda: 0.0,
    )
    return HubSpotSender(
        client=client,
        ledger=DeliveryLedger(aws.dynamodb, aws.tables[DELIVERIES_TABLE.env_var], TEST_RETENTION_DAYS),
        queue=hubspot_queue(
            aws.sqs,
            aws.queues[HUBSPOT_QUEUE.env_var],
            aws.sqs.create_queue(QueueName="hubspot-dlq")["QueueUrl"],
        ),
        plays=plays,
        tasks=registry,
    )


@pytest.fixture
def poller(sender: HubSpotSender, registry: TaskRegistry, plays: PlayLedger, aws: Aws) -> TaskPoller:
    return TaskPoller(
        client=sender.client,
        registry=registry,
        plays=plays,
        state=PollerStateStore(aws.dynamodb, aws.tables[PLAYS_TABLE.env_var]),
        unseen_after=timedelta(0),
    )


@pytest.fixture
def task(sender: HubSpotSender, plays: PlayLedger) -> str:
    """A routed play whose task the real sender created in the sink, and whose close was decided."""
    delivery = PlayDelivery.model_validate(
        {
            "play_id": PLAY,
            "channel": "hubspot_task",
            "firing_id": "f" * 24,
            "account_id": "acct-1",
            "account_name": "Acme",
            "trigger": "seats",
            "play": "seat-expansion",
            "tier": 0,
            "ruleset_version": "v1",
            "subject": "Seats",
            "body": "Acme is at 46 of 50 seats.",
            "due": "2026-11-27",
            "priority": "HIGH",
            "owner": {"role": "csm", "name": "Casey", "hubspot_owner_id": "501"},
            "hubspot": {"company_id": "77"},
            "routed_at": "2026-11-25T10:00:00Z",
        }
    )
    plays.settle(
        PlayRecord(
            account_id="acct-1",
            play_id=PLAY,
            firing_id="f" * 24,
            tier=0,
            firing={
                "trigger": "seats",
                "play": "seat-expansion",
                "ruleset_version": "v1",
                "evaluated_at": "2026-11-25T09:59:00Z",
            },
            status=PlayStatus.ROUTED,
            updated_at=NOW,
            deliveries=(delivery,),
        )
    )
    claim = sender.deliver(delivery, NOW, far())
    assert claim.external_id
    assert plays.decide_auto_close("acct-1", PLAY, DECISION)
    return claim.external_id


def close_message(task_id: str) -> str:
    return TaskClose(
        play_id=PLAY,
        account_id="acct-1",
        task_id=task_id,
        trigger="seats",
        play="seat-expansion",
        tier=0,
        not_holding_since=datetime(2026, 11, 25, 16, 0, tzinfo=UTC),
        after="3d",
        decided_at=datetime(2026, 11, 28, 16, 0, tzinfo=UTC),
    ).model_dump_json()


def queued(aws: Aws, body: str) -> dict[str, Any]:
    """The message really on the HubSpot queue, received, as Lambda hands it over."""
    url = aws.queues[HUBSPOT_QUEUE.env_var]
    aws.sqs.send_message(QueueUrl=url, MessageBody=body)
    [message] = aws.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=30)["Messages"]
    event = sqs_event([body])
    event["Records"][0]["messageId"], event["Records"][0]["receiptHandle"] = (
        message["MessageId"],
        message["ReceiptHandle"],
    )
    return event


def far() -> float:
    return time.monotonic() + 60


def patches(sink: Any) -> list[dict[str, Any]]:
    return [request for request in sink.requests() if request["method"] == "PATCH"]


def the_task(sink: Any, task_id: str) -> dict[str, Any]:
    return next(task for task in sink.tasks() if task["id"] == task_id)


def task_state(plays: PlayLedger) -> dict[str, Any]:
    record = plays.get("acct-1", PLAY)
    assert record
    state = play_state(record)["hubspot_task"]
    assert state
    return state


# ── completing, once ───────────────────────────────────────────────────────────────────────────


def test_given_a_decided_close_then_the_task_is_completed_with_a_note_saying_why(
    sender: HubSpotSender, sink: Any, task: str, plays: PlayLedger
) -> None:
    answer = send_tasks(sqs_event([close_message(task)]), sender, far())

    assert answer == {"batchItemFailures": []}
    done = the_task(sink, task)["properties"]
    assert done["hs_task_status"] == "COMPLETED"
    assert done["hs_task_completion_date"]
    body = done["hs_task_body"]
    assert body.startswith("<p>Acme is at 46 of 50 seats.</p>")  # the task's own text stays
    assert "Closed by Upswing</strong> on 2026-11-28 16:00 UTC: the trigger <em>seats</em>" in body
    assert "not since 2026-11-25 16:00 UTC" in body
    assert "after 3d without the signal" in body
    assert body.endswith(f"{marker(PLAY)}</p>")
    state = task_state(plays)
    assert (state["state"], state["worked"]) == ("closed", None)
    assert state["closed"] == {
        "by": "upswing",
        "reason": "the trigger's signal has not held since 2026-11-25T16:00:00Z (auto_close after 3d)",
        "not_holding_since": "2026-11-25T16:00:00Z",
        "after": "3d",
        "decided_at": "2026-11-28T16:00:00Z",
        "result": "closed",
        "at": state["closed"]["at"],
    }
    record = plays.get("acct-1", PLAY)
    assert record
    assert (record.worked, record.auto_closed) == (False, True)


def test_given_the_close_is_redelivered_then_hubspot_is_changed_once(
    sender: HubSpotSender, sink: Any, task: str, plays: PlayLedger
) -> None:
    body = close_message(task)
    send_tasks(sqs_event([body]), sender, far())
    send_tasks(sqs_event([body, body]), sender, far())

    assert len(patches(sink)) == 1
    assert the_task(sink, task)["properties"]["hs_task_body"].count(marker(PLAY)) == 1
    claim = sender.ledger.claim(CLOSE_CHANNEL, PLAY, NOW)
    assert claim.status is DeliveryStatus.DELIVERED


def test_given_the_patch_answer_is_lost_then_the_retry_sends_the_same_body_and_one_note_remains(
    sender: HubSpotSender, sink: Any, faults: Faults, task: str
) -> None:
    faults.script.append(("PATCH", httpx.Response(502, text="Bad gateway"), True))

    assert send_tasks(sqs_event([close_message(task)]), sender, far()) == {"batchItemFailures": []}

    assert len(patches(sink)) == 2
    assert the_task(sink, task)["properties"]["hs_task_body"].count(marker(PLAY)) == 1


def test_given_an_attempt_died_after_its_patch_then_the_redelivery_finds_the_note_and_changes_nothing(
    sender: HubSpotSender, sink: Any, task: str, plays: PlayLedger
) -> None:
    # The earlier attempt claimed the close and completed the task, then its Lambda timed out
    sender.ledger.claim(CLOSE_CHANNEL, PLAY, NOW - FUNCTION_TIMEOUT - timedelta(seconds=1))
    body = the_task(sink, task)["properties"]["hs_task_body"]
    sink.update(task, {"hs_task_status": "COMPLETED", "hs_task_body": body + f"<p>…{marker(PLAY)}</p>"})

    assert send_tasks(sqs_event([close_message(task)]), sender, far()) == {"batchItemFailures": []}

    assert patches(sink) == []
    assert task_state(plays)["state"] == "closed"


# ── a person was first ─────────────────────────────────────────────────────────────────────────


def test_given_a_person_completed_the_task_then_it_is_left_alone_and_read_back_as_worked(
    sender: HubSpotSender, sink: Any, task: str, plays: PlayLedger, poller: TaskPoller
) -> None:
    done = sink.complete(task)
    assert done

    assert send_tasks(sqs_event([close_message(task)]), sender, far()) == {"batchItemFailures": []}

    assert patches(sink) == []
    assert marker(PLAY) not in the_task(sink, task)["properties"]["hs_task_body"]
    report = poller.poll(far(), lambda: True)
    assert report.worked == 1
    state = task_state(plays)
    assert state["state"] == "worked"
    assert state["worked"] == {"at": done["properties"]["hs_task_completion_date"], "by": "501"}
    assert (state["closed"]["result"], state["closed"]["by"]) == ("already_completed", "upswing")


@pytest.mark.parametrize("when", ["before the read", "between the read and the patch"])
def test_given_the_task_was_deleted_then_it_is_recorded_and_not_retried(
    sender: HubSpotSender, sink: Any, faults: Faults, task: str, plays: PlayLedger, when: str
) -> None:
    if when == "before the read":
        assert sink.delete(task)
    else:
        gone = {"status": "error", "message": "Object not found.", "category": "OBJECT_NOT_FOUND"}
        faults.script.append(("PATCH", httpx.Response(404, json=gone), False))

    assert send_tasks(sqs_event([close_message(task)]), sender, far()) == {"batchItemFailures": []}

    assert task_state(plays)["closed"]["result"] == "task_deleted"
    claim = sender.ledger.claim(CLOSE_CHANNEL, PLAY, NOW)
    assert (claim.status, claim.external_id) == (DeliveryStatus.DELIVERED, "task_deleted@0")


# ── HubSpot refuses or throttles ───────────────────────────────────────────────────────────────


def test_given_a_429_then_the_close_goes_back_to_the_queue_and_a_later_attempt_closes_it(
    aws: Aws, sender: HubSpotSender, sink: Any, faults: Faults, task: str, plays: PlayLedger
) -> None:
    daily = {"status": "error", "errorType": "RATE_LIMIT", "policyName": "DAILY", "message": "daily"}
    faults.script.append(("GET", httpx.Response(429, json=daily), False))

    with pytest.raises(BatchProcessingError, match="DAILY"):
        send_tasks(queued(aws, close_message(task)), sender, far())

    url = aws.queues[HUBSPOT_QUEUE.env_var]
    assert aws.sqs.receive_message(QueueUrl=url).get("Messages", []) == []  # held until midnight
    assert task_state(plays)["closed"]["result"] is None
    assert the_task(sink, task)["properties"]["hs_task_status"] == "NOT_STARTED"
    # Tomorrow: closed, once
    assert send_tasks(sqs_event([close_message(task)]), sender, far()) == {"batchItemFailures": []}
    assert (len(patches(sink)), task_state(plays)["state"]) == (1, "closed")


def test_given_hubspot_refuses_the_token_then_the_close_is_held_not_dead_lettered(
    aws: Aws, sender: HubSpotSender, sink: Any, faults: Faults, task: str, plays: PlayLedger
) -> None:
    refused = {
        "status": "error",
        "message": "Authentication credentials not found.",
        "category": "INVALID_AUTHENTICATION",
    }
    faults.script += [("GET", httpx.Response(401, json=refused), False)] * 2

    with pytest.raises(BatchProcessingError):
        send_tasks(queued(aws, close_message(task)), sender, far())

    assert aws.sqs.receive_message(QueueUrl=sender.queue.dead_letter_url).get("Messages", []) == []
    assert task_state(plays)["closed"]["result"] is None
    assert patches(sink) == []


def test_given_hubspot_refuses_the_update_for_good_then_it_is_dead_lettered_and_the_play_says_why(
    aws: Aws, sender: HubSpotSender, faults: Faults, task: str, plays: PlayLedger
) -> None:
    invalid = {"status": "error", "message": "Property values were not valid", "category": "VALIDATION_ERROR"}
    faults.script.append(("PATCH", httpx.Response(400, json=invalid), False))

    assert send_tasks(sqs_event([close_message(task)]), sender, far()) == {"batchItemFailures": []}

    [dead] = aws.sqs.receive_message(QueueUrl=sender.queue.dead_letter_url, MessageAttributeNames=["All"])[
        "Messages"
    ]
    assert json.loads(dead["Body"])["type"] == "task.close"
    result = task_state(plays)["closed"]["result"]
    assert result.startswith("failed: HubSpot rejected the request: 400 VALIDATION_ERROR")


def test_given_a_malformed_close_then_it_is_dead_lettered_with_what_is_wrong(
    aws: Aws, sender: HubSpotSender
) -> None:
    body = json.dumps({"type": "task.close", "play_id": PLAY, "task_id": "not-a-number"})

    assert send_tasks(sqs_event([body]), sender, far()) == {"batchItemFailures": []}

    [dead] = aws.sqs.receive_message(QueueUrl=sender.queue.dead_letter_url, MessageAttributeNames=["All"])[
        "Messages"
    ]
    reason = dead["MessageAttributes"]["error"]["StringValue"]
    assert reason.startswith("not a task close: ")
    assert "task_id" in reason


# ── the read-back tells Upswing's completion from a person's ───────────────────────────────────


def test_given_an_auto_closed_task_when_polled_then_it_is_not_counted_as_worked(
    sender: HubSpotSender, task: str, plays: PlayLedger, poller: TaskPoller
) -> None:
    send_tasks(sqs_event([close_message(task)]), sender, far())

    report = poller.poll(far(), lambda: True)

    assert (report.worked, report.changed) == (0, 0)
    assert task_state(plays)["state"] == "closed"


def test_given_the_poller_reads_the_completion_while_the_close_is_in_flight_then_it_leaves_it_to_the_sender(
    sender: HubSpotSender, task: str, plays: PlayLedger, poller: TaskPoller, registry: TaskRegistry
) -> None:
    # The poller runs between the sender's PATCH and its recording of the close
    reports = []
    settle = registry.closed_by_upswing

    def poll_first(task_id: str, modified_ms: int, at: datetime) -> None:
        reports.append(poller.poll(far(), lambda: True))
        settle(task_id, modified_ms, at)

    registry.closed_by_upswing = poll_first  # type: ignore[method-assign]
    send_tasks(sqs_event([close_message(task)]), sender, far())

    [during] = reports
    assert (during.worked, during.closing) == (0, 2)  # seen by the search and by the sweep: left both times
    after = poller.poll(far(), lambda: True)
    assert (after.worked, after.closing) == (0, 0)
    state = task_state(plays)
    assert (state["state"], state["worked"]) == ("closed", None)


def test_given_a_person_completes_it_while_the_close_is_in_flight_then_the_sweep_records_it_worked(
    sender: HubSpotSender, sink: Any, task: str, plays: PlayLedger, poller: TaskPoller, registry: TaskRegistry
) -> None:
    # The person completes the task and the poller reads it while the sender is about to read it
    registry.mark_closing(task, datetime.now(UTC))
    sink.complete(task)
    assert poller.poll(far(), lambda: True).closing == 2  # the search's result and the sweep's read
    assert task_state(plays)["state"] == "created"

    send_tasks(sqs_event([close_message(task)]), sender, far())  # left alone: already completed

    report = poller.poll(far(), lambda: True)  # the search has moved on; the sweep reads it
    assert report.worked == 1
    assert task_state(plays)["state"] == "worked"


def test_given_a_close_that_never_finished_then_after_a_day_the_poller_records_what_it_sees(
    sink: Any, task: str, plays: PlayLedger, poller: TaskPoller, registry: TaskRegistry
) -> None:
    registry.mark_closing(task, datetime.now(UTC) - timedelta(days=1, minutes=1))
    sink.complete(task)

    assert poller.poll(far(), lambda: True).worked == 1


# ── the note ───────────────────────────────────────────────────────────────────────────────────


def test_given_a_body_at_hubspots_limit_then_its_end_is_cut_at_a_tag_and_the_note_stays() -> None:
    body = "<p>" + "x" * 30_000 + "</p><p>" + "y" * (TASK_BODY_LIMIT - 30_020) + "</p>"
    note = f"<p>Closed by Upswing.<br>{marker(PLAY)}</p>"

    closed = with_note(body, note)

    assert len(closed) <= TASK_BODY_LIMIT
    assert closed.endswith(note)
    assert closed.startswith("<p>" + "x" * 30_000 + "</p><p>")
    assert "[Cut by Upswing to make room for the note below" in closed
    assert with_note("<p>short</p>", note) == "<p>short</p>" + note
