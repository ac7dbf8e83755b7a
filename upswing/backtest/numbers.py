"""How the backtest writes its figures: one way, in the terminal summary and the HTML report alike.

Each takes what a result holds (a number, or None where there is no figure; a saved result read
back may hold anything) and gives text, "—" when there is no finite number to show.
"""

from __future__ import annotations

import math
from typing import Any

DASH = "—"
TIMES = "\u00d7"  # the multiplication sign, spelled as an escape so it cannot pass for an x


def finite(value: Any) -> float | None:
    """A finite number, or None (for null, a missing field, a bool or anything else)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def number(value: float) -> str:
    """Whole numbers without decimals, others with one; thousands separated."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def count(value: Any) -> str:
    found = finite(value)
    return f"{round(found):,}" if found is not None else DASH


def percent(value: Any) -> str:
    """A share (0.421) as a percentage ("42.1 %")."""
    found = finite(value)
    return f"{found * 100:.1f} %" if found is not None else DASH


def lift(value: Any) -> str:
    found = finite(value)
    return f"{found:.1f}{TIMES}" if found is not None else DASH


def days(value: Any) -> str:
    found = finite(value)
    return number(found) if found is not None else DASH
