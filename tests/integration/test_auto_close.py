"""Auto-closing stale HubSpot tasks, the scheduler's half, on moto with a frozen clock: the router
watches each task of a play with `auto_close`, the scheduler checks the trigger's signal and decides
to close after exactly `after` of not holding — once — and hands a `task.close` to the HubSpot queue.

Times are fixed: the play is routed Wednesday 2026-11-25 10:00 UTC; checks come every 6 hours.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.router.scheduler import close_stale_tasks, release_due
from shared.accounts.store import AccountStore
from shared.resources import EMAIL_QUEUE, HUBSPOT_QUEUE, PLAYS_TABLE
from shared.routing.autoclose import AutoCloser
from shared.routing.dispatch import AwsDispatcher
from shared.routing.ledger import PlayLedger
from shared.routing.messages import TaskClose
from shared.routing.models import PlayStatus, TaskFacts, TaskStatus
from shared.routing.router import Router, play_id
from shared.routing.watches import AutoCloseWatches
from shared.rules.loading import parse_ruleset
from shared.rules.plays import Channel
from tests.conftest import TEST_RETENTION_DAYS, Aws
from tests.integration.test_router import AE, CSM, Signals, fired, put_account

ROUTED = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
HOURS = timedelta(hours=1)
DAYS = timedelta(days=1)

RULES = parse_ruleset(
    """
version: auto-close-test-1
metrics: {seats.active: gauge}
signals:
  busy: {measure: latest, metric: seats.active, window: 1d, at_least: 10}
triggers:
  seats: {category: commercial, owner_role: csm, play: seat-expansion, when: busy, cooldown: 30d}
  plain: {category: commercial, owner_role: csm, play: plain, when: busy, cooldown: 30d}
  upgrade: {category: commercial, owner_role: csm, play: upgrade-proposal, when: busy, cooldown: 30d}
budgets: {plays_per_account: 10, tasks_per_owner_per_day: 10}
plays:
  seat-expansion:
    channels: [hubspot_task]
    auto_close: {after: 3d}
  plain:
    channels: [hubspot_task]
  upgrade-proposal:
    escalation:
      - {after: 0d, channels: [hubspot_task]}
      - {after: 14d, role: ae, channels: [hubspot_task]}
    auto_close: {after: 2d}
""",
    "auto-close-test.yaml",
)


class Hand:
    """The HubSpot queue as the auto-closer sees it, able to fail a hand-over."""

    def __init__(self, dispatcher: AwsDispatcher) -> None:
        self.dispatcher = dispatcher
        self.fail = False

    def close_task(self, message: TaskClose) -> None:
        if self.fail:
            raise RuntimeError("SQS went away")
        self.dispatcher.close_task(message)


@pytest.fixture
def signals() -> Signals:
    return Signals()


@pytest.fixture
def dispatcher(aws: Aws) -> AwsDispatcher:
    from tests.conftest import _test_client

    events = _test_client("events")
    events.create_event_bus(Name="auto-close-bus")
    return AwsDispatcher(
        aws.sqs,
        {
            Channel.HUBSPOT_TASK: aws.queues[HUBSPOT_QUEUE.env_var],
            Channel.EMAIL: aws.queues[EMAIL_QUEUE.env_var],
        },
        events,
        "auto-close-bus",
    )


@pytest.fixture
def router(aws: Aws, signals: Signals, dispatcher: AwsDispatcher) -> Router:
    table = aws.tables[PLAYS_TABLE.env_var]
    return Router(
        ruleset=RULES,
        accounts=AccountStore(aws.dynamodb, aws.accounts_table),
        ledger=PlayLedger(aws.dynamodb, table, TEST_RETENTION_DAYS),
        dispatcher=dispatcher,
        signal_holds=signals,
        watches=AutoCloseWatches(aws.dynamodb, table, TEST_RETENTION_DAYS),
    )


@pytest.fixture
def hand(dispatcher: AwsDispatcher) -> Hand:
    return Hand(dispatcher)


@pytest.fixture
def closer(router: Router, signals: Signals, hand: Hand) -> AutoCloser:
    assert router.watches
    return AutoCloser(
        ruleset=RULES, plays=router.ledger, watches=router.watches, signal_holds=signals, sender=hand
    )


def route(
    aws: Aws, router: Router, trigger: str = "seats", play: str = "seat-expansion", task: str = "7001"
) -> str:
    """A routed play whose task the sender created; its play id."""
    put_account(aws, "acct-1", owners={"csm": CSM, "ae": AE})
    message = fired("acct-1", trigger=trigger, play=play, at=ROUTED)
    record = router.route_firing(message, ROUTED)
    assert record.status is PlayStatus.ROUTED
    aws.queue_messages(aws.queues[HUBSPOT_QUEUE.env_var])  # the deliveries: the sender's business
    router.ledger.record_task_created("acct-1", record.play_id, task, "501", "2026-11-27T17:00:00Z", ROUTED)
    return record.play_id


def closes(aws: Aws) -> list[dict[str, Any]]:
    bodies = [
        json.loads(message["Body"]) for message in aws.queue_messages(aws.queues[HUBSPOT_QUEUE.env_var])
    ]
    return [body for body in bodies if body["type"] == "task.close"]


def run(closer: AutoCloser, at: datetime) -> dict[str, int]:
    return close_stale_tasks(closer, at)


# ── deciding ───────────────────────────────────────────────────────────────────────────────────


def test_given_a_routed_play_with_auto_close_then_its_task_is_first_checked_six_hours_later(
    aws: Aws, router: Router, closer: AutoCloser
) -> None:
    route(aws, router)

    assert run(closer, ROUTED + 5 * HOURS) == {}
    assert run(closer, ROUTED + 6 * HOURS) == {"holds": 1}
    assert run(closer, ROUTED + 11 * HOURS) == {}
    assert run(closer, ROUTED + 12 * HOURS) == {"holds": 1}


def test_given_a_play_without_auto_close_then_nothing_is_watched(
    aws: Aws, router: Router, closer: AutoCloser
) -> None:
    route(aws, router, trigger="plain", play="plain")

    assert run(closer, ROUTED + 30 * DAYS) == {}


def test_given_the_signal_stops_holding_then_the_close_is_decided_after_exactly_n_days_and_never_twice(
    aws: Aws, router: Router, closer: AutoCloser, signals: Signals
) -> None:
    play = route(aws, router)
    signals.cleared.add(("acct-1", "seats"))

    # The first check (6 h after routing) finds the signal not holding: the clock starts there
    first = ROUTED + 6 * HOURS
    assert run(closer, first) == {"not holding": 1}
    # Every 6 hours, until the check before the deadline is moved onto the deadline itself
    at = first
    while at + 6 * HOURS < first + 3 * DAYS:
        at += 6 * HOURS
        assert run(closer, at) == {"not holding": 1}, at
    assert run(closer, first + 3 * DAYS - timedelta(seconds=1)) == {}
    assert closes(aws) == []

    # At exactly 3 days: decided, and handed to the HubSpot sender
    assert run(closer, first + 3 * DAYS) == {"closing": 1}
    [close] = closes(aws)
    assert close == {
        "type": "task.close",
        "play_id": play,
        "account_id": "acct-1",
        "task_id": "7001",
        "trigger": "seats",
        "play": "seat-expansion",
        "tier": 0,
        "not_holding_since": "2026-11-25T16:00:00Z",
        "after": "3d",
        "decided_at": "2026-11-28T16:00:00Z",
    }
    record = router.ledger.get("acct-1", play)
    assert record
    assert record.auto_close == {
        "decided_at": "2026-11-28T16:00:00Z",
        "not_holding_since": "2026-11-25T16:00:00Z",
        "after": "3d",
    }
    # Never twice: the watch has ended
    for later in (first + 4 * DAYS, first + 30 * DAYS):
        assert run(closer, later) == {}
    assert closes(aws) == []


def test_given_the_signal_flips_back_then_the_clock_starts_again(
    aws: Aws, router: Router, closer: AutoCloser, signals: Signals
) -> None:
    route(aws, router)
    signals.cleared.add(("acct-1", "seats"))
    assert run(closer, ROUTED + 6 * HOURS) == {"not holding": 1}
    assert run(closer, ROUTED + 2 * DAYS) == {"not holding": 1}

    # The signal holds again at one check: the clock is reset
    signals.cleared.clear()
    assert run(closer, ROUTED + 2 * DAYS + 6 * HOURS) == {"holds": 1}
    signals.cleared.add(("acct-1", "seats"))
    restart = ROUTED + 2 * DAYS + 12 * HOURS
    assert run(closer, restart) == {"not holding": 1}

    # 3 days after the first not-holding check would have been the deadline: nothing yet
    for at in (ROUTED + 3 * DAYS + 6 * HOURS, restart + 3 * DAYS - 6 * HOURS):
        run(closer, at)
    assert closes(aws) == []
    assert run(closer, restart + 3 * DAYS) == {"closing": 1}
    [close] = closes(aws)
    assert close["not_holding_since"] == "2026-11-27T22:00:00Z"


def test_given_the_task_was_worked_before_the_deadline_then_nothing_is_closed(
    aws: Aws, router: Router, closer: AutoCloser, signals: Signals
) -> None:
    play = route(aws, router)
    signals.cleared.add(("acct-1", "seats"))
    assert run(closer, ROUTED + 6 * HOURS) == {"not holding": 1}
    worked = {"at": "2026-11-26T09:00:00.000Z", "by": "501"}
    router.ledger.record_task_change(
        "acct-1", play, TaskFacts(task_id="7001", status=TaskStatus.COMPLETED, modified_ms=5, worked=worked)
    )

    assert run(closer, ROUTED + 12 * HOURS) == {"ended": 1}
    assert run(closer, ROUTED + 10 * DAYS) == {}
    assert closes(aws) == []
    record = router.ledger.get("acct-1", play)
    assert record
    assert record.auto_close is None


def test_given_the_task_is_worked_between_the_check_and_the_decision_then_the_conditional_write_refuses(
    aws: Aws, router: Router, closer: AutoCloser, signals: Signals
) -> None:
    play = route(aws, router)
    signals.cleared.add(("acct-1", "seats"))
    run(closer, ROUTED + 6 * HOURS)

    # The play is read (task open), then the read-back records the completion, then the decision
    worked = {"at": "2026-11-26T09:00:00.000Z", "by": "501"}
    real_get = router.ledger.get

    def get_then_worked(account_id: str, play_id: str) -> Any:
        closer.plays.get = real_get  # type: ignore[method-assign]  # once: recording reads the play too
        record = real_get(account_id, play_id)
        router.ledger.record_task_change(
            "acct-1",
            play,
            TaskFacts(task_id="7001", status=TaskStatus.COMPLETED, modified_ms=5, worked=worked),
        )
        return record

    closer.plays.get = get_then_worked  # type: ignore[method-assign]
    assert closer.check(closer.watches.due(ROUTED + 4 * DAYS, 10)[0], ROUTED + 4 * DAYS) == "ended"
    assert closes(aws) == []


def test_given_the_task_is_not_created_yet_then_it_is_checked_later_without_asking_the_rules(
    aws: Aws, router: Router, closer: AutoCloser, signals: Signals
) -> None:
    put_account(aws, "acct-1", owners={"csm": CSM})
    router.route_firing(fired("acct-1", at=ROUTED), ROUTED)
    signals.cleared.add(("acct-1", "seats"))

    assert run(closer, ROUTED + 6 * HOURS) == {"waiting": 1}
    assert run(closer, ROUTED + 12 * HOURS) == {"waiting": 1}


def test_given_auto_close_removed_from_the_play_then_the_watch_ends(
    aws: Aws, router: Router, closer: AutoCloser, signals: Signals
) -> None:
    route(aws, router)
    closer.ruleset = parse_ruleset(RULES_TEXT_WITHOUT_AUTO_CLOSE, "auto-close-test.yaml")
    signals.cleared.add(("acct-1", "seats"))

    assert run(closer, ROUTED + 6 * HOURS) == {"ended": 1}
    assert run(closer, ROUTED + 30 * DAYS) == {}


def test_given_the_hand_over_fails_after_the_decision_then_the_next_run_hands_the_same_close_over(
    aws: Aws, router: Router, closer: AutoCloser, signals: Signals, hand: Hand
) -> None:
    play = route(aws, router)
    signals.cleared.add(("acct-1", "seats"))
    run(closer, ROUTED + 6 * HOURS)
    hand.fail = True

    assert run(closer, ROUTED + 6 * HOURS + 3 * DAYS) == {"failed": 1}
    record = router.ledger.get("acct-1", play)
    assert record
    assert record.auto_close  # decided, once

    # Next run, the signal holds again: too late, the decision stands and is handed over as it was
    hand.fail = False
    signals.cleared.clear()
    assert run(closer, ROUTED + 6 * HOURS + 3 * DAYS + 5 * timedelta(minutes=1)) == {"closing": 1}
    [close] = closes(aws)
    assert (close["play_id"], close["decided_at"]) == (play, "2026-11-28T16:00:00Z")
    assert run(closer, ROUTED + 20 * DAYS) == {}


def test_given_a_trigger_the_ruleset_retired_then_its_signal_counts_as_not_holding(
    aws: Aws, router: Router, closer: AutoCloser, signals: Signals
) -> None:
    route(aws, router)
    closer.signal_holds = lambda *_: pytest.fail("a retired trigger is not evaluated")
    closer.ruleset = RULES.model_copy(
        update={"triggers": {k: v for k, v in RULES.triggers.items() if k != "seats"}}
    )

    assert run(closer, ROUTED + 6 * HOURS) == {"not holding": 1}
    assert run(closer, ROUTED + 6 * HOURS + 3 * DAYS) == {"closing": 1}


def test_given_many_due_watches_then_one_run_checks_at_most_its_limit(
    aws: Aws, router: Router, closer: AutoCloser
) -> None:
    for n in range(5):
        put_account(aws, f"acct-{n}", owners={"csm": CSM})
        record = router.route_firing(fired(f"acct-{n}", at=ROUTED), ROUTED)
        router.ledger.record_task_created(f"acct-{n}", record.play_id, str(8000 + n), "501", "x", ROUTED)

    assert close_stale_tasks(closer, ROUTED + 6 * HOURS, limit=3) == {"holds": 3}
    assert close_stale_tasks(closer, ROUTED + 6 * HOURS, limit=3) == {"holds": 2}


# ── escalation after an auto-close ─────────────────────────────────────────────────────────────


def test_given_tier_0s_task_was_auto_closed_when_the_ae_tier_is_due_then_it_stops(
    aws: Aws, router: Router, closer: AutoCloser, signals: Signals
) -> None:
    play = route(aws, router, trigger="upgrade", play="upgrade-proposal")
    signals.cleared.add(("acct-1", "upgrade"))
    run(closer, ROUTED + 6 * HOURS)
    assert run(closer, ROUTED + 6 * HOURS + 2 * DAYS) == {"closing": 1}

    # The signal is back by the AE tier's day, but it did not persist: the tier stops
    signals.cleared.clear()
    assert release_due(router, ROUTED + 14 * DAYS) == {"stopped": 1}
    message = fired("acct-1", trigger="upgrade", play="upgrade-proposal", at=ROUTED)
    assert play == play_id(message.firing_id, 0)
    stopped = router.ledger.get("acct-1", play_id(message.firing_id, 1))
    assert stopped
    assert stopped.status is PlayStatus.STOPPED
    assert (
        stopped.reason == "tier 0's task was auto-closed: the signal has not held since 2026-11-25T16:00:00Z"
    )


RULES_TEXT_WITHOUT_AUTO_CLOSE = """
version: auto-close-test-2
metrics: {seats.active: gauge}
signals:
  busy: {measure: latest, metric: seats.active, window: 1d, at_least: 10}
triggers:
  seats: {category: commercial, owner_role: csm, play: seat-expansion, when: busy, cooldown: 30d}
plays:
  seat-expansion:
    channels: [hubspot_task]
"""
