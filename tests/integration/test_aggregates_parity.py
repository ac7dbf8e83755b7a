"""Online and backtest see the same counters: DynamoDB buckets (via the aggregator) = in-memory buckets.

Data coverage too: online the account's first day comes from the counters' `first_seen` marker (kept
by the aggregator, whatever order the days arrive in), in memory from the earliest day folded; every
signal that requires a full window (sustained, low, growth by default; one opted in, one out) must
answer alike on both.

For random histories (a few accounts, counts and gauges with dimensions over ~120 days, arriving
out of event-time order in random batches), the same events are folded (i) in memory and (ii) into
the moto counters table by the real aggregator; the engine must then evaluate every account the
same way over both, step after step, firings and evidence included.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.accounts.models import AccountProfile
from shared.accounts.store import AccountStore
from shared.counters.aggregate import aggregate
from shared.counters.bucket import CountedEvent, padded_sequence
from shared.counters.store import CounterStore
from shared.rules.aggregates import Aggregates, InMemoryAggregates
from shared.rules.dynamo_aggregates import DynamoAggregates
from shared.rules.engine import AccountState, Evaluation, ReadPlan, evaluate_account
from shared.rules.language import Ruleset
from shared.rules.loading import load_ruleset, parse_ruleset
from shared.rules.slicing import ruleset_slicing
from tests.conftest import TEST_RETENTION_DAYS, Aws
from tests.integration.builders import TEST_WRITER

REPO = Path(__file__).resolve().parents[2]
REFERENCE = load_ruleset(REPO / "rules" / "reference.yaml")

# Every measure and modifier, with thresholds low enough that random histories make them fire.
_EVERY_MEASURE_SIGNALS = {
    "sessions_sum": "{measure: sum, metric: app.session, window: 14d, at_least: 20}",
    "sessions_count": "{measure: count, metric: app.session, window: 14d, at_least: 3}",
    "session_days": "{measure: active_days, metric: app.session, window: 30d, more_than: 3}",
    "session_users": "{measure: distinct, metric: app.session, dimension: user, window: 30d, at_least: 3}",
    "analytics_share": "{measure: share, of: {metric: feature.analytics.used, dimension: user}, "
    "among: {metric: app.session, dimension: user}, window: 30d, at_least: 0.3}",
    "seats_latest": "{measure: latest, metric: seats.active, window: 14d, per_limit: seats, at_least: 0.5}",
    "seats_peak": "{measure: peak, metric: seats.active, window: 30d, at_least: 40}",
    "seats_low": "{measure: low, metric: seats.active, window: 30d, at_most: 10}",
    "seats_under": "{measure: latest, metric: seats.active, window: 30d, "
    "less_than: {default: 20, segments: {smb: 10}}}",
    "sessions_firmographic": "{measure: sum, metric: app.session, window: 14d, at_least: {default: 30, "
    "segments: {smb: 15}, industries: {fintech: 10}, employees: [{at_least: 0, value: 40}, "
    "{at_least: 200, value: 20}]}}",
    "seats_growth": "{measure: peak, metric: seats.active, window: 7d, "
    "growth: {over: average, baseline_window: 30d}, at_least: 0.1}",
    "api_growth": "{measure: sum, metric: api.calls, window: 14d, growth: {over: previous_window}, "
    "more_than: 0}",
    "api_sustained": "{measure: sum, metric: api.calls, window: 14d, per_limit: api.calls, sustained: 2, "
    "at_least: 0.2}",
    "paywall_rising": "{measure: count, metric: paywall.hit, window: 10d, rising: 2}",
    "teams_growing": "{measure: sum, metric: feature.analytics.used, window: 14d, "
    "growth: {over: previous_window}, at_least: 0.25, group_by: team, groups_at_least: 2}",
    "sso_intent": "{measure: count, metric: paywall.hit, where: {feature: sso}, window: 14d, at_least: 2}",
    "seats_of_two_teams": "{measure: latest, metric: seats.active, where: {team: [t-1, t-2]}, window: 14d, "
    "at_least: 20}",
    "seats_trending": "{measure: latest, metric: seats.active, window: 30d, per_limit: seats, "
    "forecast: {reaches: 1.0, within: 30d}}",
    "api_trending": "{measure: sum, metric: api.calls, window: 14d, per_limit: api.calls, "
    "forecast: {reaches: 1.0, within: 14d}}",
    "new_teams": "{measure: new_distinct, metric: feature.analytics.used, dimension: team, window: 14d, "
    "not_seen_in: 30d, at_least: 2}",
    "paywall_per_call": "{measure: ratio, ratio: {numerator: {measure: sum, metric: paywall.hit}, "
    "denominator: {measure: sum, metric: api.calls}}, window: 14d, at_least: 0.3}",
    "seats_per_user": "{measure: ratio, ratio: {numerator: {measure: latest, metric: seats.active}, "
    "denominator: {measure: distinct, metric: app.session, dimension: user}}, window: 14d, at_least: 4}",
    "api_from_zero": "{measure: sum, metric: api.calls, window: 7d, growth: {over: previous_window, "
    "from_zero: fire}, at_least: 0.5}",
    # Data coverage (docs/rules.md): opted in on a plain sum, opted out of on a sustained signal.
    "sessions_covered": "{measure: sum, metric: app.session, window: 30d, at_least: 5, "
    "requires_full_window: true}",
    "api_sustained_partial": "{measure: sum, metric: api.calls, window: 14d, sustained: 3, at_least: 10, "
    "requires_full_window: false}",
    "busy": "{signals: [sessions_sum, session_users, seats_growth, api_growth, paywall_rising], "
    "n_of: 2, within: 14d}",
}
_EXCLUSIONS = [
    "[]",
    "[do_not_contact, churn_risk]",
    "[top_tier, {contacted_within: 7d}]",
    "[open_expansion_opportunity, {renewal_within: 30d}]",
    "[{signal: seats_low}]",
]
EVERY_MEASURE = parse_ruleset(
    "version: parity-1\n"
    "metrics: {app.session: count, feature.analytics.used: count, seats.active: gauge, api.calls: count, "
    "paywall.hit: count}\n"
    "signals:\n"
    + "".join(f"  {name}: {signal}\n" for name, signal in _EVERY_MEASURE_SIGNALS.items())
    + "triggers:\n"
    + "".join(
        f"  {name.replace('_', '-')}: {{category: adoption, owner_role: csm, play: check-in, when: {name}, "
        f"cooldown: {10 + 5 * index}d, unless: {_EXCLUSIONS[index % len(_EXCLUSIONS)]}"
        + (", segments: [smb, enterprise]" if index % 5 == 4 else "")
        + (", requires: [{account_age: {at_least: 30d, at_most: 90d}}]" if index % 3 == 1 else "")
        + (", requires: [{renewal_within: 90d}]" if index % 7 == 5 and index % 3 != 1 else "")
        + (", score: {base: 10, weights: {sessions_sum: 30, seats_growth: 40}}" if name == "busy" else "")
        + "}\n"
        for index, name in enumerate(_EVERY_MEASURE_SIGNALS)
    )
    + "plays: {check-in: {}}\n",
    "parity.yaml",
)
RULESETS = {"reference": REFERENCE, "every-measure": EVERY_MEASURE}
SLICING = ruleset_slicing(*RULESETS.values())

FIRST_DAY = date(2026, 7, 1)
HISTORY_DAYS = 120
METRICS = {**REFERENCE.metrics, **EVERY_MEASURE.metrics}
DIMENSION_VALUES = {
    "team": ["t-1", "t-2", "t-3", "t-4"],
    "user": [f"u-{n}" for n in range(8)],
    "feature": ["sso"],
}
_accounts = itertools.count(1)
_sequences = itertools.count(49_000_000_000_000_000_000)


# ── random histories ───────────────────────────────────────────────────────────────────────────

_dimensions = st.lists(st.sampled_from(sorted(DIMENSION_VALUES)), unique=True, max_size=2).flatmap(
    lambda keys: st.fixed_dictionaries({key: st.sampled_from(DIMENSION_VALUES[key]) for key in keys})
)
_event_specs = st.tuples(
    st.sampled_from(sorted(METRICS)),
    st.integers(min_value=0, max_value=HISTORY_DAYS - 1),  # day
    st.integers(min_value=0, max_value=24 * 3600 - 1),  # second of the day
    st.decimals(min_value=0, max_value=60, places=2, allow_nan=False, allow_infinity=False),
    _dimensions,
)
_profiles = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {
            "name": st.just("Northwind Traders"),
            "segment": st.sampled_from([None, "smb", "mid-market", "enterprise"]),
            "plan": st.one_of(
                st.none(),
                st.fixed_dictionaries(
                    {
                        "name": st.just("Growth"),
                        "top_tier": st.sampled_from([False, False, False, True]),
                        "limits": st.fixed_dictionaries(
                            {},
                            optional={
                                "seats": st.sampled_from([10, 25, 50]),
                                "api.calls": st.sampled_from([50, 100, 1000]),
                            },
                        ),
                    }
                ),
            ),
            "renewal_date": st.one_of(
                st.none(),
                st.integers(min_value=60, max_value=200).map(lambda n: FIRST_DAY + timedelta(days=n)),
            ),
            "flags": st.sampled_from([{}, {}, {}, {"do_not_contact": True}, {"churn_risk": True}]),
            "industry": st.sampled_from([None, "fintech", "retail"]),
            "employees": st.sampled_from([None, 50, 200, 5000]),
            "created_at": st.one_of(
                st.none(),
                st.integers(min_value=-60, max_value=100).map(lambda n: FIRST_DAY + timedelta(days=n)),
            ),
        }
    ).map(AccountProfile.model_validate),
)
_accounts_specs = st.lists(st.tuples(st.lists(_event_specs, max_size=70), _profiles), min_size=1, max_size=3)
# Evaluation moments: a few days, in order, late in the history (so the longest lookbacks see data).
_moments = st.lists(
    st.tuples(st.integers(min_value=50, max_value=HISTORY_DAYS + 5), st.integers(min_value=0, max_value=23)),
    min_size=1,
    max_size=3,
    unique_by=lambda moment: moment[0],
).map(sorted)


def counted(account_id: str, spec: tuple[str, int, int, Decimal, dict[str, str]]) -> CountedEvent:
    """A CountedEvent without its stream position (the sequence is given on arrival)."""
    name, day_offset, second, value, dimensions = spec
    day = FIRST_DAY + timedelta(days=day_offset)
    moment = datetime.combine(day, time(), UTC) + timedelta(seconds=second)
    return CountedEvent(
        sequence="",
        stream_sequence="",
        account_id=account_id,
        event_id=f"evt-{next(_sequences)}",
        name=name,
        kind=METRICS[name],
        value=value,
        occurred_at=moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        day=day.isoformat(),
        dimensions=dimensions,
    )


def arrive(events: list[CountedEvent]) -> list[CountedEvent]:
    """Number the events in arrival order, as the ledger's stream does (increasing per account)."""
    numbered = []
    for event in events:
        raw = str(next(_sequences))
        numbered.append(event._replace(sequence=padded_sequence(raw), stream_sequence=raw))
    return numbered


def evaluations(
    ruleset: Ruleset,
    aggregates: Aggregates,
    account_id: str,
    profile: AccountProfile | None,
    moments: list[datetime],
    plan: ReadPlan | None = None,
    *,
    exhaustive: bool = False,
) -> list[Evaluation]:
    """The account evaluated at each moment in turn, each time with the state the previous one left."""
    state, found = AccountState(), []
    for at in moments:
        evaluation = evaluate_account(
            ruleset, aggregates, account_id, profile, state, at, plan, exhaustive=exhaustive
        )
        found.append(evaluation)
        state = evaluation.state
    return found


def seen(evaluation: Evaluation) -> list[tuple[Any, ...]]:
    """What a CSM (and the ledger) would see of an evaluation."""
    return [
        (
            outcome.trigger,
            outcome.reason,
            outcome.held,
            outcome.condition.observed if outcome.condition else None,
            outcome.firing.as_evidence() if outcome.firing else None,
        )
        for outcome in evaluation.outcomes
    ]


# ── properties ─────────────────────────────────────────────────────────────────────────────────


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(accounts=_accounts_specs, moments=_moments, data=st.data())
def test_property_given_any_history_when_evaluated_over_dynamodb_and_memory_then_the_evaluations_are_equal(
    aws: Aws, accounts, moments, data
):
    # Given: fresh account ids (the moto tables live for the whole test), events in a random arrival
    # order, fed to the aggregator in random batch sizes.
    profiles, events = {}, []
    for specs, profile in accounts:
        account_id = f"acct-parity-{next(_accounts)}"
        profiles[account_id] = profile
        events.extend(counted(account_id, spec) for spec in specs)
    arrived = arrive(data.draw(st.permutations(events), label="arrival order"))
    batch = data.draw(st.integers(min_value=1, max_value=100), label="batch size")

    memory = InMemoryAggregates(SLICING)
    memory.apply(arrived)
    store = CounterStore(aws.dynamodb, aws.counters_table, TEST_RETENTION_DAYS)
    for start in range(0, len(arrived), batch):
        assert aggregate(arrived[start : start + batch], store, SLICING).failed == []
    dynamo = DynamoAggregates(store)

    # When / Then: the same buckets, and the same evaluations, step after step.
    first, last = FIRST_DAY - timedelta(days=400), FIRST_DAY + timedelta(days=400)
    at = [datetime.combine(FIRST_DAY + timedelta(days=day), time(hour), UTC) for day, hour in moments]
    for account_id, profile in profiles.items():
        assert dynamo.buckets(account_id, first, last) == memory.buckets(account_id, first, last)
        # the first_seen marker is the earliest day, however the days arrived
        assert dynamo.history(account_id, at[0].date(), at[0].date()).first_seen == (
            memory.history(account_id, first, last).first_seen
        )
        for name, ruleset in RULESETS.items():
            online = evaluations(ruleset, dynamo, account_id, profile, at)
            backtest = evaluations(ruleset, memory, account_id, profile, at)
            assert [seen(e) for e in online] == [seen(e) for e in backtest], name
            assert online == backtest, name


@settings(max_examples=40, deadline=None)
@given(accounts=_accounts_specs, moments=_moments)
def test_property_given_any_history_when_evaluated_with_the_read_plan_then_reading_everything_changes_nothing(
    accounts, moments
):
    memory = InMemoryAggregates(SLICING)
    (specs, profile) = accounts[0]
    account_id = f"acct-plan-{next(_accounts)}"
    memory.apply(arrive([counted(account_id, spec) for spec in specs]))
    at = [datetime.combine(FIRST_DAY + timedelta(days=day), time(hour), UTC) for day, hour in moments]

    for name, ruleset in RULESETS.items():
        planned = evaluations(ruleset, memory, account_id, profile, at)
        everything = evaluations(ruleset, memory, account_id, profile, at, ReadPlan(lookback_days=400))
        assert planned == everything, name


@settings(max_examples=40, deadline=None)
@given(accounts=_accounts_specs, moments=_moments)
def test_property_given_any_history_when_held_within_skips_to_change_days_then_it_agrees_with_every_day(
    accounts, moments
):
    memory = InMemoryAggregates(SLICING)
    (specs, profile) = accounts[0]
    account_id = f"acct-days-{next(_accounts)}"
    memory.apply(arrive([counted(account_id, spec) for spec in specs]))
    at = [datetime.combine(FIRST_DAY + timedelta(days=day), time(hour), UTC) for day, hour in moments]

    for name, ruleset in RULESETS.items():
        skipping = evaluations(ruleset, memory, account_id, profile, at)
        every_day = evaluations(ruleset, memory, account_id, profile, at, exhaustive=True)
        assert skipping == every_day, name


# ── families: scope: family reads a parent and its children folded ─────────────────────────────

FAMILY = parse_ruleset(
    "version: family-1\n"
    "metrics: {app.session: count, api.calls: count, paywall.hit: count, seats.active: gauge}\n"
    "signals:\n"
    "  family_sessions: {measure: sum, metric: app.session, window: 14d, at_least: 40, scope: family}\n"
    "  family_users: {measure: distinct, metric: app.session, dimension: user, window: 30d, at_least: 5, "
    "scope: family}\n"
    "  family_sso: {measure: count, metric: paywall.hit, where: {feature: sso}, window: 14d, at_least: 2, "
    "scope: family}\n"
    "  family_teams: {measure: sum, metric: app.session, window: 14d, growth: {over: previous_window}, "
    "at_least: 0.25, group_by: team, groups_at_least: 2, scope: family}\n"
    "  family_api_per_session: {measure: ratio, ratio: {numerator: {measure: sum, metric: api.calls}, "
    "denominator: {measure: count, metric: app.session}}, window: 14d, at_least: 2, scope: family}\n"
    "  own_sessions: {measure: sum, metric: app.session, window: 14d, at_least: 20}\n"
    "  seats_high: {measure: latest, metric: seats.active, window: 14d, at_least: 30}\n"
    "  both: {signals: [family_sessions, own_sessions], n_of: 2, within: 14d}\n"
    "triggers:\n"
    "  family-sessions: {category: value, owner_role: csm, play: p, when: family_sessions, cooldown: 10d}\n"
    "  family-users: {category: stakeholder, owner_role: csm, play: p, when: family_users, cooldown: 15d}\n"
    "  family-sso: {category: intent, owner_role: ae, play: p, when: family_sso, cooldown: 20d}\n"
    "  family-teams: {category: adoption, owner_role: csm, play: p, when: family_teams, cooldown: 10d}\n"
    "  family-ratio: {category: value, owner_role: csm, play: p, when: family_api_per_session, "
    "cooldown: 10d}\n"
    "  own-sessions: {category: value, owner_role: csm, play: p, when: own_sessions, cooldown: 10d}\n"
    "  seats: {category: commercial, owner_role: csm, play: p, when: seats_high, cooldown: 10d, "
    "unless: [{signal: family_sessions}]}\n"
    "  both: {category: value, owner_role: csm, play: p, when: both, cooldown: 10d}\n"
    "plays: {p: {}}\n",
    "family.yaml",
)
FAMILY_SLICING = ruleset_slicing(FAMILY)
FAMILY_METRICS = frozenset({"app.session", "api.calls", "paywall.hit"})


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    accounts=st.lists(st.lists(_event_specs, max_size=50), min_size=1, max_size=4),
    moments=_moments,
    data=st.data(),
)
def test_property_given_a_family_when_evaluated_over_dynamodb_and_memory_then_the_evaluations_are_equal(
    aws: Aws, accounts, moments, data
):
    # Given: a parent (the first account) and up to three children, their profiles written through
    # the account store (its `parent` index is what the online side reads), events in a random
    # arrival order, aggregated in random batches.
    ids = [f"acct-family-{next(_accounts)}" for _ in accounts]
    parent, children = ids[0], ids[1:]
    profiles = {parent: AccountProfile(name="Parent Co")} | {
        child: AccountProfile(name="Child Co", parent_account_id=parent) for child in children
    }
    store_accounts = AccountStore(aws.dynamodb, aws.accounts_table)
    for account_id, profile in profiles.items():
        store_accounts.put(account_id, profile, TEST_WRITER)
    events = [
        counted(account_id, spec) for account_id, specs in zip(ids, accounts, strict=True) for spec in specs
    ]
    arrived = arrive(data.draw(st.permutations(events), label="arrival order"))
    batch = data.draw(st.integers(min_value=1, max_value=100), label="batch size")

    memory = InMemoryAggregates(
        FAMILY_SLICING, parents=dict.fromkeys(children, parent), family_metrics=FAMILY_METRICS
    )
    memory.apply(arrived)
    store = CounterStore(aws.dynamodb, aws.counters_table, TEST_RETENTION_DAYS)
    for start in range(0, len(arrived), batch):
        assert aggregate(arrived[start : start + batch], store, FAMILY_SLICING).failed == []
    dynamo = DynamoAggregates(store, children=store_accounts.children_of)

    # When / Then: every member evaluates the same over both; the family's triggers only on the parent.
    at = [datetime.combine(FIRST_DAY + timedelta(days=day), time(hour), UTC) for day, hour in moments]
    for account_id, profile in profiles.items():
        online = evaluations(FAMILY, dynamo, account_id, profile, at)
        backtest = evaluations(FAMILY, memory, account_id, profile, at)
        assert [seen(e) for e in online] == [seen(e) for e in backtest]
        assert online == backtest
        if account_id != parent:
            family_triggers = {
                "family-sessions",
                "family-users",
                "family-sso",
                "family-teams",
                "family-ratio",
            }
            reasons = {
                o.reason
                for e in online
                for o in e.outcomes
                if o.trigger in family_triggers | {"seats", "both"}
            }
            assert reasons == {"family member"}


def test_given_a_family_when_the_parent_is_evaluated_then_family_measures_add_up_the_members():
    # Given a parent with 10 sessions by u-1 and two children with 20 and 15 by u-1 and u-2
    parent, first, second = "fam-parent", "fam-child-1", "fam-child-2"
    memory = InMemoryAggregates(
        FAMILY_SLICING, parents={first: parent, second: parent}, family_metrics=FAMILY_METRICS
    )
    day = ("app.session", 100, 3600)
    memory.apply(
        arrive(
            [
                counted(parent, (*day, Decimal(10), {"user": "u-1"})),
                counted(first, (*day, Decimal(20), {"user": "u-1"})),
                counted(second, (*day, Decimal(15), {"user": "u-2"})),
            ]
        )
    )
    at = datetime.combine(FIRST_DAY + timedelta(days=100), time(12), UTC)
    profile = AccountProfile(name="Parent Co")

    # When the parent is evaluated
    (evaluation,) = evaluations(FAMILY, memory, parent, profile, [at])

    # Then the family's sum is 45 (it fires, on the parent) and its users are 2; its own sum is 10
    outcomes = {outcome.trigger: outcome for outcome in evaluation.outcomes}
    assert outcomes["family-sessions"].fired
    assert outcomes["family-sessions"].condition.observed == 45.0
    assert "across the family" in outcomes["family-sessions"].condition.detail
    assert outcomes["family-users"].condition.observed == 2.0
    assert outcomes["own-sessions"].condition.observed == 10.0
