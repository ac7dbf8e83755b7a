"""The router's decisions on in-memory ports: owners, budgets, redelivery, holdouts, escalation.

Fast and exhaustive where the moto tests (tests/integration/test_router.py) are slow and hold the
DynamoDB adapters to the same behaviour.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.accounts.models import AccountProfile
from shared.routing.models import PlayStatus
from shared.routing.router import FiredMessage, Router, play_id
from shared.rules.loading import parse_ruleset
from shared.rules.plays import Channel
from tests.firings import fired_message
from tests.unit.routing_fakes import MemoryAccounts, MemoryPlays, MemoryWatches, RecordingDispatcher

WEDNESDAY = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
RULES = parse_ruleset(
    """
version: router-unit-1
metrics: {seats.active: gauge}
signals:
  busy: {measure: latest, metric: seats.active, window: 1d, at_least: 10}
triggers:
  seats: {category: commercial, owner_role: csm, play: seat-expansion, when: busy, cooldown: 30d}
  upgrade: {category: commercial, owner_role: csm, play: upgrade-proposal, when: busy, cooldown: 30d}
budgets: {plays_per_account: 2, account_period: week, tasks_per_owner_per_day: 5}
plays:
  seat-expansion:
    channels: [hubspot_task, email]
    fallback:
      pools:
        default:
          - {name: Desk, email: desk@example.com, hubspot_owner_id: "910"}
  upgrade-proposal:
    escalation:
      - {after: 0d, channels: [email]}
      - {after: 7d, channels: [hubspot_task]}
""",
    "router-unit.yaml",
)
CSM = {"name": "Casey CSM", "email": "casey@example.com", "hubspot_owner_id": "501"}


class Signals:
    def __init__(self) -> None:
        self.cleared: set[tuple[str, str]] = set()

    def __call__(self, account_id: str, trigger: str, at: datetime) -> bool:
        return (account_id, trigger) not in self.cleared


@pytest.fixture
def world() -> tuple[Router, MemoryPlays, RecordingDispatcher, Signals]:
    plays, dispatcher, signals = MemoryPlays(), RecordingDispatcher(), Signals()
    accounts = MemoryAccounts(
        {
            "acme": AccountProfile(name="Acme", segment="smb", owners={"csm": CSM}),
            "quiet": AccountProfile(name="Quiet", flags={"do_not_contact": True}, owners={"csm": CSM}),
            "orphan": AccountProfile(name="Orphan"),
        }
    )
    router = Router(
        ruleset=RULES,
        accounts=accounts,
        ledger=plays,
        dispatcher=dispatcher,
        signal_holds=signals,
        watches=MemoryWatches(),
    )
    return router, plays, dispatcher, signals


def fired(
    account_id: str, trigger: str = "seats", play: str = "seat-expansion", **evidence: Any
) -> FiredMessage:
    at = evidence.pop("at", WEDNESDAY - timedelta(hours=1))
    return fired_message(account_id, at, trigger=trigger, play=play, version="router-unit-1", **evidence)


def test_a_firing_goes_to_the_owner_on_each_channel_once_even_when_redelivered(world) -> None:
    router, plays, dispatcher, _ = world
    message = fired("acme")

    first = router.route_firing(message, WEDNESDAY)
    again = router.route_firing(message, WEDNESDAY + timedelta(minutes=1))

    assert first.status is again.status is PlayStatus.ROUTED
    assert [(d.channel, d.owner.email if d.owner else None) for d in dispatcher.delivered] == [
        (Channel.HUBSPOT_TASK, "casey@example.com"),
        (Channel.EMAIL, "casey@example.com"),
    ]
    assert len(dispatcher.announced) == 1
    assert sorted(plays.counters.values()) == [1, 1]  # the account's and the owner's budgets, once


def test_an_account_without_its_role_goes_to_the_fallback_pool(world) -> None:
    router, _, dispatcher, _ = world

    router.route_firing(fired("orphan"), WEDNESDAY)

    assert {d.owner.email for d in dispatcher.delivered if d.owner} == {"desk@example.com"}


def test_do_not_contact_suppresses_the_play_and_delivers_nothing(world) -> None:
    router, _, dispatcher, _ = world

    record = router.route_firing(fired("quiet"), WEDNESDAY)

    assert (record.status, record.reason) == (PlayStatus.SUPPRESSED, "do not contact")
    assert dispatcher.delivered == []


def test_past_the_account_budget_a_play_waits_for_the_next_week_and_is_never_dropped(world) -> None:
    router, plays, dispatcher, _ = world
    hours = (3, 2, 1)

    records = [
        router.route_firing(fired("acme", at=WEDNESDAY - timedelta(hours=h)), WEDNESDAY) for h in hours
    ]

    assert [record.status for record in records] == [
        PlayStatus.ROUTED,
        PlayStatus.ROUTED,
        PlayStatus.DEFERRED,
    ]
    deferred = records[2]
    assert deferred.due_at is not None
    assert deferred.due_at.date().isoformat() == "2026-11-30"
    assert len(dispatcher.delivered) == 4
    # When the week turns, the scheduler releases it
    [due] = plays.due(deferred.due_at)
    assert router.release(due, deferred.due_at).status is PlayStatus.ROUTED


def test_a_held_out_firing_is_recorded_and_never_delivered(world) -> None:
    router, _, dispatcher, _ = world

    experiment = {"salt": "seats", "holdout_percent": 10, "draw": 0.04}
    record = router.route_firing(fired("acme", arm="holdout", experiment=experiment), WEDNESDAY)

    assert (record.status, record.reason) == (
        PlayStatus.HELD_OUT,
        "held out: experiment seats, draw 0.04 < 10%",
    )
    assert record.trial
    assert dispatcher.delivered == []
    assert dispatcher.announced == []


def test_an_escalation_tier_routes_when_due_and_lapses_when_the_signal_cleared(world) -> None:
    router, plays, dispatcher, signals = world
    router.route_firing(fired("acme", "upgrade", "upgrade-proposal"), WEDNESDAY)
    router.route_firing(fired("orphan", "upgrade", "upgrade-proposal"), WEDNESDAY)
    assert [d.channel for d in dispatcher.delivered] == [Channel.EMAIL]  # the orphan has no owner email
    signals.cleared.add(("orphan", "upgrade"))

    week_later = WEDNESDAY + timedelta(days=7)
    released = {
        record.account_id: router.release(record, week_later).status for record in plays.due(week_later)
    }

    assert released == {"acme": PlayStatus.ROUTED, "orphan": PlayStatus.LAPSED}
    assert dispatcher.delivered[-1].channel is Channel.HUBSPOT_TASK
    escalation = plays.get("acme", play_id(fired("acme", "upgrade", "upgrade-proposal").firing_id, 1))
    assert escalation is not None
    assert escalation.status is PlayStatus.ROUTED
