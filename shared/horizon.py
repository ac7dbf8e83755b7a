"""The expansion horizon: how long after a firing an expansion still counts as its result.

One setting (EXPANSION_HORIZON_DAYS, CDK context `expansion_horizon_days`) serves the attribution
of outcomes to plays, the plays' fate (`lapsed` once it has passed) and the live trigger metrics
(a firing is *matured* once its horizon has passed); its default is the backtest's, so live and
backtest precision ask the same question.
"""

from __future__ import annotations

from datetime import datetime, timedelta

DEFAULT_HORIZON_DAYS = 90
HORIZON_ENV = "EXPANSION_HORIZON_DAYS"


def within_horizon(fired_at: datetime, occurred_at: datetime, horizon_days: int) -> bool:
    """Whether an outcome at `occurred_at` follows a firing at `fired_at` within the horizon:
    fired_at ≤ occurred_at ≤ fired_at + horizon (both ends included)."""
    return fired_at <= occurred_at <= fired_at + timedelta(days=horizon_days)
