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
- **Base rate, matched in time**: the same question for a random account on the same day as the
  firing: for each fired account, the share of all accounts eligible on the day of its first
  scored firing (active that day, not settling) that expanded within H of that day; averaged over
  the fired accounts. Expansions come in seasons (quarter ends, budget cycles) and triggers fire in
  seasons too, so a base rate pooled over the whole window would flatter or punish a trigger for
  when it fires rather than for what it sees. The pooled rate (every account-day of the window) is
  kept beside it as `base_rate_pooled`.
- **Lift** = precision / matched base rate: 1 is chance, 3 means three times as likely. Its 95 %
  interval is Katz's log interval for a ratio of two shares (shared/stats.py), the base rate
  counted as a share of the accounts eligible in the window (one trial per account, as for
  precision, although it averages many days: the interval does not pretend account-days are
  independent). No lift is stated under MIN_ACCOUNTS fired accounts (a dash in the report, not a zero lift).
- **Recall**: of the expansions a firing in the window could have preceded, the share a scored
  firing did precede within H.
- **Days to expansion**: from an account's first scored firing to the expansion it predicted.
- **Warm-up's shadow**: a warm-up firing is not scored, but online it would have started a
  cooldown and disarmed the trigger; accounts whose warm-up cooldown reaches into the scored
  window and that never fire in it are counted as `silenced_by_warm_up` and named in the note.
- **Breakdowns**: precision per account segment (from the profiles), hits per expansion kind,
  revenue captured (the amounts of the predicted expansions, per currency), and, per row,
  `unique_hits`: the hit accounts no other trigger of the ruleset found (set by the caller).
"""

from __future__ import annotations

import statistics
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from itertools import accumulate

from shared.stats import ratio, wilson
from upswing.backtest.replay import FiredAt
from upswing.backtest.truth import Expansion

MIN_ACCOUNTS = 20  # fewer fired accounts than this: "too few firings" to judge
NO_SEGMENT = "(none)"
UNSPECIFIED_KIND = "(unspecified)"
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
    cooldown_days: int = 0


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
    base_rate: float | None = None  # matched in time to the firings
    base_rate_pooled: float | None = None  # every eligible account-day of the scored window
    lift: float | None = None
    lift_low: float | None = None
    lift_high: float | None = None
    median_days_to_expansion: float | None = None
    days_to_expansion: list[int] = field(default_factory=list)
    warm_up_accounts: int = 0
    silenced_by_warm_up: int = 0
    unique_hits: int | None = None
    revenue_captured: dict[str, str] = field(default_factory=dict)  # currency → amount
    hits_without_amount: int = 0
    by_segment: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    by_kind: dict[str, int] = field(default_factory=dict)
    rank: int | None = None
    verdict: str = ""
    note: str = ""
    hit_accounts: frozenset[str] = field(default=frozenset(), repr=False)

    def as_dict(self) -> dict[str, object]:
        document = asdict(self)
        del document["hit_accounts"]
        return document


class Outcomes:
    """Expansions by account, and the base-rate arithmetic over them."""

    def __init__(
        self, expansions: Iterable[Expansion], spans: dict[str, tuple[int, int]], horizon: int
    ) -> None:
        self.horizon = horizon
        self.spans = spans
        self.by_account: dict[str, list[int]] = defaultdict(list)
        self.on_day: dict[tuple[str, int], list[Expansion]] = defaultdict(list)
        for expansion in expansions:
            self.by_account[expansion.account_id].append(expansion.day.toordinal())
            self.on_day[expansion.account_id, expansion.day.toordinal()].append(expansion)
        for days in self.by_account.values():
            days.sort()
        self.first_day = min((first for first, _ in spans.values()), default=0)
        self.last_day = max((last for _, last in spans.values()), default=0)
        # Per expanding account with events: running counts over the period of eligible and positive days.
        self._prefix: dict[str, tuple[list[int], list[int]]] = {
            account: self._prefixes(days) for account, days in self.by_account.items() if account in spans
        }
        self._daily: tuple[list[int], list[int]] | None = None

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

    def day_rate(self, day: int) -> float | None:
        """Of the accounts eligible on `day` (active, not settling), the share that expanded within H."""
        eligible, positive = self._daily_counts()
        index = day - self.first_day
        if not 0 <= index < len(eligible) or not eligible[index]:
            return None
        return positive[index] / eligible[index]

    def accounts_active(self, first: int, last: int) -> int:
        """Accounts whose span (first to last day with events) meets [first, last]."""
        return sum(1 for start, end in self.spans.values() if start <= last and end >= first)

    def _daily_counts(self) -> tuple[list[int], list[int]]:
        """Eligible and positive accounts per day of the period (built once: O(accounts + days))."""
        if self._daily is None:
            size = self.last_day - self.first_day + 2
            eligible_change = [0] * size
            positive = [0] * size
            for account, (start, end) in self.spans.items():
                prefix = self._prefix.get(account)
                if prefix is None:  # never expands: eligible on every day of its span
                    eligible_change[start - self.first_day] += 1
                    eligible_change[end - self.first_day + 1] -= 1
                    continue
                eligible_sum, positive_sum = prefix
                for index in range(start - self.first_day, end - self.first_day + 1):
                    step = eligible_sum[index + 1] - eligible_sum[index]
                    eligible_change[index] += step
                    eligible_change[index + 1] -= step
                    positive[index] += positive_sum[index + 1] - positive_sum[index]
            self._daily = (list(accumulate(eligible_change))[:-1], positive[:-1])
        return self._daily

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


def score(
    subject: Subject,
    firings: Sequence[FiredAt],
    outcomes: Outcomes,
    segments: Mapping[str, str] | None = None,
) -> Score:
    """Score one subject's firings (in time order); `segments` maps accounts to their segment."""
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
    last_warm_up: dict[str, int] = {}
    for fired in firings:
        day = fired.at.toordinal()
        if day < first:
            result.warm_up_firings += 1
            last_warm_up[fired.account_id] = day
        elif day > last:
            result.censored_firings += 1
        elif outcomes.recently_expanded(fired.account_id, day):
            result.after_expansion_firings += 1
        else:
            result.scored_firings += 1
            scored_days[fired.account_id].append(day)
    result.accounts_fired = len(scored_days)
    result.warm_up_accounts = len(last_warm_up)
    result.silenced_by_warm_up = sum(
        1
        for account, day in last_warm_up.items()
        if day + subject.cooldown_days > first and account not in scored_days
    )
    hits: dict[str, list[Expansion]] = {}
    for account, days in scored_days.items():
        expansion = outcomes.next_expansion(account, days[0])
        if expansion is not None:
            hits[account] = outcomes.on_day[account, expansion]
            result.days_to_expansion.append(expansion - days[0])
    result.hits = len(hits)
    result.hit_accounts = frozenset(hits)
    _breakdowns(result, scored_days, hits, segments or {})
    if first <= last:
        result.base_rate_pooled = outcomes.base_rate(first, last)
        result.recall = _recall(scored_days, outcomes.expansions_between(first + 1, last + horizon), horizon)
    if result.accounts_fired:
        interval = wilson(result.hits, result.accounts_fired)
        result.precision_low, result.precision_high = interval.low, interval.high
        result.precision = interval.value
        rates = [outcomes.day_rate(days[0]) for days in scored_days.values()]
        known = [rate for rate in rates if rate is not None]
        result.base_rate = sum(known) / len(known) if known else None
        if result.base_rate and result.accounts_fired >= MIN_ACCOUNTS:
            _lift(result, result.base_rate, outcomes.accounts_active(first, last))
    if result.days_to_expansion:
        result.median_days_to_expansion = float(statistics.median(result.days_to_expansion))
    result.verdict, result.note = _verdict(result, horizon)
    return result


def _lift(result: Score, base_rate: float, accounts: int) -> None:
    """Lift over the matched base rate, with Katz's interval (the base counted over `accounts`)."""
    result.lift = (result.hits / result.accounts_fired) / base_rate
    estimate = ratio(result.hits, result.accounts_fired, base_rate * accounts, accounts)
    if estimate is not None:
        result.lift_low, result.lift_high = estimate.low, estimate.high


def _breakdowns(
    result: Score,
    scored_days: Mapping[str, list[int]],
    hits: Mapping[str, list[Expansion]],
    segments: Mapping[str, str],
) -> None:
    """Precision per segment, hits per expansion kind, and the revenue the hits brought."""
    fired_in: dict[str, list[str]] = defaultdict(list)
    for account in scored_days:
        fired_in[segments.get(account) or NO_SEGMENT].append(account)
    for segment, accounts in sorted(fired_in.items()):
        found = sum(1 for account in accounts if account in hits)
        result.by_segment[segment] = {
            "accounts_fired": len(accounts),
            "hits": found,
            "precision": found / len(accounts),
        }
    revenue: dict[str, Decimal] = defaultdict(Decimal)
    kinds: dict[str, int] = defaultdict(int)
    for expansions in hits.values():
        for expansion in expansions:
            kinds[expansion.kind or UNSPECIFIED_KIND] += 1
            amount = _amount(expansion.amount)
            if amount is None:
                result.hits_without_amount += 1
            else:
                revenue[expansion.currency or "?"] += amount
    result.by_kind = dict(sorted(kinds.items()))
    result.revenue_captured = {currency: str(total) for currency, total in sorted(revenue.items())}


def _amount(text: str) -> Decimal | None:
    try:
        amount = Decimal(text)
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def overlap(scores: Sequence[Score]) -> None:
    """Set each row's `unique_hits`: its hit accounts that no other trigger of the ruleset found.

    Rows scoring a signal are compared with the real triggers only (what it would add to them)."""
    triggers = [row for row in scores if row.kind == "trigger"]
    for row in scores:
        others: set[str] = set()
        for other in triggers:
            if other is not row:
                others |= other.hit_accounts
        row.unique_hits = len(row.hit_accounts - others)


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
            f"at least {MIN_ACCOUNTS} are needed to judge it" + _silenced(row)
        )
    base = row.base_rate or 0.0
    facts = (
        f"{row.precision:.0%} of the {row.accounts_fired:,} accounts it fired on expanded within "
        f"{horizon} days, against {base:.1%} for a random account on the same days"
    )
    if row.lift_low is not None:
        facts += f" (lift {row.lift:.1f}, 95 % interval {row.lift_low:.1f} to {row.lift_high:.1f})"
    facts += _silenced(row)
    if row.lift >= PREDICTIVE_LIFT and (row.lift_low or 0) > 1:
        lead = (
            f"; median lead time {row.median_days_to_expansion:.0f} days"
            if row.median_days_to_expansion
            else ""
        )
        return "predictive", facts + lead
    chance_inside = row.lift_low is not None and row.lift_low <= 1
    if row.lift < VANITY_LIFT or (chance_inside and row.lift < PREDICTIVE_LIFT):
        return "vanity", facts + ": no better than chance — retire or rework it"
    if chance_inside:
        return "weak", f"{facts}: promising, but its interval still includes chance: judge it on more history"
    return "weak", facts + ": some signal, but a CSM would chase many false leads"


def _silenced(row: Score) -> str:
    if not row.silenced_by_warm_up:
        return ""
    return (
        f"; {row.silenced_by_warm_up} account(s) fired only in the warm-up and were still cooling down "
        "when the scored window opened (online, that firing would have kept them quiet too)"
    )


def _iso(ordinal: int) -> str:
    return date.fromordinal(max(ordinal, 1)).isoformat()


def monday_of(day: date) -> date:
    return day - timedelta(days=day.weekday())
