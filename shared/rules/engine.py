"""The rules engine: one account, one moment, a ruleset → which triggers fire, with evidence.

Pure: no I/O and no clock. The evaluation time is a parameter; counters come from an
`Aggregates` (read once, for the days the ruleset's read plan needs); the account's trigger
state (cooldowns, arming, last contact) comes in and goes out as values. The evaluator function
and the backtest call the same `evaluate_account`, so on the same history they fire the same.

Semantics (docs/rules.md):
- A window of N days is the N UTC days ending with the evaluation day, inclusive.
- at_least / at_most include the threshold; more_than / less_than do not.
- A measure with nothing to measure (no gauge reading, no plan limit, a zero baseline) does not
  hold, and its evidence says why.
- A trigger fires when its signal holds, no exclusion applies, it is armed, and its cooldown has
  passed since it last fired. Firing disarms it; it re-arms when its signal stops holding.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from shared.accounts.models import AccountProfile
from shared.counters.bucket import DayBucket
from shared.rules.aggregates import Aggregates
from shared.rules.language import (
    BySegment,
    CompositeSignal,
    ContactedWithin,
    Flag,
    Measure,
    MetricSignal,
    RenewalWithin,
    Ruleset,
    Threshold,
    Trigger,
    days,
)
from shared.rules.loading import lookback_days

# ── inputs and outputs ─────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class TriggerState:
    last_fired_at: datetime | None = None
    armed: bool = True


@dataclass(frozen=True)
class AccountState:
    """What the firing ledger remembers about an account between evaluations."""

    triggers: dict[str, TriggerState] = field(default_factory=dict)
    last_contacted_at: datetime | None = None


@dataclass(frozen=True)
class Observation:
    """One condition as evaluated: the evidence a CSM reads."""

    signal: str
    held: bool
    observed: float | None
    comparison: str | None  # at_least, more_than, at_most, less_than, rising
    threshold: float | None
    window_from: date
    window_to: date
    detail: str
    members: tuple[Observation, ...] = ()

    def as_evidence(self) -> dict[str, Any]:
        evidence: dict[str, Any] = {
            "signal": self.signal,
            "held": self.held,
            "observed": self.observed,
            "comparison": self.comparison,
            "threshold": self.threshold,
            "window": {"from": self.window_from.isoformat(), "to": self.window_to.isoformat()},
            "detail": self.detail,
        }
        if self.members:
            evidence["members"] = [member.as_evidence() for member in self.members]
        return evidence


@dataclass(frozen=True)
class ExclusionCheck:
    exclusion: str
    applies: bool
    detail: str


@dataclass(frozen=True)
class Firing:
    """A trigger that fired: everything needed to route it and to explain it."""

    ruleset_version: str
    trigger: str
    account_id: str
    evaluated_at: datetime
    category: str
    owner_role: str
    play: str
    score: float
    score_parts: tuple[tuple[str, float, bool], ...]  # (signal, weight, held)
    score_base: float
    condition: Observation
    exclusions: tuple[ExclusionCheck, ...]

    def as_evidence(self) -> dict[str, Any]:
        """The stable JSON of a firing (docs/rules.md, "Evidence")."""
        return {
            "ruleset_version": self.ruleset_version,
            "trigger": self.trigger,
            "account_id": self.account_id,
            "evaluated_at": self.evaluated_at.isoformat().replace("+00:00", "Z"),
            "category": self.category,
            "owner_role": self.owner_role,
            "play": self.play,
            "score": {
                "total": self.score,
                "base": self.score_base,
                "parts": [{"signal": s, "weight": w, "held": h} for s, w, h in self.score_parts],
            },
            "condition": self.condition.as_evidence(),
            "exclusions_checked": [
                {"exclusion": check.exclusion, "applies": check.applies, "detail": check.detail}
                for check in self.exclusions
            ],
        }


@dataclass(frozen=True)
class TriggerOutcome:
    trigger: str
    held: bool
    fired: bool
    reason: str  # fired | not held | excluded | cooling down | not re-armed | other segment
    condition: Observation | None
    firing: Firing | None = None


@dataclass(frozen=True)
class Evaluation:
    account_id: str
    evaluated_at: datetime
    outcomes: tuple[TriggerOutcome, ...]
    state: AccountState

    @property
    def firings(self) -> list[Firing]:
        return [outcome.firing for outcome in self.outcomes if outcome.firing]


@dataclass(frozen=True)
class ReadPlan:
    """How many days of counters an evaluation reads: the longest lookback of any trigger."""

    lookback_days: int

    def first_day(self, at: datetime) -> date:
        return at.date() - timedelta(days=self.lookback_days - 1)


def read_plan(ruleset: Ruleset) -> ReadPlan:
    lookbacks = [lookback_days(ruleset, trigger.when) or 1 for trigger in ruleset.triggers.values()]
    return ReadPlan(lookback_days=max(lookbacks))


# ── evaluation ─────────────────────────────────────────────────────────────────────────────────


def evaluate_account(
    ruleset: Ruleset,
    aggregates: Aggregates,
    account_id: str,
    profile: AccountProfile | None,
    state: AccountState,
    at: datetime,
    plan: ReadPlan | None = None,
) -> Evaluation:
    plan = plan or read_plan(ruleset)
    history = History(aggregates.buckets(account_id, plan.first_day(at), at.date()))
    signals = _SignalEvaluator(ruleset, history, profile)
    outcomes = []
    trigger_states = dict(state.triggers)
    for name, trigger in ruleset.triggers.items():
        # Exclusions see the contacts made *before* this evaluation, so the outcome does not
        # depend on the order of the triggers in the file (limiting simultaneous plays is routing's job).
        outcome, new_state = _evaluate_trigger(
            ruleset,
            name,
            trigger,
            signals,
            account_id,
            profile,
            trigger_states.get(name),
            state.last_contacted_at,
            at,
        )
        outcomes.append(outcome)
        if new_state is not None:
            trigger_states[name] = new_state
    fired = any(outcome.fired for outcome in outcomes)
    last_contacted = at if fired else state.last_contacted_at
    return Evaluation(account_id, at, tuple(outcomes), AccountState(trigger_states, last_contacted))


def _evaluate_trigger(
    ruleset: Ruleset,
    name: str,
    trigger: Trigger,
    signals: _SignalEvaluator,
    account_id: str,
    profile: AccountProfile | None,
    state: TriggerState | None,
    last_contacted: datetime | None,
    at: datetime,
) -> tuple[TriggerOutcome, TriggerState | None]:
    segment = profile.segment if profile else None
    if trigger.segments is not None and segment not in trigger.segments:
        return TriggerOutcome(name, False, False, "other segment", None), state
    condition = signals.observe(trigger.when, at.date())
    state = state or TriggerState()
    if not condition.held:
        rearmed = replace(state, armed=True) if not state.armed else None
        return TriggerOutcome(name, False, False, "not held", condition), rearmed
    checks = tuple(_check_exclusion(exclusion, profile, last_contacted, at) for exclusion in trigger.unless)
    if any(check.applies for check in checks):
        return TriggerOutcome(name, True, False, "excluded", condition), None
    if not state.armed:
        return TriggerOutcome(name, True, False, "not re-armed", condition), None
    if state.last_fired_at and at - state.last_fired_at < timedelta(days=days(trigger.cooldown)):
        return TriggerOutcome(name, True, False, "cooling down", condition), None
    base, parts = _score(ruleset, trigger, signals, at.date())
    firing = Firing(
        ruleset_version=ruleset.version,
        trigger=name,
        account_id=account_id,
        evaluated_at=at,
        category=trigger.category.value,
        owner_role=trigger.owner_role,
        play=trigger.play,
        score=min(100.0, base + sum(weight for _, weight, held in parts if held)),
        score_parts=parts,
        score_base=base,
        condition=condition,
        exclusions=checks,
    )
    return TriggerOutcome(name, True, True, "fired", condition, firing), TriggerState(
        last_fired_at=at, armed=False
    )


def _score(
    ruleset: Ruleset, trigger: Trigger, signals: _SignalEvaluator, day: date
) -> tuple[float, tuple[tuple[str, float, bool], ...]]:
    if trigger.score:
        base, weights = trigger.score.base, trigger.score.weights
    else:
        when = ruleset.signals[trigger.when]
        members = when.signals if isinstance(when, CompositeSignal) else [trigger.when]
        base, weights = 0.0, {member: 100 / len(members) for member in members}
    composite = ruleset.signals[trigger.when]
    within = days(composite.within) if isinstance(composite, CompositeSignal) else 1
    parts = tuple(
        (signal, round(weight, 2), signals.held_within(signal, day, within))
        for signal, weight in weights.items()
    )
    return base, parts


def _check_exclusion(
    exclusion: Flag | RenewalWithin | ContactedWithin,
    profile: AccountProfile | None,
    last_contacted: datetime | None,
    at: datetime,
) -> ExclusionCheck:
    if isinstance(exclusion, RenewalWithin):
        limit = days(exclusion.renewal_within)
        renewal = profile.renewal_date if profile else None
        if renewal is None:
            return ExclusionCheck(
                f"renewal_within {exclusion.renewal_within}", False, "no renewal date on file"
            )
        ahead = (renewal - at.date()).days
        return ExclusionCheck(
            f"renewal_within {exclusion.renewal_within}",
            0 <= ahead <= limit,
            f"renewal on {renewal} ({ahead} days)",
        )
    if isinstance(exclusion, ContactedWithin):
        limit = days(exclusion.contacted_within)
        if last_contacted is None:
            return ExclusionCheck(f"contacted_within {exclusion.contacted_within}", False, "no play sent yet")
        ago = (at - last_contacted).days
        return ExclusionCheck(
            f"contacted_within {exclusion.contacted_within}",
            at - last_contacted < timedelta(days=limit),
            f"last play {ago} days ago",
        )
    if exclusion is Flag.TOP_TIER:
        top = bool(profile and profile.plan and profile.plan.top_tier)
        return ExclusionCheck(exclusion.value, top, "on the top tier" if top else "not on the top tier")
    flagged = bool(profile and getattr(profile.flags, exclusion.value))
    return ExclusionCheck(exclusion.value, flagged, "flag set" if flagged else "flag not set")


# ── counters as the engine sees them ───────────────────────────────────────────────────────────


class History:
    """One account's day buckets, indexed by day."""

    def __init__(self, buckets: Iterable[DayBucket]) -> None:
        self._days = {date.fromisoformat(bucket.day): bucket for bucket in buckets}

    def days_of(self, metric: str, first: date, last: date) -> list[tuple[date, Any]]:
        found = []
        day = first
        while day <= last:
            bucket = self._days.get(day)
            if bucket is not None and metric in bucket.metrics:
                found.append((day, bucket.metrics[metric]))
            day += timedelta(days=1)
        return found

    def distinct(self, metric: str, dimension: str, first: date, last: date) -> set[str]:
        values: set[str] = set()
        day = first
        while day <= last:
            bucket = self._days.get(day)
            if bucket is not None:
                values |= bucket.distinct.get(metric, {}).get(dimension, set())
            day += timedelta(days=1)
        return values


class _SignalEvaluator:
    """Evaluates signals for one account at any day of its history, remembering what it computed."""

    def __init__(self, ruleset: Ruleset, history: History, profile: AccountProfile | None) -> None:
        self._ruleset = ruleset
        self._history = history
        self._profile = profile
        self._memo: dict[tuple[str, date], Observation] = {}

    def observe(self, name: str, day: date) -> Observation:
        key = (name, day)
        if key not in self._memo:
            signal = self._ruleset.signals[name]
            self._memo[key] = (
                self._composite(name, signal, day)
                if isinstance(signal, CompositeSignal)
                else self._metric_signal(name, signal, day)
            )
        return self._memo[key]

    def held_within(self, name: str, day: date, within: int) -> bool:
        return any(self.observe(name, day - timedelta(days=back)).held for back in range(within))

    def _composite(self, name: str, signal: CompositeSignal, day: date) -> Observation:
        within = days(signal.within)
        members = []
        for member in signal.signals:
            # The most recent day in the window on which the member held (or today's view if none).
            held_on = next(
                (
                    self.observe(member, day - timedelta(days=back))
                    for back in range(within)
                    if self.observe(member, day - timedelta(days=back)).held
                ),
                self.observe(member, day),
            )
            members.append(held_on)
        count = sum(member.held for member in members)
        first = day - timedelta(days=within - 1)
        return Observation(
            signal=name,
            held=count >= signal.n_of,
            observed=float(count),
            comparison="at_least",
            threshold=float(signal.n_of),
            window_from=first,
            window_to=day,
            detail=f"{count} of {len(members)} signals held within {signal.within}",
            members=tuple(members),
        )

    def _metric_signal(self, name: str, signal: MetricSignal, day: date) -> Observation:
        window = days(signal.window)
        if signal.rising:
            return self._rising(name, signal, day, window)
        periods = signal.sustained or 1
        observations = []
        for period in range(periods):
            end = day - timedelta(days=window * period)
            observations.append(self._compare(name, signal, end, window))
        if periods == 1:
            return observations[0]
        held = all(observation.held for observation in observations)
        shown = [f"{o.observed:.4g}" if o.observed is not None else "none" for o in reversed(observations)]
        return replace(
            observations[0],
            held=held,
            window_from=day - timedelta(days=window * periods - 1),
            detail=f"{_describe(signal)} in each of {periods} consecutive {signal.window} windows, "
            f"oldest first: {', '.join(shown)}",
        )

    def _compare(self, name: str, signal: MetricSignal, end: date, window: int) -> Observation:
        first = end - timedelta(days=window - 1)
        value, why_none = self._value(signal, end, window)
        comparison, threshold = signal.threshold() or (None, None)
        bound = self._calibrated(threshold) if threshold is not None else None
        if value is None:
            return Observation(name, False, None, comparison, bound, first, end, why_none)
        held = bound is None or _holds(comparison, value, bound)
        return Observation(
            name, held, round(value, 6), comparison, bound, first, end, f"{_describe(signal)} = {value:.4g}"
        )

    def _rising(self, name: str, signal: MetricSignal, day: date, window: int) -> Observation:
        steps = signal.rising or 0
        values = []
        for period in range(steps, -1, -1):
            value, _ = self._value(signal, day - timedelta(days=window * period), window)
            values.append(value)
        rose = all(
            earlier is not None and later is not None and later > earlier
            for earlier, later in itertools.pairwise(values)
        )
        latest = values[-1]
        comparison, threshold = signal.threshold() or (None, None)
        bound = self._calibrated(threshold) if threshold is not None else None
        held = rose and (bound is None or (latest is not None and _holds(comparison, latest, bound)))
        shown = ", ".join("none" if v is None else f"{v:.4g}" for v in values)
        return Observation(
            name,
            held,
            latest,
            comparison or "rising",
            bound if bound is not None else float(steps),
            day - timedelta(days=window * (steps + 1) - 1),
            day,
            f"{_describe(signal)} per {signal.window} window, oldest first: {shown}",
        )

    def _value(self, signal: MetricSignal, end: date, window: int) -> tuple[float | None, str]:
        value, why = self._measure(signal, end, window)
        if value is None:
            return None, why
        if signal.growth:
            baseline, why = self._baseline(signal, end, window)
            if baseline is None:
                return None, why
            if baseline == 0:
                return None, "the baseline is zero: growth is undefined"
            value = (value - baseline) / baseline
        if signal.per_limit:
            limit = (
                self._profile.plan.limits.get(signal.per_limit)
                if self._profile and self._profile.plan
                else None
            )
            if not limit:
                return None, f"no plan limit for {signal.per_limit} on file"
            value = value / limit
        return value, ""

    def _baseline(self, signal: MetricSignal, end: date, window: int) -> tuple[float | None, str]:
        assert signal.growth
        if signal.growth.over == "previous_window":
            return self._measure(signal, end - timedelta(days=window), window)
        span = days(signal.growth.baseline_window or "1d")
        last = end - timedelta(days=window)
        readings = [
            m.last
            for _, m in self._history.days_of(signal.metric or "", last - timedelta(days=span - 1), last)
            if m.last is not None
        ]
        if not readings:
            return None, f"no {signal.metric} readings in the {signal.growth.baseline_window} baseline"
        return float(sum(readings)) / len(readings), ""

    def _measure(self, signal: MetricSignal, end: date, window: int) -> tuple[float | None, str]:
        first = end - timedelta(days=window - 1)
        span = f"{first}..{end}"
        match signal.measure:
            case Measure.SHARE:
                assert signal.of
                assert signal.among
                among = self._history.distinct(signal.among.metric, signal.among.dimension, first, end)
                if not among:
                    return None, f"no {signal.among.dimension} of {signal.among.metric} in {span}"
                of = self._history.distinct(signal.of.metric, signal.of.dimension, first, end)
                return len(of & among) / len(among), ""
            case Measure.DISTINCT:
                assert signal.metric
                assert signal.dimension
                return float(len(self._history.distinct(signal.metric, signal.dimension, first, end))), ""
        assert signal.metric
        found = self._history.days_of(signal.metric, first, end)
        match signal.measure:
            case Measure.SUM:
                return float(sum(m.total for _, m in found)), ""
            case Measure.COUNT:
                return float(sum(m.events for _, m in found)), ""
            case Measure.ACTIVE_DAYS:
                return float(sum(1 for _, m in found if m.events > 0)), ""
        readings = [m for _, m in found if m.last is not None]
        if not readings:
            return None, f"no {signal.metric} reading in {span}"
        match signal.measure:
            case Measure.LATEST:
                return float(readings[-1].last), ""
            case Measure.PEAK:
                return float(max(m.high for m in readings)), ""
            case _:
                return float(min(m.low for m in readings)), ""

    def _calibrated(self, threshold: Threshold) -> float:
        if isinstance(threshold, BySegment):
            segment = self._profile.segment if self._profile else None
            return threshold.segments.get(segment, threshold.default) if segment else threshold.default
        return float(threshold)


def _holds(comparison: str | None, value: float, bound: float) -> bool:
    match comparison:
        case "at_least":
            return value >= bound
        case "more_than":
            return value > bound
        case "at_most":
            return value <= bound
        case "less_than":
            return value < bound
    return True


def _describe(signal: MetricSignal) -> str:
    if signal.measure is Measure.SHARE:
        assert signal.of
        assert signal.among
        text = f"share of {signal.among.metric} {signal.among.dimension}s in {signal.of.metric}"
    elif signal.measure is Measure.DISTINCT:
        text = f"distinct {signal.dimension} of {signal.metric} over {signal.window}"
    elif signal.measure in (Measure.LATEST,):
        text = f"latest {signal.metric}"
    else:
        text = f"{signal.measure.value.replace('_', ' ')} of {signal.metric} over {signal.window}"
    if signal.growth:
        previous = signal.growth.over == "previous_window"
        baseline = "the previous window" if previous else f"the {signal.growth.baseline_window} average"
        text = f"growth of {text} vs {baseline}"
    if signal.per_limit:
        text += f" / plan limit {signal.per_limit}"
    return text
