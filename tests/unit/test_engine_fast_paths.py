"""The engine's fast paths answer as the plain ones, on random histories.

The backtest folds an account's events a day at a time and evaluates it after each day, without
explaining. For that loop: a batch is folded into the history once per touched metric (not event
by event); each family of a series' arrays is brought up to date only when read, mostly by
appending the new last day; a signal's run of unchanged days is extended only when a later day
asks; and the quiet evaluation has its own trigger loop. Each property compares one of them with
the plain way: events folded one by one, series read through plain sums, evaluations explained,
histories read afresh from the buckets.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.counters.bucket import MetricDay
from shared.events.models import EventKind
from shared.rules.aggregates import InMemoryAggregates
from shared.rules.engine import AccountState, Evaluation, ReadPlan, evaluate_account
from shared.rules.history import MetricSeries
from tests.unit.test_engine_incremental import (
    ACCOUNT,
    FIRST_DAY,
    HISTORY_DAYS,
    RULESET,
    SLICING,
    FreshAggregates,
    _events,
    _profiles,
    counted,
)

# A day of an account's events (day offset, the events' specs without their day), as the backtest
# folds them: days in order, with gaps, now and then an event for an earlier day arriving late.
_days = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=4),  # days since the previous one
        st.lists(_events, min_size=1, max_size=12),
        st.booleans(),  # whether one event is for an earlier day (a late arrival)
    ),
    min_size=1,
    max_size=14,
)


def _daily(days: list[tuple[int, list, bool]]) -> list[tuple[int, list]]:
    """(day offset, event specs on that day) in day order, a late event moved to an earlier day."""
    found, offset = [], 0
    for gap, specs, late in days:
        offset = min(offset + gap, HISTORY_DAYS - 1)
        moved = [(name, offset, second, value, dims) for name, _, second, value, dims in specs]
        if late and offset > 3:
            name, _, second, value, dims = moved[0]
            moved[0] = (name, offset - 3, second, value, dims)
        found.append((offset, moved))
    return found


def _moment(specs: list) -> datetime:
    """The time of the batch's latest event (the backtest's evaluation time)."""
    return max(
        datetime.combine(FIRST_DAY + timedelta(days=day), time(), UTC) + timedelta(seconds=second)
        for _, day, second, _, _ in specs
    )


@settings(max_examples=80, deadline=None)
@given(days=_days, profile=_profiles)
def test_property_given_days_folded_one_at_a_time_when_evaluated_quietly_then_as_from_scratch(days, profile):
    # Given: the backtest's loop — fold a day's events in one batch, evaluate once at the day's
    # last event, carry the state — and the same buckets read afresh for every evaluation.
    memory = InMemoryAggregates(SLICING)
    fresh = FreshAggregates(memory)
    state, fresh_state = AccountState(), AccountState()
    for _, specs in _daily(days):
        memory.apply([counted(spec) for spec in specs])
        at = _moment(specs)

        # When: evaluated quietly, each way.
        incremental = evaluate_account(RULESET, memory, ACCOUNT, profile, state, at, explain=False)
        from_scratch = evaluate_account(RULESET, fresh, ACCOUNT, profile, fresh_state, at, explain=False)

        # Then: the same outcomes, firings and state.
        assert incremental == from_scratch
        state, fresh_state = incremental.state, from_scratch.state


def _without_evidence(evaluation: Evaluation) -> list[tuple[object, ...]]:
    return [
        (outcome.trigger, outcome.held, outcome.fired, outcome.reason, outcome.firing)
        for outcome in evaluation.outcomes
    ]


@settings(max_examples=80, deadline=None)
@given(days=_days, profile=_profiles, contacted=st.sampled_from([None, 0, 1, 5]))
def test_property_given_any_history_when_evaluated_quietly_then_the_outcomes_are_the_explained_ones(
    days, profile, contacted
):
    # Given: a history evaluated day after day with explanations (the reference loop) and without
    # (the quiet loop), each carrying its own state, the last contact some days back or never.
    memory = InMemoryAggregates(SLICING)
    explained_memory = InMemoryAggregates(SLICING)
    state = explained_state = AccountState()
    for _, specs in _daily(days):
        events = [counted(spec) for spec in specs]
        memory.apply(events)
        explained_memory.apply(events)
        at = _moment(specs)
        if contacted is not None and state.last_contacted_at is None:
            since = at - timedelta(days=contacted)
            state = AccountState(state.triggers, since)
            explained_state = AccountState(explained_state.triggers, since)

        # When
        quiet = evaluate_account(RULESET, memory, ACCOUNT, profile, state, at, explain=False)
        explained = evaluate_account(
            RULESET, explained_memory, ACCOUNT, profile, explained_state, at, explain=True
        )

        # Then: the same outcomes (evidence aside), firings and state.
        assert _without_evidence(quiet) == _without_evidence(explained)
        assert quiet.state == explained.state
        assert all(outcome.condition is None for outcome in quiet.outcomes if not outcome.fired)
        state, explained_state = quiet.state, explained.state


@settings(max_examples=60, deadline=None)
@given(specs=st.lists(_events, max_size=60), split=st.integers(min_value=1, max_value=7))
def test_property_given_events_when_folded_in_batches_then_buckets_and_answers_are_as_event_by_event(
    specs, split
):
    # Given: the same events folded one by one, and in batches of any size.
    events = [counted(spec) for spec in specs]
    one_by_one, batched = InMemoryAggregates(SLICING), InMemoryAggregates(SLICING)
    for event in events:
        one_by_one.apply([event])
    for start in range(0, len(events), split):
        batched.apply(events[start : start + split])
    first, last = FIRST_DAY, FIRST_DAY + timedelta(days=HISTORY_DAYS)

    # When / Then: the same buckets, and the same evaluations on every day.
    assert batched.buckets(ACCOUNT, first, last) == one_by_one.buckets(ACCOUNT, first, last)
    for offset in range(0, HISTORY_DAYS, 9):
        at = datetime.combine(FIRST_DAY + timedelta(days=offset), time(23), UTC)
        assert evaluate_account(RULESET, batched, ACCOUNT, None, AccountState(), at) == evaluate_account(
            RULESET, one_by_one, ACCOUNT, None, AccountState(), at
        )


_READS = ("total", "positive_total", "events", "active_days", "latest", "low", "peak", "readings")


@settings(max_examples=150, deadline=None)
@given(
    records=st.lists(
        st.tuples(
            st.sampled_from([1, 1, 1, 2, 0, -3]),  # days after the latest (0: it again, < 0: a past day)
            st.one_of(st.none(), st.integers(min_value=-20, max_value=20)),
            st.integers(min_value=-3, max_value=5),
            st.sets(st.sampled_from(_READS), max_size=3),  # what is read right after the record
        ),
        min_size=1,
        max_size=40,
    ),
    windows=st.lists(st.integers(min_value=0, max_value=20), min_size=1, max_size=4),
)
def test_property_given_days_recorded_mostly_in_order_when_families_are_read_now_and_then_then_as_plain_sums(
    records, windows
):
    # Given: the daily case — a new latest day each time, now and then the same day again or a
    # past one — and each family of arrays read at its own moments (or not for a long while), so
    # that each is brought up to date by appending, or from the middle.
    series, plain, latest = MetricSeries(), {}, 0
    for step, (ahead, reading, total, reads) in enumerate(records):
        day = max(latest + ahead, 0)
        latest = max(latest, day)
        metric = MetricDay(EventKind.GAUGE if reading is not None else EventKind.COUNT)
        metric.total, metric.events = Decimal(total), max(total, 0)
        if reading is not None:
            metric.last = metric.low = Decimal(reading)
            metric.high = Decimal(reading + step % 3)
        series.record(day, metric)
        plain[day] = metric
        for read in sorted(reads):
            for window in windows:
                # When / Then: windows ending on the latest day (the engine's daily reads) match.
                _assert_window(series, plain, read, latest - window, latest)


def _assert_window(
    series: MetricSeries, plain: dict[int, MetricDay], read: str, first: int, last: int
) -> None:
    days = [plain[day] for day in sorted(plain) if first <= day <= last]
    readings = [metric for metric in days if metric.last is not None]
    expected: object
    if read == "total":
        expected = sum((metric.total for metric in days), Decimal(0))
    elif read == "positive_total":
        expected = sum((metric.total for metric in days if metric.total > 0), Decimal(0))
    elif read == "events":
        expected = sum(metric.events for metric in days)
    elif read == "active_days":
        expected = sum(1 for metric in days if metric.events > 0)
    elif read == "latest":
        expected = float(readings[-1].last) if readings else None  # type: ignore[arg-type]
    elif read == "low":
        expected = min(float(m.low) for m in readings) if readings else None  # type: ignore[arg-type]
    elif read == "peak":
        expected = max(float(m.high) for m in readings) if readings else None  # type: ignore[arg-type]
    else:
        expected = (sum((m.last for m in readings), Decimal(0)), len(readings))  # type: ignore[misc]
    assert getattr(series, read)(first, last) == expected, (read, first, last)


def test_given_an_answer_kept_from_a_full_view_when_a_short_read_plan_cuts_its_window_then_it_is_not_reused():
    # Given: sessions that hold `sessions_sum` (8 in 7 days) through day 16 thanks to day 10 alone,
    # evaluated over the whole lookback on days 15 and 16 (the answer is kept, its run extended).
    memory = InMemoryAggregates(SLICING)
    memory.apply([counted(("app.session", 10, 3600, Decimal(9), {}))])
    fresh = FreshAggregates(memory)
    at = datetime.combine(FIRST_DAY + timedelta(days=15), time(12), UTC)
    for moment in (at, at + timedelta(days=1)):
        kept = evaluate_account(RULESET, memory, ACCOUNT, None, AccountState(), moment, explain=False)
        assert "sessions-sum" in {outcome.trigger for outcome in kept.outcomes if outcome.held}

    # When: day 16 is evaluated again through a read plan of 3 days, which does not show day 10.
    later, short = at + timedelta(days=1), ReadPlan(3)
    quiet = evaluate_account(RULESET, memory, ACCOUNT, None, AccountState(), later, short, explain=False)

    # Then: as read afresh through the same plan (the window cut at the first readable day).
    afresh = evaluate_account(RULESET, fresh, ACCOUNT, None, AccountState(), later, short, explain=False)
    assert quiet == afresh
    assert "sessions-sum" in {outcome.trigger for outcome in quiet.outcomes if not outcome.held}
