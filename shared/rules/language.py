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

from shared.events.contract import DEFAULT_RETENTION_DAYS
from shared.events.models import AccountId, DimensionKey, EventKind, MetricName
from shared.rules.plays import Budgets, Play

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
    ACTIVE_DAYS = "active_days"  # days with at least one event in the window
    LATEST = "latest"  # the latest reading of a gauge (looking back at most `window`)
    PEAK = "peak"  # the highest reading of a gauge in the window
    LOW = "low"  # the lowest reading of a gauge in the window
    SHARE = "share"  # |values of `of` ∩ values of `among`| / |values of `among`| in the window


GAUGE_MEASURES = frozenset({Measure.LATEST, Measure.PEAK, Measure.LOW})


class Category(StrEnum):
    ADOPTION = "adoption"
    VALUE = "value"
    STAKEHOLDER = "stakeholder"
    COMMERCIAL = "commercial"
    RISK = "risk"
    INTENT = "intent"


class BySegment(_Strict):
    """A threshold calibrated per segment: `default` unless the account's segment is listed."""

    default: float = Field(allow_inf_nan=False)
    segments: dict[Label, Annotated[float, Field(allow_inf_nan=False)]] = Field(min_length=1)


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


class Growth(_Strict):
    """Compare the measure with a baseline: (value - baseline) / baseline, e.g. 0.25 = +25 %."""

    over: Literal["previous_window", "average"] = Field(
        description="previous_window: the same measure over the window just before; average: the "
        "mean daily reading of the gauge over `baseline_window` before the current one."
    )
    baseline_window: Duration | None = Field(default=None, description="With over: average.")

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
    dimension: DimensionKey | None = Field(default=None, description="Required for distinct.")
    of: DimensionOf | None = Field(default=None, description="share: the values counted…")
    among: DimensionOf | None = Field(default=None, description="share: …out of these values.")
    window: Duration = Field(description="How far back the measure looks, ending with the evaluation day.")
    per_limit: MetricName | None = Field(
        default=None, description="Divide by this plan limit of the account (plan.limits), e.g. seats."
    )
    growth: Growth | None = None
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

    @model_validator(mode="after")
    def _consistent(self) -> MetricSignal:
        thresholds = [
            name
            for name in ("at_least", "more_than", "at_most", "less_than")
            if getattr(self, name) is not None
        ]
        if len(thresholds) > 1:
            raise ValueError(f"give one threshold, not {' and '.join(thresholds)}")
        if not thresholds and self.rising is None:
            raise ValueError("give a threshold (at_least, more_than, at_most or less_than) or rising")
        if self.measure is Measure.SHARE:
            if self.of is None or self.among is None or self.metric is not None:
                raise ValueError("share takes `of` and `among` ({metric, dimension} each), not `metric`")
        elif self.metric is None:
            raise ValueError(f"measure {self.measure.value} needs a metric")
        if (self.measure is Measure.DISTINCT) != (self.dimension is not None):
            raise ValueError("dimension is required with measure distinct, and only there")
        if self.growth and self.growth.over == "average" and self.measure not in GAUGE_MEASURES:
            raise ValueError("growth over: average compares gauge readings: use latest, peak or low")
        if self.sustained and self.rising:
            raise ValueError("use sustained or rising, not both")
        return self

    def threshold(self) -> tuple[str, Threshold] | None:
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


def _exclusion_kind(value: Any) -> str:
    if isinstance(value, RenewalWithin) or (isinstance(value, dict) and "renewal_within" in value):
        return "~renewal"
    if isinstance(value, ContactedWithin) or (isinstance(value, dict) and "contacted_within" in value):
        return "~contacted"
    return "~flag"


Exclusion = Annotated[
    Annotated[Flag, Tag("~flag")]
    | Annotated[RenewalWithin, Tag("~renewal")]
    | Annotated[ContactedWithin, Tag("~contacted")],
    Discriminator(_exclusion_kind),
]


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
    unless: list[Exclusion] = Field(default_factory=list)
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


MAX_LOOKBACK_DAYS = DEFAULT_RETENTION_DAYS
