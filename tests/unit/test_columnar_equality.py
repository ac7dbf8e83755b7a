"""The columnar engine equals the reference engine: held at every evaluation, firings, scores.

The reference is the online engine (shared/rules/engine.py) as the backtest's replay drives it:
an account's events folded day by day (InMemoryAggregates), the account evaluated after each
day at the time of its last event, its trigger state carried between evaluations. The columnar
engine (upswing/columnar/) computes the same for many accounts at once from matrices. Rulesets
are random, built from every capability the columnar engine claims (upswing/columnar/support.py);
histories are random with the edge cases that break look-alike implementations: gauge readings
tied at the same time, zero and negative values, zero or missing plan limits, no profile or no
segment, days without data, at_most / less_than thresholds, nested composites, short cooldowns
against re-arming, contacts excluding other triggers.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.accounts.models import AccountProfile
from shared.counters.bucket import CountedEvent, padded_sequence
from shared.events.models import EventKind
from shared.rules.aggregates import InMemoryAggregates
from shared.rules.engine import AccountState, evaluate_account, read_plan
from shared.rules.language import Ruleset
from shared.rules.slicing import ruleset_slicing
from upswing.backtest.events import Accepted
from upswing.backtest.replay import Contender, FiredAt, ReplayStats, replay_account
from upswing.columnar import replay_columnar, split_accounts, unsupported_triggers
from upswing.columnar.frame import build_frame, why_scalar
from upswing.columnar.signals import needs_of
from upswing.columnar.triggers import evaluate_frame

FIRST_DAY = date(2026, 3, 1)
DAYS = 14
METRICS = {
    "app.session": EventKind.COUNT,
    "feature.analytics.used": EventKind.COUNT,
    "api.calls": EventKind.COUNT,
    "seats.active": EventKind.GAUGE,
}
USERS = [f"u-{n}" for n in range(5)]
_sequences = itertools.count(5_000_000_000_000_000_000)

# ── random rulesets ────────────────────────────────────────────────────────────────────────────

_windows = st.sampled_from(["1d", "2d", "3d", "4d", "5d", "7d", "1w"])
_numbers = st.sampled_from([0, 0.5, 1, 2, 3, 4, 5, 8, 12, 30])
_thresholds = st.one_of(
    _numbers,
    st.builds(lambda default, smb: {"default": default, "segments": {"smb": smb}}, _numbers, _numbers),
    st.builds(
        lambda default, fintech, band: {
            "default": default,
            "industries": {"fintech": fintech},
            "employees": [{"at_least": 0, "value": band}, {"at_least": 500, "value": default}],
        },
        _numbers,
        _numbers,
        _numbers,
    ),
)
_comparisons = st.sampled_from(["at_least", "more_than", "at_most", "less_than"])
_plain_parts = st.one_of(
    st.builds(
        lambda measure, metric: {"measure": measure, "metric": metric},
        st.sampled_from(["sum", "count", "active_days", "latest", "peak", "low"]),
        st.sampled_from(sorted(METRICS)),
    ),
    st.builds(
        lambda metric: {"measure": "distinct", "metric": metric, "dimension": "user"},
        st.sampled_from(["app.session", "feature.analytics.used"]),
    ),
)


@st.composite
def metric_signals(draw: st.DrawFn) -> dict[str, Any]:
    measure = draw(
        st.sampled_from(
            ["sum", "count", "active_days", "latest", "peak", "low", "distinct", "share", "ratio"]
        )
    )
    signal: dict[str, Any] = {"measure": measure, "window": draw(_windows)}
    gauge = measure in ("latest", "peak", "low")
    if measure == "share":
        signal["of"] = {"metric": "feature.analytics.used", "dimension": "user"}
        signal["among"] = {"metric": "app.session", "dimension": "user"}
    elif measure == "ratio":
        signal["ratio"] = {"numerator": draw(_plain_parts), "denominator": draw(_plain_parts)}
    else:
        signal["metric"] = draw(
            st.sampled_from(["seats.active"] * 3 + sorted(METRICS))
            if gauge
            else st.sampled_from(sorted(METRICS))
        )
        if measure in ("distinct", "new_distinct"):
            signal["dimension"] = "user"
            if measure == "new_distinct":
                signal["not_seen_in"] = draw(st.sampled_from(["1d", "2d", "4d", "6d"]))
        elif draw(st.integers(0, 4)) == 0:
            signal["where"] = {"user": draw(st.sampled_from(["u-1", ["u-2", "u-3"]]))}
    if measure in ("sum", "latest") and draw(st.integers(0, 3)) == 0:  # a projection is its own threshold
        signal["window"] = draw(st.sampled_from(["2d", "3d", "5d", "1w"]))
        signal["forecast"] = {"reaches": draw(_numbers), "within": draw(st.sampled_from(["1d", "3d", "10d"]))}
        if draw(st.integers(0, 2)) == 0:
            signal["per_limit"] = draw(st.sampled_from(["seats", "api.calls"]))
        return signal
    modifier = draw(st.sampled_from(["none", "none", "growth", "sustained", "rising"]))
    if modifier == "growth":
        if gauge and draw(st.booleans()):
            signal["growth"] = {"over": "average", "baseline_window": draw(_windows)}
        else:
            signal["growth"] = {"over": "previous_window"}
        if draw(st.booleans()):
            signal["growth"]["from_zero"] = "fire"
    elif modifier == "sustained":
        signal["sustained"] = draw(st.integers(2, 3))
    elif modifier == "rising":
        signal["rising"] = draw(st.integers(2, 3))
    if draw(st.integers(0, 3)) == 0:
        signal["per_limit"] = draw(st.sampled_from(["seats", "api.calls"]))
    if modifier != "rising" or draw(st.booleans()):
        signal[draw(_comparisons)] = draw(_thresholds)
    coverage = draw(st.sampled_from([None, None, True, False]))  # data coverage: the default, or given
    if coverage is not None:
        signal["requires_full_window"] = coverage
    return signal


_conditions = st.sampled_from(
    [
        "do_not_contact",
        "churn_risk",
        "top_tier",
        {"contacted_within": "2d"},
        {"contacted_within": "5d"},
        {"renewal_within": "10d"},
        {"account_age": {"at_least": "3d"}},
        {"account_age": {"at_most": "20d"}},
    ]
)


@st.composite
def rulesets(draw: st.DrawFn) -> Ruleset:
    metric_count = draw(st.integers(2, 5))
    signals: dict[str, Any] = {f"m{index}": draw(metric_signals()) for index in range(metric_count)}
    for index in range(draw(st.integers(0, 2))):  # composites, maybe of composites
        names = sorted(signals)
        members = draw(st.lists(st.sampled_from(names), min_size=2, max_size=4, unique=True))
        signals[f"c{index}"] = {
            "signals": members,
            "n_of": draw(st.integers(1, len(members))),
            "within": draw(_windows),
        }
    names = sorted(signals)
    triggers: dict[str, Any] = {}
    # Every signal fires a trigger of its own (so each is compared at every evaluation), and a
    # few more triggers read the same signals with other conditions.
    whens = names + draw(st.lists(st.sampled_from(names), max_size=2))
    for index, when in enumerate(whens):
        trigger: dict[str, Any] = {
            "category": "adoption",
            "owner_role": "csm",
            "play": "check-in",
            "when": when,
            "cooldown": draw(st.sampled_from(["1d", "2d", "3d", "6d"])),
            "unless": draw(
                st.lists(
                    st.one_of(_conditions, st.sampled_from(names).map(lambda name: {"signal": name})),
                    max_size=2,
                )
            ),
        }
        if draw(st.integers(0, 3)) == 0:
            trigger["requires"] = [
                draw(st.one_of(_conditions, st.sampled_from(names).map(lambda name: {"signal": name})))
            ]
        if draw(st.integers(0, 3)) == 0:
            trigger["segments"] = ["smb"]
        if draw(st.integers(0, 2)) == 0:
            weighted = draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True))
            trigger["score"] = {
                "base": draw(st.sampled_from([0, 10, 33.3])),
                "weights": {name: draw(st.sampled_from([10, 25, 33.3, 60])) for name in weighted},
            }
        triggers[f"t{index}"] = trigger
    try:
        ruleset = Ruleset.model_validate(
            {
                "version": "differential",
                "metrics": {name: kind.value for name, kind in METRICS.items()},
                "signals": signals,
                "triggers": triggers,
            }
        )
    except ValidationError:
        assume(False)
        raise
    return ruleset


# ── random histories ───────────────────────────────────────────────────────────────────────────

_events = st.tuples(
    st.sampled_from(sorted(METRICS)),
    st.integers(min_value=0, max_value=DAYS - 1),  # day (some days have none)
    st.sampled_from([0, 0, 1800, 43_200, 86_399]),  # second of the day: ties at the same time
    st.sampled_from([0, 1, 1, 2, 3, 5, 8, 20, 45, -1]),
    st.one_of(st.just({}), st.sampled_from(USERS).map(lambda user: {"user": user})),
)
_profiles = st.one_of(
    st.none(),
    st.builds(
        lambda segment, seats, api_calls, flags, created_at, renewal_date, firmographics: (
            AccountProfile.model_validate(
                {
                    "name": "Northwind Traders",
                    "segment": segment,
                    "plan": {
                        "name": "Growth",
                        "limits": {"seats": seats, "api.calls": api_calls},
                        "top_tier": flags == "top",
                    },
                    "flags": {"churn_risk": flags == "churn", "do_not_contact": flags == "dnc"},
                    "created_at": created_at,
                    "renewal_date": renewal_date,
                    **firmographics,
                }
            )
        ),
        st.sampled_from([None, "smb", "enterprise"]),
        st.sampled_from([0, 20, 50]),
        st.sampled_from([0, 10, 100]),
        st.sampled_from([None, None, "top", "churn", "dnc"]),
        st.sampled_from([None, "2026-02-20", "2026-03-10"]),
        st.sampled_from([None, "2026-03-15", "2026-04-01"]),
        st.sampled_from(
            [{}, {"industry": "fintech"}, {"employees": 499}, {"industry": "retail", "employees": 800}]
        ),
    ),
)
_accounts = st.lists(st.tuples(st.lists(_events, min_size=1, max_size=80), _profiles), min_size=1, max_size=3)


def arrivals_of(
    account_id: str, specs: Sequence[tuple[str, int, int, int, dict[str, str]]]
) -> list[Accepted]:
    """The account's events in day order (arrival order within a day as drawn): no late events."""
    arrivals = []
    for name, day_offset, second, value, dimensions in sorted(specs, key=lambda spec: spec[1]):
        day = FIRST_DAY + timedelta(days=day_offset)
        moment = datetime.combine(day, time(), UTC) + timedelta(seconds=second)
        raw = str(next(_sequences))
        event = CountedEvent(
            sequence=padded_sequence(raw),
            stream_sequence=raw,
            account_id=account_id,
            event_id=f"evt-{raw}",
            name=name,
            kind=METRICS[name],
            value=Decimal(value),
            occurred_at=moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
            day=day.isoformat(),
            dimensions=dimensions,
        )
        arrivals.append(Accepted(event, "{}"))
    return arrivals


def reference(
    ruleset: Ruleset, account_id: str, arrivals: list[Accepted], profile: AccountProfile | None
) -> tuple[dict[str, list[bool]], list[tuple[str, datetime, float]]]:
    """The online engine as the replay drives it: per trigger, held at each evaluation; firings."""
    memory = InMemoryAggregates(ruleset_slicing(ruleset))
    plan = read_plan(ruleset)
    state = AccountState()
    held: dict[str, list[bool]] = {name: [] for name in ruleset.triggers}
    fired: list[tuple[str, datetime, float]] = []
    for _, day_arrivals in itertools.groupby(arrivals, key=lambda arrival: arrival.event.day):
        batch = list(day_arrivals)
        memory.apply(arrival.event for arrival in batch)
        at = datetime.fromisoformat(max(arrival.event.occurred_at for arrival in batch))
        evaluation = evaluate_account(ruleset, memory, account_id, profile, state, at, plan, explain=False)
        state = evaluation.state
        for outcome in evaluation.outcomes:
            held[outcome.trigger].append(outcome.held)
        fired += [(firing.trigger, at, firing.score) for firing in evaluation.firings]
    return held, fired


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
@given(ruleset=rulesets(), accounts=_accounts)
def test_property_given_a_random_ruleset_and_histories_when_evaluated_columnar_then_as_the_reference(
    ruleset, accounts
):
    # Given: a ruleset of columnar capabilities, and accounts whose input the columnar engine models.
    assert unsupported_triggers(ruleset) == {}
    inputs = []
    for number, (specs, profile) in enumerate(accounts):
        account_id = f"acct-{number}"
        arrivals = arrivals_of(account_id, specs)
        assert why_scalar(arrivals, len(needs_of(ruleset).slices)) is None
        inputs.append((account_id, arrivals, profile))

    # When: the columnar engine evaluates them together, and the reference one by one.
    frame = build_frame(inputs, needs_of(ruleset), read_plan(ruleset).lookback_days)
    evaluated = evaluate_frame(frame, ruleset)

    # Then: at every evaluation each trigger's signal held alike; the same firings, the same scores.
    rows = frame.eval_rows.tolist()
    for row, (account_id, arrivals, profile) in enumerate(inputs):
        held, fired = reference(ruleset, account_id, arrivals, profile)
        mine = [index for index, at_row in enumerate(rows) if at_row == row]
        for trigger in ruleset.triggers:
            assert [bool(evaluated.held[trigger][index]) for index in mine] == held[trigger], (
                account_id,
                trigger,
            )
        columnar_fired = [
            (firing.trigger, firing.at, firing.score)
            for firing in evaluated.firings
            if firing.account_id == account_id
        ]
        assert sorted(columnar_fired) == sorted(fired), account_id


# Denser: every event names a user, on the two metrics the distinct signals read.
_users_seen = st.lists(
    st.tuples(
        st.sampled_from(["app.session", "feature.analytics.used"]),
        st.integers(min_value=0, max_value=DAYS - 1),
        st.just(0),
        st.just(1),
        st.sampled_from(USERS).map(lambda user: {"user": user}),
    ),
    min_size=1,
    max_size=50,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    signal=st.sampled_from(
        [
            {"measure": "distinct", "metric": "app.session", "dimension": "user"},
            {"measure": "new_distinct", "metric": "app.session", "dimension": "user", "not_seen_in": "1d"},
            {"measure": "new_distinct", "metric": "app.session", "dimension": "user", "not_seen_in": "4d"},
            {
                "measure": "share",
                "of": {"metric": "feature.analytics.used", "dimension": "user"},
                "among": {"metric": "app.session", "dimension": "user"},
            },
        ]
    ),
    window=st.sampled_from(["1d", "2d", "3d", "5d"]),
    comparison=_comparisons,
    bound=st.sampled_from([0.3, 0.5, 1, 2, 3]),
    accounts=st.lists(st.tuples(_users_seen, _profiles), min_size=1, max_size=3),
)
def test_property_given_distinct_values_when_swept_then_each_window_counts_them_as_the_reference(
    signal, window, comparison, bound, accounts
):
    # Given: one distinct-value signal (the interval sweeps) with a bound random histories cross
    ruleset = Ruleset.model_validate(
        {
            "version": "sweeps",
            "metrics": {name: kind.value for name, kind in METRICS.items()},
            "signals": {"s": {**signal, "window": window, comparison: bound}},
            "triggers": {
                "t": {"category": "adoption", "owner_role": "csm", "play": "p", "when": "s", "cooldown": "1d"}
            },
        }
    )
    inputs = [
        (f"acct-{number}", arrivals_of(f"acct-{number}", specs), profile)
        for number, (specs, profile) in enumerate(accounts)
    ]

    # When: evaluated by both engines
    frame = build_frame(inputs, needs_of(ruleset), read_plan(ruleset).lookback_days)
    evaluated = evaluate_frame(frame, ruleset)

    # Then: held alike at every evaluation of every account
    rows = frame.eval_rows.tolist()
    for row, (account_id, arrivals, profile) in enumerate(inputs):
        held, _ = reference(ruleset, account_id, arrivals, profile)
        assert [bool(evaluated.held["t"][index]) for index, at in enumerate(rows) if at == row] == held["t"]


# ── routing ────────────────────────────────────────────────────────────────────────────────────


def _account(specs: list[tuple[str, int, int, Any, dict[str, str]]]) -> list[Accepted]:
    return arrivals_of("acct-routed", specs)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda arrivals: [*arrivals, arrivals[0]], "duplicate event ids"),
        (lambda arrivals: [*arrivals, *_account([("api.calls", 0, 60, 1, {})])], "late events"),
        (
            lambda arrivals: [*arrivals, *_account([("api.calls", 9, 60, Decimal("2.5"), {})])],
            "fractional values",
        ),
        (
            lambda arrivals: [*arrivals, *_account([("api.calls", 9, 60, 2**40, {})])],
            "values too large for exact sums",
        ),
        (
            lambda arrivals: [
                *arrivals,
                *_account([("app.session", 9, second, 1, {"user": f"u-{second}"}) for second in range(1000)]),
            ],
            "a day at the distinct-value bound",
        ),
    ],
)
def test_given_input_the_matrices_do_not_model_when_routed_then_the_scalar_replay_with_the_reason(
    change, reason
):
    # Given: a clean account, then the same with one irregularity
    clean = _account([("api.calls", 2, 60, 3, {}), ("seats.active", 5, 0, 12, {"user": "u-1"})])
    assert why_scalar(clean, 0) is None
    # When / Then: the irregular one is the scalar replay's, and says why
    assert why_scalar(change(clean), 0) == reason


def test_given_a_partition_when_split_then_each_account_goes_one_way_and_both_are_counted():
    # Given: one clean account and one with a late event, on the reference-like ruleset of two signals
    ruleset = Ruleset.model_validate(
        {
            "version": "routing",
            "metrics": {"api.calls": "count"},
            "signals": {"calls": {"measure": "sum", "metric": "api.calls", "window": "3d", "at_least": 2}},
            "triggers": {
                "t": {
                    "category": "adoption",
                    "owner_role": "csm",
                    "play": "p",
                    "when": "calls",
                    "cooldown": "2d",
                }
            },
        }
    )
    clean = arrivals_of("acct-clean", [("api.calls", day, 60, 2, {}) for day in range(6)])
    late = arrivals_of("acct-late", [("api.calls", day, 60, 2, {}) for day in (3, 4)])
    late += arrivals_of("acct-late", [("api.calls", 1, 60, 2, {})])
    stats = ReplayStats()

    # When: split and replayed, each by its engine
    columnar, scalar = split_accounts({"acct-clean": clean, "acct-late": late}, {}, [ruleset], stats)
    contender = Contender("A", ruleset, read_plan(ruleset))
    fired = replay_columnar(columnar, [contender], stats)
    fired += replay_account("acct-late", scalar["acct-late"], None, [contender], 400, stats)

    # Then: one account each way, the reason counted, and the firings the scalar replay gives both
    assert [account for account, _, _ in columnar] == ["acct-clean"]
    assert list(scalar) == ["acct-late"]
    assert (stats.columnar_accounts, stats.scalar_accounts, stats.scalar_reasons) == (
        1,
        1,
        {"late events": 1},
    )
    reference_stats = ReplayStats()
    expected = [
        firing
        for account, arrivals in (("acct-clean", clean), ("acct-late", late))
        for firing in replay_account(account, arrivals, None, [contender], 400, reference_stats)
    ]
    assert sorted(fired, key=_order) == sorted(expected, key=_order)
    assert stats.evaluations == reference_stats.evaluations
    assert {firing.account_id for firing in fired} == {"acct-clean", "acct-late"}


def _order(firing: FiredAt) -> tuple[str, str, datetime]:
    return firing.account_id, firing.trigger, firing.at


def test_the_columnar_engine_is_cli_side_only():
    # Given every module the Lambda functions and the shared domain are built from
    repo = Path(__file__).resolve().parents[2]
    offenders = []
    for folder in ("functions", "shared", "infra"):
        for path in (repo / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [node.module or ""]
                else:
                    continue
                offenders += [
                    f"{path}: {name}" for name in names if name.split(".")[:2] == ["upswing", "columnar"]
                ]
                offenders += [f"{path}: {name}" for name in names if name.split(".")[0] == "numpy"]
    # Then none imports the columnar engine or numpy (a `backtest` extra, not in the Lambda layer)
    assert offenders == []
