"""Durations in rules files: whole days or weeks (14d, 13w)."""

from __future__ import annotations

import re


def days(duration: str) -> int:
    """'30d' → 30, '2w' → 14, '0d' → 0."""
    match = re.fullmatch(r"([0-9]+)([dw])", duration)
    if not match:
        raise ValueError(f"{duration!r} is not a duration like 30d or 4w")
    return int(match[1]) * (7 if match[2] == "w" else 1)
