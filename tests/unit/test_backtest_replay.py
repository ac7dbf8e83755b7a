"""Replaying one account: the ledger's deduplication and retention, late events, one evaluation per
clock day at the clock, and cooldowns carried from one evaluation to the next."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from shared.rules.engine import read_plan
from shared.rules.loading import parse_ruleset
from upswing.backtest.events import Accepted, judge_line
from upswing.backtest.replay import Contender, FiredAt, ReplayStats, StrictStop, replay_account

RULES = """
version: "test-1"
metrics: {app.session: count}
signals:
  busy: {measure: sum, metric: app.session, window: 7d, at_least: 3}
  quiet: {measure: sum, metric: app.session, window: 7d, less_than: 3}
triggers:
  busy-week: {category: adoption, owner_role: csm, play: check-in, when: busy, cooldown: 30d}
  quiet-week: {category: risk, owner_role: csm, play: check-in, when: quiet, cooldown: 7d}
plays: {check-in: {}}
"""
RULESET = parse_ruleset(RULES, "test.yaml")
CONTENDERS = [Contender("A", RULESET, read_plan(RULESET))]
ACCOUNT = "acct-1"


def session(when: str, event_id: str, value: int = 1, **changes: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "account_id": ACCOUNT,
        "name": "app.session",
        "occurred_at": when,
        "value": value,
        **changes,
    }


def arrivals(*events: dict[str, Any]) -> list[Accepted]:
    lines = [judge_line(0, number, json.dumps(event).encode()) for number, event in enumerate(events, 1)]
    assert all(isinstance(line, Accepted) for line in lines)
    return [line for line in lines if isinstance(line, Accepted)]


def replay(*events: dict[str, Any], strict: bool = False) -> tuple[list[FiredAt], ReplayStats]:
    stats = ReplayStats(strict=strict)
    fired = replay_account(ACCOUNT, arrivals(*events), None, CONTENDERS, 400, stats)
    return fired, stats


def moments(fired: list[FiredAt], trigger: str) -> list[str]:
    return [f.at.isoformat() for f in fired if f.trigger == trigger]


def test_one_evaluation_per_clock_day_at_the_days_last_event() -> None:
    fired, stats = replay(
        session("2025-03-01T09:00:00Z", "e1"),
        session("2025-03-01T17:30:00Z", "e2"),
        session("2025-03-02T08:00:00Z", "e3"),
        session("2025-03-02T12:00:00Z", "e4"),
    )
    assert stats.evaluations == 2
    assert stats.accepted == 4
    # Day 1: two sessions, quiet fires at 17:30 (not at 09:00); day 2: the third session makes it busy.
    assert moments(fired, "quiet-week") == ["2025-03-01T17:30:00+00:00"]
    assert moments(fired, "busy-week") == ["2025-03-02T12:00:00+00:00"]


def test_a_trigger_fires_once_per_cooldown_and_rearms_when_its_signal_clears() -> None:
    events = [session(f"2025-03-{d:02d}T10:00:00Z", f"e{d}", value=5) for d in (1, 2, 3, 20, 21, 22)]
    fired, _ = replay(*events)
    # Busy on 1-3 (one firing: armed, then disarmed); quiet days in between would re-arm it but
    # there are no evaluations between the 3rd and the 20th; cooldown 30d blocks the 20th anyway.
    assert moments(fired, "busy-week") == ["2025-03-01T10:00:00+00:00"]
    later = [
        *events,
        session("2025-04-15T10:00:00Z", "late-1", value=1),
        session("2025-04-16T10:00:00Z", "x", 5),
    ]
    fired, _ = replay(*later)
    assert moments(fired, "busy-week") == ["2025-03-01T10:00:00+00:00", "2025-04-16T10:00:00+00:00"]


def test_a_resend_is_a_duplicate_and_a_reused_id_is_rejected_as_the_ledger_does() -> None:
    fired, stats = replay(
        session("2025-03-01T09:00:00Z", "e1"),
        session("2025-03-01T09:00:00Z", "e1"),  # resend: same content
        session("2025-03-01T10:00:00Z", "e1", value=7),  # same id, other content
        session("2025-03-01T11:00:00Z", "e2"),
    )
    assert (stats.accepted, stats.duplicates, stats.rejected) == (2, 1, 1)
    assert [(p.line, p.message) for p in stats.problems] == [
        (
            3,
            "event_id: already accepted (line 1) with different content; "
            "event ids must be unique per account",
        )
    ]
    assert moments(fired, "quiet-week") == ["2025-03-01T11:00:00+00:00"]  # two sessions counted, not nine


def test_a_late_event_counts_in_its_own_day_and_is_evaluated_with_the_batch_it_arrives_in() -> None:
    fired, stats = replay(
        session("2025-03-10T09:00:00Z", "e1"),
        session("2025-03-11T09:00:00Z", "e2"),
        session("2025-03-09T09:00:00Z", "late", value=5),  # two days late: in the 9th's bucket
        session("2025-03-11T10:00:00Z", "e3"),
    )
    assert stats.late == 1
    assert stats.evaluations == 2
    # The 11th's evaluation (at 10:00, the clock) sees 1 + 1 + 5 + 1 sessions in 7 days: busy.
    assert moments(fired, "busy-week") == ["2025-03-11T10:00:00+00:00"]


def test_an_event_older_than_the_retention_at_the_clock_is_rejected() -> None:
    stats = ReplayStats()
    events = arrivals(session("2025-03-10T09:00:00Z", "e1"), session("2025-03-01T09:00:00Z", "old"))
    replay_account(ACCOUNT, events, None, CONTENDERS, 5, stats)
    assert (stats.accepted, stats.rejected, stats.late) == (1, 1, 0)
    assert "older than the 5-day retention" in stats.problems[0].message


def test_strict_stops_at_the_first_problem_with_its_line() -> None:
    with pytest.raises(StrictStop) as stop:
        replay(
            session("2025-03-01T09:00:00Z", "e1"), session("2025-03-01T10:00:00Z", "e1", value=2), strict=True
        )
    assert stop.value.problem.line == 2


def test_spans_record_the_first_and_last_active_day() -> None:
    _, stats = replay(session("2025-03-10T09:00:00Z", "e1"), session("2025-03-02T09:00:00Z", "e0"))
    first, last = stats.spans[ACCOUNT]
    assert (
        datetime.fromordinal(first).date().isoformat(),
        datetime.fromordinal(last).date().isoformat(),
    ) == (
        "2025-03-02",
        "2025-03-10",
    )
