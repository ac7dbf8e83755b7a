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

Fast by construction (`make bench`): the ruleset is compiled once into signal evaluators over
integer days; each metric signal's `held` is straight-line Python generated at compile time (its
source kept on the rule and shown in tracebacks; the generic path stays as its reference and builds
the evidence); window measures are prefix-sum, sparse-table and bitmask lookups
(shared/rules/history.py); "held within" (composites, scores) visits only the days on which a
member's inputs change; evidence is built for firings, and for every trigger only when asked to
`explain`. An in-memory history also keeps the engine's answers between evaluations (`_Memo`):
evaluating an account day after day, as the backtest does, computes a signal again only when a
day it reads has changed, and forgets what changed days affect. For that daily loop — fold a day,
evaluate without explaining — the series' arrays are extended only for what the rules read, a
signal's run of unchanged days is measured only when a later day asks, and the quiet trigger loop
(`_evaluate_quietly`) reuses the outcomes that carry no evidence; tests/unit/test_engine_fast_paths.py
checks each against the plain way.
"""

from __future__ import annotations

import itertools
import linecache
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar, NamedTuple

from shared.accounts.models import AccountProfile
from shared.counters.family import family_key
from shared.counters.slices import slice_key
from shared.experiments.arms import Assignment, assign
from shared.experiments.assignment import Arm
from shared.rules.aggregates import Aggregates
from shared.rules.conditions import ExclusionCheck, check_exclusion, exclusion_test
from shared.rules.durations import days
from shared.rules.history import History, MetricSeries
from shared.rules.language import (
    BySegment,
    CompositeSignal,
    Exclusion,
    Measure,
    MetricSignal,
    Ratio,
    RatioPart,
    Ruleset,
    SignalHolds,
    Trigger,
    lookback_days,
)
from shared.timestamps import utc_stamp

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
    # Set when a signal that requires a full window did not hold for lack of data coverage:
    # (the day the account's data starts, the first day the signal reads); docs/rules.md.
    uncovered: tuple[date | None, date] | None = None

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
        if self.uncovered:
            data_from, needed_from = self.uncovered
            evidence["coverage"] = {
                "data_from": data_from.isoformat() if data_from else None,
                "needed_from": needed_from.isoformat(),
            }
        return evidence


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
    # The account's group in the trigger's experiment (None: no holdout on the trigger: treated).
    experiment: Assignment | None = None
    # Made by a shadow ruleset (shared/rules/versions.py): recorded, never routed, whatever the arm.
    shadow_ruleset: bool = False

    @property
    def arm(self) -> Arm:
        if self.shadow_ruleset:
            return Arm.SHADOW
        return self.experiment.arm if self.experiment else Arm.TREATED

    def as_evidence(self) -> dict[str, Any]:
        """The stable JSON of a firing (docs/rules.md, "Evidence")."""
        experiment = {"experiment": self.experiment.as_evidence()} if self.experiment else {}
        return {
            "ruleset_version": self.ruleset_version,
            "trigger": self.trigger,
            "account_id": self.account_id,
            "evaluated_at": utc_stamp(self.evaluated_at),
            "category": self.category,
            "owner_role": self.owner_role,
            "play": self.play,
            "score": {
                "total": self.score,
                "base": self.score_base,
                "parts": [{"signal": s, "weight": w, "held": h} for s, w, h in self.score_parts],
            },
            "condition": self.condition.as_evidence(),
            "exclusions_checked": [check.as_evidence() for check in self.exclusions],
            "arm": self.arm.value,
            # Only on a shadow ruleset's firings (a live firing's evidence is unchanged).
            **({"ruleset_role": "shadow"} if self.shadow_ruleset else {}),
            **experiment,
        }


@dataclass(frozen=True)
class TriggerOutcome:
    trigger: str
    held: bool
    fired: bool
    reason: str  # fired | not held | excluded | cooling down | not re-armed | other segment
    condition: Observation | None  # None for another segment, or when not asked to explain
    firing: Firing | None = None
    # When explaining an excluded trigger: every exclusion it names, and which of them applied.
    exclusions: tuple[ExclusionCheck, ...] = ()


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
    """How many days of counters an evaluation reads: the longest lookback any trigger needs."""

    lookback_days: int

    def first_day(self, at: datetime) -> date:
        return date.fromordinal(at.toordinal() - self.lookback_days + 1)


def read_plan(ruleset: Ruleset) -> ReadPlan:
    """Covers each trigger's signal, each signal its score weighs (held within the composite's window)
    and each signal an exclusion or a requirement names."""
    lookbacks = [1]
    for trigger in ruleset.triggers.values():
        lookbacks.append(lookback_days(ruleset, trigger.when) or 1)
        within = _score_within(ruleset, trigger)
        lookbacks.extend(
            (lookback_days(ruleset, signal) or 1) + within - 1 for signal in _score_weights(ruleset, trigger)
        )
        lookbacks.extend(
            lookback_days(ruleset, check.signal) or 1
            for check in [*trigger.unless, *trigger.requires]
            if isinstance(check, SignalHolds)
        )
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
    *,
    explain: bool = True,
    exhaustive: bool = False,
) -> Evaluation:
    """Evaluate every trigger for the account at `at`.

    With explain=False only firings carry their condition's evidence (what the evaluator and the
    backtest need); with explain=True every outcome does (the signals route, tests).
    exhaustive=True tests every day where "held within" normally skips to the days a signal's
    inputs change: slower, the same answer — the reference the tests compare against.
    """
    compiled = compiled_ruleset(ruleset)
    plan = plan or compiled.plan
    day = at.toordinal()
    first_day = date.fromordinal(day - plan.lookback_days + 1)
    if compiled.family_metrics and (profile is None or profile.parent_account_id is None):
        # A family root (or a standalone account, a family of one): its family's days too.
        history = aggregates.family_history(account_id, first_day, at.date(), compiled.family_metrics)
    else:
        history = aggregates.history(account_id, first_day, at.date())
    context = _Context(compiled, history, profile, exhaustive)
    if not explain:
        return _evaluate_quietly(context, account_id, state, at, day)
    outcomes = []
    trigger_states = dict(state.triggers)
    fired = False
    for trigger in compiled.triggers:
        name = trigger.name
        if trigger.segments is not None and context.segment not in trigger.segments:
            outcomes.append(trigger.other_segment)
            continue
        if trigger.family and context.child:
            outcomes.append(trigger.family_member)
            continue
        known = trigger_states.get(name)
        held = context.held(trigger.when, day)
        # Exclusions see the contacts made *before* this evaluation, so the outcome does not
        # depend on the order of the triggers in the file (limiting simultaneous plays is routing's job).
        outcome, new_state = trigger.evaluate(
            context, account_id, held, known, state.last_contacted_at, at, day, explain
        )
        outcomes.append(outcome)
        fired = fired or outcome.fired
        if new_state is not None:
            trigger_states[name] = new_state
    last_contacted = at if fired else state.last_contacted_at
    return Evaluation(account_id, at, tuple(outcomes), AccountState(trigger_states, last_contacted))


def _evaluate_quietly(
    context: _Context, account_id: str, state: AccountState, at: datetime, day: int
) -> Evaluation:
    """`evaluate_account` without explaining: the evaluator's and the backtest's path, where most
    triggers do not hold and the rest rarely fire. The same outcomes, with the evidence-free ones
    made once per trigger; a trigger about to fire takes `_CompiledTrigger.evaluate`."""
    last_contacted = state.last_contacted_at
    known_states = state.triggers
    trigger_states = dict(known_states)
    first = context.first
    outcomes = []
    fired = False
    for trigger, signal in context.memo.quiet:
        if signal is None:
            outcomes.append(trigger.other_segment)
            continue
        if trigger.family and context.child:
            outcomes.append(trigger.family_member)
            continue
        # The answer kept from an earlier day, when it still holds (_Context.held, inlined).
        if signal.run_from <= day <= signal.run_to and day - signal.back >= first:
            held = signal.run_held
        else:
            held = context.held(trigger.when, day)
        known = known_states.get(trigger.name)
        if not held:
            outcomes.append(trigger.not_held)
            if known is not None and not known.armed:
                trigger_states[trigger.name] = TriggerState(known.last_fired_at, armed=True)
            continue
        # In the order of _CompiledTrigger.evaluate, which decides the rare case of a firing.
        if context.excluded(trigger.exclusions, last_contacted, at):
            outcomes.append(trigger.excluded)
        elif known is not None and not known.armed:
            outcomes.append(trigger.not_rearmed)
        elif known is not None and known.last_fired_at and at - known.last_fired_at < trigger.cooldown:
            outcomes.append(trigger.cooling_down)
        else:
            outcome, new_state = trigger.evaluate(
                context, account_id, True, known, last_contacted, at, day, False
            )
            outcomes.append(outcome)
            fired = fired or outcome.fired
            if new_state is not None:
                trigger_states[trigger.name] = new_state
    return _evaluation(
        account_id, at, tuple(outcomes), _account_state(trigger_states, at if fired else last_contacted)
    )


# Frozen dataclasses set each field through object.__setattr__: for the two made by every
# evaluation, that costs as much as a quiet evaluation's bookkeeping. These make the same objects
# (equal, hashable alike) by filling the instance dict directly; the field lists are checked here.
assert [f.name for f in fields(Evaluation)] == ["account_id", "evaluated_at", "outcomes", "state"]
assert [f.name for f in fields(AccountState)] == ["triggers", "last_contacted_at"]


def _evaluation(
    account_id: str, at: datetime, outcomes: tuple[TriggerOutcome, ...], state: AccountState
) -> Evaluation:
    evaluation = object.__new__(Evaluation)
    values = evaluation.__dict__
    values["account_id"], values["evaluated_at"], values["outcomes"], values["state"] = (
        account_id,
        at,
        outcomes,
        state,
    )
    return evaluation


def _account_state(triggers: dict[str, TriggerState], last_contacted: datetime | None) -> AccountState:
    account_state = object.__new__(AccountState)
    values = account_state.__dict__
    values["triggers"], values["last_contacted_at"] = triggers, last_contacted
    return account_state


class CompiledRuleset:
    """A ruleset turned into evaluators once, reused for every account."""

    def __init__(self, ruleset: Ruleset) -> None:
        self.ruleset = ruleset
        self.plan = read_plan(ruleset)
        self.rules: dict[str, _Rule] = {
            name: _rule(name, signal, lookback_days(ruleset, name) or 1)
            for name, signal in ruleset.signals.items()
        }
        self.triggers = [
            _CompiledTrigger(ruleset, name, trigger) for name, trigger in ruleset.triggers.items()
        ]
        # The metrics family-scope signals read: folded across each family (shared/counters/family.py).
        self.family_metrics = frozenset(
            metric
            for signal in ruleset.signals.values()
            if isinstance(signal, MetricSignal) and signal.scope == "family"
            for _, _, metric in signal.measured()
        )
        # How many days back each signal reads, and which signals read each metric (composites too).
        self.lookback = {name: lookback_days(ruleset, name) or 1 for name in ruleset.signals}
        self.readers: dict[str, list[str]] = {}
        for name in ruleset.signals:
            for metric in sorted(_metrics_read(ruleset, name)):
                self.readers.setdefault(metric, []).append(name)
        # Each distinct exclusion is checked at most once per evaluation, whichever triggers name it.
        # A requirement (`requires`) is checked as the exclusion "it does not hold".
        exclusions: list[tuple[bool, Exclusion]] = []
        for trigger in self.triggers:
            checks = [(False, check) for check in trigger.trigger.unless]
            checks += [(True, check) for check in trigger.trigger.requires]
            for check in checks:
                if check not in exclusions:
                    exclusions.append(check)
            trigger.exclusions = [exclusions.index(check) for check in checks]
        self.exclusion_tests = [exclusion_test(check, required=required) for required, check in exclusions]


_compiled: dict[int, tuple[Ruleset, CompiledRuleset]] = {}


def compiled_ruleset(ruleset: Ruleset) -> CompiledRuleset:
    # Rulesets hold dicts, so they cannot be hashed: cache by identity, keeping the ruleset alive.
    entry = _compiled.get(id(ruleset))
    if entry is None or entry[0] is not ruleset:
        if len(_compiled) >= 64:
            _compiled.clear()
        entry = _compiled[id(ruleset)] = (ruleset, CompiledRuleset(ruleset))
    return entry[1]


def _rule(name: str, signal: CompositeSignal | MetricSignal, lookback: int) -> _Rule:
    if isinstance(signal, CompositeSignal):
        return _CompositeRule(name, signal)
    description = _describe(signal)
    full_window = signal.full_window_required
    if signal.scope == "family":
        signal = _family_view(signal)
    rule: _MetricRule | _GroupRule = (
        _GroupRule(name, signal, description) if signal.group_by else _MetricRule(name, signal, description)
    )
    return _CoveredRule(rule, lookback) if full_window else rule


def _family_view(signal: MetricSignal) -> MetricSignal:
    """The signal reading the family's series (family keys) instead of the account's own."""
    update: dict[str, Any] = {"scope": "account"}
    if signal.metric:
        update["metric"] = family_key(signal.metric)
    if signal.ratio:
        update["ratio"] = Ratio(
            numerator=signal.ratio.numerator.model_copy(
                update={"metric": family_key(signal.ratio.numerator.metric)}
            ),
            denominator=signal.ratio.denominator.model_copy(
                update={"metric": family_key(signal.ratio.denominator.metric)}
            ),
        )
    for side in ("of", "among"):
        part = getattr(signal, side)
        if part is not None:
            update[side] = part.model_copy(update={"metric": family_key(part.metric)})
    return signal.model_copy(update=update)


def _metrics_read(ruleset: Ruleset, name: str) -> set[str]:
    """The series a signal reads (a family-scope one: the family's), for forgetting kept answers."""
    signal = ruleset.signals[name]
    if isinstance(signal, CompositeSignal):
        return set().union(*(_metrics_read(ruleset, member) for member in signal.signals))
    family = signal.scope == "family"
    return {family_key(metric) if family else metric for _, _, metric in signal.measured()}


def _reads_family(ruleset: Ruleset, name: str) -> bool:
    signal = ruleset.signals[name]
    if isinstance(signal, CompositeSignal):
        return any(_reads_family(ruleset, member) for member in signal.signals)
    return signal.scope == "family"


class _CompiledTrigger:
    def __init__(self, ruleset: Ruleset, name: str, trigger: Trigger) -> None:
        self.name = name
        self.trigger = trigger
        self.when = trigger.when
        self.version = ruleset.version
        self.segments = frozenset(trigger.segments) if trigger.segments is not None else None
        self.cooldown = timedelta(days=days(trigger.cooldown))
        self.base = trigger.score.base if trigger.score else 0.0
        self.weights = list(_score_weights(ruleset, trigger).items())
        self.within = _score_within(ruleset, trigger)
        self.exclusions: list[int] = []  # indexes into CompiledRuleset.exclusions
        # A trigger reading a family-scope signal (its own, a score weight, a signal check) is the
        # family's: evaluated on the parent, never on a child (docs/rules.md, "Account families").
        self.family = any(
            _reads_family(ruleset, signal)
            for signal in [
                trigger.when,
                *_score_weights(ruleset, trigger),
                *(
                    check.signal
                    for check in [*trigger.unless, *trigger.requires]
                    if isinstance(check, SignalHolds)
                ),
            ]
        )
        self.family_member = TriggerOutcome(name, False, False, "family member", None)
        # Outcomes without evidence are the same every time: made once.
        self.other_segment = TriggerOutcome(name, False, False, "other segment", None)
        self.not_held = TriggerOutcome(name, False, False, "not held", None)
        self.held_quietly = {
            reason: TriggerOutcome(name, True, False, reason, None)
            for reason in ("excluded", "not re-armed", "cooling down")
        }
        self.excluded = self.held_quietly["excluded"]
        self.not_rearmed = self.held_quietly["not re-armed"]
        self.cooling_down = self.held_quietly["cooling down"]

    def evaluate(
        self,
        context: _Context,
        account_id: str,
        held: bool,
        state: TriggerState | None,
        last_contacted: datetime | None,
        at: datetime,
        day: int,
        explain: bool,
    ) -> tuple[TriggerOutcome, TriggerState | None]:
        """The outcome for an account of the trigger's segments, when explaining or its signal held
        (evaluate_account answers the other cases itself)."""
        name, when = self.name, self.when
        condition = context.observe(when, day) if explain else None
        state = state or _FRESH
        if not held:
            rearmed = TriggerState(state.last_fired_at, armed=True) if not state.armed else None
            return TriggerOutcome(name, False, False, "not held", condition), rearmed
        if context.excluded(self.exclusions, last_contacted, at):
            if condition is None:
                return self.excluded, None
            checks = self._exclusion_checks(context, last_contacted, at)
            return TriggerOutcome(name, True, False, "excluded", condition, exclusions=checks), None
        if not state.armed:
            return self._outcome("not re-armed", condition), None
        if state.last_fired_at and at - state.last_fired_at < self.cooldown:
            return self._outcome("cooling down", condition), None
        condition = condition or context.observe(when, day)
        firing = Firing(
            ruleset_version=self.version,
            trigger=name,
            account_id=account_id,
            evaluated_at=at,
            category=self.trigger.category.value,
            owner_role=self.trigger.owner_role,
            play=self.trigger.play,
            score_base=self.base,
            condition=condition,
            exclusions=self._exclusion_checks(context, last_contacted, at),
            experiment=assign(
                name, self.trigger, account_id, context.profile.segment if context.profile else None
            ),
            **self._score(context, day),
        )
        return TriggerOutcome(name, True, True, "fired", condition, firing), TriggerState(
            last_fired_at=at, armed=False
        )

    def _exclusion_checks(
        self, context: _Context, last_contacted: datetime | None, at: datetime
    ) -> tuple[ExclusionCheck, ...]:
        """Every `unless` and `requires` check, as the evidence shows it."""
        return tuple(
            [check_exclusion(check, context, last_contacted, at) for check in self.trigger.unless]
            + [
                check_exclusion(check, context, last_contacted, at, required=True)
                for check in self.trigger.requires
            ]
        )

    def _outcome(self, reason: str, condition: Observation | None) -> TriggerOutcome:
        """A held trigger that does not fire."""
        if condition is None:
            return self.held_quietly[reason]
        return TriggerOutcome(self.name, True, False, reason, condition)

    def _score(self, context: _Context, day: int) -> dict[str, Any]:
        held = [context.last_held(signal, day, self.within) is not None for signal, _ in self.weights]
        total = self.base + sum(
            weight for (_, weight), counted in zip(self.weights, held, strict=True) if counted
        )
        parts = tuple(
            (signal, round(weight, 2), counted)
            for (signal, weight), counted in zip(self.weights, held, strict=True)
        )
        return {"score": round(min(100.0, total), 2), "score_parts": parts}


_FRESH = TriggerState()


def _score_weights(ruleset: Ruleset, trigger: Trigger) -> dict[str, float]:
    if trigger.score:
        return dict(trigger.score.weights)
    when = ruleset.signals[trigger.when]
    members = when.signals if isinstance(when, CompositeSignal) else [trigger.when]
    return {member: 100 / len(members) for member in members}


def _score_within(ruleset: Ruleset, trigger: Trigger) -> int:
    """A weighted signal counts if it held within the composite's window (else: today)."""
    when = ruleset.signals[trigger.when]
    return days(when.within) if isinstance(when, CompositeSignal) else 1


# ── signals over one account's history ─────────────────────────────────────────────────────────


class _Memo:
    """What the engine knows about one account's signals, kept from one evaluation to the next.

    The backtest evaluates an account day after day over a history that mostly stays the same: a
    signal's answer for a day, and "the latest day it held within N days", stay true until the
    days they read change. The memo lives with the account's in-memory `History` (`memos`, one per
    compiled ruleset, for the profile values signals read: segment, industry, headcount and plan
    limits); the history reports the days recorded since (`take_changes`) and the memo forgets every
    answer that may read them. A `History` read fresh from DynamoDB has no memo: evaluating starts
    from nothing.

    Only answers that cannot depend on the view are kept: for days whose whole lookback lies
    within the history's readable days.
    """

    __slots__ = ("coverage", "firmographics", "latest", "limits", "quiet", "readers", "segment", "signals")

    def __init__(
        self,
        compiled: CompiledRuleset,
        segment: str | None,
        limits: dict[str, float],
        firmographics: tuple[str | None, int | None],
        coverage: int,
    ) -> None:
        self.segment, self.limits, self.firmographics = segment, dict(limits), firmographics
        self.coverage = coverage
        self.signals = {
            name: _SignalMemo(rule, compiled.lookback[name] - 1) for name, rule in compiled.rules.items()
        }
        # The triggers in order, each with its signal's memo (None: not for the account's segment).
        self.quiet = [
            (
                trigger,
                None
                if trigger.segments is not None and segment not in trigger.segments
                else self.signals[trigger.when],
            )
            for trigger in compiled.triggers
        ]
        # metric → the memos of the signals that read it
        self.readers = {
            metric: [self.signals[name] for name in names] for metric, names in compiled.readers.items()
        }
        self.latest = 0  # no answer is kept for a later day (runs aside)

    def forget(self, changes: dict[str, int]) -> None:
        """Forget the answers that may read a day on or after one that changed."""
        for metric, changed in changes.items():
            # The backtest's daily case: a new day, which no answer kept reads (runs aside).
            new_day = changed > self.latest
            for signal in self.readers.get(metric, ()):
                if signal.run_to >= changed:
                    signal.run_to = changed - 1
                if signal.run_cap >= changed:
                    signal.run_cap = changed - 1
                if new_day:
                    continue
                for day in [day for day in signal.answers if day >= changed]:
                    del signal.answers[day]
                for within in [within for within, (day, _) in signal.last_held.items() if day >= changed]:
                    del signal.last_held[within]


class _SignalMemo:
    """One signal's answers for one account: by day, and over the run of days that follows the
    latest evaluation day (up to the next day that changes what the signal reads).

    A run starts as that one day, open: how far it reaches (`rule.stable_until`) is worked out
    only when a later day asks, up to `run_cap` (the day before the earliest change since). In
    the backtest most signals read a metric recorded every day, and their runs end the next day.
    """

    __slots__ = (
        "answers",
        "back",
        "last_held",
        "rule",
        "run_cap",
        "run_from",
        "run_held",
        "run_open",
        "run_to",
    )

    def __init__(self, rule: _Rule, back: int) -> None:
        self.rule = rule
        self.back = back  # the signal for a day reads from `back` days before it
        self.answers: dict[int, bool] = {}
        self.run_from, self.run_to, self.run_held = 0, -1, False
        self.run_open, self.run_cap = False, -1
        # within → (day, the latest of the `within` days ending with it on which the signal held)
        self.last_held: dict[int, tuple[int, int | None]] = {}


_MEMOS_PER_HISTORY = 8


def _memo_for(
    history: History, compiled: CompiledRuleset, profile: AccountProfile | None, coverage: int
) -> _Memo:
    changes = history.take_changes()
    memos = history.memos
    if changes:
        for memo in memos.values():
            memo.forget(changes)
    segment = profile.segment if profile else None
    limits = profile.plan.limits if profile and profile.plan else {}
    firmographics = (profile.industry, profile.employees) if profile else (None, None)
    memo = memos.get(compiled)
    if (
        memo is None
        or memo.segment != segment
        or memo.limits != limits
        or memo.firmographics != firmographics
        or memo.coverage != coverage
    ):
        if len(memos) >= _MEMOS_PER_HISTORY:
            memos.clear()
        memo = memos[compiled] = _Memo(compiled, segment, limits, firmographics, coverage)
    memo.latest = max(memo.latest, history.last)
    return memo


class _Context:
    """One account's evaluation: its history, its profile, and what has been computed so far."""

    __slots__ = (
        "_excluded",
        "_exclusions",
        "_held",
        "_last_held",
        "_observed",
        "_signals",
        "child",
        "coverage",
        "employees",
        "exhaustive",
        "first",
        "history",
        "industry",
        "last",
        "limits",
        "memo",
        "metrics",
        "profile",
        "rules",
        "segment",
    )

    def __init__(
        self, compiled: CompiledRuleset, history: History, profile: AccountProfile | None, exhaustive: bool
    ) -> None:
        self.rules = compiled.rules
        self.exhaustive = exhaustive
        self.history = history
        self.metrics = history.series  # read in the hot loops: one attribute hop less
        self.first, self.last = history.first, history.last
        self.profile = profile
        self.segment = profile.segment if profile else None
        self.industry = profile.industry if profile else None
        self.employees = profile.employees if profile else None
        self.limits = profile.plan.limits if profile and profile.plan else {}
        self.child = profile is not None and profile.parent_account_id is not None
        self.coverage = coverage_start(history, profile)
        # exhaustive is the reference the skipping is checked against: it starts from nothing.
        memo = (
            _Memo(compiled, self.segment, self.limits, (self.industry, self.employees), self.coverage)
            if exhaustive
            else _memo_for(history, compiled, profile, self.coverage)
        )
        self.memo = memo
        self._signals = memo.signals
        self._exclusions = compiled.exclusion_tests
        self._held: dict[tuple[str, int], bool] = {}  # answers that may depend on the view
        self._observed: dict[tuple[str, int], Observation] = {}
        self._last_held: dict[tuple[str, int, int], int | None] = {}
        self._excluded: dict[int, bool] = {}

    def held(self, name: str, day: int) -> bool:
        signal = self._signals[name]
        if day - signal.back < self.first or day > self.last:  # reads days the view does not show
            key = (name, day)
            held = self._held.get(key)
            if held is None:
                held = self._held[key] = signal.rule.held(self, day)
            return held
        if signal.run_from <= day:
            if day <= signal.run_to:
                return signal.run_held
            if signal.run_open and day <= signal.run_cap:  # nothing it reads changed since: extend
                signal.run_open = False
                signal.run_to = min(signal.rule.stable_until(self, signal.run_from), signal.run_cap)
                if day <= signal.run_to:
                    return signal.run_held
        held = signal.answers.get(day)
        if held is None:
            held = signal.answers[day] = signal.rule.held(self, day)
            if day == self.last and not self.exhaustive:
                # The daily case: tomorrow's evaluation will likely ask again, about the next day.
                signal.run_from = signal.run_to = day
                signal.run_held, signal.run_open, signal.run_cap = held, True, _FOREVER
        return held

    def observe_detail(self, name: str, day: int) -> str:
        return self.observe(name, day).detail

    def observe(self, name: str, day: int) -> Observation:
        key = (name, day)
        observation = self._observed.get(key)
        if observation is None:
            observation = self._observed[key] = self.rules[name].observe(self, day)
        return observation

    def excluded(self, exclusions: list[int], last_contacted: datetime | None, at: datetime) -> bool:
        """Whether one of the exclusions (indexes into CompiledRuleset.exclusions) applies; each is
        checked once per evaluation, whichever triggers name it."""
        known = self._excluded
        for exclusion in exclusions:
            applies = known.get(exclusion)
            if applies is None:
                applies = known[exclusion] = self._exclusions[exclusion](self, last_contacted, at)
            if applies:
                return True
        return False

    def last_held(self, name: str, day: int, within: int) -> int | None:
        """The latest of the `within` days ending with `day` on which the signal held, if any."""
        first = day - within + 1
        signal = self._signals[name]
        if first - signal.back < self.first or day > self.last:  # reads days the view does not show
            key = (name, day, within)
            if key not in self._last_held:
                self._last_held[key] = self._latest_held(name, first, day)
            return self._last_held[key]
        known = signal.last_held.get(within)
        if known is None or not first - 1 <= known[0] <= day:
            found = self._latest_held(name, first, day)
        elif known[0] == day:
            return known[1]
        elif self.held(name, day):  # the daily case
            found = day
        elif known[0] == day - 1:  # the daily case too: no day in between to search
            found = known[1] if known[1] is not None and known[1] >= first else None
        else:
            # The days up to the known one were searched then: search only the days after it.
            found = self._latest_held(name, known[0] + 1, day - 1)
            if found is None and known[1] is not None and known[1] >= first:
                found = known[1]
        signal.last_held[within] = (day, found)
        return found

    def _latest_held(self, name: str, first: int, last: int) -> int | None:
        """The latest day from first to last on which the signal held, if any."""
        if first > last:
            return None
        if self.held(name, last):
            return last
        signal = self._signals[name]
        if (
            signal.run_from <= first
            and last <= signal.run_to
            and first - signal.back >= self.first
            and last <= self.last
        ):
            return None  # one run, not held (asking for `last` extended it as far as it goes)
        rule = self.rules[name]
        if first < last and rule.could_hold(self, first, last):
            # The signal is constant between two consecutive change days: test one day of each
            # run, latest run first.
            changes = rule.change_days(self, first, last)
            for index in range(len(changes) - 1, -1, -1):
                if self.held(name, changes[index]):
                    return last if index == len(changes) - 1 else changes[index + 1] - 1
        return None

    def window(self, end: int, length: int) -> tuple[int, int]:
        """The readable part of the `length` days ending with `end`."""
        return max(end - length + 1, self.first), min(end, self.last)


def coverage_start(history: History, profile: AccountProfile | None) -> int:
    """The first day (ordinal) the account's data covers: the earlier of its first event and its
    profile's created_at; never (the largest day) without either."""
    starts = [history.first_seen] if history.first_seen is not None else []
    if profile is not None and profile.created_at is not None:
        starts.append(profile.created_at.toordinal())
    return min(starts, default=_FOREVER)


class Missing(NamedTuple):
    """Why a measure has no value. Formatted only when evidence is built."""

    reason: str  # may name {first} and {last}, the window's days
    first: int = 0
    last: int = 0

    def text(self) -> str:
        if not self.first:
            return self.reason
        return self.reason.format(first=date.fromordinal(self.first), last=date.fromordinal(self.last))


# ── measures: one class per kind, each a value over a window and, where it can, an upper bound ──


_SeriesRead = Callable[[MetricSeries, int, int], Decimal | int]


class _Measure:
    """A measure of one account over the window of `span + 1` days ending on a given day."""

    prunable = False  # whether upper_bound bounds the measure over every window inside a span

    def __init__(self, signal: MetricSignal) -> None:
        self.metric = signal.metric or ""
        self.span = days(signal.window) - 1

    def value(self, context: _Context, end: int) -> float | Missing:
        raise NotImplementedError

    def upper_bound(self, context: _Context, first: int, last: int) -> float | None:
        """At least the measure of any window within first..last (None: no value in any)."""
        raise NotImplementedError


class _Additive(_Measure):
    """sum, count or active_days: prefix-sum differences over the window."""

    prunable = True
    # measure → (the window's value, an upper bound over a span: counts may be negative, days not)
    _READS: ClassVar[dict[Measure, tuple[_SeriesRead, _SeriesRead]]] = {
        Measure.SUM: (MetricSeries.total, MetricSeries.positive_total),
        Measure.COUNT: (MetricSeries.events, MetricSeries.events),
        Measure.ACTIVE_DAYS: (MetricSeries.active_days, MetricSeries.active_days),
    }

    def __init__(self, signal: MetricSignal) -> None:
        super().__init__(signal)
        self.which = signal.measure
        self.read, self.read_bound = self._READS[signal.measure]

    def value(self, context: _Context, end: int) -> float | Missing:
        series = context.metrics.get(self.metric)
        if series is None:
            return 0.0
        return float(self.read(series, max(end - self.span, context.first), min(end, context.last)))

    def upper_bound(self, context: _Context, first: int, last: int) -> float | None:
        series = context.metrics.get(self.metric)
        return float(self.read_bound(series, first, last)) if series else 0.0


class _Reading(_Measure):
    """latest, peak or low of a gauge's daily readings."""

    def __init__(self, signal: MetricSignal) -> None:
        super().__init__(signal)
        self.which = signal.measure
        self.prunable = signal.measure is not Measure.LOW  # latest and peak never exceed the peak
        self.no_reading = f"no {self.metric} reading in {{first}}..{{last}}"

    def value(self, context: _Context, end: int) -> float | Missing:
        series = context.metrics.get(self.metric)
        found = None
        if series is not None:
            first, last = max(end - self.span, context.first), min(end, context.last)
            if self.which is Measure.LATEST:
                found = series.latest(first, last)
            elif self.which is Measure.PEAK:
                found = series.peak(first, last)
            else:
                found = series.low(first, last)
        return Missing(self.no_reading, end - self.span, end) if found is None else found

    def upper_bound(self, context: _Context, first: int, last: int) -> float | None:
        series = context.metrics.get(self.metric)
        return series.peak(first, last) if series else None


class _Distinct(_Measure):
    prunable = True

    def __init__(self, signal: MetricSignal) -> None:
        super().__init__(signal)
        self.dimension = signal.dimension or ""

    def value(self, context: _Context, end: int) -> float | Missing:
        first, last = max(end - self.span, context.first), min(end, context.last)
        return float(len(context.history.distinct(self.metric, self.dimension, first, last)))

    def upper_bound(self, context: _Context, first: int, last: int) -> float | None:
        return float(len(context.history.distinct(self.metric, self.dimension, first, last)))


class _NewDistinct(_Distinct):
    """The window's distinct values that the `not_seen_in` days before it did not have. Bounded
    like `distinct` (the new values of a window are among its values)."""

    def __init__(self, signal: MetricSignal) -> None:
        super().__init__(signal)
        self.before = days(signal.not_seen_in or "1d")

    def value(self, context: _Context, end: int) -> float | Missing:
        first, last = max(end - self.span, context.first), min(end, context.last)
        oldest = end - self.span
        seen = context.history.distinct(
            self.metric,
            self.dimension,
            max(oldest - self.before, context.first),
            min(oldest - 1, context.last),
        )
        return float(len(context.history.distinct(self.metric, self.dimension, first, last) - seen))


class _Share(_Measure):
    def __init__(self, signal: MetricSignal) -> None:
        super().__init__(signal)
        assert signal.of
        assert signal.among
        self.of, self.among = signal.of, signal.among
        self.no_among = f"no {self.among.dimension} of {self.among.metric} in {{first}}..{{last}}"

    def value(self, context: _Context, end: int) -> float | Missing:
        first, last = max(end - self.span, context.first), min(end, context.last)
        among = context.history.distinct(self.among.metric, self.among.dimension, first, last)
        if not among:
            return Missing(self.no_among, end - self.span, end)
        of = context.history.distinct(self.of.metric, self.of.dimension, first, last)
        return len(of & among) / len(among)


class _Forecast(_Measure):
    """Where the window's linear trend goes: the highest point of the least-squares line between the
    evaluation day and `within` days ahead. A sum is fitted as its running total over the window's
    days (each day a point, days without events adding 0); a gauge as its daily readings (days
    without one left out). Needs two points; days are offsets from the evaluation day."""

    def __init__(self, signal: MetricSignal) -> None:
        super().__init__(signal)
        assert signal.forecast
        self.which = signal.measure
        self.ahead = days(signal.forecast.within)
        points = "readings" if self.which is Measure.LATEST else "days"
        self.too_few = f"fewer than 2 {points} of {self.metric} in {{first}}..{{last}}: no trend"

    def value(self, context: _Context, end: int) -> float | Missing:
        first, last = max(end - self.span, context.first), min(end, context.last)
        series = context.metrics.get(self.metric)
        if self.which is Measure.SUM:
            points = last - first + 1
            running, ys = 0.0, [0.0] * max(points, 0)
            if series is not None and points > 0:
                lo, hi = series.span(first, last)
                sums, data_days = series.total_sums(), series.days
                for index in range(lo, hi):
                    ys[data_days[index] - first] = float(sums[index + 1] - sums[index])
            for index in range(len(ys)):
                running += ys[index]
                ys[index] = running
            xs = list(range(first - end, last - end + 1))
        else:
            xs, ys = [], []
            if series is not None:
                lo, hi = series.span(first, last)
                series.reading_arrays()
                for index in range(lo, hi):
                    reading = series.lasts[index]
                    if reading is not None:
                        xs.append(series.days[index] - end)
                        ys.append(reading)
        if len(xs) < 2:
            return Missing(self.too_few, end - self.span, end)
        mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
        spread = sum((x - mean_x) * (x - mean_x) for x in xs)
        slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
        # A line's highest point over [today, today + ahead] is at one end.
        return max(mean_y - slope * mean_x, mean_y + slope * (self.ahead - mean_x))


class _Ratio(_Measure):
    """numerator / denominator, each a plain measure over the same window (a zero denominator, or
    a side without a value: no value)."""

    def __init__(self, signal: MetricSignal) -> None:
        super().__init__(signal)
        assert signal.ratio
        self.numerator, self.denominator = (
            _MEASURES[part.measure](
                MetricSignal.model_construct(
                    measure=part.measure, metric=part.metric, dimension=part.dimension, window=signal.window
                )
            )
            for part in (signal.ratio.numerator, signal.ratio.denominator)
        )
        self.zero = f"{_part_text(signal.ratio.denominator)} is zero in {{first}}..{{last}}: no ratio"

    def value(self, context: _Context, end: int) -> float | Missing:
        denominator = self.denominator.value(context, end)
        if isinstance(denominator, Missing):
            return denominator
        if denominator == 0:
            return Missing(self.zero, end - self.span, end)
        numerator = self.numerator.value(context, end)
        if isinstance(numerator, Missing):
            return numerator
        return numerator / denominator


def _part_text(part: RatioPart) -> str:
    of = (
        f"distinct {part.dimension}"
        if part.measure is Measure.DISTINCT
        else part.measure.value.replace("_", " ")
    )
    return f"{of} of {part.metric}"


_MEASURES: dict[Measure, type[_Measure]] = {
    Measure.SUM: _Additive,
    Measure.COUNT: _Additive,
    Measure.ACTIVE_DAYS: _Additive,
    Measure.LATEST: _Reading,
    Measure.PEAK: _Reading,
    Measure.LOW: _Reading,
    Measure.DISTINCT: _Distinct,
    Measure.NEW_DISTINCT: _NewDistinct,
    Measure.SHARE: _Share,
    Measure.RATIO: _Ratio,
}
_COMPARATORS: dict[str, Callable[[float, float], bool]] = {
    "at_least": operator.ge,
    "more_than": operator.gt,
    "at_most": operator.le,
    "less_than": operator.lt,
}


class _MetricRule:
    """A compiled MetricSignal: `held` is the fast path, `observe` builds the evidence."""

    def __init__(self, name: str, signal: MetricSignal, description: str | None = None) -> None:
        description = description or _describe(signal)
        where = signal.where_values()
        if where:  # the filtered events are a metric of their own: the slice (shared/counters/slices.py)
            signal = signal.model_copy(
                update={"metric": slice_key(signal.metric or "", *where), "where": None}
            )
        self.name = name
        self.signal = signal
        self.window = days(signal.window)
        self.periods = signal.sustained or 1
        self.rising = signal.rising or 0
        comparison, threshold = signal.threshold() or (None, None)
        self.comparison = comparison
        self.compare = _COMPARATORS[comparison] if comparison else None
        self.fixed_bound = float(threshold) if isinstance(threshold, int | float) else None
        self.segment_bounds = threshold if isinstance(threshold, BySegment) else None
        self.description = description
        self.metric = signal.metric or ""
        self.per_limit = signal.per_limit or ""
        self.no_limit = Missing(f"no plan limit for {signal.per_limit} on file")
        self.growth = signal.growth
        # from_zero: fire: a rise from a zero baseline is infinite growth (docs/rules.md, "Growth").
        self.from_zero_fires = bool(signal.growth and signal.growth.from_zero == "fire")
        self.previous_window = bool(signal.growth and signal.growth.over == "previous_window")
        self.baseline_days = days(signal.growth.baseline_window or "1d") if signal.growth else 0
        baseline_window = signal.growth.baseline_window if signal.growth else ""
        self.no_baseline = Missing(f"no {self.metric} readings in the {baseline_window} baseline")
        self.metrics_read = list(dict.fromkeys(metric for _, _, metric in signal.measured()))
        self.measure = _Forecast(signal) if signal.forecast else _MEASURES[signal.measure](signal)
        self.change_offsets, self.reach = self._change_offsets()
        # A projection is made from the evaluation day: it moves with it, new data or not.
        self.moves_daily = isinstance(self.measure, _Forecast)
        plain = not (self.growth or self.rising or self.periods > 1)
        self.prunable = plain and self.measure.prunable and comparison in ("at_least", "more_than")
        # `held` runs for every signal of every evaluation: straight-line code generated for this
        # signal (see "Generated code" below); `reference_held` is what it must agree with.
        self.source = _held_source(self) + "\n\n" + _stable_until_source(self)
        generated = _compile(self.source, f"<signal {name}>", {"_RULE": self})
        self.held: Callable[[_Context, int], bool] = generated["held"]
        self.stable_until: Callable[[_Context, int], int] = generated["stable_until"]

    def bound(self, context: _Context) -> float | None:
        """The threshold for the account (its segment, industry, headcount)."""
        calibrated = self.segment_bounds
        if calibrated is None:
            return self.fixed_bound
        return calibrated.value_for(context.segment, context.industry, context.employees)

    # held: the generic path (the reference for the generated `held`; evidence uses it)

    def reference_held(self, context: _Context, day: int) -> bool:
        compare, bound = self.compare, self.bound(context)
        if self.rising:
            values = self.rising_values(context, day)
            latest = values[-1]
            if not _rose(values) or isinstance(latest, Missing):
                return False
            return bound is None or compare is None or compare(latest, bound)
        for period in range(self.periods):
            found = self.value(context, day - self.window * period)
            if isinstance(found, Missing):
                return False
            if bound is not None and compare is not None and not compare(found, bound):
                return False
        return True

    def rising_values(self, context: _Context, day: int) -> list[float | Missing]:
        return [self.value(context, day - self.window * period) for period in range(self.rising, -1, -1)]

    def value(self, context: _Context, end: int) -> float | Missing:
        """The measure, then its growth over the baseline, then per plan limit, as the signal asks."""
        found = self.measure.value(context, end)
        if isinstance(found, Missing):
            return found
        if self.growth:
            baseline = self.baseline(context, end)
            if isinstance(baseline, Missing):
                return baseline
            if baseline == 0:
                if not self.from_zero_fires:
                    return _ZERO_BASELINE
                found = _from_zero(found)
            else:
                found = (found - baseline) / baseline
        if self.per_limit:
            limit = context.limits.get(self.per_limit)
            if not limit:
                return self.no_limit
            found = found / limit
        return found

    def baseline(self, context: _Context, end: int) -> float | Missing:
        if self.previous_window:
            return self.measure.value(context, end - self.window)
        series = context.metrics.get(self.metric)
        if series is None:
            return self.no_baseline
        total, readings = series.readings(*context.window(end - self.window, self.baseline_days))
        if not readings:
            return self.no_baseline
        return float(total) / readings

    # pruning: one bound over many days at once

    def could_hold(self, context: _Context, first: int, last: int) -> bool:
        """False when the signal holds on none of the days from first to last: an upper bound of
        its measure over all their windows together already fails the threshold."""
        if not self.prunable or self.compare is None:
            return True
        highest = self.measure.upper_bound(context, *context.window(last, last - first + self.window))
        if highest is None:
            return False
        if self.per_limit:
            limit = context.limits.get(self.per_limit)
            if not limit:
                return False
            highest = highest / limit
        bound = self.bound(context)
        return bound is None or self.compare(highest, bound)

    # change days: between two of them nothing the signal reads changes

    def _change_offsets(self) -> tuple[tuple[int, ...], int]:
        """Offsets from a day of data to the days its entering or leaving a window can change the signal.

        The signal at day t reads windows [t - a, t - b]; a day of data x is in one from t = x + b
        to t = x + a, so the signal can change only at t = x + b and t = x + a + 1.
        """
        w = self.window
        periods = self.rising + 1 if self.rising else self.periods
        windows = [(p * w + w - 1, p * w) for p in range(periods)]
        if self.previous_window:
            windows += [(a + w, b + w) for a, b in windows]
        elif self.growth:
            windows += [(b + w + self.baseline_days - 1, b + w) for _, b in windows]
        if isinstance(self.measure, _NewDistinct):  # a day leaving a window is "seen before" for a while
            windows += [(a + self.measure.before, b) for a, b in windows]
        offsets = tuple(sorted({offset for a, b in windows for offset in (b, a + 1)}))
        return offsets, max(a for a, _ in windows) + 1

    def change_days(self, context: _Context, first: int, last: int) -> list[int]:
        if context.exhaustive or self.moves_daily:
            return list(range(first, last + 1))
        days_ = {first}
        for metric in self.metrics_read:
            series = context.metrics.get(metric)
            if series is None:
                continue
            for data_day in series.days_between(first - self.reach, last):
                for offset in self.change_offsets:
                    if first < data_day + offset <= last:
                        days_.add(data_day + offset)
        return sorted(days_)

    # observe: the evidence

    def observe(self, context: _Context, day: int) -> Observation:
        if self.rising:
            return self._observe_rising(context, day)
        observations = [
            self._observe_window(context, day - self.window * period) for period in range(self.periods)
        ]
        if self.periods == 1:
            return observations[0]
        shown = [
            f"{seen.observed:.4g}"
            if seen.observed is not None
            else _shown(self.value(context, day - self.window * period))
            for period, seen in reversed(list(enumerate(observations)))
        ]
        return replace(
            observations[0],
            held=all(observation.held for observation in observations),
            window_from=date.fromordinal(day - self.window * self.periods + 1),
            detail=f"{self.description} in each of {self.periods} consecutive {self.signal.window} windows, "
            f"oldest first: {', '.join(shown)}",
        )

    def _observe_window(self, context: _Context, end: int) -> Observation:
        first, last = date.fromordinal(end - self.window + 1), date.fromordinal(end)
        value = self.value(context, end)
        bound = self.bound(context)
        if isinstance(value, Missing):
            return Observation(self.name, False, None, self.comparison, bound, first, last, value.text())
        held = bound is None or (self.compare is not None and self.compare(value, bound))
        detail = f"{self.description} = {_shown(value)}"
        observed = round(value, 6) if math.isfinite(value) else None  # evidence is strict JSON
        return Observation(self.name, held, observed, self.comparison, bound, first, last, detail)

    def _observe_rising(self, context: _Context, day: int) -> Observation:
        values = self.rising_values(context, day)
        bound = self.bound(context)
        latest = values[-1]
        shown = ", ".join(_shown(value) for value in values)
        return Observation(
            self.name,
            self.reference_held(context, day),
            None if isinstance(latest, Missing) or not math.isfinite(latest) else latest,
            self.comparison or "rising",
            bound if bound is not None else float(self.rising),
            date.fromordinal(day - self.window * (self.rising + 1) + 1),
            date.fromordinal(day),
            f"{self.description} per {self.signal.window} window, oldest first: {shown}",
        )


# ── generated code: one straight-line `held` per metric signal ─────────────────────────────────
#
# The generic path above walks the signal's structure on every call (periods, measure, growth,
# plan limit, threshold): a dozen Python calls per window. `_held_source` walks it once, at compile
# time, and writes the same steps out as one function per signal, with the metric names, window
# lengths and thresholds as constants. Every value is computed by the same operations in the same
# order as `reference_held` (so floats agree to the bit); tests/unit/test_engine_incremental.py
# checks both agree on random histories. The source stays inspectable: `_MetricRule.source`, and
# registered with `linecache`, so tracebacks and debuggers show the generated lines.


def _held_source(rule: _MetricRule) -> str:
    """A function `held(context, day) -> bool` for the signal: what `reference_held` answers."""
    lines = [
        "from bisect import bisect_left, bisect_right",
        "",
        "_INF = float('inf')",
        "# _RULE: the compiled rule itself, for the parts read through its own code",
    ]
    if rule.segment_bounds is not None and rule.segment_bounds.by_segment_only:
        lines.append(f"_BOUNDS = {dict(rule.segment_bounds.segments or {})!r}")
    lines += [
        "",
        "",
        f"def held(context, day):  # {rule.name}: {rule.description}",
        "    first, last = context.first, context.last",
    ]
    series = {rule.metric} if rule.metric else set()
    for metric in sorted(series):  # a gauge without readings, a missing limit: no window has a value
        lines.append(f"    series = context.metrics.get({metric!r})")
        # The series' arrays are brought up to date when asked for (MetricSeries): once, here.
        if isinstance(rule.measure, _Reading):
            lines += ["    if series is None:", "        return False", "    series.reading_arrays()"]
            lines.append("    days = series.days")
        elif isinstance(rule.measure, _Additive):
            accessor = _ADDITIVE_SUMS[rule.measure.which]
            lines += ["    if series is not None:", f"        sums, days = series.{accessor}(), series.days"]
    for variable, metric, dimension in _distinct_parts(rule.measure):
        lines.append(f"    {variable} = context.history.distinct_series({metric!r}, {dimension!r})")
    if rule.per_limit:
        lines += [
            f"    limit = context.limits.get({rule.per_limit!r})",
            "    if not limit:",
            "        return False",
        ]
    if rule.segment_bounds is not None and rule.segment_bounds.by_segment_only:
        bounds = rule.segment_bounds
        lines.append(f"    bound = _BOUNDS.get(context.segment, {bounds.default!r})")
    elif rule.segment_bounds is not None:  # by industry or headcount too: the model's own lookup
        lines.append("    bound = _RULE.bound(context)")
    elif rule.fixed_bound is not None:
        lines.append(f"    bound = {rule.fixed_bound!r}")
    compare = {"at_least": ">=", "more_than": ">", "at_most": "<=", "less_than": "<"}.get(
        rule.comparison or ""
    )
    if rule.rising:
        periods = range(rule.rising, -1, -1)  # oldest first
        values = [f"value_{period}" for period in periods]
        for period, value in zip(periods, values, strict=True):
            lines += _value_lines(rule, rule.window * period, value)
        lines += [f"    if not ({' < '.join(values)}):", "        return False"]
        lines.append(f"    return {values[-1]} {compare} bound" if compare else "    return True")
    else:
        for period in range(rule.periods):
            lines += _value_lines(rule, rule.window * period, "value")
            if compare:
                lines += [f"    if not (value {compare} bound):", "        return False"]
        lines.append("    return True")
    return "\n".join(lines) + "\n"


def _value_lines(rule: _MetricRule, back: int, target: str) -> list[str]:
    """Lines setting `target` to the signal's value over the window ending `back` days before `day`
    (or returning False when it has none): the measure, its growth over the baseline, per limit."""
    lines = _measure_lines(rule.measure, back, target)
    if rule.previous_window:
        lines += _measure_lines(rule.measure, back + rule.window, "baseline")
    elif rule.growth:
        lines += _span_lines(back + rule.window + rule.baseline_days - 1, back + rule.window)
        lines += [
            "    readings = series.cum_readings[hi] - series.cum_readings[lo] if hi > lo else 0",
            "    if not readings:",
            "        return False",
            "    baseline = float(series.cum_last[hi] - series.cum_last[lo]) / readings",
        ]
    if rule.from_zero_fires:  # _from_zero, inlined
        lines += [
            "    if baseline == 0:",
            f"        {target} = _INF if {target} > 0 else -_INF if {target} < 0 else 0.0",
            "    else:",
            f"        {target} = ({target} - baseline) / baseline",
        ]
    elif rule.growth:
        lines += [
            "    if baseline == 0:",
            "        return False",
            f"    {target} = ({target} - baseline) / baseline",
        ]
    if rule.per_limit:
        lines.append(f"    {target} = {target} / limit")
    return lines


def _span_lines(oldest: int, newest: int, indent: str = "    ") -> list[str]:
    """Lines setting lo, hi to the series' entries from `oldest` to `newest` days before `day`, as
    far as the history is readable (MetricSeries.span, inlined)."""
    end = f"day - {newest}" if newest else "day"
    return [
        f"{indent}lo = bisect_left(days, max(day - {oldest}, first))",
        f"{indent}hi = bisect_right(days, min({end}, last))",
    ]


_ADDITIVE_SUMS = {Measure.SUM: "total_sums", Measure.COUNT: "event_sums", Measure.ACTIVE_DAYS: "active_sums"}


def _measure_lines(measure: _Measure, back: int, target: str) -> list[str]:
    oldest = back + measure.span
    if isinstance(measure, _Additive):
        return [
            "    if series is None:",
            f"        {target} = 0.0",
            "    else:",
            *_span_lines(oldest, back, indent="        "),
            f"        {target} = float(sums[hi] - sums[lo]) if hi > lo else 0.0",
        ]
    if isinstance(measure, _Reading) and measure.which is Measure.LATEST:
        return [
            *_span_lines(oldest, back),
            "    at = series.latest_reading[hi - 1] if hi > lo else -1",
            "    if at < lo:",
            "        return False",
            f"    {target} = series.lasts[at]",
        ]
    if isinstance(measure, _Reading):
        end = f"day - {back}" if back else "day"
        return [
            f"    {target} = series.{measure.which.value}(max(day - {oldest}, first), min({end}, last))",
            f"    if {target} is None:",
            "        return False",
        ]
    end = f"day - {back}" if back else "day"
    if isinstance(measure, _Ratio | _Forecast):  # the measure's own code: not worth inlining
        return [
            f"    {target} = _RULE.measure.value(context, {end})",
            f"    if {target}.__class__ is not float:",
            "        return False",
        ]
    window = f"max(day - {oldest}, first), min({end}, last)"
    # Distinct values as bitmasks (DistinctSeries.mask): len(set) is mask.bit_count().
    if isinstance(measure, _NewDistinct):
        seen = f"max(day - {oldest + measure.before}, first), min(day - {oldest + 1}, last)"
        return [
            "    if values_series is None:",
            f"        {target} = 0.0",
            "    else:",
            f"        mask = values_series.mask({window})",
            f"        {target} = float((mask & ~values_series.mask({seen})).bit_count()) if mask else 0.0",
        ]
    if isinstance(measure, _Distinct):
        return [
            f"    mask = values_series.mask({window}) if values_series is not None else 0",
            f"    {target} = float(mask.bit_count())",
        ]
    assert isinstance(measure, _Share)
    return [
        f"    among = among_series.mask({window}) if among_series is not None else 0",
        "    if not among:",
        "        return False",
        f"    of = of_series.mask({window}) if of_series is not None else 0",
        f"    {target} = (of & among).bit_count() / among.bit_count()",
    ]


def _distinct_parts(measure: _Measure) -> list[tuple[str, str, str]]:
    """The (metric, dimension) series a distinct or share measure reads, with their names in `held`."""
    if isinstance(measure, _Distinct):
        return [("values_series", measure.metric, measure.dimension)]
    if isinstance(measure, _Share):
        return [
            ("among_series", measure.among.metric, measure.among.dimension),
            ("of_series", measure.of.metric, measure.of.dimension),
        ]
    return []


def _stable_until_source(rule: _MetricRule) -> str:
    """A function `stable_until(context, day) -> int`: the last day of the run that starts on `day`,
    the day before the next change day (`_MetricRule.change_days`). It reads every day the history
    holds, later ones included: a run ends where a day recorded in advance enters a window."""
    if rule.moves_daily:  # no run: the answer may change from one day to the next
        return f"def stable_until(context, day):  # {rule.name}\n    return day\n"
    lines = [
        f"def stable_until(context, day):  # {rule.name}",
        f"    until = {_FOREVER}",
    ]
    for metric in rule.metrics_read:
        lines += [
            f"    series = context.metrics.get({metric!r})",
            "    if series is not None:",
            "        days = series.days",
        ]
        for offset in rule.change_offsets:  # smallest first: the likeliest to end the run at once
            # days[at] is the first data day entering (or leaving) a window after `day`.
            ends = f"days[at] + {offset - 1}" if offset else "days[at] - 1"
            lines += [
                f"        at = bisect_right(days, day - {offset})"
                if offset
                else "        at = bisect_right(days, day)",
                f"        if at < len(days) and {ends} < until:",
                f"            until = {ends}",
                "            if until == day:",
                "                return day",
            ]
    lines.append("    return until")
    return "\n".join(lines) + "\n"


def _compile(source: str, filename: str, names: dict[str, Any] | None = None) -> dict[str, Any]:
    """The functions the source defines (seeing `names`); the source is registered with `linecache`
    for tracebacks."""
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    namespace: dict[str, Any] = dict(names or {})
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 -- our own generated source
    return namespace


_FOREVER = date.max.toordinal()


def _rose(values: list[float | Missing]) -> bool:
    return all(
        not isinstance(earlier, Missing) and not isinstance(later, Missing) and later > earlier
        for earlier, later in itertools.pairwise(values)
    )


class _CompositeRule:
    """A compiled CompositeSignal: at least n_of members held on some day within the window."""

    def __init__(self, name: str, signal: CompositeSignal) -> None:
        self.name = name
        self.members = list(signal.signals)
        self.n_of = signal.n_of
        self.within = days(signal.within)
        self.within_text = signal.within

    def held(self, context: _Context, day: int) -> bool:
        needed, remaining = self.n_of, len(self.members)
        for member in self.members:
            remaining -= 1
            if context.last_held(member, day, self.within) is not None:
                needed -= 1
                if not needed:
                    return True
            elif remaining < needed:
                return False
        return False

    def observe(self, context: _Context, day: int) -> Observation:
        members = []
        for member in self.members:
            # The most recent day in the window on which the member held (or today's view if none).
            held_on = context.last_held(member, day, self.within)
            members.append(context.observe(member, day if held_on is None else held_on))
        count = sum(member.held for member in members)
        return Observation(
            signal=self.name,
            held=count >= self.n_of,
            observed=float(count),
            comparison="at_least",
            threshold=float(self.n_of),
            window_from=date.fromordinal(day - self.within + 1),
            window_to=date.fromordinal(day),
            detail=f"{count} of {len(members)} signals held within {self.within_text}",
            members=tuple(members),
        )

    def change_days(self, context: _Context, first: int, last: int) -> list[int]:
        # A composite of composites: rare enough to test every day.
        return list(range(first, last + 1))

    def stable_until(self, context: _Context, day: int) -> int:
        return day

    def could_hold(self, context: _Context, first: int, last: int) -> bool:
        return True


class _GroupRule:
    """A MetricSignal with group_by: the signal evaluated for each value of the dimension (its group
    slice), holding when it holds for at least `groups_at_least` of them."""

    _MAX_COMPILED = 4096

    def __init__(self, name: str, signal: MetricSignal, description: str | None = None) -> None:
        assert signal.metric
        assert signal.group_by
        assert signal.groups_at_least
        self.name = name
        self.metric, self.dimension, self.needed = signal.metric, signal.group_by, signal.groups_at_least
        self.plain = signal.model_copy(update={"group_by": None, "groups_at_least": None})
        # The signal over all the metric's events: what reads which days, for runs and change days.
        self.template = _MetricRule(name, self.plain)
        self.description = f"{description or _describe(self.plain)} per {self.dimension}"
        self._per_group: dict[str, _MetricRule] = {}

    def group(self, key: str) -> _MetricRule:
        rule = self._per_group.get(key)
        if rule is None:
            if len(self._per_group) >= self._MAX_COMPILED:
                self._per_group.clear()
            plain = self.plain.model_copy(update={"metric": key})
            rule = self._per_group[key] = _MetricRule(self.name, plain, self.description)
        return rule

    def groups(self, context: _Context, day: int) -> list[str]:
        """The values with data in the days the signal reads for `day` (within the view): the same
        whatever else the history holds, so answers can be kept between evaluations."""
        first, last = context.window(day, self.template.reach)
        series = context.metrics
        return [
            key
            for key in context.history.groups(self.metric, self.dimension)
            if series[key].days_between(first, last)
        ]

    def held(self, context: _Context, day: int) -> bool:
        needed = self.needed
        for key in self.groups(context, day):
            if self.group(key).held(context, day):
                needed -= 1
                if not needed:
                    return True
        return False

    def observe(self, context: _Context, day: int) -> Observation:
        keys = self.groups(context, day)
        held = sum(self.group(key).reference_held(context, day) for key in keys)
        template = self.template.observe(context, day)
        comparison, bound = template.comparison, template.threshold
        condition = f"{comparison} {bound:g}" if comparison and bound is not None else (comparison or "")
        return Observation(
            signal=self.name,
            held=held >= self.needed,
            observed=float(held),
            comparison="at_least",
            threshold=float(self.needed),
            window_from=template.window_from,
            window_to=template.window_to,
            detail=f"{held} of {len(keys)} {self.dimension} values: {self.description} {condition}".rstrip(),
        )

    def change_days(self, context: _Context, first: int, last: int) -> list[int]:
        return self.template.change_days(context, first, last)

    def stable_until(self, context: _Context, day: int) -> int:
        return self.template.stable_until(context, day)

    def could_hold(self, context: _Context, first: int, last: int) -> bool:
        return True


class _CoveredRule:
    """A signal that requires a full window (`requires_full_window`, docs/rules.md "Data coverage"):
    on a day whose lookback starts before the account's data coverage, it does not hold, whatever
    its measure says; from the first covered day on, it is the wrapped signal.

    Coverage is one day per account (`_Context.coverage`), so the answer changes at most once, on
    that day plus the lookback: runs and change days add that day, nothing else.
    """

    def __init__(self, rule: _MetricRule | _GroupRule, lookback: int) -> None:
        self.rule = rule
        self.name = rule.name
        self.back = lookback - 1  # the signal for a day reads from `back` days before it

    def __getattr__(self, name: str) -> Any:  # source, template, reference_held…: the wrapped rule's
        return getattr(self.rule, name)

    def held(self, context: _Context, day: int) -> bool:
        return day - self.back >= context.coverage and self.rule.held(context, day)

    def observe(self, context: _Context, day: int) -> Observation:
        observation = self.rule.observe(context, day)
        needed_from = day - self.back
        if needed_from >= context.coverage:
            return observation
        data_from = date.fromordinal(context.coverage) if context.coverage < _FOREVER else None
        since = f"starts {data_from.isoformat()}" if data_from else "has no first event or created_at"
        return replace(
            observation,
            held=False,
            detail=f"not enough history: the account's data {since}, the signal reads from "
            f"{date.fromordinal(needed_from).isoformat()} (requires_full_window); {observation.detail}",
            uncovered=(data_from, date.fromordinal(needed_from)),
        )

    def first_covered(self, context: _Context) -> int:
        return min(context.coverage + self.back, _FOREVER)

    def change_days(self, context: _Context, first: int, last: int) -> list[int]:
        found = self.rule.change_days(context, first, last)
        covered = self.first_covered(context)
        if first < covered <= last and covered not in found:
            found = sorted([*found, covered])
        return found

    def stable_until(self, context: _Context, day: int) -> int:
        covered = self.first_covered(context)
        if day < covered:
            return covered - 1  # not held until the first covered day, data or not
        return self.rule.stable_until(context, day)

    def could_hold(self, context: _Context, first: int, last: int) -> bool:
        return last >= self.first_covered(context) and self.rule.could_hold(context, first, last)


_Rule = _MetricRule | _CompositeRule | _GroupRule | _CoveredRule
_ZERO_BASELINE = Missing("the baseline is zero: growth is undefined (from_zero: fire would count a rise)")
_INF = float("inf")


def _from_zero(value: float) -> float:
    """Growth from a zero baseline, with from_zero: fire: a rise is above any threshold, a fall
    below any, and zero to zero is no growth."""
    return _INF if value > 0 else -_INF if value < 0 else 0.0


def _shown(value: float | Missing) -> str:
    """A window's value as the evidence's detail shows it."""
    if isinstance(value, Missing):
        return "none"
    if math.isinf(value):
        return "a rise from zero" if value > 0 else "a fall from zero"
    return f"{value:.4g}"


def _describe(signal: MetricSignal) -> str:
    if signal.measure is Measure.SHARE:
        assert signal.of
        assert signal.among
        text = f"share of {signal.among.metric} {signal.among.dimension}s in {signal.of.metric}"
    elif signal.measure is Measure.DISTINCT:
        text = f"distinct {signal.dimension} of {signal.metric} over {signal.window}"
    elif signal.measure is Measure.NEW_DISTINCT:
        text = (
            f"new {signal.dimension} of {signal.metric} over {signal.window} "
            f"(not seen in the {signal.not_seen_in} before)"
        )
    elif signal.ratio is not None:
        numerator, denominator = _part_text(signal.ratio.numerator), _part_text(signal.ratio.denominator)
        text = f"{numerator} per {denominator} over {signal.window}"
    elif signal.measure in (Measure.LATEST,):
        text = f"latest {signal.metric}"
    else:
        text = f"{signal.measure.value.replace('_', ' ')} of {signal.metric} over {signal.window}"
    if signal.growth:
        previous = signal.growth.over == "previous_window"
        baseline = "the previous window" if previous else f"the {signal.growth.baseline_window} average"
        text = f"growth of {text} vs {baseline}"
    where = signal.where_values()
    if where:
        text += f" where {where[0]} is {' or '.join(where[1])}"
    if signal.forecast:
        text += f", its trend's highest in the next {signal.forecast.within}"
    if signal.per_limit:
        text += f" / plan limit {signal.per_limit}"
    if signal.scope == "family":
        text += " across the family"
    return text
