"""One builder for the `trigger.fired` message the router takes, as the evaluator writes it.

The router's tests (unit and moto), the trigger metrics' and the experiments' share it; each names
only what its case is about.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from shared.routing.router import FiredMessage
from shared.timestamps import utc_stamp

BUSY = {
    "signal": "busy",
    "detail": "latest seats.active = 12",
    "held": True,
    "observed": 12,
    "threshold": 10,
    "comparison": "at_least",
    "window": {"from": "2026-11-24", "to": "2026-11-24"},
}


def fired_message(
    account_id: str,
    at: datetime,
    *,
    trigger: str = "seats",
    play: str = "seat-expansion",
    version: str = "test-1",
    score: float = 75,
    condition: dict[str, Any] | None = None,
    category: str = "commercial",
    firing_id: str | None = None,
    **evidence: Any,
) -> FiredMessage:
    """A firing of `trigger` for the account at `at`; its id is stable for (account, at, trigger, version)."""
    firing = {
        "ruleset_version": version,
        "trigger": trigger,
        "account_id": account_id,
        "evaluated_at": utc_stamp(at),
        "category": category,
        "owner_role": "csm",
        "play": play,
        "score": {"total": score, "base": 0, "parts": []},
        "condition": condition or BUSY,
        "exclusions_checked": [],
        **evidence,
    }
    key = f"{account_id}|{at.isoformat()}|{trigger}|{version}"
    return FiredMessage.model_validate(
        {
            "type": "trigger.fired",
            "firing_id": firing_id or hashlib.sha256(key.encode()).hexdigest()[:24],
            "firing": firing,
        }
    )
