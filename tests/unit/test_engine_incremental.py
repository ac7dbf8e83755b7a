"""What the engine keeps between evaluations of an account changes no answer.

An in-memory history keeps the engine's answers (`History.memos`: a signal's answer per day, the
run of days it holds for, "held within") and tells it which days changed since; the signals run
as generated code, with the generic path as their reference; counters are read through
prefix sums, sparse tables and bitmasks. Each property compares that with the plainest
evaluation: a `History` built afresh from the same buckets, as DynamoDB would return them.

Histories are random: counts and gauges with dimensions, events arriving out of day order and
between evaluations (for past days too), evaluations in random order with random read plans, and
profiles that change between evaluations.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.accounts.models import AccountProfile
from shared.counters.bucket import CountedEvent, MetricDay, padded_sequence
from shared.events.models import EventKind
from shared.rules.aggregates import InMemoryAggregates
from shared.rules.engine import (
    AccountState,
    Evaluation,
    ReadPlan,
    _Context,
    _CoveredRule,
    _GroupRule,
    _MetricRule,
    compiled_ruleset,
    evaluate_account,
)
from shared.rules.history import DistinctSeries, History, MetricSeries
from shared.rules.language import Ruleset
from shared.rules.loading import parse_ruleset
from shared.rules.slicing import ruleset_slicing

ACCOUNT = "acct-incremental"
FIRST_DAY = date(2026, 3, 1)
HISTORY_DAYS = 90
METRICS = {
    "app.session": EventKind.COUNT,
    "feature.analytics.used": EventKind.COUNT,
    "api.calls": EventKind.COUNT,
    "paywall.hit": EventKind.COUNT,
    "seats.active": EventKind.GAUGE,
}
# Every measure and modifier, with short windows and low thresholds so that random histories cross them.
_SIGNALS = {
    "sessions_sum": "{measure: sum, metric: app.session, window: 7d, at_least: 8}",
    "sessions_count": "{measure: count, metric: app.session, window: 5d, more_than: 2}",
    "session_days": "{measure: active_days, metric: app.session, window: 10d, at_least: 3}",
    "quiet": "{measure: sum, metric: app.session, window: 7d, at_most: 3}",
    "session_users": "{measure: distinct, metric: app.session, dimension: user, window: 10d, "
    "at_least: {default: 3, segments: {smb: 2}}}",
    "analytics_share": "{measure: share, of: {metric: feature.analytics.used, dimension: user}, "
    "among: {metric: app.session, dimension: user}, window: 10d, at_least: 0.3}",
    "seats_latest": "{measure: latest, metric: seats.active, window: 6d, per_limit: seats, at_least: 0.5}",
    "seats_peak": "{measure: peak, metric: seats.active, window: 9d, at_least: 40}",
    "seats_low": "{measure: low, metric: seats.active, window: 8d, at_most: 10}",
    "seats_low_sustained": "{measure: low, metric: seats.active, window: 5d, per_limit: seats, sustained: 2, "
    "more_than: 0.1}",
    "seats_under": "{measure: latest, metric: seats.active, window: 10d, "
    "less_than: {default: 20, segments: {smb: 10}}}",
    "sessions_firmographic": "{measure: sum, metric: app.session, window: 5d, at_least: {default: 9, "
    "industries: {fintech: 3}, employees: [{at_least: 0, value: 12}, {at_least: 500, value: 5}]}}",
    "seats_growth": "{measure: peak, metric: seats.active, window: 4d, growth: {over: average, "
    "baseline_window: 10d}, at_least: 0.1}",
    "api_growth": "{measure: sum, metric: api.calls, window: 6d, growth: {over: previous_window}, "
    "more_than: 0}",
    "api_sustained": "{measure: sum, metric: api.calls, window: 5d, per_limit: api.calls, sustained: 3, "
    "at_least: 0.2}",
    "api_from_zero": "{measure: sum, metric: api.calls, window: 3d, growth: {over: previous_window, "
    "from_zero: fire}, per_limit: api.calls, sustained: 2, at_least: 0.5}",
    "seats_from_zero": "{measure: latest, metric: seats.active, window: 3d, growth: {over: average, "
    "baseline_window: 5d, from_zero: fire}, at_most: 0}",
    "paywall_rising": "{measure: count, metric: paywall.hit, window: 4d, rising: 2}",
    "sessions_per_user": "{measure: sum, metric: app.session, window: 4d, at_least: 3, group_by: user, "
    "groups_at_least: 2}",
    "user_growth": "{measure: count, metric: app.session, window: 3d, growth: {over: previous_window}, "
    "more_than: 0, group_by: user, groups_at_least: 1}",
    "users_trending": "{measure: sum, metric: api.calls, window: 4d, forecast: {reaches: 60, within: 3d}, "
    "group_by: user, groups_at_least: 1}",
    "users_calibrated": "{measure: count, metric: app.session, window: 3d, group_by: user, "
    "groups_at_least: 2, at_least: {default: 2, industries: {fintech: 1}, "
    "employees: [{at_least: 600, value: 3}]}}",
    "one_user": "{measure: active_days, metric: app.session, where: {user: u-1}, window: 5d, at_least: 2}",
    "seats_of_some": "{measure: peak, metric: seats.active, where: {user: [u-2, u-3]}, window: 6d, "
    "at_least: 30}",
    "seats_trending": "{measure: latest, metric: seats.active, window: 8d, per_limit: seats, "
    "forecast: {reaches: 0.8, within: 5d}}",
    "api_trending": "{measure: sum, metric: api.calls, window: 6d, per_limit: api.calls, "
    "forecast: {reaches: 1.0, within: 4d}}",
    "new_users": "{measure: new_distinct, metric: app.session, dimension: user, window: 4d, not_seen_in: 6d, "
    "at_least: 2}",
    "new_users_rising": "{measure: new_distinct, metric: app.session, dimension: user, window: 3d, "
    "not_seen_in: 5d, rising: 2}",
    "paywall_per_session": "{measure: ratio, ratio: {numerator: {measure: sum, metric: paywall.hit}, "
    "denominator: {measure: count, metric: app.session}}, window: 5d, at_least: 0.5}",
    "seats_per_user": "{measure: ratio, ratio: {numerator: {measure: low, metric: seats.active}, "
    "denominator: {measure: distinct, metric: app.session, dimension: user}}, window: 4d, "
    "growth: {over: previous_window, from_zero: fire}, sustained: 2, more_than: 0}",
    "users_rising": "{measure: distinct, metric: app.session, dimension: user, window: 3d, rising: 2, "
    "at_least: 2}",
    "busy": "{signals: [sessions_sum, session_users, seats_growth, api_growth, paywall_rising], "
    "n_of: 2, within: 9d}",
    "very_busy": "{signals: [busy, seats_peak, quiet], n_of: 2, within: 4d}",
}
RULESET: Ruleset = parse_ruleset(
    "version: incremental-1\n"
    "metrics: {app.session: count, feature.analytics.used: count, api.calls: count, paywall.hit: count, "
    "seats.active: gauge}\n"
    "signals:\n"
    + "".join(f"  {name}: {signal}\n" for name, signal in _SIGNALS.items())
    + "triggers:\n"
    + "".join(
        f"  {name.replace('_', '-')}: {{category: adoption, owner_role: csm, play: check-in, when: {name}, "
        f"cooldown: {3 + index}d, unless: "
        + (
            "[{contacted_within: 2d}]"
            if index % 4 == 0
            else "[churn_risk]"
            if index % 4 == 1
            else "[]"
            if index % 4 == 2
            else f"[{{signal: {'seats_low' if name == 'quiet' else 'quiet'}}}, churn_risk]"
        )
        + (", segments: [smb, enterprise]" if index % 4 == 3 else "")
        + (", requires: [{account_age: {at_most: 40d}}]" if index % 5 == 2 else "")
        + (", requires: [{renewal_within: 30d}, {signal: sessions_sum}]" if index % 5 == 4 else "")
        + (", score: {base: 5, weights: {sessions_sum: 30, seats_peak: 40}}" if name == "busy" else "")
        + "}\n"
        for index, name in enumerate(_SIGNALS)
    )
    + "plays: {check-in: {}}\n",
    "incremental.yaml",
)
DIMENSION_VALUES = {"user": [f"u-{n}" for n in range(6)]}
SLICING = ruleset_slicing(RULESET)
_sequences = itertools.count(7_000_000_000_000_000_000)


# ── random histories ───────────────────────────────────────────────────────────────────────────

_events = st.tuples(
    st.sampled_from(sorted(METRICS)),
    st.integers(min_value=0, max_value=HISTORY_DAYS - 1),  # day
    st.integers(min_value=0, max_value=24 * 3600 - 1),  # second of the day
    st.sampled_from(
        [Decimal(0), Decimal(1), Decimal(2), Decimal("2.5"), Decimal(7), Decimal(30), Decimal(45)]
    ),
    st.one_of(st.just({}), st.sampled_from(DIMENSION_VALUES["user"]).map(lambda user: {"user": user})),
)
_profiles = st.one_of(
    st.none(),
    st.builds(
        lambda segment, seats, api_calls, churn_risk, created_at, renewal_date, firmographics: (
            AccountProfile.model_validate(
                {
                    "name": "Northwind Traders",
                    "segment": segment,
                    "plan": {"name": "Growth", "limits": {"seats": seats, "api.calls": api_calls}},
                    "flags": {"churn_risk": churn_risk},
                    "created_at": created_at,
                    "renewal_date": renewal_date,
                    **firmographics,
                }
            )
        ),
        st.sampled_from([None, "smb", "enterprise"]),
        st.sampled_from([0, 20, 50]),
        st.sampled_from([10, 100]),
        st.booleans(),
        st.sampled_from([None, "2026-03-20", "2026-05-01"]),
        st.sampled_from([None, "2026-04-15", "2026-06-10"]),
        st.sampled_from(
            [{}, {"industry": "fintech"}, {"employees": 499}, {"industry": "retail", "employees": 800}]
        ),
    ),
)
# A step: some events arrive, then the account is evaluated (day, hour, read plan, profile).
_steps = st.lists(
    st.tuples(
        st.lists(_events, max_size=25),
        st.integers(min_value=0, max_value=HISTORY_DAYS + 3),
        st.integers(min_value=0, max_value=23),
        st.sampled_from([None, 5, 12, 40]),
        _profiles,
    ),
    min_size=1,
    max_size=8,
)


def counted(spec: tuple[str, int, int, Decimal, dict[str, str]]) -> CountedEvent:
    name, day_offset, second, value, dimensions = spec
    day = FIRST_DAY + timedelta(days=day_offset)
    moment = datetime.combine(day, time(), UTC) + timedelta(seconds=second)
    raw = str(next(_sequences))
    return CountedEvent(
        sequence=padded_sequence(raw),
        stream_sequence=raw,
        account_id=ACCOUNT,
        event_id=f"evt-{raw}",
        name=name,
        kind=METRICS[name],
        value=value,
        occurred_at=moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        day=day.isoformat(),
        dimensions=dimensions,
    )


class FreshAggregates:
    """The account's buckets read into a new History every time, as DynamoAggregates does."""

    def __init__(self, memory: InMemoryAggregates) -> None:
        self._memory = memory

    def history(self, account_id: str, first_day: date, last_day: date) -> History:
        history = History.of(self._memory.buckets(account_id, first_day, last_day), first_day, last_day)
        # The counters' first_seen marker: the account's earliest bucket, whatever the read plan.
        every = self._memory.buckets(account_id, date.min, date.max)
        if every:
            history.seen(date.fromisoformat(every[0].day).toordinal())
        return history


def seen(evaluation: Evaluation) -> list[Any]:
    return [
        (
            outcome.trigger,
            outcome.reason,
            outcome.held,
            outcome.condition.as_evidence() if outcome.condition else None,
            outcome.firing.as_evidence() if outcome.firing else None,
        )
        for outcome in evaluation.outcomes
    ]


# ── properties ─────────────────────────────────────────────────────────────────────────────────


@settings(max_examples=120, deadline=None)
@given(steps=_steps, explain=st.booleans())
def test_property_given_events_arriving_between_evaluations_when_evaluated_incrementally_then_as_from_scratch(
    steps, explain
):
    # Given: one in-memory history, kept up to date as events arrive (for past days too), and the
    # same buckets read afresh for every evaluation.
    memory = InMemoryAggregates(SLICING)
    fresh = FreshAggregates(memory)
    incremental_state, fresh_state = AccountState(), AccountState()
    for specs, day, hour, lookback, profile in steps:
        memory.apply([counted(spec) for spec in specs])
        at = datetime.combine(FIRST_DAY + timedelta(days=day), time(hour), UTC)
        plan = ReadPlan(lookback) if lookback else None

        # When: the account is evaluated at a random moment (earlier ones too), each way.
        incremental = evaluate_account(
            RULESET, memory, ACCOUNT, profile, incremental_state, at, plan, explain=explain
        )
        from_scratch = evaluate_account(
            RULESET, fresh, ACCOUNT, profile, fresh_state, at, plan, explain=explain
        )

        # Then: the same outcomes, evidence and state.
        assert seen(incremental) == seen(from_scratch)
        assert incremental == from_scratch
        incremental_state, fresh_state = incremental.state, from_scratch.state


@settings(max_examples=60, deadline=None)
@given(steps=_steps, order=st.randoms(use_true_random=False))
def test_property_given_a_folded_history_when_days_are_evaluated_in_any_order_then_each_is_as_from_scratch(
    steps, order
):
    # Given: every event folded first (as the benchmark and a whole-history backtest do).
    memory = InMemoryAggregates(SLICING)
    memory.apply([counted(spec) for specs, *_ in steps for spec in specs])
    fresh = FreshAggregates(memory)
    moments = [(day, hour, profile) for _, day, hour, _, profile in steps]
    # Runs of consecutive days (the daily loop), shuffled (backtests may go back).
    moments += [(day, 23, steps[0][4]) for day in range(HISTORY_DAYS - 12, HISTORY_DAYS + 2)]
    order.shuffle(moments)

    for day, hour, profile in moments:
        at = datetime.combine(FIRST_DAY + timedelta(days=day), time(hour), UTC)
        # When / Then: each evaluation, from an empty state, agrees with the one from scratch.
        incremental = evaluate_account(RULESET, memory, ACCOUNT, profile, AccountState(), at, explain=False)
        from_scratch = evaluate_account(RULESET, fresh, ACCOUNT, profile, AccountState(), at, explain=False)
        assert incremental == from_scratch


@settings(max_examples=80, deadline=None)
@given(
    specs=st.lists(_events, max_size=80),
    profile=_profiles,
    lookback=st.sampled_from([3, 9, 30, 400]),
    days=st.lists(st.integers(min_value=-5, max_value=HISTORY_DAYS + 5), min_size=1, max_size=10),
)
def test_property_given_any_history_when_a_signal_is_held_then_the_generated_code_agrees_with_the_reference(
    specs, profile, lookback, days
):
    # Given: a history, read through views of any size (windows cut at the first readable day).
    memory = InMemoryAggregates(SLICING)
    memory.apply([counted(spec) for spec in specs])
    compiled = compiled_ruleset(RULESET)
    for offset in days:
        today = FIRST_DAY + timedelta(days=offset)
        history = memory.history(ACCOUNT, today - timedelta(days=lookback - 1), today)
        context = _Context(compiled, history, profile, exhaustive=True)
        # A signal requiring a full window wraps its compiled rule (the coverage check): the rule inside.
        compiled_rules = [
            rule.rule if isinstance(rule, _CoveredRule) else rule for rule in compiled.rules.values()
        ]
        rules = [rule for rule in compiled_rules if isinstance(rule, _MetricRule)]
        # group_by: the signal compiled for each value of the dimension
        rules += [
            group.group(key)
            for group in compiled_rules
            if isinstance(group, _GroupRule)
            for key in history.groups(group.metric, group.dimension)
        ]
        for rule in rules:
            # When / Then: the generated code answers as the generic path, that day and the ones before.
            for day in range(today.toordinal() - 3, today.toordinal() + 1):
                assert rule.held(context, day) == rule.reference_held(context, day), (rule.name, day)


# ── the series' structures ─────────────────────────────────────────────────────────────────────


@settings(max_examples=150, deadline=None)
@given(
    records=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=40),
            st.one_of(st.none(), st.integers(min_value=-20, max_value=20)),
            st.integers(min_value=-3, max_value=5),
        ),
        min_size=1,
        max_size=40,
    ),
    queries=st.lists(
        st.tuples(st.integers(min_value=-3, max_value=43), st.integers(min_value=0, max_value=15)),
        max_size=12,
    ),
    read_every=st.integers(min_value=1, max_value=5),
)
def test_property_given_days_recorded_in_any_order_when_windows_are_read_then_they_match_the_plain_sums(
    records, queries, read_every
):
    # Given: days recorded (and recorded again) in any order, read now and then in between, so the
    # running totals and sparse tables are brought up to date from the middle too.
    series, plain = MetricSeries(), {}
    for step, (day, reading, total) in enumerate(records):
        metric = MetricDay(EventKind.GAUGE if reading is not None else EventKind.COUNT)
        metric.total, metric.events = Decimal(total), max(total, 0)
        if reading is not None:
            metric.last = metric.low = Decimal(reading)
            metric.high = Decimal(reading + 3)
        series.record(day, metric)
        plain[day] = metric
        if step % read_every == 0:
            series.latest(0, 0)  # any read refreshes
    for first, length in queries:
        last = first + length
        # When / Then: every window reads as the plain days it covers.
        days = [plain[day] for day in sorted(plain) if first <= day <= last]
        readings = [metric for metric in days if metric.last is not None]
        assert series.total(first, last) == sum((metric.total for metric in days), Decimal(0))
        assert series.positive_total(first, last) == sum((m.total for m in days if m.total > 0), Decimal(0))
        assert series.events(first, last) == sum(metric.events for metric in days)
        assert series.active_days(first, last) == sum(1 for metric in days if metric.events > 0)
        assert series.latest(first, last) == (float(readings[-1].last) if readings else None)  # type: ignore[arg-type]
        assert series.low(first, last) == (min(float(m.low) for m in readings) if readings else None)  # type: ignore[arg-type]
        assert series.peak(first, last) == (max(float(m.high) for m in readings) if readings else None)  # type: ignore[arg-type]
        assert series.readings(first, last) == (sum((m.last for m in readings), Decimal(0)), len(readings))  # type: ignore[misc]


@settings(max_examples=150, deadline=None)
@given(
    records=st.lists(
        st.tuples(st.integers(min_value=0, max_value=30), st.sets(st.sampled_from("abcdefgh"))),
        min_size=1,
        max_size=30,
    ),
    queries=st.lists(
        st.tuples(st.integers(min_value=-3, max_value=33), st.integers(min_value=0, max_value=12)),
        max_size=10,
    ),
)
def test_property_given_distinct_values_by_day_when_windows_are_read_as_bitmasks_then_they_count_as_the_sets(
    records, queries
):
    # Given: two series of one history (masks share the history's numbering), days recorded in any
    # order, and sets that grow after being recorded (as a bucket's do).
    bits: dict[str, int] = {}
    series = [DistinctSeries(bits), DistinctSeries(bits)]
    plain: list[dict[int, set[str]]] = [{}, {}]
    for index, (day, values) in enumerate(records):
        which = index % 2
        known = plain[which].setdefault(day, set())
        known |= values
        series[which].record(day, known)
        series[which].mask(0, 40)  # read in between
    for first, length in queries:
        last = first + length
        sets = [
            set().union(*(values for day, values in part.items() if first <= day <= last)) for part in plain
        ]
        masks = [one.mask(first, last) for one in series]
        # When / Then: the masks count, and intersect, as the sets do.
        assert [mask.bit_count() for mask in masks] == [len(values) for values in sets]
        assert (masks[0] & masks[1]).bit_count() == len(sets[0] & sets[1])
        assert [one.union(first, last) for one in series] == sets


def test_given_a_history_when_days_are_recorded_then_the_engine_is_told_the_earliest_day_per_metric():
    history = History()
    history.record_metric("app.session", 10, MetricDay(EventKind.COUNT))
    history.record_metric("app.session", 7, MetricDay(EventKind.COUNT))
    history.record_distinct("feature.analytics.used", "team", 12, {"t"})
    view = history.bounded(date.fromordinal(5), date.fromordinal(20))

    assert view.take_changes() == {"app.session": 7, "feature.analytics.used": 12}
    assert history.take_changes() == {}


def test_given_a_compiled_signal_then_its_generated_source_is_inspectable_and_shown_in_tracebacks():
    import linecache

    covered = compiled_ruleset(RULESET).rules["seats_low_sustained"]
    assert isinstance(covered, _CoveredRule)  # sustained: requires a full window by default
    rule = covered.rule
    assert isinstance(rule, _MetricRule)
    assert "def held(context, day):" in rule.source
    assert "def stable_until(context, day):" in rule.source
    assert rule.held.__code__.co_filename == "<signal seats_low_sustained>"
    assert linecache.getline("<signal seats_low_sustained>", rule.held.__code__.co_firstlineno).startswith(
        "def held"
    )
