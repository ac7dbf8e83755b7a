"""How long a sender holds a message it could not deliver now: the destination's Retry-After when
it gave one, else a delay that doubles with each receive (SQS counts them). The hold itself, and the
dead-lettering of a refusal for good, are shared/delivery/queue.py's."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime

import httpx


@dataclass(frozen=True)
class Backoff:
    """first * 2^(receives - 1), at most `longest`: 30 s, 60 s, 2 min... up to an hour by default."""

    first_seconds: float = 30.0
    longest_seconds: float = 3600.0

    def after(self, receives: int) -> float:
        return min(self.longest_seconds, self.first_seconds * 2 ** max(0, receives - 1))


def retry_after(answer: httpx.Response, now: datetime) -> float | None:
    """Retry-After in seconds (delta-seconds or an HTTP date), None when absent or unreadable."""
    value = answer.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, (parsedate_to_datetime(value) - now).total_seconds())
    except (TypeError, ValueError):
        return None
