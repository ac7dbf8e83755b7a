"""The HubSpot read-back on moto against the loopback HubSpot sink: tasks the real sender created are
completed, reassigned, moved and deleted in the sink, and the poller records it on their plays —
once, whatever fails on the way (a page mid-way, 429, 5xx), and only for Upswing's tasks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from functions.hubspot_poller.handler import poll_tasks
from functions.hubspot_sender.handler import HubSpotSender
from shared.delivery import hubspot as hubspot_module
from shared.delivery.hubspot import HubSpotClient, HubSpotSettings
from shared.delivery.ledger import DeliveryLedger
from shared.delivery.shared_pacer import SharedPacer
from shared.readback.tasks import POLLER_STATE_KEY, PollerStateStore, TaskFacts, TaskPoller, TaskRegistry
from shared.resources import DELIVERIES_TABLE, HUBSPOT_QUEUE, PLAYS_TABLE
from shared.routing.ledger import PlayLedger
from shared.routing.messages import PlayDelivery
from shared.routing.models import PlayRecord, PlayStatus, TaskStatus
from shared.routing.views import play_state
from tests.conftest import TEST_RETENTION_DAYS, Aws
from tests.integration.builders import hubspot_queue
from upswing.local.hubspot_sink import HubSpotSink

TOKEN = "pat-na1-readback-token"
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
# The firing evidence a play carries (the fields the ledger and the trigger metrics read).
A_FIRING = {
    "trigger": "seats",
    "play": "seat-expansion",
    "ruleset_version": "v1",
    "evaluated_at": "2026-11-25T09:00:00Z",
}
PACER_KEY = "hubspot-search#secret"


class Faults(httpx.BaseTransport):
    """Forwards to the sink, except for the scripted answers: (path suffix, response) pairs, used once."""

    def __init__(self) -> None:
        self._real = httpx.HTTPTransport()
        self.script: list[tuple[str, httpx.Response]] = []
        self.paths: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        for index, (suffix, response) in enumerate(self.script):
            if request.url.path.endswith(suffix):
                del self.script[index]
                return response
        return self._real.handle_request(request)


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[HubSpotSink]:
    with HubSpotSink(tmp_path / "requests.jsonl", owners=["501", "502"], companies=["77"]) as running:
        yield running


@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
def client(sink: HubSpotSink, faults: Faults, aws: Aws) -> HubSpotClient:
    return HubSpotClient(
        HubSpotSettings(base_url=sink.endpoint),
        token=lambda: TOKEN,
        http=httpx.Client(transport=faults),
        sleep=lambda seconds: None,
        jitter=lambda: 0.0,
        search_pacer=SharedPacer(
            aws.dynamodb, aws.tables[DELIVERIES_TABLE.env_var], PACER_KEY, limit=5, window_seconds=1.2
        ),
    )


class CountingLedger(PlayLedger):
    """The play ledger, failing its `fail_at`-th task change (a DynamoDB failure mid-page)."""

    fail_at: int | None = None
    calls = 0

    def record_task_change(self, account_id: str, play_id: str, facts: TaskFacts) -> bool:
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise RuntimeError("DynamoDB went away")
        return super().record_task_change(account_id, play_id, facts)


@pytest.fixture
def plays(aws: Aws) -> CountingLedger:
    return CountingLedger(aws.dynamodb, aws.tables[PLAYS_TABLE.env_var], TEST_RETENTION_DAYS)


@pytest.fixture
def registry(aws: Aws) -> TaskRegistry:
    return TaskRegistry(aws.dynamodb, aws.tables[PLAYS_TABLE.env_var], TEST_RETENTION_DAYS)


@pytest.fixture
def poller(client: HubSpotClient, registry: TaskRegistry, plays: CountingLedger, aws: Aws) -> TaskPoller:
    return TaskPoller(
        client=client,
        registry=registry,
        plays=plays,
        state=PollerStateStore(aws.dynamodb, aws.tables[PLAYS_TABLE.env_var]),
        wall_clock=lambda: datetime.now(UTC),
        unseen_after=timedelta(0),
    )


@pytest.fixture
def create_play(
    aws: Aws, client: HubSpotClient, plays: CountingLedger, registry: TaskRegistry
) -> Callable[[str], str]:
    """A routed play whose task the real sender creates in the sink; returns the task id."""
    sender = HubSpotSender(
        client=client,
        ledger=DeliveryLedger(aws.dynamodb, aws.tables[DELIVERIES_TABLE.env_var], TEST_RETENTION_DAYS),
        queue=hubspot_queue(aws.sqs, aws.queues[HUBSPOT_QUEUE.env_var], "unused"),
        plays=plays,
        tasks=registry,
    )

    def create(play_id: str) -> str:
        delivery = a_delivery(play_id)
        plays.settle(
            PlayRecord(
                account_id="acct-1",
                play_id=play_id,
                firing_id="f" * 24,
                tier=0,
                firing=A_FIRING,
                status=PlayStatus.ROUTED,
                updated_at=NOW,
                deliveries=(delivery,),
            )
        )
        claim = sender.deliver(delivery, NOW, time.monotonic() + 30)
        assert claim.external_id
        return claim.external_id

    return create


def a_delivery(play_id: str) -> PlayDelivery:
    return PlayDelivery.model_validate(
        {
            "play_id": play_id,
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


def far() -> float:
    return time.monotonic() + 60


def always() -> bool:
    return True


def play_id(n: int) -> str:
    return f"{n:024x}"


def task_of(plays: PlayLedger, n: int) -> dict[str, Any]:
    record = plays.get("acct-1", play_id(n))
    assert record
    state = play_state(record)["hubspot_task"]
    assert state is not None
    return state


# ── what is read back ──────────────────────────────────────────────────────────────────────────


def test_given_a_created_task_then_the_play_shows_it_created(
    create_play: Callable[[str], str], plays: CountingLedger
) -> None:
    task_id = create_play(play_id(1))
    state = task_of(plays, 1)
    assert (state["state"], state["task_id"], state["owner_id"]) == ("created", task_id, "501")
    assert state["due"] == "2026-11-27T17:00:00Z"


def test_given_the_owner_completes_the_task_when_polled_then_the_play_is_worked_when_and_by_whom(
    create_play: Callable[[str], str], sink: HubSpotSink, poller: TaskPoller, plays: CountingLedger
) -> None:
    task_id = create_play(play_id(1))
    create_play(play_id(2))  # still open
    done = sink.complete(task_id)
    assert done

    report = poller.poll(far(), always)

    assert (report.worked, report.changed) == (1, 1)
    state = task_of(plays, 1)
    assert state["state"] == "worked"
    assert state["worked"] == {"at": done["properties"]["hs_task_completion_date"], "by": "501"}
    assert task_of(plays, 2)["state"] == "created"
    record = plays.get("acct-1", play_id(1))
    assert record
    assert record.worked


def test_given_a_task_reassigned_and_its_due_date_moved_when_polled_then_the_play_says_from_and_to(
    create_play: Callable[[str], str], sink: HubSpotSink, poller: TaskPoller, plays: CountingLedger
) -> None:
    task_id = create_play(play_id(1))
    sink.update(task_id, {"hubspot_owner_id": "502", "hs_timestamp": "2026-12-01T17:00:00Z"})

    report = poller.poll(far(), always)

    assert (report.reassigned, report.due_moved, report.worked) == (1, 1, 0)
    state = task_of(plays, 1)
    assert (state["reassigned"]["from"], state["reassigned"]["to"]) == ("501", "502")
    assert (state["due_moved"]["from"], state["due_moved"]["to"]) == (
        "2026-11-27T17:00:00Z",
        "2026-12-01T17:00:00.000Z",
    )
    assert (state["state"], state["owner_id"]) == ("created", "502")


def test_given_a_task_deleted_in_hubspot_when_the_sweep_reaches_it_then_the_play_says_deleted(
    create_play: Callable[[str], str], sink: HubSpotSink, poller: TaskPoller, plays: CountingLedger
) -> None:
    deleted = create_play(play_id(1))
    create_play(play_id(2))
    assert sink.delete(deleted)

    report = poller.poll(far(), always)

    assert (report.deleted, report.checked) == (1, 2)
    state = task_of(plays, 1)
    assert state["state"] == "deleted"
    assert state["deleted"]["at"] == next(
        task["archivedAt"] for task in sink.tasks() if task["id"] == deleted
    )
    assert task_of(plays, 2)["state"] == "created"
    # The deleted task is not checked again; nothing is recorded twice.
    again = poller.poll(far(), always)
    assert (again.deleted, again.checked, again.changed) == (0, 1, 0)


def test_given_tasks_upswing_did_not_create_when_polled_then_they_are_ignored(
    create_play: Callable[[str], str], sink: HubSpotSink, client: HubSpotClient, poller: TaskPoller
) -> None:
    create_play(play_id(1))
    foreign = httpx.post(
        f"{sink.endpoint}/crm/v3/objects/tasks",
        json={"properties": {"hs_timestamp": "2026-11-30T10:00:00Z", "hs_task_status": "NOT_STARTED"}},
        headers={"Authorization": f"Bearer {TOKEN}"},
    ).json()["id"]
    sink.complete(foreign)

    report = poller.poll(far(), always)

    assert (report.seen, report.ignored, report.changed) == (2, 1, 0)


def test_given_nothing_changed_when_polled_again_within_the_overlap_then_nothing_is_recorded_twice(
    create_play: Callable[[str], str], sink: HubSpotSink, poller: TaskPoller, plays: CountingLedger
) -> None:
    task_id = create_play(play_id(1))
    sink.complete(task_id)
    first = poller.poll(far(), always)

    # The overlap reads the same change again (clock skew, search lag): it is skipped
    second = poller.poll(far(), always)

    assert (first.worked, second.seen, second.worked, second.changed) == (1, 1, 0, 0)
    assert second.watermark_ms == first.watermark_ms


def test_given_searches_when_polled_then_they_use_the_senders_shared_search_budget(
    create_play: Callable[[str], str], poller: TaskPoller, aws: Aws
) -> None:
    create_play(play_id(1))
    poller.poll(far(), always)
    item = aws.dynamodb.get_item(
        TableName=aws.tables[DELIVERIES_TABLE.env_var], Key={"pk": {"S": f"pacer#{PACER_KEY}"}}
    )["Item"]
    assert len(item["grants"]["L"]) >= 1


# ── faults ─────────────────────────────────────────────────────────────────────────────────────


def test_given_a_page_that_fails_mid_way_then_the_watermark_stays_and_the_retry_counts_each_change_once(
    create_play: Callable[[str], str],
    sink: HubSpotSink,
    poller: TaskPoller,
    plays: CountingLedger,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hubspot_module, "SEARCH_PAGE_LIMIT", 3)
    tasks = [create_play(play_id(n)) for n in range(1, 6)]
    for task_id in tasks:
        sink.complete(task_id)
    plays.fail_at = 5  # the second page's second change fails

    with pytest.raises(RuntimeError):
        poller.poll(far(), always)
    after_failure = poller.state.load(datetime.now(UTC)).watermark_ms
    first_page_newest = max(
        int(datetime.fromisoformat(t["properties"]["hs_lastmodifieddate"]).timestamp() * 1000)
        for t in sink.tasks()
        if t["id"] in tasks[:3]
    )
    assert after_failure == first_page_newest  # page 1 recorded; page 2 not: the watermark stays

    plays.fail_at = None
    retry = poller.poll(far(), always)

    worked = [task_of(plays, n)["state"] for n in range(1, 6)]
    assert worked == ["worked"] * 5
    # 4 changes recorded before the failure, 1 by the retry: each once
    assert retry.worked == 1


def test_given_hubspot_answers_429_and_500_while_polling_then_they_are_waited_out_and_nothing_is_lost(
    create_play: Callable[[str], str], sink: HubSpotSink, poller: TaskPoller, faults: Faults
) -> None:
    task_id = create_play(play_id(1))
    create_play(play_id(2))  # open: the deletion sweep batch-reads it
    sink.complete(task_id)
    rate_limited = {"status": "error", "errorType": "RATE_LIMIT", "policyName": "SECONDLY"}
    faults.script = [
        ("/search", httpx.Response(429, json=rate_limited)),
        ("/search", httpx.Response(502, text="Bad gateway")),
        ("/batch/read", httpx.Response(503, json={"status": "error", "message": "busy"})),
    ]

    report = poller.poll(far(), always)

    assert (report.worked, report.checked, report.deleted) == (1, 1, 0)
    assert faults.script == []
    assert sum(path.endswith("/search") for path in faults.paths) == 3


def test_given_hubspot_keeps_failing_then_the_run_stops_and_the_next_one_records_the_change(
    create_play: Callable[[str], str], sink: HubSpotSink, poller: TaskPoller, faults: Faults, aws: Aws
) -> None:
    task_id = create_play(play_id(1))
    sink.complete(task_id)
    faults.script = [("/search", httpx.Response(500, json={"message": "down"}))] * 5

    assert poll_tasks(poller, far()) == {"stopped": "HubSpotUnavailable"}
    stored = aws.dynamodb.get_item(TableName=aws.tables[PLAYS_TABLE.env_var], Key=POLLER_STATE_KEY)
    assert "Item" not in stored  # no watermark written

    assert poll_tasks(poller, far())["worked"] == 1


def test_given_the_deadline_is_near_then_the_run_stops_before_searching_and_the_next_continues(
    create_play: Callable[[str], str], sink: HubSpotSink, poller: TaskPoller
) -> None:
    sink.complete(create_play(play_id(1)))

    stopped = poller.poll(far(), lambda: False)
    assert (stopped.stopped_early, stopped.pages) == (True, 0)

    assert poller.poll(far(), always).worked == 1


def test_given_a_task_hubspot_refused_for_good_then_the_play_says_failed_with_hubspots_reason(
    aws: Aws, plays: CountingLedger
) -> None:
    plays.settle(
        PlayRecord(
            account_id="acct-1",
            play_id=play_id(9),
            firing_id="f" * 24,
            tier=0,
            firing=A_FIRING,
            status=PlayStatus.ROUTED,
            updated_at=NOW,
            deliveries=(a_delivery(play_id(9)),),
        )
    )
    assert task_of(plays, 9) == {"state": "pending", "task_id": None}

    plays.record_task_failure("acct-1", play_id(9), "HubSpot rejected the request: 400 ...", "c0ffee", NOW)

    state = task_of(plays, 9)
    assert state["state"] == "failed"
    assert state["failed"]["correlation_id"] == "c0ffee"
    assert state["failed"]["reason"].startswith("HubSpot rejected the request: 400")


def test_a_task_status_is_never_moved_back_by_an_older_change(aws: Aws, plays: CountingLedger) -> None:
    plays.settle(
        PlayRecord(
            account_id="acct-1",
            play_id=play_id(3),
            firing_id="f" * 24,
            tier=0,
            firing=A_FIRING,
            status=PlayStatus.ROUTED,
            updated_at=NOW,
        )
    )
    newer = TaskFacts(task_id="1", status=TaskStatus.COMPLETED, modified_ms=20, worked={"at": "x", "by": "1"})
    older = TaskFacts(task_id="1", status=TaskStatus.OPEN, modified_ms=10)
    assert plays.record_task_change("acct-1", play_id(3), newer)
    assert not plays.record_task_change("acct-1", play_id(3), older)
    assert not plays.record_task_change("acct-1", play_id(3), newer)  # the same again: no-op
    record = plays.get("acct-1", play_id(3))
    assert record
    assert record.task
    assert record.task.status is TaskStatus.COMPLETED
