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


def history(events: Iterable[CountedEvent]) -> InMemoryAggregates:
    aggregates = InMemoryAggregates()
    aggregates.apply(events)
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
        rules, history(events), ACCOUNT, account_profile, state or AccountState(), at, plan
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
