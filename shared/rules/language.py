"""The rules language: what RevOps writes in rules/*.yaml (docs/rules.md explains it).

A ruleset declares the metrics it reads, names *signals* (one measurable condition each, or a
composite of other signals) and *triggers* (a signal that, when it holds for an account, fires a
play, unless an exclusion applies). These pydantic models are the single definition: the JSON
Schema (`upswing rules schema`) is generated from them, and `shared/rules/loading.py` turns
their errors into file:line messages.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    model_validator,
)

from shared.accounts.models import MAX_EMPLOYEES
from shared.counters.slices import MAX_GROUPS_PER_DAY
from shared.events.contract import DEFAULT_RETENTION_DAYS
from shared.events.models import AccountId, DimensionKey, DimensionValue, EventKind, MetricName
from shared.rules.durations import days
from shared.rules.plays import Budgets, Destinations, GoLive, Play

DURATION_PATTERN = r"^[1-9][0-9]{0,3}[dw]$"
Duration = Annotated[
    str,
    StringConstraints(pattern=DURATION_PATTERN),
    Field(description="Whole days or weeks: 14d, 30d, 13w. Windows end with the evaluation day, inclusive."),
]
Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,63}$")]
Label = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Measure(StrEnum):
    SUM = "sum"  # total of the values in the window (counts)
    COUNT = "count"  # number of events in the window
    DISTINCT = "distinct"  # distinct values of a dimension in the window
    NEW_DISTINCT = "new_distinct"  # ...of those, the values not seen in the `not_seen_in` days before it
    ACTIVE_DAYS = "active_days"  # days with at least one event in the window
    LATEST = "latest"  # the latest reading of a gauge (looking back at most `window`)
    PEAK = "peak"  # the highest reading of a gauge in the window
    LOW = "low"  # the lowest reading of a gauge in the window
    SHARE = "share"  # |values of `of` ∩ values of `among`| / |values of `among`| in the window
    RATIO = "ratio"  # one measure of a metric divided by another's, over the same window


GAUGE_MEASURES = frozenset({Measure.LATEST, Measure.PEAK, Measure.LOW})
# What a slice (shared/counters/slices.py) keeps: a MetricDay, no distinct values.
_SLICEABLE = frozenset({Measure.SUM, Measure.COUNT, Measure.ACTIVE_DAYS, *GAUGE_MEASURES})


class Category(StrEnum):
    ADOPTION = "adoption"
    VALUE = "value"
    STAKEHOLDER = "stakeholder"
    COMMERCIAL = "commercial"
    RISK = "risk"
    INTENT = "intent"


class EmployeeBand(_Strict):
    at_least: int = Field(ge=0, le=MAX_EMPLOYEES, description="The band's smallest headcount.")
    value: float = Field(allow_inf_nan=False, description="The threshold for accounts of this band.")


class BySegment(_Strict):
    """A threshold calibrated by firmographics: the first of segments, industries, employees that
    names the account gives its value; `default` otherwise (or without a profile)."""

    default: float = Field(allow_inf_nan=False)
    segments: dict[Label, Annotated[float, Field(allow_inf_nan=False)]] | None = Field(
        default=None, min_length=1, description="By the profile's segment (checked first)."
    )
    industries: dict[Label, Annotated[float, Field(allow_inf_nan=False)]] | None = Field(
        default=None, min_length=1, description="By the profile's industry (checked second)."
    )
    employees: list[EmployeeBand] | None = Field(
        default=None,
        min_length=1,
        max_length=20,
        description="By the profile's employees (checked last): the band with the largest at_least "
        "not above the headcount.",
    )

    @model_validator(mode="after")
    def _calibrated(self) -> BySegment:
        if self.segments is None and self.industries is None and self.employees is None:
            raise ValueError("give segments, industries or employees beside default (or a plain number)")
        if self.employees is not None:
            starts = [band.at_least for band in self.employees]
            if starts != sorted(set(starts)):
                raise ValueError("employee bands must be listed by at_least, smallest first, each once")
        return self

    def value_for(self, segment: str | None, industry: str | None, employees: int | None) -> float:
        """The threshold for an account with these firmographics."""
        if self.segments and segment in self.segments:
            return self.segments[segment]
        if self.industries and industry in self.industries:
            return self.industries[industry]
        if self.employees and employees is not None:
            for band in reversed(self.employees):
                if band.at_least <= employees:
                    return band.value
        return self.default

    @property
    def by_segment_only(self) -> bool:
        return self.industries is None and self.employees is None


# Unions are told apart by the shape of the value, so an error speaks of the form that was meant.
# Their tags start with "~" so that error locations can drop them (shared/rules/loading.py).
UNION_TAG_PREFIX = "~"


def _threshold_kind(value: Any) -> str:
    return "~by_segment" if isinstance(value, dict | BySegment) else "~number"


Threshold = Annotated[
    Annotated[float, Field(allow_inf_nan=False), Tag("~number")] | Annotated[BySegment, Tag("~by_segment")],
    Discriminator(_threshold_kind),
]


class DimensionOf(_Strict):
    metric: MetricName
    dimension: DimensionKey


class RatioPart(_Strict):
    """One side of a ratio: a measure of one metric over the signal's window."""

    measure: Measure = Field(description="sum, count, active_days, distinct, latest, peak or low.")
    metric: MetricName
    dimension: DimensionKey | None = Field(default=None, description="Required for distinct.")

    @model_validator(mode="after")
    def _plain_measure(self) -> RatioPart:
        if self.measure in (Measure.SHARE, Measure.RATIO, Measure.NEW_DISTINCT):
            raise ValueError(f"a side of a ratio is a plain measure, not {self.measure.value}")
        if (self.measure is Measure.DISTINCT) != (self.dimension is not None):
            raise ValueError("dimension is required with measure distinct, and only there")
        return self


class Ratio(_Strict):
    """numerator / denominator over the same window; a zero denominator: no value (does not hold)."""

    numerator: RatioPart
    denominator: RatioPart


class Forecast(_Strict):
    """Holds when the measure's linear trend over the window reaches `reaches` within `within` days
    (after per_limit: 1.0 = the plan limit). docs/rules.md, "Projection", gives the method."""

    reaches: float = Field(allow_inf_nan=False, description="The level, e.g. 1.0 of the plan limit.")
    within: Duration = Field(description="How far ahead of the evaluation day the trend is projected.")


class Growth(_Strict):
    """Compare the measure with a baseline: (value - baseline) / baseline, e.g. 0.25 = +25 %."""

    over: Literal["previous_window", "average"] = Field(
        description="previous_window: the same measure over the window just before; average: the "
        "mean daily reading of the gauge over `baseline_window` before the current one."
    )
    baseline_window: Duration | None = Field(default=None, description="With over: average.")
    from_zero: Literal["skip", "fire"] = Field(
        default="skip",
        description="A zero baseline: skip (the signal does not hold: growth is undefined) or fire "
        "(a rise from zero is growth above any threshold, a fall below any; zero to zero is no growth).",
    )

    @model_validator(mode="after")
    def _baseline_window_only_for_average(self) -> Growth:
        if (self.over == "average") != (self.baseline_window is not None):
            raise ValueError("baseline_window is required with over: average, and only there")
        return self


class MetricSignal(_Strict):
    """A measurable condition on one account's counters (and, for per_limit, its plan)."""

    description: str | None = None
    measure: Measure
    metric: MetricName | None = Field(default=None, description="Required for every measure but share.")
    dimension: DimensionKey | None = Field(
        default=None, description="Required for distinct and new_distinct."
    )
    not_seen_in: Duration | None = Field(
        default=None,
        description="new_distinct: a value is new when the dimension did not have it in this many days "
        "before the window (read too: the read plan grows by it).",
    )
    of: DimensionOf | None = Field(default=None, description="share: the values counted…")
    among: DimensionOf | None = Field(default=None, description="share: …out of these values.")
    ratio: Ratio | None = Field(default=None, description="ratio: numerator / denominator.")
    window: Duration = Field(description="How far back the measure looks, ending with the evaluation day.")
    scope: Literal["account", "family"] = Field(
        default="account",
        description="family: the measure over the account and its children (parent_account_id) together; "
        "a trigger reading it fires on the parent, never on a child.",
    )
    per_limit: MetricName | None = Field(
        default=None, description="Divide by this plan limit of the account (plan.limits), e.g. seats."
    )
    where: (
        dict[
            DimensionKey, DimensionValue | Annotated[list[DimensionValue], Field(min_length=1, max_length=20)]
        ]
        | None
    ) = Field(
        default=None,
        min_length=1,
        max_length=1,
        description="Only the metric's events whose dimension has this value (or one of these values), "
        "e.g. {feature: sso}. One dimension; sum, count, active_days, latest, peak or low.",
    )
    group_by: DimensionKey | None = Field(
        default=None, description="Measure per value of this dimension (e.g. team): with groups_at_least."
    )
    groups_at_least: int | None = Field(
        default=None,
        ge=1,
        le=MAX_GROUPS_PER_DAY,
        description="Holds when the condition holds for at least this many values of group_by.",
    )
    growth: Growth | None = None
    forecast: Forecast | None = Field(
        default=None, description="sum or latest only: the linear trend reaches a level soon (the threshold)."
    )
    sustained: int | None = Field(
        default=None, ge=2, le=12, description="Must hold in this many consecutive windows ending now."
    )
    rising: int | None = Field(
        default=None, ge=2, le=12, description="The measure rose in each of this many consecutive windows."
    )
    at_least: Threshold | None = None
    more_than: Threshold | None = None
    at_most: Threshold | None = None
    less_than: Threshold | None = None
    requires_full_window: bool | None = Field(
        default=None,
        description="Hold only when the account's data covers every day the signal reads (its first "
        "event or its profile's created_at on or before the first of them). Default: true for sustained, "
        "low and growth (a baseline), false otherwise (docs/rules.md, 'Data coverage').",
    )

    @property
    def full_window_required(self) -> bool:
        """requires_full_window as given, or its default for this kind of signal."""
        if self.requires_full_window is not None:
            return self.requires_full_window
        return bool(self.sustained or self.growth or self.measure is Measure.LOW)

    @model_validator(mode="after")
    def _consistent(self) -> MetricSignal:
        thresholds = [
            name
            for name in ("at_least", "more_than", "at_most", "less_than")
            if getattr(self, name) is not None
        ]
        if len(thresholds) > 1:
            raise ValueError(f"give one threshold, not {' and '.join(thresholds)}")
        if self.forecast is not None:
            if thresholds or self.growth or self.sustained or self.rising:
                raise ValueError("forecast is the threshold: no other threshold, growth, sustained or rising")
            if self.measure not in (Measure.SUM, Measure.LATEST):
                raise ValueError("forecast projects a sum (its running total) or a gauge's latest readings")
            if days(self.window) < 2:
                raise ValueError("forecast fits a trend: the window needs at least 2 days")
        elif not thresholds and self.rising is None:
            raise ValueError("give a threshold (at_least, more_than, at_most or less_than) or rising")
        if (self.group_by is None) != (self.groups_at_least is None):
            raise ValueError("group_by and groups_at_least go together")
        if self.where is not None or self.group_by is not None:
            key = "where" if self.where is not None else "group_by"
            if self.measure not in _SLICEABLE:
                raise ValueError(
                    f"{key} slices a metric's own numbers: use sum, count, active_days, latest, peak or low"
                )
            if self.where is not None and self.group_by is not None:
                raise ValueError("use where or group_by, not both")
        if (self.measure is Measure.RATIO) != (self.ratio is not None):
            raise ValueError("ratio ({numerator, denominator}) goes with measure ratio, and only there")
        if self.measure is Measure.SHARE:
            if self.of is None or self.among is None or self.metric is not None:
                raise ValueError("share takes `of` and `among` ({metric, dimension} each), not `metric`")
        elif self.measure is Measure.RATIO:
            if self.metric is not None or self.dimension is not None:
                raise ValueError("ratio takes its metrics in numerator and denominator, not `metric`")
        elif self.metric is None:
            raise ValueError(f"measure {self.measure.value} needs a metric")
        distinct = self.measure in (Measure.DISTINCT, Measure.NEW_DISTINCT)
        if distinct != (self.dimension is not None):
            raise ValueError("dimension is required with measure distinct or new_distinct, and only there")
        if (self.measure is Measure.NEW_DISTINCT) != (self.not_seen_in is not None):
            raise ValueError("not_seen_in is required with measure new_distinct, and only there")
        if self.growth and self.growth.over == "average" and self.measure not in GAUGE_MEASURES:
            raise ValueError("growth over: average compares gauge readings: use latest, peak or low")
        if self.sustained and self.rising:
            raise ValueError("use sustained or rising, not both")
        if self.scope == "family":
            gauges = [measure.value for _, measure, _ in self.measured() if measure in GAUGE_MEASURES]
            if gauges:
                raise ValueError(
                    f"scope: family adds up the family's usage; {gauges[0]} reads one account's level "
                    "(a gauge): use it with scope: account, or a sum, count, active_days or distinct"
                )
        return self

    def measured(self) -> list[tuple[tuple[str, ...], Measure, MetricName]]:
        """Each (where in the signal, measure, metric) the signal reads."""
        if self.ratio is not None:
            return [
                (("ratio", side), part.measure, part.metric)
                for side, part in (
                    ("numerator", self.ratio.numerator),
                    ("denominator", self.ratio.denominator),
                )
            ]
        if self.of is not None and self.among is not None:
            return [
                (("of",), Measure.DISTINCT, self.of.metric),
                (("among",), Measure.DISTINCT, self.among.metric),
            ]
        return [((), self.measure, self.metric)] if self.metric else []

    def where_values(self) -> tuple[str, list[str]] | None:
        """The filter's dimension and values, a single value as a list of one."""
        if not self.where:
            return None
        ((dimension, values),) = self.where.items()
        return dimension, [values] if isinstance(values, str) else list(values)

    def threshold(self) -> tuple[str, Threshold] | None:
        if self.forecast is not None:
            return "at_least", self.forecast.reaches
        for name in ("at_least", "more_than", "at_most", "less_than"):
            value = getattr(self, name)
            if value is not None:
                return name, value
        return None


class CompositeSignal(_Strict):
    """Holds when at least `n_of` of `signals` held at some point within `within`."""

    description: str | None = None
    signals: list[Name] = Field(min_length=2)
    n_of: int = Field(ge=1, description="How many of the signals must have held.")
    within: Duration = Field(description="A signal counts if it held on any day of this window.")

    @model_validator(mode="after")
    def _reachable(self) -> CompositeSignal:
        if self.n_of > len(self.signals):
            raise ValueError(f"n_of is {self.n_of} but only {len(self.signals)} signals are listed")
        if len(set(self.signals)) != len(self.signals):
            raise ValueError("a signal is listed twice")
        return self


def _signal_kind(value: Any) -> str:
    composite = isinstance(value, CompositeSignal) or (isinstance(value, dict) and "signals" in value)
    return "~composite" if composite else "~metric"


Signal = Annotated[
    Annotated[MetricSignal, Tag("~metric")] | Annotated[CompositeSignal, Tag("~composite")],
    Discriminator(_signal_kind),
]


class Flag(StrEnum):
    DO_NOT_CONTACT = "do_not_contact"
    OPEN_EXPANSION_OPPORTUNITY = "open_expansion_opportunity"
    RENEWAL_IN_NEGOTIATION = "renewal_in_negotiation"
    CHURN_RISK = "churn_risk"
    TOP_TIER = "top_tier"  # the plan is the top tier: nothing to expand into


class RenewalWithin(_Strict):
    renewal_within: Duration


class ContactedWithin(_Strict):
    contacted_within: Duration = Field(description="Any play fired for the account within this window.")


class AgeBounds(_Strict):
    at_least: Duration | None = Field(default=None, description="A customer for at least this long.")
    at_most: Duration | None = Field(default=None, description="A customer for at most this long.")

    @model_validator(mode="after")
    def _some_bound(self) -> AgeBounds:
        if self.at_least is None and self.at_most is None:
            raise ValueError("give at_least, at_most or both")
        if self.at_least and self.at_most and days(self.at_least) > days(self.at_most):
            raise ValueError(f"at_least {self.at_least} is longer than at_most {self.at_most}: no age fits")
        return self


class AccountAge(_Strict):
    account_age: AgeBounds = Field(
        description="Days since the profile's created_at, to the evaluation day (unknown without it)."
    )


class SignalHolds(_Strict):
    signal: Name = Field(
        description="Any signal of the ruleset: applies when it holds on the evaluation day (as a "
        "trigger's `when` would), e.g. usage_decline."
    )


def _exclusion_kind(value: Any) -> str:
    if isinstance(value, RenewalWithin) or (isinstance(value, dict) and "renewal_within" in value):
        return "~renewal"
    if isinstance(value, ContactedWithin) or (isinstance(value, dict) and "contacted_within" in value):
        return "~contacted"
    if isinstance(value, SignalHolds) or (isinstance(value, dict) and "signal" in value):
        return "~signal"
    if isinstance(value, AccountAge) or (isinstance(value, dict) and "account_age" in value):
        return "~age"
    return "~flag"


# One kind of check serves both lists of a trigger: `unless` (none may apply) and `requires` (all
# must hold), so "renewal in 90 days" reads the same whether it blocks a play or calls for one.
Condition = Annotated[
    Annotated[Flag, Tag("~flag")]
    | Annotated[RenewalWithin, Tag("~renewal")]
    | Annotated[ContactedWithin, Tag("~contacted")]
    | Annotated[SignalHolds, Tag("~signal")]
    | Annotated[AccountAge, Tag("~age")],
    Discriminator(_exclusion_kind),
]
Exclusion = Condition


class Score(_Strict):
    """0 to 100: `base` plus the weight of every listed signal that held. Explainable by construction."""

    base: float = Field(default=0, ge=0, le=100)
    weights: dict[Name, Annotated[float, Field(gt=0, le=100)]] = Field(min_length=1)


HOLDOUT_MAX_PERCENT = 50
Percent = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9]{1,2}(\.[0-9]{1,2})?%$"),
    Field(description=f"A percentage of accounts, above 0 and at most {HOLDOUT_MAX_PERCENT}: 10%, 2.5%."),
]


class Experiment(_Strict):
    """What names a trigger's experiment (shared/experiments/assignment.py draws the groups)."""

    salt: Label = Field(
        description="Seeds the stable draw of accounts into groups (default: the trigger's name). A new "
        "salt is a new experiment: every account is drawn again."
    )


class Rollout(_Strict):
    """Which accounts a trigger is live for; the others are evaluated in shadow (recorded, never
    routed). One of: a stable random share, pilot accounts, or segments."""

    percent: float | None = Field(default=None, gt=0, lt=100, description="A stable random share: 25.")
    accounts: list[AccountId] | None = Field(default=None, min_length=1, description="Pilot accounts.")
    segments: list[Label] | None = Field(
        default=None, min_length=1, description="Accounts of these segments."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Rollout:
        given = [name for name in ("percent", "accounts", "segments") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give one of percent, accounts or segments, not {' and '.join(given) or 'none'}"
            )
        return self


class Trigger(_Strict):
    description: str | None = None
    category: Category
    owner_role: Label = Field(description="Who gets the play: a role of the account's owners (csm, ae…).")
    play: Name = Field(description="The play to run when the trigger fires.")
    when: Name = Field(description="The signal that fires the trigger.")
    unless: list[Condition] = Field(default_factory=list, description="Not when any of these applies.")
    requires: list[Condition] = Field(
        default_factory=list,
        description="Only when all of these hold (the same kinds as unless), e.g. {renewal_within: 90d}.",
    )
    segments: list[Label] | None = Field(default=None, description="Only accounts of these segments.")
    cooldown: Duration = Field(
        description="Fires at most once per account per cooldown; re-arms when the signal clears."
    )
    score: Score | None = Field(
        default=None, description="Default: the signal (or a composite's members) weighted equally."
    )
    holdout: Percent | None = Field(
        default=None,
        description="Hold out this share of accounts: their firings are recorded, never routed, so the "
        "play's lift can be measured (docs/rules.md, 'Experiments').",
    )
    experiment: Experiment | None = Field(
        default=None, description="With holdout or rollout: the experiment's salt."
    )
    rollout: Rollout | None = Field(
        default=None,
        description="Live only for these accounts; the others are evaluated in shadow: recorded, never "
        "routed, not compared (docs/rules.md, 'Experiments').",
    )

    @model_validator(mode="after")
    def _experiment_settings(self) -> Trigger:
        if self.holdout is not None and not 0 < self.holdout_percent <= HOLDOUT_MAX_PERCENT:
            raise ValueError(
                f"holdout must be above 0% and at most {HOLDOUT_MAX_PERCENT}%, not {self.holdout}"
            )
        if self.experiment is not None and self.holdout is None and self.rollout is None:
            raise ValueError("experiment names the salt of a holdout or rollout: give one of them too")
        return self

    @property
    def holdout_percent(self) -> float:
        """The holdout as a number of percent (0: no holdout)."""
        return float(self.holdout.removesuffix("%")) if self.holdout else 0.0


def _version_text(value: Any) -> Any:
    # YAML reads `version: 2026-11-23` as a date and `version: 3` as a number: both are fine names.
    return str(value) if isinstance(value, int | float | date) and not isinstance(value, bool) else value


class Ruleset(_Strict):
    version: Annotated[
        str, BeforeValidator(_version_text), StringConstraints(min_length=1, max_length=64)
    ] = Field(description="Named in every firing; change it with every reviewed change.")
    description: str | None = None
    metrics: dict[MetricName, EventKind] = Field(
        min_length=1, description="The metrics the signals read, with their kind (count or gauge)."
    )
    signals: dict[Name, Signal] = Field(min_length=1)
    triggers: dict[Name, Trigger] = Field(min_length=1)
    plays: dict[Name, Play] = Field(
        default_factory=dict, description="What each trigger's play does: owners, SLA, channels, message."
    )
    budgets: Budgets = Field(
        default_factory=Budgets, description="Anti-fatigue: plays per account, new tasks per owner."
    )
    destinations: Destinations = Field(
        default_factory=Destinations, description="Where the plays' webhook:NAME channels post."
    )
    go_live: GoLive = Field(
        default_factory=GoLive,
        description="What the end of a history import does with the triggers that already held.",
    )


MAX_LOOKBACK_DAYS = DEFAULT_RETENTION_DAYS


def lookback_days(ruleset: Ruleset, name: str, seen: frozenset[str] = frozenset()) -> int | None:
    """How many days back evaluating the signal reads (None for an unknown name or a cycle)."""
    signal = ruleset.signals.get(name)
    if signal is None or name in seen:
        return None
    if isinstance(signal, CompositeSignal):
        members = [lookback_days(ruleset, member, seen | {name}) for member in signal.signals]
        known = [member for member in members if member is not None]
        return days(signal.within) - 1 + max(known) if known else None
    window = days(signal.window)
    windows = signal.sustained or (signal.rising + 1 if signal.rising else 1)
    if signal.growth and signal.growth.over == "previous_window":
        windows += 1
    baseline = days(signal.growth.baseline_window) if signal.growth and signal.growth.baseline_window else 0
    # new_distinct reads the not_seen_in days before its oldest window (no growth over average with it).
    before = days(signal.not_seen_in) if signal.not_seen_in else 0
    return window * windows + baseline + before
