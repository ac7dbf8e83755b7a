"""GET /v1/triggers: the cohorts of the last 7, 30 and 90 firing days, added up per ruleset version.

Windows are of *firing* days (UTC, today included): "30 days" is every firing of the last 30 days
and what became of it so far. Three honest answers about precision (firings followed by an
expansion within the horizon):

- **matured**: firings whose horizon has passed (their cohort's last instant + horizon ≤ now) are
  settled trials: expanded or not, for good. Their rate and 95 % Wilson interval are the trigger's
  precision. With the default 90-day horizon no firing of the last 90 days has matured yet; a
  shorter horizon (or older windows) gives them.
- **to date**: every firing of the window, expanded so far. Firings still within their horizon may
  yet expand, so this rate is a **lower bound**; its Wilson interval is reported with it.
- **open**: how many firings are still within their horizon (and how many of them expanded already).

Median time to work: from the time-to-work histogram (a play routed → its task completed), the
median rank n/2 falls in one bucket; the median is interpolated linearly inside it (as Prometheus'
histogram_quantile): lower + (rank - count below) / bucket count * (upper - lower). A median in the
open last bucket is reported as that bucket's lower bound (720 h), flagged `median_at_least`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from shared.stats import wilson
from shared.trigger_metrics.counters import TIME_TO_WORK_BOUNDS_HOURS, Count
from shared.trigger_metrics.store import CohortCounts

WINDOWS_DAYS = (7, 30, 90)


@dataclass
class Totals:
    """Counts added up over cohorts, with the matured part kept apart."""

    counts: dict[Count, int] = field(default_factory=lambda: dict.fromkeys(Count, 0))
    time_to_work: list[int] = field(default_factory=lambda: [0] * (len(TIME_TO_WORK_BOUNDS_HOURS) + 1))
    amounts: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    matured_firings: int = 0
    matured_expanded: int = 0

    def add(self, cohort: CohortCounts, matured: bool) -> None:
        for count, value in cohort.counts.items():
            self.counts[count] += value
        for index, value in enumerate(cohort.time_to_work):
            self.time_to_work[index] += value
        for currency, amount in cohort.amounts.items():
            self.amounts[currency] += amount
        if matured:
            self.matured_firings += cohort.counts[Count.FIRINGS]
            self.matured_expanded += cohort.counts[Count.EXPANDED]

    def view(self, horizon_days: int) -> dict[str, Any]:
        median, at_least = median_hours(self.time_to_work)
        return {
            "firings": self.counts[Count.FIRINGS],
            "routed": self.counts[Count.ROUTED],
            "deferred": self.counts[Count.DEFERRED],
            "suppressed": self.counts[Count.SUPPRESSED],
            "held_out": self.counts[Count.HELD_OUT],
            "shadow": self.counts[Count.SHADOW],
            "escalations_routed": self.counts[Count.ESCALATED],
            "tasks_worked": self.counts[Count.WORKED],
            "median_hours_to_work": median,
            "median_at_least": at_least,
            "accounts_expanded": self.counts[Count.EXPANDED],
            "expansion_amount": {
                currency: f"{amount:.2f}" for currency, amount in sorted(self.amounts.items())
            },
            "precision": self._precision(horizon_days),
        }

    def _precision(self, horizon_days: int) -> dict[str, Any]:
        firings, expanded = self.counts[Count.FIRINGS], self.counts[Count.EXPANDED]
        open_firings = firings - self.matured_firings
        open_expanded = expanded - self.matured_expanded
        if firings == 0:
            note = "no firings in this window"
        elif open_firings == 0:
            note = f"every firing's {horizon_days}-day horizon has passed: the matured rate is final"
        else:
            note = (
                f"{open_firings} of {firings} firings are still within their {horizon_days}-day horizon "
                "and may yet expand: the to-date rate is a lower bound"
            )
        return {
            "matured": _share(self.matured_expanded, self.matured_firings),
            "to_date": {**_share(expanded, firings), "lower_bound": open_firings > 0},
            "open": {"firings": open_firings, "expanded": open_expanded},
            "note": note,
        }


def trigger_report(
    trigger: str, cohorts: Iterable[CohortCounts], now: datetime, horizon_days: int
) -> dict[str, Any]:
    """One trigger's windows, each with the total and one entry per ruleset version (newest first)."""
    today = now.date()
    cohorts = list(cohorts)
    windows = []
    for days in WINDOWS_DAYS:
        first = today - timedelta(days=days - 1)
        total = Totals()
        versions: defaultdict[str, Totals] = defaultdict(Totals)
        for cohort in cohorts:
            if first <= cohort.cohort.day <= today:
                matured = cohort_matured(cohort.cohort.day, now, horizon_days)
                total.add(cohort, matured)
                versions[cohort.cohort.ruleset_version].add(cohort, matured)
        windows.append(
            {
                "days": days,
                "from": first.isoformat(),
                "to": today.isoformat(),
                **total.view(horizon_days),
                "by_ruleset_version": [
                    {"ruleset_version": version, **versions[version].view(horizon_days)}
                    for version in sorted(versions, reverse=True)
                ],
            }
        )
    return {"trigger": trigger, "windows": windows}


def oldest_day(now: datetime) -> date:
    """The first firing day any window reads."""
    return now.date() - timedelta(days=max(WINDOWS_DAYS) - 1)


def cohort_matured(day: date, now: datetime, horizon_days: int) -> bool:
    """Whether every firing of the day has had its whole horizon (the day's last instant + horizon)."""
    end_of_day = datetime.combine(day + timedelta(days=1), time.min, now.tzinfo)
    return end_of_day + timedelta(days=horizon_days) <= now


def median_hours(histogram: Sequence[int]) -> tuple[float | None, bool]:
    """The interpolated median of a time-to-work histogram, and whether it is only a lower bound."""
    total = sum(histogram)
    if total == 0:
        return None, False
    rank = total / 2
    below = 0
    for index, count in enumerate(histogram):
        if count and below + count >= rank:
            if index == len(TIME_TO_WORK_BOUNDS_HOURS):
                return float(TIME_TO_WORK_BOUNDS_HOURS[-1]), True
            lower = TIME_TO_WORK_BOUNDS_HOURS[index - 1] if index else 0.0
            upper = TIME_TO_WORK_BOUNDS_HOURS[index]
            return round(lower + (rank - below) / count * (upper - lower), 2), False
        below += count
    raise AssertionError("unreachable: the rank lies within the total")


def _share(hits: int, trials: int) -> dict[str, Any]:
    if trials == 0:
        return {"firings": 0, "expanded": 0, "rate": None, "interval_95": None}
    interval = wilson(hits, trials)
    low, high = interval.low, interval.high
    return {
        "firings": trials,
        "expanded": hits,
        "rate": round(hits / trials, 4),
        "interval_95": [round(low, 4), round(high, 4)],
    }
