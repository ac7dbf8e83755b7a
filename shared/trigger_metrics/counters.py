"""Live per-trigger counters, kept incrementally in the plays table, exactly once.

Every counted transition of a play — its firing's first record, routed, deferred (the first time),
suppressed, an escalation tier routed, its task first worked, its firing first attributed an
expansion — adds to one *cohort item*: the trigger, the ruleset version that fired it and the UTC
day it fired (a cohort view: what became of the firings of that day, whenever it happened). The
ADD is one more Update in the same DynamoDB transaction as the state change that causes it, and
that state change is conditional (a play accepted once, `worked` and `expanded` set once), so a
retried message, a redelivered stream record or a page read again can never count twice.

Keys (plays table): pk = `trigger#<trigger>`, sk = `day#<YYYY-MM-DD>#<ruleset_version>`, so one
Query reads a trigger's cohorts over a range of days, every version at once. Attributes: the
counts by name (`firings`, `routed`, ...), the time-to-work histogram (`ttw_00`..), and the
expansion amount per currency (`amount_USD`, ...: amounts are never converted).

A trigger with a holdout also counts its experiment here, per arm (shared/experiments/): the
accounts that entered it (an account's first firing in the experiment, a *trial*), those of them
whose trial firing expanded within the horizon, and the amount — `arm#<salt>#<arm>#accounts`,
`...#expanded`, `...#amount#<currency>`, in the cohort of the trial's firing day. The salt is in the
name, so a new experiment on the same trigger starts from zero. GET /v1/triggers/{name}/experiment
adds them up without a scan.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

PARTITION_PREFIX = "trigger#"
DAY_PREFIX = "day#"
AMOUNT_PREFIX = "amount_"
HISTOGRAM_PREFIX = "ttw_"
ARM_PREFIX = "arm#"
# Time to work (a play routed → its HubSpot task completed), bucket upper bounds in hours; a last,
# open bucket holds what took longer. Bucket i counts times in (bound[i-1], bound[i]].
TIME_TO_WORK_BOUNDS_HOURS: tuple[float, ...] = (1, 2, 4, 8, 24, 48, 72, 120, 168, 336, 720)


class Count(StrEnum):
    """What a cohort counts. Firings, routed, deferred and suppressed are about the firing's own
    play (tier 0); escalations are later tiers routed; worked counts plays (any tier) whose task was
    completed; expanded counts firings followed by an expansion within the horizon."""

    FIRINGS = "firings"
    ROUTED = "routed"
    DEFERRED = "deferred"
    SUPPRESSED = "suppressed"
    ESCALATED = "escalated"
    WORKED = "worked"
    EXPANDED = "expanded"
    HELD_OUT = "held_out"  # the firing's account is in its experiment's holdout: recorded, not routed
    SHADOW = "shadow"  # the firing's account is outside the trigger's rollout: recorded, not routed


class ArmCount(StrEnum):
    """What an experiment counts per arm: trials (accounts) and those of them that expanded."""

    ACCOUNTS = "accounts"
    EXPANDED = "expanded"


@dataclass(frozen=True)
class Trial:
    """What one transition adds to an experiment's arm: an account entering it, or its trial
    firing expanding (with the amount of the tally)."""

    salt: str
    arm: str
    count: ArmCount

    def attribute(self) -> str:
        return arm_attribute(self.salt, self.arm, self.count.value)


def arm_attribute(salt: str, arm: str, what: str) -> str:
    return f"{ARM_PREFIX}{salt}#{arm}#{what}"


@dataclass(frozen=True)
class Cohort:
    """The firings of one trigger, of one ruleset version, on one UTC day."""

    trigger: str
    ruleset_version: str
    day: date

    @classmethod
    def of(cls, firing: Mapping[str, Any]) -> Cohort:
        """The cohort of a firing, from its evidence (`trigger.fired`)."""
        return cls(
            trigger=str(firing["trigger"]),
            ruleset_version=str(firing["ruleset_version"]),
            day=fired_at(firing).date(),
        )

    def key(self) -> dict[str, Any]:
        return {
            "pk": {"S": PARTITION_PREFIX + self.trigger},
            "sk": {"S": f"{DAY_PREFIX}{self.day.isoformat()}#{self.ruleset_version}"},
        }


def fired_at(firing: Mapping[str, Any]) -> datetime:
    """When a firing fired (its evaluation instant), in UTC."""
    moment = datetime.fromisoformat(str(firing["evaluated_at"]).replace("Z", "+00:00"))
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def histogram_bucket(hours: float) -> int:
    """The time-to-work bucket of a duration in hours (negative durations, clock skew, count as 0)."""
    for index, bound in enumerate(TIME_TO_WORK_BOUNDS_HOURS):
        if hours <= bound:
            return index
    return len(TIME_TO_WORK_BOUNDS_HOURS)


def histogram_attribute(bucket: int) -> str:
    return f"{HISTOGRAM_PREFIX}{bucket:02d}"


@dataclass(frozen=True)
class Tally:
    """What one transition adds to its cohort."""

    cohort: Cohort
    counts: Mapping[Count, int] = field(default_factory=dict)
    hours_to_work: float | None = None
    amount: tuple[str, Decimal] | None = None  # (currency, amount)
    trial: Trial | None = None  # the experiment's share of this transition (its amount too)

    def __bool__(self) -> bool:
        return bool(self.counts)

    def update(self, table: str, expires_at: int) -> dict[str, Any]:
        """The transaction element adding this tally to its cohort item (created on first use)."""
        names: dict[str, str] = {"#trigger": "trigger", "#version": "ruleset_version", "#day": "day"}
        values: dict[str, Any] = {
            ":trigger": {"S": self.cohort.trigger},
            ":version": {"S": self.cohort.ruleset_version},
            ":day": {"S": self.cohort.day.isoformat()},
            ":expires": {"N": str(expires_at)},
        }
        adds: list[str] = []
        increments: dict[str, Decimal | int] = {count.value: n for count, n in self.counts.items() if n}
        if self.hours_to_work is not None:
            increments[histogram_attribute(histogram_bucket(self.hours_to_work))] = 1
        if self.amount is not None:
            currency, amount = self.amount
            increments[AMOUNT_PREFIX + currency] = amount
        if self.trial is not None:
            increments[self.trial.attribute()] = 1
            if self.amount is not None:
                currency, amount = self.amount
                increments[arm_attribute(self.trial.salt, self.trial.arm, f"amount#{currency}")] = amount
        for position, (attribute, increment) in enumerate(increments.items()):
            names[f"#a{position}"] = attribute
            values[f":a{position}"] = {"N": str(increment)}
            adds.append(f"#a{position} :a{position}")
        return {
            "Update": {
                "TableName": table,
                "Key": self.cohort.key(),
                "UpdateExpression": "ADD "
                + ", ".join(adds)
                + " SET #trigger = :trigger, #version = :version, #day = :day, expires_at = :expires",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }
