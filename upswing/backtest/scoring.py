"""Scoring firings against what happened: precision, recall, lift and lead time per trigger.

The rules of the game (docs/backtest.md explains them to RevOps):
- **Horizon H**: a firing on day d predicts an expansion on day e when 1 ≤ e - d ≤ H. An expansion
  on the firing's own day is not a prediction (the firing may well be its echo).
- **Scored window**, per trigger: from the first day its lookback is wholly inside the data (a
  window reaching back before the first event sees a partial history: the warm-up) to H days
  before the last day (a later firing's horizon is not observed yet: censored).
- **After an expansion** an account's plan and usage are settling: for H days from an expansion,
  a firing is not scored (nor are those days part of the base rate).
- **Precision**: of the accounts with a scored firing, the share whose first scored firing was
  followed by an expansion within H. One trial per account, so an account that fires every
  month counts once.
- **Base rate**: the same question for a random day instead of a firing: of all account-days in
  the scored window (each account from its first to its last day with events, days after an
  expansion excluded as above), the share followed by an expansion within H.
- **Lift** = precision / base rate: 1 is chance, 3 means three times as likely.
- **Recall**: of the expansions a firing in the window could have preceded, the share a scored
  firing did precede within H.
- **Days to expansion**: from an account's first scored firing to the expansion it predicted.
"""

from __future__ import annotations

import statistics
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from itertools import accumulate

from shared.proportions import wilson
from upswing.backtest.replay import FiredAt
from upswing.backtest.truth import Expansion

MIN_ACCOUNTS = 20  # fewer fired accounts than this: "too few firings" to judge
PREDICTIVE_LIFT = 2.0
VANITY_LIFT = 1.25


@dataclass(frozen=True)
class Subject:
    """What is scored: a trigger, a signal scored as a trigger, or the whole ruleset."""

    trigger: str
    kind: str  # trigger | signal | ruleset
    category: str | None
    play: str | None
    lookback_days: int


@dataclass
class Score:
    trigger: str
    kind: str
    category: str | None
    play: str | None
    lookback_days: int
    scored_from: str
    scored_to: str
    firings: int = 0
    scored_firings: int = 0
    warm_up_firings: int = 0
    censored_firings: int = 0
    after_expansion_firings: int = 0
    accounts_fired: int = 0
    hits: int = 0
    precision: float | None = None
    precision_low: float | None = None
    precision_high: float | None = None
    recall: float | None = None
    base_rate: float | None = None
    lift: float | None = None
    median_days_to_expansion: float | None = None
    days_to_expansion: list[int] = field(default_factory=list)
    rank: int | None = None
    verdict: str = ""
    note: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class Outcomes:
    """Expansions by account, and the base-rate arithmetic over them."""

    def __init__(
        self, expansions: Iterable[Expansion], spans: dict[str, tuple[int, int]], horizon: int
    ) -> None:
        self.horizon = horizon
        self.spans = spans
        self.by_account: dict[str, list[int]] = defaultdict(list)
        for expansion in expansions:
            self.by_account[expansion.account_id].append(expansion.day.toordinal())
        for days in self.by_account.values():
            days.sort()
        self.first_day = min((first for first, _ in spans.values()), default=0)
        self.last_day = max((last for _, last in spans.values()), default=0)
        # Per expanding account with events: running counts over the period of eligible and positive days.
        self._prefix: dict[str, tuple[list[int], list[int]]] = {
            account: self._prefixes(days) for account, days in self.by_account.items() if account in spans
        }

    def next_expansion(self, account: str, day: int) -> int | None:
        """The first expansion 1..H days after `day`, if any."""
        return _next_expansion(self.by_account.get(account, ()), day, self.horizon)

    def recently_expanded(self, account: str, day: int) -> bool:
        """An expansion in the H days up to and including `day` (the account is settling)."""
        return _settling(self.by_account.get(account, ()), day, self.horizon)

    def base_rate(self, first: int, last: int) -> float | None:
        eligible = positive = 0
        for account, (start, end) in self.spans.items():
            lo, hi = max(first, start), min(last, end)
            if lo > hi:
                continue
            prefix = self._prefix.get(account)
            if prefix is None:
                eligible += hi - lo + 1
                continue
            eligible_sum, positive_sum = prefix
            a, b = lo - self.first_day, hi - self.first_day + 1
            eligible += eligible_sum[b] - eligible_sum[a]
            positive += positive_sum[b] - positive_sum[a]
        return positive / eligible if eligible else None

    def expansions_between(self, first: int, last: int) -> list[tuple[str, int]]:
        found: list[tuple[str, int]] = []
        for account, days in self.by_account.items():
            if account in self.spans:
                found.extend(
                    (account, day) for day in days[bisect_left(days, first) : bisect_right(days, last)]
                )
        return found

    def _prefixes(self, days: list[int]) -> tuple[list[int], list[int]]:
        period = range(self.first_day, self.last_day + 1)
        eligible = [not _settling(days, day, self.horizon) for day in period]
        positive = [
            ok and _next_expansion(days, day, self.horizon) is not None
            for ok, day in zip(eligible, period, strict=True)
        ]
        return list(accumulate(eligible, initial=0)), list(accumulate(positive, initial=0))


def _next_expansion(days: Sequence[int], day: int, horizon: int) -> int | None:
    index = bisect_right(days, day)
    return days[index] if index < len(days) and days[index] <= day + horizon else None


def _settling(days: Sequence[int], day: int, horizon: int) -> bool:
    index = bisect_right(days, day)
    return index > 0 and day - days[index - 1] < horizon


def score(subject: Subject, firings: Sequence[FiredAt], outcomes: Outcomes) -> Score:
    """Score one subject's firings (in time order)."""
    horizon = outcomes.horizon
    first = outcomes.first_day + subject.lookback_days - 1
    last = outcomes.last_day - horizon
    result = Score(
        subject.trigger,
        subject.kind,
        subject.category,
        subject.play,
        subject.lookback_days,
        scored_from=_iso(first),
        scored_to=_iso(last),
        firings=len(firings),
    )
    scored_days: dict[str, list[int]] = defaultdict(list)
    for fired in firings:
        day = fired.at.toordinal()
        if day < first:
            result.warm_up_firings += 1
        elif day > last:
            result.censored_firings += 1
        elif outcomes.recently_expanded(fired.account_id, day):
            result.after_expansion_firings += 1
        else:
            result.scored_firings += 1
            scored_days[fired.account_id].append(day)
    result.accounts_fired = len(scored_days)
    for account, days in scored_days.items():
        expansion = outcomes.next_expansion(account, days[0])
        if expansion is not None:
            result.hits += 1
            result.days_to_expansion.append(expansion - days[0])
    if first <= last:
        result.base_rate = outcomes.base_rate(first, last)
        result.recall = _recall(scored_days, outcomes.expansions_between(first + 1, last + horizon), horizon)
    if result.accounts_fired:
        result.precision = result.hits / result.accounts_fired
        result.precision_low, result.precision_high = wilson(result.hits, result.accounts_fired)
        if result.base_rate:
            result.lift = result.precision / result.base_rate
    if result.days_to_expansion:
        result.median_days_to_expansion = float(statistics.median(result.days_to_expansion))
    result.verdict, result.note = _verdict(result, horizon)
    return result


def rank(scores: list[Score]) -> list[Score]:
    """Best lift first; unjudgeable ones (no lift) last; ties by accounts fired."""
    ordered = sorted(
        scores,
        key=lambda row: (
            row.lift is None,
            row.verdict == "too few firings",
            -(row.lift or 0),
            -row.accounts_fired,
        ),
    )
    for position, row in enumerate(ordered, 1):
        row.rank = position
    return ordered


def _recall(
    scored_days: dict[str, list[int]], expansions: list[tuple[str, int]], horizon: int
) -> float | None:
    if not expansions:
        return None
    caught = 0
    for account, day in expansions:
        days = scored_days.get(account, [])
        index = bisect_left(days, day - horizon)
        caught += index < len(days) and days[index] <= day - 1
    return caught / len(expansions)


def _verdict(row: Score, horizon: int) -> tuple[str, str]:
    window = f"{row.scored_from} to {row.scored_to}"
    if row.scored_from > row.scored_to:
        return "too few firings", (
            f"its {row.lookback_days}-day lookback and the {horizon}-day horizon leave no scored days "
            "in this history; backtest a longer one"
        )
    if row.accounts_fired < MIN_ACCOUNTS or row.precision is None or row.lift is None:
        return "too few firings", (
            f"fired on {row.accounts_fired} account(s) in its scored window ({window}); "
            f"at least {MIN_ACCOUNTS} are needed to judge it"
        )
    base = row.base_rate or 0.0
    facts = (
        f"{row.precision:.0%} of the {row.accounts_fired:,} accounts it fired on expanded within "
        f"{horizon} days, against {base:.1%} for a random account-day"
    )
    if row.lift >= PREDICTIVE_LIFT and (row.precision_low or 0) > base:
        lead = (
            f"; median lead time {row.median_days_to_expansion:.0f} days"
            if row.median_days_to_expansion
            else ""
        )
        return "predictive", facts + lead
    if row.lift < VANITY_LIFT:
        return "vanity", facts + ": no better than chance — retire or rework it"
    return "weak", facts + ": some signal, but a CSM would chase many false leads"


def _iso(ordinal: int) -> str:
    return date.fromordinal(max(ordinal, 1)).isoformat()


def monday_of(day: date) -> date:
    return day - timedelta(days=day.weekday())
