"""Intervals for shares and their comparisons: what a skeptic accepts for "it works".

Every figure Upswing reports as evidence (a backtest's precision and lift, a trigger's live
precision, an experiment's lift) comes with a 95 % interval computed here, by a method named in
the report:

- **One share** (hits of trials): the Wilson score interval. Unlike the textbook p ± 1.96·se it
  stays inside [0, 1] and keeps its coverage near 0 % and 100 % and for small samples.
- **Difference of two independent shares** (treated - held out): Newcombe's hybrid score interval
  (Newcombe 1998, "method 10"), built from the two Wilson intervals; it too behaves at 0 and 1.
- **Ratio of two independent shares** (relative lift, treated ÷ held out): the Katz log interval,
  exp(ln r ± z·√(1/a - 1/n₁ + 1/c - 1/n₀)); undefined (None) while either group has no hit.
- **How many are needed**: the trials per group for a difference interval of a given half-width
  (margin), and for 80 % power to detect a given difference, by the normal approximation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054  # the standard normal's 97.5th percentile
Z80_POWER = 0.8416212335729143  # its 80th percentile: 80 % power at a two-sided 5 % level


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its 95 % interval."""

    value: float
    low: float
    high: float

    def excludes(self, reference: float) -> bool:
        """Whether the interval lies wholly on one side of `reference` (0 for a difference, 1 for a ratio)."""
        return self.low > reference or self.high < reference


def wilson(hits: int, trials: int, z: float = Z95) -> Estimate:
    """The share hits/trials with its Wilson score interval."""
    _check(hits, trials)
    share = hits / trials
    denominator = 1 + z * z / trials
    centre = (share + z * z / (2 * trials)) / denominator
    spread = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials)) / denominator
    # At 0 and at 1 the bound is exactly the share; rounding must not put it a hair away.
    low = 0.0 if hits == 0 else min(share, max(0.0, centre - spread))
    high = 1.0 if hits == trials else max(share, min(1.0, centre + spread))
    return Estimate(share, low, high)


def difference(hits_a: int, trials_a: int, hits_b: int, trials_b: int) -> Estimate:
    """share_a - share_b with Newcombe's hybrid score interval (method 10)."""
    a, b = wilson(hits_a, trials_a), wilson(hits_b, trials_b)
    value = a.value - b.value
    low = value - math.sqrt((a.value - a.low) ** 2 + (b.high - b.value) ** 2)
    high = value + math.sqrt((a.high - a.value) ** 2 + (b.value - b.low) ** 2)
    return Estimate(value, max(-1.0, low), min(1.0, high))


def ratio(hits_a: int, trials_a: int, hits_b: float, trials_b: int) -> Estimate | None:
    """share_a ÷ share_b with the Katz log interval; None while either share is 0 (no finite ratio
    or interval can be stated yet). `hits_b` may be fractional: a rate known as a share of
    `trials_b` independent units (the backtest's base rate)."""
    _check(hits_a, trials_a)
    _check(hits_b, trials_b)
    if hits_a == 0 or hits_b == 0:
        return None
    value = (hits_a / trials_a) / (hits_b / trials_b)
    spread = Z95 * math.sqrt(1 / hits_a - 1 / trials_a + 1 / hits_b - 1 / trials_b)
    return Estimate(value, value * math.exp(-spread), value * math.exp(spread))


def trials_for_margin(share: float, margin: float) -> int:
    """Trials per group for a difference interval of about ±margin when both shares are near `share`."""
    if not 0 < margin < 1:
        raise ValueError("margin must be between 0 and 1")
    variance = max(share * (1 - share), 1e-4)
    return math.ceil(2 * Z95 * Z95 * variance / (margin * margin))


def trials_for_power(base: float, lifted: float) -> int:
    """Trials per group for 80 % power to tell `lifted` from `base` at a two-sided 5 % level."""
    if base == lifted:
        raise ValueError("the two shares must differ")
    variance = base * (1 - base) + lifted * (1 - lifted)
    return math.ceil((Z95 + Z80_POWER) ** 2 * variance / (lifted - base) ** 2)


def _check(hits: float, trials: int) -> None:
    if trials < 1 or not 0 <= hits <= trials:
        raise ValueError(f"need 0 <= hits <= trials and trials >= 1 (got {hits} of {trials})")
