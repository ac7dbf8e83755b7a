"""A share of trials and its 95 % Wilson interval: the backtest and the live trigger metrics use it.

Wilson's interval, not the normal approximation: it stays within [0, 1] and stays honest for the
small counts a trigger has early on (3 hits of 4 trials is not "75 % ± 42 %").
"""

from __future__ import annotations

import math

Z95 = 1.959964


def wilson(hits: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """The 95 % Wilson score interval of hits / trials (trials > 0)."""
    if trials <= 0:
        raise ValueError("a share needs at least one trial")
    share = hits / trials
    denominator = 1 + z**2 / trials
    centre = (share + z**2 / (2 * trials)) / denominator
    spread = z * math.sqrt(share * (1 - share) / trials + z**2 / (4 * trials**2)) / denominator
    return max(0.0, centre - spread), min(1.0, centre + spread)
