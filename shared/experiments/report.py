"""GET /v1/triggers/{name}/experiment: the experiment's arms added up from the cohort items, and the lift.

The counts per arm are kept incrementally in the trigger's cohort items (shared/trigger_metrics/
counters.py: `arm#<salt>#<arm>#...`), so the report is one Query over the retained days and some
additions — no scan, whatever the number of plays. An arm's *accounts* are its trials (each
account's first firing in the experiment), its *expanded* those trials an expansion was attributed
to within the horizon; shared/experiments/lift.py turns the two arms into rates, lifts with their
95 % intervals and a plain verdict.

Trials whose horizon has not passed may still expand: both arms are counted to date, alike, and
`still_within_horizon` says how many trials of each arm are open (their expansion rates are lower
bounds; the difference between arms is unbiased as long as both arms fired over the same days,
which the random draw ensures).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from shared.experiments.assignment import Arm
from shared.experiments.lift import Group, Lift, measure
from shared.stats import Estimate
from shared.trigger_metrics.counters import ArmCount
from shared.trigger_metrics.report import cohort_matured
from shared.trigger_metrics.store import CohortCounts

METHOD = (
    "One trial per account (its first firing in the experiment); expanded = an expansion attributed "
    "to that firing within the horizon. Rates with Wilson 95 % intervals; absolute lift (treated - "
    "held out) with Newcombe's hybrid score interval; relative lift (treated / held out) with the Katz "
    "log interval. Significant: the absolute interval excludes 0, with at least 20 accounts per arm."
)
_AMOUNT = "amount#"


@dataclass
class ArmTotals:
    """One arm added up over cohorts."""

    accounts: int = 0
    expanded: int = 0
    open_accounts: int = 0  # trials whose firing day + horizon has not passed
    amounts: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))

    def group(self) -> Group:
        return Group(self.accounts, self.expanded)

    def view(self) -> dict[str, Any]:
        amounts = sorted(self.amounts.items()) if self.accounts else []
        return {
            "accounts": self.accounts,
            "expanded": self.expanded,
            "rate": _estimate(self.group().rate, rate=True),
            "expansion_amount": {currency: f"{amount:.2f}" for currency, amount in amounts},
            # Over every account of the arm, expanded or not: what a trial is worth on average.
            "amount_per_account": {currency: f"{amount / self.accounts:.2f}" for currency, amount in amounts},
            "still_within_horizon": self.open_accounts,
        }


def arm_totals(
    cohorts: Iterable[CohortCounts], salt: str, now: datetime, horizon_days: int
) -> dict[Arm, ArmTotals]:
    """The treated and held-out arms of the experiment `salt`, added up over the cohorts."""
    arms = {Arm.TREATED: ArmTotals(), Arm.HOLDOUT: ArmTotals()}
    for cohort in cohorts:
        matured = cohort_matured(cohort.cohort.day, now, horizon_days)
        for arm, totals in arms.items():
            prefix = f"{salt}#{arm.value}#"
            accounts = int(cohort.arms.get(prefix + ArmCount.ACCOUNTS.value, 0))
            totals.accounts += accounts
            totals.expanded += int(cohort.arms.get(prefix + ArmCount.EXPANDED.value, 0))
            totals.open_accounts += 0 if matured else accounts
            for name, value in cohort.arms.items():
                if name.startswith(prefix + _AMOUNT):
                    totals.amounts[name.removeprefix(prefix + _AMOUNT)] += value
    return arms


def experiment_report(
    trigger: str,
    salt: str,
    holdout_percent: float | None,
    cohorts: Iterable[CohortCounts],
    now: datetime,
    horizon_days: int,
) -> dict[str, Any]:
    """The experiment's arms, lifts and verdict, as GET /v1/triggers/{name}/experiment answers."""
    arms = arm_totals(cohorts, salt, now, horizon_days)
    lift = measure(arms[Arm.TREATED].group(), arms[Arm.HOLDOUT].group())
    return {
        "trigger": trigger,
        "salt": salt,
        "holdout_percent": holdout_percent,
        "method": METHOD,
        "treated": arms[Arm.TREATED].view(),
        "held_out": arms[Arm.HOLDOUT].view(),
        **lift_view(lift),
    }


def lift_view(lift: Lift) -> dict[str, Any]:
    return {
        "absolute_lift": _estimate(lift.absolute, rate=True),
        "relative_lift": _estimate(lift.relative, rate=False),
        "significant": lift.significant,
        "verdict": lift.verdict,
        "more_accounts_needed": lift.more_accounts_needed,
        "power_note": lift.power_note,
    }


def _estimate(estimate: Estimate | None, *, rate: bool) -> dict[str, Any] | None:
    if estimate is None:
        return None
    digits = 4 if rate else 3
    return {
        "value": round(estimate.value, digits),
        "interval_95": [round(estimate.low, digits), round(estimate.high, digits)],
    }
