"""Data coverage: a signal that requires a full window holds only when the account's data covers it.

Coverage starts at the earlier of the account's first event and its profile's `created_at`
(docs/rules.md, "Data coverage"). The edges: a window exactly covered, one day short, a
`created_at` earlier than the first event; the defaults per kind of signal; the evidence; and the
counters' `first_seen` marker the evaluator reads online (kept by the aggregator).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest

from shared.accounts.models import AccountProfile
from shared.counters.aggregate import aggregate
from shared.counters.bucket import CountedEvent, DayBucket, padded_sequence
from shared.counters.store import CounterStore
from shared.events.models import EventKind
from shared.rules.aggregates import InMemoryAggregates
from shared.rules.dynamo_aggregates import DynamoAggregates
from shared.rules.engine import AccountState, Evaluation, evaluate_account
from shared.rules.loading import parse_ruleset
from tests.conftest import TEST_RETENTION_DAYS, Aws

RULES = parse_ruleset(
    "version: coverage-1\n"
    "metrics: {app.session: count, seats.active: gauge}\n"
    "signals:\n"
    # 2 windows of 7 days: reads 14 days
    "  busy_twice: {measure: sum, metric: app.session, window: 7d, sustained: 2, at_least: 1}\n"
    "  busy_twice_partial: {measure: sum, metric: app.session, window: 7d, sustained: 2, at_least: 1, "
    "requires_full_window: false}\n"
    "  busy: {measure: sum, metric: app.session, window: 14d, at_least: 1}\n"
    "  busy_full: {measure: sum, metric: app.session, window: 14d, at_least: 1, requires_full_window: true}\n"
    "  seats_floor: {measure: low, metric: seats.active, window: 7d, at_least: 1}\n"
    "  growing: {measure: sum, metric: app.session, window: 7d, growth: {over: previous_window, "
    "from_zero: fire}, at_least: 0}\n"
    "triggers:\n"
    + "".join(
        f"  {name.replace('_', '-')}: {{category: adoption, owner_role: csm, play: p, when: {name}, "
        "cooldown: 30d}\n"
        for name in ("busy_twice", "busy_twice_partial", "busy", "busy_full", "seats_floor", "growing")
    )
    + "plays: {p: {}}\n",
    "coverage.yaml",
)
ACCOUNT = "acct-coverage"
EVALUATED = date(2026, 6, 30)
AT = datetime.combine(EVALUATED, time(12), UTC)
WINDOW_START = EVALUATED - timedelta(days=13)  # the first day busy_twice reads


def _event(
    number: int, day: date, name: str = "app.session", kind: EventKind = EventKind.COUNT
) -> CountedEvent:
    raw = str(50_000_000_000_000_000_000 + number)
    return CountedEvent(
        sequence=padded_sequence(raw),
        stream_sequence=raw,
        account_id=ACCOUNT,
        event_id=f"evt-{number}",
        name=name,
        kind=kind,
        value=Decimal(3),
        occurred_at=datetime.combine(day, time(9), UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        day=day.isoformat(),
        dimensions={},
    )


def _sessions_from(first: date) -> list[CountedEvent]:
    """A session every day from `first` to the evaluation day."""
    return [_event(n, first + timedelta(days=n)) for n in range((EVALUATED - first).days + 1)]


def _evaluate(events: list[CountedEvent], profile: AccountProfile | None = None) -> Evaluation:
    memory = InMemoryAggregates()
    memory.apply(events)
    return evaluate_account(RULES, memory, ACCOUNT, profile, AccountState(), AT)


def _outcome(evaluation: Evaluation, trigger: str):  # type: ignore[no-untyped-def]
    return next(outcome for outcome in evaluation.outcomes if outcome.trigger == trigger)


def test_given_the_first_event_on_the_windows_first_day_when_evaluated_then_the_window_is_covered():
    # Given sessions every day since exactly the first day the 2 x 7-day signal reads
    evaluation = _evaluate(_sessions_from(WINDOW_START))

    # Then it holds, and fires, with no coverage note in its evidence
    outcome = _outcome(evaluation, "busy-twice")
    assert outcome.fired
    assert "coverage" not in outcome.condition.as_evidence()


def test_given_the_first_event_a_day_after_the_windows_start_then_it_does_not_hold_and_says_why():
    # Given sessions every day, but starting one day after the first day the signal reads
    evaluation = _evaluate(_sessions_from(WINDOW_START + timedelta(days=1)))

    # Then the sustained signal does not hold: its evidence gives the days, and the reason
    outcome = _outcome(evaluation, "busy-twice")
    assert not outcome.held
    assert not outcome.fired
    evidence = outcome.condition.as_evidence()
    assert evidence["held"] is False
    assert evidence["coverage"] == {"data_from": "2026-06-18", "needed_from": "2026-06-17"}
    assert evidence["detail"].startswith(
        "not enough history: the account's data starts 2026-06-18, the signal reads from 2026-06-17"
    )
    # ...while the opted-out copy and the plain sum (false by default) hold on the same data
    assert _outcome(evaluation, "busy-twice-partial").fired
    assert _outcome(evaluation, "busy").fired
    # ...and the plain sum opted in does not
    assert not _outcome(evaluation, "busy-full").held


def test_given_created_at_earlier_than_the_first_event_when_evaluated_then_created_at_starts_the_coverage():
    # Given the same late first event, but a profile created before the window's start
    profile = AccountProfile(name="Northwind", created_at=WINDOW_START - timedelta(days=30))
    evaluation = _evaluate(_sessions_from(WINDOW_START + timedelta(days=1)), profile)

    # Then the account's data covers the window: the signal holds (a quiet first day is a real 0)
    assert _outcome(evaluation, "busy-twice").fired
    assert _outcome(evaluation, "busy-full").fired


def test_given_created_at_after_the_windows_start_and_no_earlier_event_then_the_window_is_not_covered():
    profile = AccountProfile(name="Northwind", created_at=WINDOW_START + timedelta(days=3))
    evaluation = _evaluate(_sessions_from(WINDOW_START + timedelta(days=1)), profile)
    evidence = _outcome(evaluation, "busy-twice").condition.as_evidence()
    assert evidence["coverage"]["data_from"] == "2026-06-18"  # the earlier of the two


def test_given_low_and_growth_signals_then_they_require_a_full_window_by_default():
    # Given seat readings and sessions from 10 days ago (low reads 7 days, growth 14)
    start = EVALUATED - timedelta(days=9)
    events = _sessions_from(start) + [
        _event(1000 + n, start + timedelta(days=n), "seats.active", EventKind.GAUGE) for n in range(10)
    ]
    evaluation = _evaluate(events)

    # Then the 7-day low is covered and holds; the growth over the previous 7 days is not covered
    assert _outcome(evaluation, "seats-floor").fired
    growing = _outcome(evaluation, "growing")
    assert not growing.held
    explained = evaluate_account(RULES, _memory(events), ACCOUNT, None, AccountState(), AT, explain=True)
    assert _outcome(explained, "growing").condition.as_evidence()["coverage"]["needed_from"] == "2026-06-17"


def test_given_no_event_and_no_created_at_then_nothing_requiring_a_full_window_holds():
    evaluation = evaluate_account(RULES, InMemoryAggregates(), ACCOUNT, None, AccountState(), AT)
    evidence = _outcome(evaluation, "growing").condition.as_evidence()
    assert evidence["coverage"] == {"data_from": None, "needed_from": "2026-06-17"}
    assert "has no first event or created_at" in evidence["detail"]


def test_given_the_defaults_then_requires_full_window_is_true_for_sustained_low_and_growth_only():
    signals = RULES.signals
    assert signals["busy_twice"].full_window_required
    assert signals["seats_floor"].full_window_required
    assert signals["growing"].full_window_required
    assert not signals["busy"].full_window_required
    assert signals["busy_full"].full_window_required
    assert not signals["busy_twice_partial"].full_window_required


def _memory(events: list[CountedEvent]) -> InMemoryAggregates:
    memory = InMemoryAggregates()
    memory.apply(events)
    return memory


# ── online: the counters' first_seen marker ─────────────────────────────────────────────────────


def test_given_days_arriving_out_of_order_when_aggregated_then_first_seen_is_the_earliest_day(aws: Aws):
    store = CounterStore(aws.dynamodb, aws.counters_table, TEST_RETENTION_DAYS)
    later, earlier = _event(1, date(2026, 6, 20)), _event(2, date(2026, 6, 3))
    assert aggregate([later], store).failed == []
    assert _first_seen(store) == "2026-06-20"

    # When an earlier day arrives afterwards (a late event, a backfill)
    assert aggregate([earlier], store).failed == []
    # Then the marker moves back to it; a later new day leaves it
    assert _first_seen(store) == "2026-06-03"
    assert aggregate([_event(3, date(2026, 6, 25))], store).failed == []
    assert _first_seen(store) == "2026-06-03"

    # And the evaluator's one Query reads it beside the read plan's days (days after it left out)
    history = DynamoAggregates(store).history(ACCOUNT, date(2026, 6, 18), date(2026, 6, 21))
    assert history.first_seen == date(2026, 6, 3).toordinal()
    assert sorted(history.series["app.session"].days) == [date(2026, 6, 20).toordinal()]


def test_given_buckets_counted_before_the_marker_existed_when_a_new_day_arrives_then_the_marker_goes_back(
    aws: Aws,
):
    # Given an account with a bucket written before first_seen was kept (no marker)
    store = CounterStore(aws.dynamodb, aws.counters_table, TEST_RETENTION_DAYS)
    old = DayBucket(ACCOUNT, "2026-01-15")
    old.apply(_event(1, date(2026, 1, 15)))
    assert store.save(old, "")
    assert _first_seen(store) is None

    # When a new day is counted
    assert aggregate([_event(2, date(2026, 6, 1))], store).failed == []

    # Then the marker is the account's earliest bucket, not the new day
    assert _first_seen(store) == "2026-01-15"


@pytest.mark.parametrize("replays", [1, 2])
def test_given_a_replayed_batch_then_the_marker_is_unchanged(aws: Aws, replays: int):
    store = CounterStore(aws.dynamodb, aws.counters_table, TEST_RETENTION_DAYS)
    batch = [_event(1, date(2026, 6, 2)), _event(2, date(2026, 6, 1))]
    for _ in range(replays):
        assert aggregate(batch, store).failed == []
    assert _first_seen(store) == "2026-06-01"


def _first_seen(store: CounterStore) -> str | None:
    return store.read_plan_range(ACCOUNT, "2026-01-01", "2026-01-01", consistent=True)[1]
