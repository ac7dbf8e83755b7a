"""Measured lift: did the play make treated accounts expand more than the held-out ones?

An experiment compares the accounts a trigger fired on, split by the stable draw
(shared/experiments/assignment.py): the treated were routed a play, the held out were not. Since
the draw is random, the two groups differ only by the play, and so does their expansion rate
within the horizon — that difference is what the play causes, which a backtest cannot show.

The figures (docs/rules.md, "Experiments", explains them to RevOps):
- **Rates**: of the accounts in each group, the share that expanded within the horizon of their
  first firing (one trial per account, as in the backtest). Each with its Wilson interval.
- **Absolute lift**: treated rate - held-out rate, with Newcombe's hybrid score interval;
  **relative lift**: their ratio with the Katz log interval (shared/stats.py). "Significant" means
  the absolute interval excludes 0.
- **Amount per account**: expansion amount per account in each group (no interval: amounts are
  heavy-tailed and a normal interval would mislead; the count of expansions carries the test).
- **Verdict** in plain words, and when the data cannot answer yet, how many more accounts per
  group would give an interval of ±`margin`, and a power note when the held-out group is too small
  to detect a 25 % relative lift at the current rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from shared.stats import Estimate, difference, ratio, trials_for_margin, trials_for_power, wilson

MIN_PER_GROUP = 20  # fewer accounts than this in a group: no verdict, whatever the interval says
DEFAULT_MARGIN = 0.05  # the ± on the absolute lift a verdict aims for
DETECTABLE_RELATIVE_LIFT = 1.25  # the power note asks: could this holdout see a 25 % lift?


@dataclass(frozen=True)
class Group:
    """One arm of the experiment: accounts fired on, how many expanded, and for how much."""

    accounts: int
    expanded: int
    amount: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        if not 0 <= self.expanded <= self.accounts:
            raise ValueError(f"expanded ({self.expanded}) must lie between 0 and accounts ({self.accounts})")

    @property
    def rate(self) -> Estimate | None:
        return wilson(self.expanded, self.accounts) if self.accounts else None

    @property
    def amount_per_account(self) -> Decimal | None:
        return (self.amount / self.accounts).quantize(Decimal("0.01")) if self.accounts else None


@dataclass(frozen=True)
class Lift:
    treated: Group
    held_out: Group
    absolute: Estimate | None  # treated rate - held-out rate
    relative: Estimate | None  # treated rate / held-out rate
    significant: bool
    verdict: str
    more_accounts_needed: int | None  # per group, for an interval of ±margin (None: enough)
    power_note: str | None


def measure(treated: Group, held_out: Group, margin: float = DEFAULT_MARGIN) -> Lift:
    """The experiment's figures and its verdict."""
    if not treated.accounts or not held_out.accounts:
        missing = "treated" if not treated.accounts else "held-out"
        needed = trials_for_margin(0.5, margin)
        return Lift(
            treated,
            held_out,
            None,
            None,
            False,
            f"not enough data yet: no {missing} account has fired; about {needed:,} accounts per group "
            f"give an interval of ±{margin:.0%}",
            needed,
            None,
        )
    absolute = difference(treated.expanded, treated.accounts, held_out.expanded, held_out.accounts)
    relative = ratio(treated.expanded, treated.accounts, held_out.expanded, held_out.accounts)
    pooled = (treated.expanded + held_out.expanded) / (treated.accounts + held_out.accounts)
    wanted = trials_for_margin(pooled, margin)
    smaller = min(treated.accounts, held_out.accounts)
    more = max(0, wanted - smaller) or None
    significant = smaller >= MIN_PER_GROUP and absolute.excludes(0)
    return Lift(
        treated,
        held_out,
        absolute,
        relative,
        significant,
        _verdict(absolute, smaller, significant, more, margin),
        more,
        _power_note(held_out, pooled),
    )


def _verdict(absolute: Estimate, smaller: int, significant: bool, more: int | None, margin: float) -> str:
    interval = f"{absolute.value:+.1%} (95 % interval {absolute.low:+.1%} to {absolute.high:+.1%})"
    if smaller < MIN_PER_GROUP:
        return (
            f"not enough data yet: {smaller} account(s) in the smaller group, at least {MIN_PER_GROUP} "
            f"are needed; {more or 0:,} more per group give ±{margin:.0%}"
        )
    if significant and absolute.value > 0:
        return f"the play works: treated accounts expanded {interval} more often than held-out ones"
    if significant:
        return f"the play hurts: treated accounts expanded {interval} less often than held-out ones"
    wait = f"; {more:,} more accounts per group give ±{margin:.0%}" if more else ""
    return f"no measurable effect yet: {interval}{wait}"


def _power_note(held_out: Group, pooled: float) -> str | None:
    """Whether the held-out group can tell a 25 % relative lift from none at the current rate."""
    if pooled <= 0 or pooled * DETECTABLE_RELATIVE_LIFT >= 1:
        return None
    needed = trials_for_power(pooled, pooled * DETECTABLE_RELATIVE_LIFT)
    if held_out.accounts >= needed:
        return None
    return (
        f"the held-out group ({held_out.accounts:,} accounts) is too small to detect a 25 % relative lift "
        f"at a {pooled:.1%} expansion rate with 80 % power: that takes {needed:,} per group — raise the "
        "holdout or wait for more firings"
    )
