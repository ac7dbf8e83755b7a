"""The rules engine: windows, measures, modifiers, composites, exclusions, arming, scores and evidence.

Each test builds a small ruleset (one signal `watched`, one trigger `watch`, unless it needs more),
an in-memory history of counted events and, where it matters, a profile and a trigger state; it
evaluates one account at one moment and asserts what a CSM (or the next evaluation) would see.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from shared.accounts.models import AccountProfile
from shared.counters.bucket import CountedEvent, padded_sequence
from shared.counters.slices import NO_SLICING
from shared.events.models import EventKind
from shared.experiments.assignment import held_out
from shared.rules.aggregates import InMemoryAggregates
from shared.rules.engine import (
    AccountState,
    Evaluation,
    Observation,
    ReadPlan,
    TriggerOutcome,
    TriggerState,
    evaluate_account,
    read_plan,
)
from shared.rules.language import Ruleset
from shared.rules.loading import load_ruleset, parse_ruleset
from shared.rules.slicing import ruleset_slicing

REPO = Path(__file__).resolve().parents[2]
ACCOUNT = "acct-northwind"
AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TODAY = AT.date()
METRICS = (
    "{app.session: count, feature.analytics.used: count, dashboard.created: count, "
    "paywall.hit: count, seats.active: gauge}"
)
_sequence = itertools.count(100_000_000_000_000_000_000)


# ── builders ───────────────────────────────────────────────────────────────────────────────────


def ago(days: int) -> date:
    return TODAY - timedelta(days=days)


def counted(
    name: str = "app.session",
    day: date = TODAY,
    value: str | int = 1,
    *,
    at: str = "10:00:00",
    kind: EventKind = EventKind.COUNT,
    dimensions: dict[str, str] | None = None,
    account: str = ACCOUNT,
) -> CountedEvent:
    """An accepted event as the aggregator sees it, next in stream order."""
    raw_sequence = str(next(_sequence))
    return CountedEvent(
        sequence=padded_sequence(raw_sequence),
        stream_sequence=raw_sequence,
        account_id=account,
        event_id=f"evt-{raw_sequence}",
        name=name,
        kind=kind,
        value=Decimal(str(value)),
        occurred_at=f"{day.isoformat()}T{at}.000000Z",
        day=day.isoformat(),
        dimensions=dimensions or {},
    )


def reading(value: str | int, day: date = TODAY, *, at: str = "10:00:00") -> CountedEvent:
    """A seats.active gauge reading."""
    return counted("seats.active", day, value, at=at, kind=EventKind.GAUGE)


def sessions_on(*days_ago: int, value: int = 1) -> list[CountedEvent]:
    return [counted("app.session", ago(days), value) for days in days_ago]


def profile(**fields: Any) -> AccountProfile:
    return AccountProfile.model_validate({"name": "Northwind Traders", **fields})


def ruleset(
    signal: str,
    *,
    others: dict[str, str] | None = None,
    unless: str = "[]",
    cooldown: str = "30d",
    segments: str | None = None,
    score: str | None = None,
) -> Ruleset:
    """A ruleset with the signal `watched` (a YAML flow mapping), its sibling signals and trigger `watch`."""
    sibling_lines = "".join(f"  {name}: {text}\n" for name, text in (others or {}).items())
    optional = (f"    segments: {segments}\n" if segments else "") + (
        f"    score: {score}\n" if score else ""
    )
    text = (
        "version: test-1\n"
        f"metrics: {METRICS}\n"
        "signals:\n"
        f"  watched: {signal}\n"
        f"{sibling_lines}"
        "triggers:\n"
        "  watch:\n"
        "    category: adoption\n"
        "    owner_role: csm\n"
        "    play: check-in\n"
        "    when: watched\n"
        f"    unless: {unless}\n"
        f"    cooldown: {cooldown}\n"
        f"{optional}"
        "plays:\n"
        "  check-in: {}\n"
    )
    return parse_ruleset(text, "test.yaml")


def history(events: Iterable[CountedEvent], rules: Ruleset | None = None) -> InMemoryAggregates:
    """The events folded in memory, with the slices the rules filter or group by.

    The account's data starts a year back (an event of a metric no rule reads), so signals that
    require a full window are covered here: tests/unit/test_data_coverage.py tests coverage itself.
    """
    aggregates = InMemoryAggregates(ruleset_slicing(rules) if rules else NO_SLICING)
    aggregates.apply([counted("test.data.since", ago(365)), *events])
    return aggregates


def evaluate(
    rules: Ruleset,
    events: Iterable[CountedEvent] = (),
    *,
    account_profile: AccountProfile | None = None,
    state: AccountState | None = None,
    at: datetime = AT,
    plan: ReadPlan | None = None,
) -> Evaluation:
    return evaluate_account(
        rules, history(events, rules), ACCOUNT, account_profile, state or AccountState(), at, plan
    )


def watch(evaluation: Evaluation) -> TriggerOutcome:
    return next(outcome for outcome in evaluation.outcomes if outcome.trigger == "watch")


def observe(
    signal: str,
    events: Iterable[CountedEvent] = (),
    *,
    others: dict[str, str] | None = None,
    account_profile: AccountProfile | None = None,
    at: datetime = AT,
) -> Observation:
    """How the signal `watched` is observed for the account (the trigger `watch` has no exclusions)."""
    outcome = watch(evaluate(ruleset(signal, others=others), events, account_profile=account_profile, at=at))
    assert outcome.condition is not None
    return outcome.condition


SESSIONS_7D = "{measure: sum, metric: app.session, window: 7d, at_least: 1}"
SESSION_TODAY = "{measure: sum, metric: app.session, window: 1d, at_least: 1}"


# ── windows ────────────────────────────────────────────────────────────────────────────────────


def test_given_an_event_on_the_first_day_of_a_7d_window_when_evaluated_then_it_counts():
    condition = observe(SESSIONS_7D, sessions_on(6))

    assert condition.held
    assert condition.observed == 1
    assert (condition.window_from, condition.window_to) == (date(2026, 11, 17), date(2026, 11, 23))


def test_given_an_event_the_day_before_a_7d_window_when_evaluated_then_it_does_not_count():
    condition = observe(SESSIONS_7D, sessions_on(7))

    assert not condition.held
    assert condition.observed == 0


def test_given_an_event_later_on_the_evaluation_day_when_evaluated_at_noon_then_it_counts():
    condition = observe(SESSIONS_7D, [counted("app.session", TODAY, at="23:59:59")])

    assert condition.held
    assert condition.observed == 1


def test_given_an_event_the_day_after_the_evaluation_day_when_evaluated_then_it_does_not_count():
    condition = observe(SESSIONS_7D, [counted("app.session", TODAY + timedelta(days=1), at="00:00:00")])

    assert not condition.held


# ── comparisons ────────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("comparison", "total", "held"),
    [
        ("at_least", 5, True),
        ("at_least", 4, False),
        ("more_than", 5, False),
        ("more_than", 6, True),
        ("at_most", 5, True),
        ("at_most", 6, False),
        ("less_than", 5, False),
        ("less_than", 4, True),
    ],
)
def test_given_a_total_at_or_next_to_the_threshold_when_compared_then_only_inclusive_comparisons_hold_at_it(
    comparison, total, held
):
    condition = observe(
        f"{{measure: sum, metric: app.session, window: 7d, {comparison}: 5}}", sessions_on(2, value=total)
    )

    assert condition.held is held
    assert (condition.comparison, condition.threshold, condition.observed) == (comparison, 5, total)


# ── measures ───────────────────────────────────────────────────────────────────────────────────


def test_given_no_events_when_a_count_is_measured_then_it_is_zero_and_an_upper_bound_holds():
    condition = observe("{measure: sum, metric: app.session, window: 7d, at_most: 0}")

    assert condition.held
    assert condition.observed == 0


def test_given_count_events_when_summed_then_their_values_add_up():
    events = [counted("app.session", ago(1), 3), counted("app.session", ago(4), "4.5")]

    condition = observe("{measure: sum, metric: app.session, window: 7d, at_least: 7.5}", events)

    assert condition.held
    assert condition.observed == 7.5
    assert condition.detail == "sum of app.session over 7d = 7.5"


def test_given_events_with_values_when_counted_then_the_number_of_events_is_measured():
    events = [
        counted("app.session", ago(1), 3),
        counted("app.session", ago(1), 40),
        counted("app.session", ago(4)),
    ]

    condition = observe("{measure: count, metric: app.session, window: 7d, at_least: 3}", events)

    assert condition.held
    assert condition.observed == 3


def test_given_several_events_on_some_days_when_active_days_are_measured_then_days_not_events_count():
    events = [*sessions_on(0, 0, 0, 3), counted("app.session", ago(9))]

    condition = observe("{measure: active_days, metric: app.session, window: 7d, at_least: 3}", events)

    assert not condition.held
    assert condition.observed == 2


def test_given_the_same_user_on_two_days_when_distinct_users_are_measured_then_the_user_counts_once():
    events = [
        counted("feature.analytics.used", ago(1), dimensions={"user": "u-1", "team": "t-1"}),
        counted("feature.analytics.used", ago(5), dimensions={"user": "u-1", "team": "t-2"}),
        counted("feature.analytics.used", ago(5), dimensions={"user": "u-2", "team": "t-2"}),
        counted("feature.analytics.used", ago(20), dimensions={"user": "u-3"}),  # before the window
    ]

    condition = observe(
        "{measure: distinct, metric: feature.analytics.used, dimension: user, window: 14d, at_least: 3}",
        events,
    )

    assert not condition.held
    assert condition.observed == 2


def test_given_gauge_readings_on_several_days_when_latest_is_measured_then_the_most_recent_reading_wins():
    events = [
        reading(30, ago(5)),
        reading(14, ago(2), at="09:00:00"),
        reading(99, ago(2), at="08:00:00"),  # arrives later but was read earlier that day
        reading(50, ago(40)),  # before the window
    ]

    condition = observe("{measure: latest, metric: seats.active, window: 30d, at_least: 14}", events)

    assert condition.held
    assert condition.observed == 14
    assert condition.detail == "latest seats.active = 14"


def test_given_no_gauge_reading_in_the_window_when_latest_is_measured_then_it_does_not_hold_and_says_why():
    condition = observe(
        "{measure: latest, metric: seats.active, window: 7d, at_most: 100}", [reading(5, ago(8))]
    )

    assert not condition.held
    assert condition.observed is None
    assert "no seats.active reading" in condition.detail


@pytest.mark.parametrize(("measure", "expected"), [("peak", 20), ("low", 5)])
def test_given_readings_over_days_when_peak_or_low_is_measured_then_the_extreme_of_the_window_is_taken(
    measure, expected
):
    events = [
        reading(12, ago(1)),
        reading(20, ago(3), at="09:00:00"),
        reading(5, ago(3), at="10:00:00"),
        reading(100, ago(10)),  # before the window
        reading(1, ago(10)),
    ]

    condition = observe(f"{{measure: {measure}, metric: seats.active, window: 7d, at_least: 0}}", events)

    assert condition.observed == expected


SHARE_OF_ACTIVE_USERS = (
    "{measure: share, of: {metric: feature.analytics.used, dimension: user}, "
    "among: {metric: app.session, dimension: user}, window: 30d, at_least: 0.4}"
)


def test_given_2_of_5_active_users_used_analytics_when_share_is_measured_then_0_4_holds_at_least_0_4():
    sessions = [counted("app.session", ago(day), dimensions={"user": f"u-{day}"}) for day in range(1, 6)]
    analytics = [
        counted("feature.analytics.used", ago(9), dimensions={"user": "u-1"}),
        counted("feature.analytics.used", ago(2), dimensions={"user": "u-2"}),
        counted("feature.analytics.used", ago(2), dimensions={"user": "u-1"}),
        counted("feature.analytics.used", ago(2), dimensions={"user": "u-stranger"}),  # not active
    ]

    condition = observe(SHARE_OF_ACTIVE_USERS, [*sessions, *analytics])

    assert condition.held
    assert condition.observed == 0.4


def test_given_no_active_users_when_share_is_measured_then_it_does_not_hold_and_says_why():
    analytics = [counted("feature.analytics.used", ago(2), dimensions={"user": "u-1"})]

    condition = observe(SHARE_OF_ACTIVE_USERS, analytics)

    assert not condition.held
    assert condition.observed is None
    assert "no user of app.session" in condition.detail


# ── per_limit ──────────────────────────────────────────────────────────────────────────────────

SEATS_PER_LIMIT = "{measure: latest, metric: seats.active, window: 30d, per_limit: seats, at_least: 0.9}"


def test_given_45_seats_of_50_when_measured_per_limit_then_0_9_holds_at_least_0_9():
    condition = observe(
        SEATS_PER_LIMIT,
        [reading(45, ago(3))],
        account_profile=profile(plan={"name": "Growth", "limits": {"seats": 50}}),
    )

    assert condition.held
    assert condition.observed == 0.9
    assert condition.detail.endswith("/ plan limit seats = 0.9")


@pytest.mark.parametrize(
    "account_profile",
    [
        None,
        profile(),
        profile(plan={"name": "Growth"}),
        profile(plan={"name": "Growth", "limits": {"api.calls": 1000}}),
    ],
    ids=["no profile", "no plan", "no limits", "another limit only"],
)
def test_given_no_seats_limit_when_measured_per_limit_then_it_does_not_hold_and_says_no_plan_limit(
    account_profile,
):
    condition = observe(SEATS_PER_LIMIT, [reading(45, ago(3))], account_profile=account_profile)

    assert not condition.held
    assert condition.observed is None
    assert "no plan limit" in condition.detail


# ── growth ─────────────────────────────────────────────────────────────────────────────────────

SESSION_GROWTH = (
    "{measure: sum, metric: app.session, window: 7d, growth: {over: previous_window}, at_least: 0.25}"
)


def test_given_100_then_125_in_back_to_back_windows_when_growth_is_measured_then_0_25_holds_at_least_0_25():
    events = [
        counted("app.session", ago(13), 60),  # first day of the previous window
        counted("app.session", ago(7), 40),  # last day of the previous window
        counted("app.session", ago(14), 1000),  # before the previous window
        counted("app.session", ago(6), 125),
    ]

    condition = observe(SESSION_GROWTH, events)

    assert condition.held
    assert condition.observed == 0.25
    assert condition.detail.startswith("growth of sum of app.session over 7d vs the previous window")


def test_given_a_previous_window_without_events_when_growth_is_measured_then_it_does_not_hold():
    condition = observe(SESSION_GROWTH, [counted("app.session", ago(1), 50)])

    assert not condition.held
    assert condition.observed is None
    assert "baseline is zero" in condition.detail


SEATS_ABOVE_AVERAGE = (
    "{measure: latest, metric: seats.active, window: 7d, "
    "growth: {over: average, baseline_window: 10d}, at_least: 0.3}"
)


def test_given_a_latest_reading_30_percent_above_the_baseline_mean_when_growth_over_average_then_it_holds():
    events = [
        reading(8, ago(16)),  # first day of the 10-day baseline before the 7-day window
        reading(99, ago(9), at="08:00:00"),
        reading(12, ago(9), at="18:00:00"),  # the day's reading is its latest one
        reading(1, ago(17)),  # before the baseline
        reading(50, ago(5)),
        reading(13, ago(1)),
    ]

    condition = observe(SEATS_ABOVE_AVERAGE, events)

    assert condition.held
    assert condition.observed == 0.3


def test_given_no_readings_in_the_baseline_when_growth_over_average_then_it_does_not_hold_and_says_why():
    condition = observe(SEATS_ABOVE_AVERAGE, [reading(13, ago(1)), reading(10, ago(17))])

    assert not condition.held
    assert condition.observed is None
    assert "no seats.active readings in the 10d baseline" in condition.detail


# from_zero: growth against a zero baseline

GROWTH_FROM_ZERO = (
    "{{measure: sum, metric: app.session, window: 7d, growth: {{over: previous_window, from_zero: {mode}}}, "
    "{threshold}}}"
)


@pytest.mark.parametrize(
    ("threshold", "current", "held", "shown"),
    [
        ("at_least: 0.25", 50, True, "a rise from zero"),  # a rise from zero is above any threshold
        ("more_than: 1000000", 1, True, "a rise from zero"),
        ("at_most: 0", 50, False, "a rise from zero"),  # ...and never a decline
        ("at_least: 0.25", 0, False, "= 0"),  # zero to zero is no growth
        ("at_most: 0", 0, True, "= 0"),
        ("less_than: 0", -3, True, "a fall from zero"),  # counts may be negative (corrections)
    ],
)
def test_given_a_zero_previous_window_when_from_zero_fire_then_growth_is_defined(
    threshold, current, held, shown
):
    # Given a previous window without events (a zero baseline) and `current` this window
    signal = GROWTH_FROM_ZERO.format(mode="fire", threshold=threshold)
    events = [counted("app.session", ago(1), current)] if current else []

    # When observed
    condition = observe(signal, events)

    # Then it holds as growth from zero says, and the evidence says so in words (JSON has no infinity)
    assert condition.held is held
    assert condition.observed == (0 if current == 0 else None)
    assert shown in condition.detail


def test_given_a_zero_previous_window_when_from_zero_skip_then_it_does_not_hold_as_without_the_key():
    events = [counted("app.session", ago(1), 50)]

    skipped = observe(GROWTH_FROM_ZERO.format(mode="skip", threshold="at_least: 0.25"), events)

    assert not skipped.held
    assert skipped.observed is None
    assert "baseline is zero: growth is undefined" in skipped.detail


def test_given_a_non_zero_baseline_when_from_zero_fire_then_growth_is_the_usual_ratio():
    events = [counted("app.session", ago(8), 100), counted("app.session", ago(1), 125)]

    condition = observe(GROWTH_FROM_ZERO.format(mode="fire", threshold="at_least: 0.25"), events)

    assert condition.held
    assert condition.observed == 0.25


def test_given_gauge_readings_of_zero_in_the_baseline_when_from_zero_fire_then_a_reading_above_holds():
    signal = (
        "{measure: latest, metric: seats.active, window: 7d, "
        "growth: {over: average, baseline_window: 10d, from_zero: fire}, at_least: 0.3}"
    )
    # A baseline of zero readings is zero; no reading at all in it is still no baseline.
    zero_baseline = observe(signal, [reading(0, ago(12)), reading(4, ago(1))])
    no_baseline = observe(signal, [reading(4, ago(1))])

    assert zero_baseline.held
    assert not no_baseline.held
    assert "no seats.active readings in the 10d baseline" in no_baseline.detail


def test_given_a_sustained_rise_from_zero_when_it_fires_then_the_evidence_is_strict_json():
    # Given two back-to-back 7-day windows each growing against the one before, the oldest from zero
    signal = (
        "{measure: sum, metric: app.session, window: 7d, growth: {over: previous_window, from_zero: fire}, "
        "sustained: 2, at_least: 0.5}"
    )
    events = [counted("app.session", ago(8), 10), counted("app.session", ago(1), 20)]

    # When evaluated
    outcome = watch(evaluate(ruleset(signal), events))

    # Then it fires, and its evidence serialises without NaN or Infinity
    assert outcome.fired
    assert outcome.firing is not None
    assert "oldest first: a rise from zero, 1" in outcome.firing.condition.detail
    json.dumps(outcome.firing.as_evidence(), allow_nan=False)


# ── ratio of two measures ─────────────────────────────────────────────────────────────────────

PAYWALL_PER_SESSION = (
    "{measure: ratio, ratio: {numerator: {measure: sum, metric: paywall.hit}, "
    "denominator: {measure: sum, metric: app.session}}, window: 7d, at_least: 0.05}"
)


@pytest.mark.parametrize(
    ("paywall", "sessions", "held", "observed"),
    [(5, 100, True, 0.05), (4, 100, False, 0.04), (0, 100, False, 0.0)],
    ids=["at the threshold", "below", "no numerator events: zero"],
)
def test_given_two_counts_when_a_ratio_is_measured_then_it_is_numerator_over_denominator(
    paywall, sessions, held, observed
):
    events = [counted("app.session", ago(6), sessions), counted("app.session", ago(7), 1000)]
    events += [counted("paywall.hit", ago(0), paywall)] if paywall else []

    condition = observe(PAYWALL_PER_SESSION, events)

    assert (condition.held, condition.observed) == (held, observed)
    assert condition.detail.startswith("sum of paywall.hit per sum of app.session over 7d")


def test_given_a_zero_denominator_when_a_ratio_is_measured_then_it_does_not_hold_and_says_why():
    # Sessions only before the window: the window's denominator is zero
    events = [counted("paywall.hit", ago(0), 5), counted("app.session", ago(7))]

    condition = observe(PAYWALL_PER_SESSION, events)

    assert not condition.held
    assert condition.observed is None
    assert condition.detail == f"sum of app.session is zero in {ago(6)}..{TODAY}: no ratio"


def test_given_a_gauge_over_a_distinct_count_when_a_ratio_is_measured_then_each_side_reads_its_measure():
    # Seats in use per active user: the latest reading over the distinct users of the window
    signal = (
        "{measure: ratio, ratio: {numerator: {measure: latest, metric: seats.active}, denominator: "
        "{measure: distinct, metric: app.session, dimension: user}}, window: 7d, more_than: 1.5}"
    )
    users = [counted("app.session", ago(day), dimensions={"user": f"u-{day % 4}"}) for day in range(7)]

    held = observe(signal, [*users, reading(9, ago(8)), reading(7, ago(2))])
    no_reading = observe(signal, [*users, reading(9, ago(8))])

    assert (held.held, held.observed) == (True, 1.75)
    assert not no_reading.held
    assert "no seats.active reading" in no_reading.detail


def test_given_a_ratio_with_growth_when_measured_then_the_ratio_grows_against_the_previous_window():
    signal = (
        "{measure: ratio, ratio: {numerator: {measure: sum, metric: paywall.hit}, "
        "denominator: {measure: count, metric: app.session}}, window: 7d, growth: {over: previous_window}, "
        "at_least: 1}"
    )
    events = [
        counted("paywall.hit", ago(10), 1),
        *sessions_on(10, 9),  # previous window: 1 hit in 2 sessions, 0.5
        counted("paywall.hit", ago(1), 2),
        *sessions_on(1, 2),  # this window: 2 hits in 2 sessions, 1.0: +100 %
    ]

    condition = observe(signal, events)

    assert (condition.held, condition.observed) == (True, 1.0)


# ── new distinct values ───────────────────────────────────────────────────────────────────────

NEW_TEAMS = (
    "{measure: new_distinct, metric: feature.analytics.used, dimension: team, window: 7d, "
    "not_seen_in: 14d, at_least: 2}"
)


def team_on(team: str, days_ago: int) -> CountedEvent:
    return counted("feature.analytics.used", ago(days_ago), dimensions={"team": team})


@pytest.mark.parametrize(
    ("earlier", "new"),
    [
        (None, 1),  # first seen in the window: new
        (7, 0),  # the day just before the window: seen
        (20, 0),  # the 14th day before the window: seen
        (21, 1),  # the 15th day before it: forgotten, new again
    ],
    ids=["never before", "day before the window", "last day of not_seen_in", "just beyond it"],
)
def test_given_a_value_seen_before_the_window_when_new_distinct_then_only_unseen_values_count(earlier, new):
    # Given team t-1 used analytics today (twice, on two days) and maybe `earlier` days ago
    events = [team_on("t-1", 0), team_on("t-1", 3)] + ([team_on("t-1", earlier)] if earlier else [])

    # When new teams are counted over the window
    condition = observe(NEW_TEAMS, events)

    # Then t-1 is new exactly when the 14 days before the window did not have it
    assert condition.observed == new
    assert condition.detail.startswith(
        "new team of feature.analytics.used over 7d (not seen in the 14d before)"
    )


def test_given_two_new_teams_and_an_old_one_when_new_distinct_at_least_2_then_it_holds():
    events = [team_on("t-old", 10), team_on("t-old", 1), team_on("t-a", 2), team_on("t-b", 6)]

    condition = observe(NEW_TEAMS, events)

    assert (condition.held, condition.observed) == (True, 2)


def test_given_new_distinct_when_planned_then_the_read_plan_covers_the_days_before_the_window():
    # Two quarters of 13 weeks, sustained, each against the year before it
    signal = (
        "{measure: new_distinct, metric: feature.analytics.used, dimension: team, window: 13w, "
        "not_seen_in: 26w, sustained: 2, at_least: 1}"
    )

    assert read_plan(ruleset(NEW_TEAMS)).lookback_days == 21
    assert read_plan(ruleset(signal)).lookback_days == 91 * 2 + 182


# ── projection: forecast ──────────────────────────────────────────────────────────────────────

SEATS_TRENDING = (
    "{{measure: latest, metric: seats.active, window: 30d, per_limit: seats, "
    "forecast: {{reaches: 1.0, within: {within}}}}}"
)
SEATS_30 = profile(plan={"name": "Team", "limits": {"seats": 30, "app.session": 3000}})


@pytest.mark.parametrize(
    ("within", "held", "observed"),
    [("30d", True, 35 / 30), ("20d", True, 1.0), ("14d", False, 0.9)],
)
def test_given_seats_on_a_straight_rise_when_forecast_then_the_trend_is_projected_within_the_horizon(
    within, held, observed
):
    # Given 10, 15, 20 seats of 30 at 20, 10 and 0 days ago: half a seat a day
    events = [reading(10, ago(20)), reading(15, ago(10)), reading(20, ago(0)), reading(99, ago(31))]

    # When projected `within` days ahead
    condition = observe(SEATS_TRENDING.format(within=within), events, account_profile=SEATS_30)

    # Then the trend's level at the horizon, per the limit, is compared with reaches
    assert condition.held is held
    assert condition.observed == pytest.approx(observed)
    assert (condition.comparison, condition.threshold) == ("at_least", 1.0)
    assert "its trend's highest in the next" in condition.detail


def test_given_a_gauge_already_at_the_limit_and_falling_when_forecast_then_today_counts():
    events = [reading(40, ago(20)), reading(35, ago(10)), reading(30, ago(0))]

    condition = observe(SEATS_TRENDING.format(within="30d"), events, account_profile=SEATS_30)

    assert condition.held
    assert condition.observed == 1.0


def test_given_one_reading_when_forecast_then_there_is_no_trend_and_it_says_why():
    condition = observe(SEATS_TRENDING.format(within="30d"), [reading(29)], account_profile=SEATS_30)

    assert not condition.held
    assert condition.detail.startswith("fewer than 2 readings of seats.active")


def test_given_a_steady_daily_sum_when_forecast_then_the_running_total_is_projected():
    # Given 100 sessions on each of the window's 10 days: 1,000 so far, on a line of 100 a day
    signal = (
        "{measure: sum, metric: app.session, window: 10d, per_limit: app.session, "
        "forecast: {reaches: 1.0, within: 20d}}"
    )
    events = sessions_on(*range(10), value=100)

    condition = observe(signal, events, account_profile=SEATS_30)

    # Then 1,000 + 20 x 100 = 3,000 of the 3,000 allowed: reached within 20 days
    assert condition.held
    assert condition.observed == pytest.approx(1.0)


# ── where: filters on a dimension's value ─────────────────────────────────────────────────────


def paywall(feature: str | None, days_ago: int = 0, value: int = 1) -> CountedEvent:
    return counted("paywall.hit", ago(days_ago), value, dimensions={"feature": feature} if feature else {})


@pytest.mark.parametrize(
    ("where", "observed"),
    [("{feature: sso}", 3), ("{feature: [sso, scim]}", 5), ("{feature: audit-log}", 0)],
    ids=["one value", "values", "a value never sent"],
)
def test_given_a_where_filter_when_measured_then_only_the_matching_events_count(where, observed):
    events = [paywall("sso", 1, 3), paywall("scim", 2, 2), paywall("SSO", 1, 10), paywall(None, 0, 100)]

    condition = observe(
        f"{{measure: sum, metric: paywall.hit, where: {where}, window: 7d, at_least: 3}}", events
    )

    # Values match exactly as sent (`SSO` is not `sso`); events without the dimension never match
    assert condition.observed == observed
    assert condition.held is (observed >= 3)
    assert "where feature is" in condition.detail


def test_given_a_where_filter_on_a_gauge_when_latest_then_the_latest_matching_reading_counts():
    def seats(value: int, team: str, at: str) -> CountedEvent:
        return counted("seats.active", ago(1), value, at=at, kind=EventKind.GAUGE, dimensions={"team": team})

    signal = "{measure: latest, metric: seats.active, where: {team: sales}, window: 7d, at_least: 5}"

    condition = observe(signal, [seats(6, "sales", "09:00:00"), seats(40, "support", "10:00:00")])

    assert (condition.held, condition.observed) == (True, 6)


# ── group_by: the condition per value of a dimension ──────────────────────────────────────────

ADVANCED_GROWTH_IN_TWO_TEAMS = (
    "{measure: sum, metric: feature.analytics.used, window: 7d, growth: {over: previous_window}, "
    "at_least: 0.25, group_by: team, groups_at_least: 2}"
)


def team_usage(team: str, days_ago: int, value: int) -> CountedEvent:
    return counted("feature.analytics.used", ago(days_ago), value, dimensions={"team": team})


@pytest.mark.parametrize(
    ("events", "held", "observed"),
    [
        # two teams grew 25 %+, one shrank: holds
        (
            [
                team_usage("a", 10, 4),
                team_usage("a", 1, 5),
                team_usage("b", 9, 10),
                team_usage("b", 2, 20),
                team_usage("c", 8, 10),
                team_usage("c", 3, 5),
            ],
            True,
            2,
        ),
        # the account grew 50 % but only one team by 25 %: does not hold
        (
            [team_usage("a", 10, 4), team_usage("a", 1, 10), team_usage("b", 9, 10), team_usage("b", 2, 10)],
            False,
            1,
        ),
        # a team new this week has no baseline (growth undefined): not counted
        ([team_usage("a", 10, 4), team_usage("a", 1, 5), team_usage("new", 1, 50)], False, 1),
    ],
    ids=["two teams grew", "one team grew", "a new team"],
)
def test_given_group_by_team_when_evaluated_then_it_holds_when_enough_teams_meet_the_condition(
    events, held, observed
):
    condition = observe(ADVANCED_GROWTH_IN_TWO_TEAMS, events)

    assert (condition.held, condition.observed) == (held, observed)
    assert (condition.comparison, condition.threshold) == ("at_least", 2)
    assert "team values: growth of sum of feature.analytics.used over 7d" in condition.detail


def test_given_group_by_with_a_calibrated_threshold_when_evaluated_then_each_group_meets_the_accounts_value():
    signal = (
        "{measure: sum, metric: feature.analytics.used, window: 7d, group_by: team, groups_at_least: 2, "
        "at_least: {default: 10, industries: {fintech: 3}}}"
    )
    events = [team_usage("a", 1, 4), team_usage("b", 2, 5), team_usage("c", 3, 1)]

    fintech = observe(signal, events, account_profile=profile(industry="fintech"))
    retail = observe(signal, events, account_profile=profile(industry="retail"))

    assert (fintech.held, fintech.observed, retail.held, retail.observed) == (True, 2, False, 0)


def test_given_group_by_when_planned_then_the_read_plan_is_the_signals_own():
    assert read_plan(ruleset(ADVANCED_GROWTH_IN_TWO_TEAMS)).lookback_days == 14


# ── sustained and rising ───────────────────────────────────────────────────────────────────────

SUSTAINED_SESSIONS = "{measure: sum, metric: app.session, window: 7d, sustained: 2, at_least: 1}"


def test_given_events_in_both_windows_when_sustained_2_then_it_holds_over_both_windows():
    condition = observe(SUSTAINED_SESSIONS, sessions_on(13, 0))

    assert condition.held
    assert (condition.window_from, condition.window_to) == (ago(13), TODAY)
    assert "in each of 2 consecutive 7d windows, oldest first: 1, 1" in condition.detail


def test_given_a_gap_in_the_older_window_when_sustained_2_then_it_does_not_hold():
    condition = observe(SUSTAINED_SESSIONS, sessions_on(14, 6, 0))

    assert not condition.held
    assert "oldest first: 0, 2" in condition.detail


RISING_SESSIONS = "{measure: sum, metric: app.session, window: 7d, rising: 2}"


def test_given_a_strictly_rising_measure_when_rising_2_then_it_holds_over_three_windows():
    events = [
        counted("app.session", ago(20), 1),
        counted("app.session", ago(10), 2),
        counted("app.session", ago(0), 3),
    ]

    condition = observe(RISING_SESSIONS, events)

    assert condition.held
    assert condition.observed == 3
    assert condition.window_from == ago(20)
    assert "oldest first: 1, 2, 3" in condition.detail


def test_given_a_flat_step_when_rising_2_then_it_does_not_hold():
    events = [
        counted("app.session", ago(20), 1),
        counted("app.session", ago(10), 2),
        counted("app.session", ago(0), 2),
    ]

    assert not observe(RISING_SESSIONS, events).held


def test_given_a_rise_below_the_threshold_when_rising_with_a_threshold_then_it_does_not_hold():
    events = [
        counted("app.session", ago(20), 1),
        counted("app.session", ago(10), 2),
        counted("app.session", ago(0), 3),
    ]

    condition = observe("{measure: sum, metric: app.session, window: 7d, rising: 2, at_least: 5}", events)

    assert not condition.held
    assert (condition.comparison, condition.threshold) == ("at_least", 5)


# ── composites ─────────────────────────────────────────────────────────────────────────────────

COMPOSITE_MEMBERS = {
    "sessions_today": SESSION_TODAY,
    "dashboards_that_day": "{measure: sum, metric: dashboard.created, window: 1d, at_least: 1}",
}


def composite(within: str, n_of: int = 2) -> str:
    return f"{{signals: [sessions_today, dashboards_that_day], n_of: {n_of}, within: {within}}}"


@pytest.mark.parametrize(("within", "held"), [("30d", True), ("7d", False)])
def test_given_a_member_that_held_10_days_ago_when_a_composite_is_evaluated_then_only_a_long_within_counts_it(
    within, held
):
    events = [counted("app.session", TODAY), counted("dashboard.created", ago(10))]

    condition = observe(composite(within), events, others=COMPOSITE_MEMBERS)

    assert condition.held is held
    assert condition.observed == (2 if held else 1)
    assert condition.detail == f"{2 if held else 1} of 2 signals held within {within}"


@pytest.mark.parametrize(("days_back", "held"), [(6, True), (7, False)])
def test_given_a_member_held_at_the_edge_of_within_7d_when_evaluated_then_within_includes_its_first_day(
    days_back, held
):
    events = [counted("app.session", TODAY), counted("dashboard.created", ago(days_back))]

    assert observe(composite("7d"), events, others=COMPOSITE_MEMBERS).held is held


def test_given_a_composite_when_evaluated_then_each_member_shows_the_latest_day_it_held():
    events = [
        counted("app.session", TODAY),
        counted("dashboard.created", ago(10)),
        counted("dashboard.created", ago(12)),
    ]

    condition = observe(composite("30d"), events, others=COMPOSITE_MEMBERS)

    sessions, dashboards = condition.members
    assert (sessions.signal, sessions.held, sessions.window_to) == ("sessions_today", True, TODAY)
    assert (dashboards.signal, dashboards.held, dashboards.window_to) == (
        "dashboards_that_day",
        True,
        ago(10),
    )
    assert [member["signal"] for member in condition.as_evidence()["members"]] == [
        "sessions_today",
        "dashboards_that_day",
    ]


def test_given_no_member_held_when_a_1_of_composite_is_evaluated_then_it_does_not_hold():
    condition = observe(composite("30d", n_of=1), [], others=COMPOSITE_MEMBERS)

    assert not condition.held
    assert [member.held for member in condition.members] == [False, False]
    assert [member.window_to for member in condition.members] == [TODAY, TODAY]


# ── calibration and segments ───────────────────────────────────────────────────────────────────

CALIBRATED = (
    "{measure: sum, metric: app.session, window: 7d, "
    "at_least: {default: 10, segments: {smb: 5, enterprise: 25}}}"
)


@pytest.mark.parametrize(
    ("account_profile", "threshold", "held"),
    [
        (profile(segment="smb"), 5, True),
        (profile(segment="enterprise"), 25, False),
        (profile(segment="mid-market"), 10, False),
        (profile(), 10, False),
        (None, 10, False),
    ],
    ids=["smb", "enterprise", "unlisted segment", "no segment", "no profile"],
)
def test_given_a_threshold_by_segment_when_evaluated_then_the_account_segment_picks_it_else_the_default(
    account_profile, threshold, held
):
    condition = observe(CALIBRATED, sessions_on(1, value=5), account_profile=account_profile)

    assert condition.threshold == threshold
    assert condition.held is held


@pytest.mark.parametrize(
    ("account_profile", "reason"),
    [
        (profile(segment="enterprise"), "fired"),
        (profile(segment="smb"), "other segment"),
        (profile(), "other segment"),
        (None, "other segment"),
    ],
    ids=["listed segment", "other segment", "no segment", "no profile"],
)
def test_given_a_trigger_for_some_segments_when_evaluated_then_other_accounts_are_not_evaluated(
    account_profile, reason
):
    rules = ruleset(SESSIONS_7D, segments="[enterprise, mid-market]")

    outcome = watch(evaluate(rules, sessions_on(0), account_profile=account_profile))

    assert outcome.reason == reason
    if reason == "other segment":
        assert (outcome.held, outcome.fired, outcome.condition) == (False, False, None)


# ── exclusions ─────────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "flag", ["do_not_contact", "open_expansion_opportunity", "renewal_in_negotiation", "churn_risk"]
)
def test_given_a_flag_set_on_the_account_when_the_signal_holds_then_the_trigger_is_excluded(flag):
    rules = ruleset(SESSIONS_7D, unless=f"[{flag}]")

    flagged = watch(evaluate(rules, sessions_on(0), account_profile=profile(flags={flag: True})))
    unflagged = watch(evaluate(rules, sessions_on(0), account_profile=profile()))

    assert (flagged.reason, flagged.held, flagged.fired, flagged.firing) == ("excluded", True, False, None)
    assert unflagged.reason == "fired"


@pytest.mark.parametrize(
    ("plan", "reason"),
    [
        ({"name": "Enterprise", "top_tier": True}, "excluded"),
        ({"name": "Growth", "top_tier": False}, "fired"),
        (None, "fired"),
    ],
    ids=["top tier", "lower tier", "no plan"],
)
def test_given_the_top_tier_exclusion_when_evaluated_then_only_a_top_tier_plan_excludes(plan, reason):
    outcome = watch(
        evaluate(
            ruleset(SESSIONS_7D, unless="[top_tier]"), sessions_on(0), account_profile=profile(plan=plan)
        )
    )

    assert outcome.reason == reason


@pytest.mark.parametrize(
    ("days_ahead", "reason"),
    [(0, "excluded"), (30, "excluded"), (31, "fired"), (-1, "fired"), (None, "fired")],
    ids=["today", "last day", "one day further", "yesterday", "no renewal date"],
)
def test_given_renewal_within_30d_when_evaluated_then_a_renewal_0_to_30_days_ahead_excludes(
    days_ahead, reason
):
    renewal = None if days_ahead is None else (TODAY + timedelta(days=days_ahead)).isoformat()

    outcome = watch(
        evaluate(
            ruleset(SESSIONS_7D, unless="[{renewal_within: 30d}]"),
            sessions_on(0),
            account_profile=profile(renewal_date=renewal),
        )
    )

    assert outcome.reason == reason


@pytest.mark.parametrize(
    ("contacted", "reason"),
    [(timedelta(days=13, hours=23), "excluded"), (timedelta(days=14), "fired"), (None, "fired")],
    ids=["13 days 23 hours ago", "14 days ago", "never"],
)
def test_given_contacted_within_14d_when_evaluated_then_a_play_sent_in_the_14_days_before_excludes(
    contacted, reason
):
    state = AccountState(last_contacted_at=None if contacted is None else AT - contacted)

    outcome = watch(
        evaluate(ruleset(SESSIONS_7D, unless="[{contacted_within: 14d}]"), sessions_on(0), state=state)
    )

    assert outcome.reason == reason


# unless: {signal: name}: excluded while any signal of the ruleset holds

USAGE_DECLINE = (
    "{measure: sum, metric: app.session, window: 14d, growth: {over: previous_window}, at_most: -0.3}"
)


@pytest.mark.parametrize(
    ("events", "reason"),
    [
        # 10 sessions in the 14 days before the window, 5 in it: -50 %, the decline holds
        ([counted("app.session", ago(20), 10), counted("app.session", ago(0), 5)], "excluded"),
        # 10 then 9: -10 %, no decline
        ([counted("app.session", ago(20), 10), counted("app.session", ago(0), 9)], "fired"),
        # nothing before: a zero baseline, the decline does not hold (growth undefined)
        ([counted("app.session", ago(0), 5)], "fired"),
    ],
    ids=["declining", "steady", "no baseline"],
)
def test_given_an_exclusion_by_a_signal_when_that_signal_holds_then_the_trigger_is_excluded(events, reason):
    # Given a trigger on any session this week, excluded while usage declines
    rules = ruleset(SESSIONS_7D, others={"usage_decline": USAGE_DECLINE}, unless="[{signal: usage_decline}]")

    # When evaluated
    outcome = watch(evaluate(rules, events))

    # Then excluded exactly while the decline holds on the evaluation day
    assert outcome.held
    assert outcome.reason == reason


def test_given_an_exclusion_by_a_signal_when_the_trigger_fires_then_the_evidence_shows_what_was_seen():
    rules = ruleset(SESSIONS_7D, others={"usage_decline": USAGE_DECLINE}, unless="[{signal: usage_decline}]")

    firing = watch(evaluate(rules, [counted("app.session", ago(20), 10), counted("app.session", ago(0), 9)]))

    assert firing.firing is not None
    (check,) = firing.firing.as_evidence()["exclusions_checked"]
    assert check == {
        "exclusion": "signal usage_decline",
        "applies": False,
        "detail": "not held: growth of sum of app.session over 14d vs the previous window = -0.1",
    }


def test_given_an_exclusion_by_a_composite_when_a_member_held_within_its_window_then_it_excludes():
    others = {
        "usage_decline": USAGE_DECLINE,
        "tickets": "{measure: sum, metric: dashboard.created, window: 1d, at_least: 1}",
        "at_risk": "{signals: [usage_decline, tickets], n_of: 1, within: 10d}",
    }
    rules = ruleset(SESSIONS_7D, others=others, unless="[{signal: at_risk}]")

    # A dashboard created 9 days ago: `tickets` held within the composite's 10 days
    excluded = watch(evaluate(rules, [*sessions_on(0), counted("dashboard.created", ago(9))]))
    fired = watch(evaluate(rules, [*sessions_on(0), counted("dashboard.created", ago(10))]))

    assert (excluded.reason, fired.reason) == ("excluded", "fired")


def test_given_an_exclusion_by_a_longer_signal_when_planned_then_the_read_plan_covers_it():
    others = {"usage_decline": USAGE_DECLINE}
    without = ruleset(SESSIONS_7D, others=others)
    with_exclusion = ruleset(SESSIONS_7D, others=others, unless="[{signal: usage_decline}]")

    # The decline reads two 14-day windows: 28 days, read in the same one Query as the 7 before
    assert (read_plan(without).lookback_days, read_plan(with_exclusion).lookback_days) == (7, 28)


# requires: conditions on the profile that must all hold (the same kinds as unless)


@pytest.mark.parametrize(
    ("days_ahead", "reason"),
    [(0, "fired"), (90, "fired"), (91, "excluded"), (-1, "excluded"), (None, "excluded")],
    ids=["today", "last day", "one day further", "passed", "no renewal date"],
)
def test_given_requires_renewal_within_90d_when_evaluated_then_only_a_renewal_0_to_90_days_ahead_fires(
    days_ahead, reason
):
    # Given expansion before renewal: a trigger that requires the renewal to be near
    renewal = None if days_ahead is None else (TODAY + timedelta(days=days_ahead)).isoformat()
    rules = ruleset(SESSIONS_7D, unless="[]\n    requires: [{renewal_within: 90d}]")

    # When its signal holds
    outcome = watch(evaluate(rules, sessions_on(0), account_profile=profile(renewal_date=renewal)))

    # Then it fires only with the renewal 0 to 90 days ahead; otherwise it is held but excluded
    assert outcome.held
    assert outcome.reason == reason


def test_given_a_requirement_when_the_trigger_fires_then_the_evidence_lists_it_as_checked():
    rules = ruleset(SESSIONS_7D, unless="[do_not_contact]\n    requires: [{renewal_within: 90d}]")
    renewal = TODAY + timedelta(days=45)

    renewing = profile(renewal_date=renewal.isoformat())

    outcome = watch(evaluate(rules, sessions_on(0), account_profile=renewing))

    assert outcome.firing is not None
    assert outcome.firing.as_evidence()["exclusions_checked"] == [
        {"exclusion": "do_not_contact", "applies": False, "detail": "flag not set"},
        {
            "exclusion": "requires renewal_within 90d",
            "applies": False,
            "detail": f"renewal on {renewal} (45 days)",
        },
    ]


@pytest.mark.parametrize(
    ("created_days_ago", "reason"),
    [(0, "fired"), (30, "fired"), (31, "excluded"), (-1, "excluded"), (None, "excluded")],
    ids=["created today", "30 days", "31 days", "created tomorrow", "no created_at"],
)
def test_given_requires_account_age_at_most_30d_when_evaluated_then_only_new_accounts_fire(
    created_days_ago, reason
):
    # Given a first-30-days trigger
    created = None if created_days_ago is None else ago(created_days_ago).isoformat()
    rules = ruleset(SESSIONS_7D, unless="[]\n    requires: [{account_age: {at_most: 30d}}]")

    # When evaluated
    outcome = watch(evaluate(rules, sessions_on(0), account_profile=profile(created_at=created)))

    # Then only an account at most 30 days old (known, and already a customer) gets the play
    assert outcome.reason == reason


@pytest.mark.parametrize(
    ("created_days_ago", "reason", "detail"),
    [
        (10, "excluded", "created on {created} (10 days)"),
        (91, "fired", "created on {created} (91 days)"),
        (None, "fired", "no created_at on file"),
    ],
)
def test_given_an_account_age_exclusion_when_evaluated_then_an_unknown_age_does_not_exclude(
    created_days_ago, reason, detail
):
    created = None if created_days_ago is None else ago(created_days_ago)
    rules = ruleset(SESSIONS_7D, unless="[{account_age: {at_least: 1d, at_most: 90d}}]")

    outcome = watch(
        evaluate(rules, sessions_on(0), account_profile=profile(created_at=created and created.isoformat()))
    )

    assert outcome.reason == reason
    if outcome.firing:
        (check,) = outcome.firing.exclusions
        assert check.exclusion == "account_age at_least 1d at_most 90d"
        assert check.detail == detail.format(created=created)


def test_given_a_signal_requirement_when_it_does_not_hold_then_the_trigger_waits_and_stays_armed():
    # Given seats saturation that counts only while sessions are active this week
    others = {"active": SESSIONS_7D}
    rules = ruleset(
        "{measure: latest, metric: seats.active, window: 7d, at_least: 10}",
        others=others,
        unless="[]\n    requires: [{signal: active}]",
    )

    waiting = watch(evaluate(rules, [reading(12)]))
    firing = watch(evaluate(rules, [reading(12), *sessions_on(3)]))

    assert (waiting.reason, firing.reason) == ("excluded", "fired")


# firmographic calibration: thresholds by segment, then industry, then headcount

FIRMOGRAPHIC = (
    "{measure: sum, metric: app.session, window: 7d, at_least: {default: 10, segments: {enterprise: 25}, "
    "industries: {fintech: 5}, employees: [{at_least: 0, value: 8}, {at_least: 1000, value: 20}]}}"
)


@pytest.mark.parametrize(
    ("account_profile", "threshold"),
    [
        (profile(segment="enterprise", industry="fintech", employees=5000), 25),  # segment first
        (profile(segment="smb", industry="fintech", employees=5000), 5),  # then industry
        (profile(segment="smb", industry="retail", employees=1000), 20),  # then the band: its first value
        (profile(segment="smb", industry="retail", employees=999), 8),
        (profile(industry="retail"), 10),  # no headcount: the default
        (None, 10),
    ],
    ids=["segment", "industry", "band edge", "lower band", "no headcount", "no profile"],
)
def test_given_a_firmographic_threshold_when_evaluated_then_the_account_gets_its_calibrated_value(
    account_profile, threshold
):
    # Given 8 sessions this week
    condition = observe(FIRMOGRAPHIC, sessions_on(1, value=8), account_profile=account_profile)

    # Then the threshold that applied is the account's, and held follows it
    assert condition.threshold == threshold
    assert condition.held is (threshold <= 8)


def test_given_a_history_kept_in_memory_when_the_industry_changes_then_the_new_threshold_applies():
    rules = ruleset(FIRMOGRAPHIC)
    memory = history(sessions_on(1, value=8))
    retail, fintech = profile(industry="retail"), profile(industry="fintech")

    before = evaluate_account(rules, memory, ACCOUNT, retail, AccountState(), AT, explain=False)
    after = evaluate_account(rules, memory, ACCOUNT, fintech, AccountState(), AT, explain=False)

    assert (watch(before).held, watch(after).held) == (False, True)


TWO_CAUTIOUS_TRIGGERS = f"""
version: test-1
metrics: {METRICS}
signals:
  sessions: {SESSIONS_7D}
  dashboards: {{measure: sum, metric: dashboard.created, window: 7d, at_least: 1}}
triggers:
  first:
    {{category: adoption, owner_role: csm, play: check-in, when: sessions, cooldown: 30d,
      unless: [{{contacted_within: 14d}}]}}
  second:
    {{category: value, owner_role: ae, play: value-review, when: dashboards, cooldown: 30d,
      unless: [{{contacted_within: 14d}}]}}
plays: {{check-in: {{}}, value-review: {{}}}}
"""


def test_given_two_triggers_holding_together_when_evaluated_then_both_fire():
    rules = parse_ruleset(TWO_CAUTIOUS_TRIGGERS, "test.yaml")

    evaluation = evaluate(rules, [counted("app.session"), counted("dashboard.created")])

    assert [outcome.reason for outcome in evaluation.outcomes] == ["fired", "fired"]
    assert evaluation.state.last_contacted_at == AT


def test_given_a_play_fired_yesterday_when_another_trigger_holds_today_then_contacted_within_excludes_it():
    rules = parse_ruleset(TWO_CAUTIOUS_TRIGGERS, "test.yaml")
    yesterday = evaluate(rules, [counted("app.session", ago(1))], at=AT - timedelta(days=1))

    today = evaluate(
        rules, [counted("app.session", ago(1)), counted("dashboard.created")], state=yesterday.state
    )

    assert [outcome.reason for outcome in yesterday.outcomes] == ["fired", "not held"]
    assert [outcome.reason for outcome in today.outcomes] == ["excluded", "excluded"]
    assert today.state.last_contacted_at == AT - timedelta(days=1)


def test_given_every_exclusion_when_none_applies_then_the_firing_lists_each_one_checked():
    rules = ruleset(
        SESSIONS_7D,
        unless="[do_not_contact, open_expansion_opportunity, renewal_in_negotiation, churn_risk, top_tier, "
        "{renewal_within: 30d}, {contacted_within: 14d}]",
    )

    outcome = watch(
        evaluate(
            rules,
            sessions_on(0),
            account_profile=profile(renewal_date=(TODAY + timedelta(days=90)).isoformat()),
        )
    )

    assert outcome.firing is not None
    checked = outcome.firing.as_evidence()["exclusions_checked"]
    assert [(check["exclusion"], check["applies"]) for check in checked] == [
        ("do_not_contact", False),
        ("open_expansion_opportunity", False),
        ("renewal_in_negotiation", False),
        ("churn_risk", False),
        ("top_tier", False),
        ("renewal_within 30d", False),
        ("contacted_within 14d", False),
    ]
    assert [check["detail"] for check in checked[-2:]] == [
        "renewal on 2027-02-21 (90 days)",
        "no play sent yet",
    ]


def test_given_an_excluded_trigger_when_the_exclusion_is_lifted_then_it_fires_as_it_was_never_disarmed():
    rules = ruleset(SESSIONS_7D, unless="[churn_risk]")
    excluded = evaluate(
        rules, sessions_on(1), account_profile=profile(flags={"churn_risk": True}), at=AT - timedelta(days=1)
    )

    lifted = evaluate(rules, sessions_on(1), account_profile=profile(), state=excluded.state)

    assert watch(excluded).reason == "excluded"
    assert excluded.state == AccountState()
    assert watch(lifted).reason == "fired"


# ── firing, cooldown, re-arming ────────────────────────────────────────────────────────────────


def on_day(offset: int) -> datetime:
    return AT + timedelta(days=offset)


def test_given_a_signal_that_clears_and_returns_when_evaluated_daily_then_it_fires_again_after_the_cooldown():
    rules = ruleset(SESSION_TODAY, cooldown="30d")
    active_days = {0, 1, 3, 31}
    events = [counted("app.session", on_day(offset).date()) for offset in active_days]
    reasons = []
    state = AccountState()
    for offset in (0, 1, 2, 3, 31):
        evaluation = evaluate(rules, events, state=state, at=on_day(offset))
        reasons.append(watch(evaluation).reason)
        state = evaluation.state

    assert reasons == ["fired", "not re-armed", "not held", "cooling down", "fired"]
    assert state.triggers["watch"] == TriggerState(last_fired_at=on_day(31), armed=False)


def test_given_a_signal_that_never_clears_when_the_cooldown_has_passed_then_it_still_does_not_fire_again():
    rules = ruleset(SESSION_TODAY, cooldown="30d")
    events = [counted("app.session", on_day(0).date()), counted("app.session", on_day(40).date())]
    first = evaluate(rules, events)

    later = evaluate(rules, events, state=first.state, at=on_day(40))

    assert watch(later).reason == "not re-armed"
    assert later.state == first.state


@pytest.mark.parametrize(
    ("since_firing", "reason"),
    [(timedelta(days=30) - timedelta(minutes=1), "cooling down"), (timedelta(days=30), "fired")],
    ids=["a minute short", "exactly the cooldown"],
)
def test_given_a_re_armed_trigger_when_the_cooldown_is_reached_then_it_fires(since_firing, reason):
    fired_at = AT - since_firing
    state = AccountState(triggers={"watch": TriggerState(last_fired_at=fired_at, armed=True)})

    outcome = watch(evaluate(ruleset(SESSION_TODAY, cooldown="30d"), sessions_on(0), state=state))

    assert outcome.reason == reason


def test_given_a_disarmed_trigger_when_its_signal_does_not_hold_then_the_new_state_re_arms_it():
    fired_at = AT - timedelta(days=3)
    state = AccountState(triggers={"watch": TriggerState(last_fired_at=fired_at, armed=False)})

    evaluation = evaluate(ruleset(SESSION_TODAY), [], state=state)

    assert watch(evaluation).reason == "not held"
    assert evaluation.state.triggers["watch"] == TriggerState(last_fired_at=fired_at, armed=True)
    assert state.triggers["watch"].armed is False  # the input is a value: untouched


def test_given_the_same_inputs_when_evaluated_twice_then_the_evaluations_are_identical():
    rules = ruleset(SESSIONS_7D)
    aggregates = history(sessions_on(0, 3))
    state = AccountState()

    first = evaluate_account(rules, aggregates, ACCOUNT, profile(), state, AT)
    second = evaluate_account(rules, aggregates, ACCOUNT, profile(), state, AT)

    assert first == second
    assert watch(first).reason == "fired"
    assert state == AccountState()


def test_given_the_state_a_firing_left_when_evaluated_again_at_the_same_moment_then_it_does_not_fire_twice():
    rules = ruleset(SESSIONS_7D)
    events = sessions_on(0)
    fired = evaluate(rules, events)

    again = evaluate(rules, events, state=fired.state)

    assert watch(fired).reason == "fired"
    assert watch(again).reason == "not re-armed"
    assert again.firings == []
    assert again.state == fired.state


# ── scores ─────────────────────────────────────────────────────────────────────────────────────

SCORED_SIGNALS = {
    "dashboards": "{measure: sum, metric: dashboard.created, window: 7d, at_least: 1}",
    "seats": "{measure: latest, metric: seats.active, window: 7d, at_least: 10}",
}


def firing_of(evaluation: Evaluation) -> Any:
    firing = watch(evaluation).firing
    assert firing is not None
    return firing


def test_given_explicit_weights_when_fired_then_the_score_is_the_base_plus_the_weights_that_held():
    rules = parse_scored(base=10)

    firing = firing_of(evaluate(rules, [counted("app.session"), counted("dashboard.created", ago(3))]))

    assert firing.score == 65
    assert firing.as_evidence()["score"] == {
        "total": 65,
        "base": 10,
        "parts": [
            {"signal": "watched", "weight": 30, "held": True},
            {"signal": "dashboards", "weight": 25, "held": True},
            {"signal": "seats", "weight": 50, "held": False},
        ],
    }


def test_given_weights_above_100_when_all_held_then_the_score_is_capped_at_100():
    rules = parse_scored(base=60)

    firing = firing_of(
        evaluate(rules, [counted("app.session"), counted("dashboard.created"), reading(12, ago(1))])
    )

    assert firing.score == 100
    assert firing.score_base == 60


def parse_scored(base: int, dashboards_window: str = "7d") -> Ruleset:
    others = {**SCORED_SIGNALS, "dashboards": SCORED_SIGNALS["dashboards"].replace("7d", dashboards_window)}
    return ruleset(
        SESSIONS_7D,
        others=others,
        score=f"{{base: {base}, weights: {{watched: 30, dashboards: 25, seats: 50}}}}",
    )


def test_given_a_weighted_signal_with_a_longer_window_than_the_trigger_when_fired_then_its_weight_counts():
    rules = parse_scored(base=10, dashboards_window="30d")
    events = [counted("app.session"), counted("dashboard.created", ago(20))]

    firing = firing_of(evaluate(rules, events))
    everything = firing_of(evaluate(rules, events, plan=ReadPlan(lookback_days=400)))

    assert everything.score == 65  # with all the counters, `dashboards` held
    assert firing.score == 65


def test_given_no_score_when_a_metric_signal_fires_then_the_signal_weighs_100():
    firing = firing_of(evaluate(ruleset(SESSIONS_7D), sessions_on(0)))

    assert (firing.score, firing.score_base, firing.score_parts) == (100, 0, (("watched", 100, True),))


def test_given_no_score_when_a_1_of_2_composite_fires_then_each_member_weighs_50_and_held_within_counts():
    events = [counted("dashboard.created", ago(10))]

    firing = firing_of(evaluate(ruleset(composite("30d", n_of=1), others=COMPOSITE_MEMBERS), events))

    assert firing.score == 50
    assert firing.score_parts == (("sessions_today", 50, False), ("dashboards_that_day", 50, True))


THREE_MEMBERS = {
    **COMPOSITE_MEMBERS,
    "seats_today": "{measure: latest, metric: seats.active, window: 1d, at_least: 1}",
}


def test_given_no_score_when_every_member_of_a_3_member_composite_held_then_the_score_is_100():
    rules = ruleset(
        "{signals: [sessions_today, dashboards_that_day, seats_today], n_of: 3, within: 7d}",
        others=THREE_MEMBERS,
    )
    events = [counted("app.session"), counted("dashboard.created"), reading(5)]

    firing = firing_of(evaluate(rules, events))

    assert [held for _, _, held in firing.score_parts] == [True, True, True]
    assert firing.score == 100


# ── evidence ───────────────────────────────────────────────────────────────────────────────────

PAYWALL = """
version: "2026-11-23.1"
metrics: {paywall.hit: count}
signals:
  paywall_attempts: {measure: active_days, metric: paywall.hit, window: 14d, at_least: 3}
triggers:
  paywall-intent:
    category: intent
    owner_role: ae
    play: enterprise-trial
    when: paywall_attempts
    unless: [do_not_contact, top_tier]
    cooldown: 30d
plays:
  enterprise-trial: {}
"""


def test_given_a_firing_when_rendered_as_evidence_then_it_is_the_documented_json():
    rules = parse_ruleset(PAYWALL, "test.yaml")
    aggregates = history(
        counted("paywall.hit", ago(days), account="acme", dimensions={"feature": "sso"})
        for days in (0, 0, 5, 13)
    )

    evaluation = evaluate_account(rules, aggregates, "acme", profile(segment="smb"), AccountState(), AT)

    (firing,) = evaluation.firings
    evidence = firing.as_evidence()
    assert json.loads(json.dumps(evidence)) == evidence
    assert evidence == {
        "ruleset_version": "2026-11-23.1",
        "trigger": "paywall-intent",
        "account_id": "acme",
        "evaluated_at": "2026-11-23T12:00:00Z",
        "category": "intent",
        "owner_role": "ae",
        "play": "enterprise-trial",
        "score": {
            "total": 100.0,
            "base": 0.0,
            "parts": [{"signal": "paywall_attempts", "weight": 100.0, "held": True}],
        },
        "condition": {
            "signal": "paywall_attempts",
            "held": True,
            "observed": 3.0,
            "comparison": "at_least",
            "threshold": 3.0,
            "window": {"from": "2026-11-10", "to": "2026-11-23"},
            "detail": "active days of paywall.hit over 14d = 3",
        },
        "exclusions_checked": [
            {"exclusion": "do_not_contact", "applies": False, "detail": "flag not set"},
            {"exclusion": "top_tier", "applies": False, "detail": "not on the top tier"},
        ],
        "arm": "treated",
    }


def test_given_a_composite_firing_when_rendered_as_evidence_then_members_are_json_with_their_windows():
    events = [counted("app.session"), counted("dashboard.created", ago(10))]

    firing = firing_of(evaluate(ruleset(composite("30d"), others=COMPOSITE_MEMBERS), events))

    condition = json.loads(json.dumps(firing.as_evidence()))["condition"]
    assert condition["window"] == {"from": ago(29).isoformat(), "to": TODAY.isoformat()}
    assert [(m["signal"], m["held"], m["window"]) for m in condition["members"]] == [
        ("sessions_today", True, {"from": TODAY.isoformat(), "to": TODAY.isoformat()}),
        ("dashboards_that_day", True, {"from": ago(10).isoformat(), "to": ago(10).isoformat()}),
    ]


# ── the read plan ──────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("signal", "lookback"),
    [
        (SESSIONS_7D, 7),
        (
            "{measure: low, metric: seats.active, window: 13w, sustained: 2, at_least: 0.8}",
            182,
        ),
        (
            "{measure: sum, metric: app.session, window: 13w, growth: {over: previous_window}, at_least: 1}",
            182,
        ),
        (SEATS_ABOVE_AVERAGE, 17),
        ("{measure: sum, metric: app.session, window: 30d, rising: 3}", 120),
        ("{signals: [sessions_today, dashboards_that_day], n_of: 1, within: 30d}", 30),
    ],
    ids=["window", "sustained", "growth over previous", "growth over average", "rising", "composite"],
)
def test_given_a_trigger_signal_when_the_read_plan_is_made_then_it_covers_its_lookback(signal, lookback):
    assert read_plan(ruleset(signal, others=COMPOSITE_MEMBERS)).lookback_days == lookback


def test_given_a_composite_of_long_members_when_planned_then_within_minus_one_is_added_to_the_longest():
    others = {
        "monthly": "{measure: sum, metric: app.session, window: 30d, at_least: 1}",
        "fortnightly": SESSIONS_7D,
    }
    rules = ruleset("{signals: [monthly, fortnightly], n_of: 2, within: 30d}", others=others)

    assert read_plan(rules).lookback_days == 59


def test_given_the_reference_ruleset_when_planned_then_the_longest_trigger_lookback_is_two_quarters():
    assert read_plan(load_ruleset(REPO / "rules" / "reference.yaml")).lookback_days == 182


def test_given_a_read_plan_when_evaluated_then_only_its_days_are_read():
    class RecordingAggregates(InMemoryAggregates):
        def __init__(self) -> None:
            super().__init__()
            self.asked: list[tuple[date, date]] = []

        def history(self, account_id: str, first_day: date, last_day: date) -> Any:
            self.asked.append((first_day, last_day))
            return super().history(account_id, first_day, last_day)

    aggregates = RecordingAggregates()

    evaluate_account(ruleset(SUSTAINED_SESSIONS), aggregates, ACCOUNT, None, AccountState(), AT)

    assert aggregates.asked == [(ago(13), TODAY)]


# ── the reference ruleset ──────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "account_profile",
    [
        None,
        profile(
            segment="mid-market",
            plan={"name": "Growth", "limits": {"seats": 50, "api.calls": 100000}},
            renewal_date="2027-06-30",
        ),
    ],
    ids=["no profile", "full profile"],
)
def test_given_the_reference_ruleset_and_no_history_when_evaluated_then_nothing_fires(account_profile):
    rules = load_ruleset(REPO / "rules" / "reference.yaml")

    evaluation = evaluate(rules, account_profile=account_profile)

    assert evaluation.firings == []
    assert {outcome.trigger for outcome in evaluation.outcomes} == set(rules.triggers)
    assert {outcome.reason for outcome in evaluation.outcomes} <= {"not held", "other segment"}
    assert evaluation.state == AccountState()


def test_given_a_trigger_with_a_holdout_then_each_firing_carries_the_accounts_stable_arm():
    # Given the trigger holds out half of the accounts
    plain = ruleset("{measure: count, metric: app.session, window: 7d, at_least: 1}")
    trigger = plain.triggers["watch"].model_copy(update={"holdout": "50%"})
    rules = plain.model_copy(update={"triggers": {"watch": trigger}})

    # When ten accounts fire, twice (evaluated from scratch, as on another deploy)
    def arms() -> dict[str, tuple[str, dict[str, Any]]]:
        found = {}
        for number in range(10):
            account = f"acct-{number}"
            aggregates = history([counted(account=account)])
            evaluation = evaluate_account(rules, aggregates, account, None, AccountState(), AT)
            (firing,) = evaluation.firings
            evidence = firing.as_evidence()
            found[account] = (evidence["arm"], evidence["experiment"])
        return found

    first, again = arms(), arms()

    # Then every firing names its arm and the draw that decided it, the same both times
    assert first == again
    for account, (arm, experiment) in first.items():
        assert experiment["salt"] == "watch"
        assert experiment["holdout_percent"] == 50
        assert arm == ("holdout" if held_out("watch", account, 50) else "treated")
    assert {arm for arm, _ in first.values()} == {"holdout", "treated"}
