"""Every few minutes: release the plays whose time has come, then check stale HubSpot tasks.

Deferred plays (over a fatigue budget when they fired) are routed once their budget's period
ends; escalation tiers are routed on their day if the trigger's condition still holds, else they
lapse. A play that fails is logged and left waiting for the next run; the rest go on. Then a bounded
page of the HubSpot tasks watched for auto-closing is checked (shared/routing/autoclose.py): a task
whose signal has not held for its play's `auto_close.after` is handed to the HubSpot sender to close.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.observability import logger, metrics, traced
from shared.routing.autoclose import AutoCloser
from shared.routing.router import Router
from shared.rules.build import build_online_evaluator
from shared.settings import load_settings
from shared.wiring import Wiring

from .build import build_routing
from .settings import SchedulerSettings

wiring = Wiring()

# Leave this much of the invocation for the releases in flight to finish.
_MARGIN_MS = 10_000
# Still held, for an escalation: held now, and neither excluded nor outside its segment.
_NOT_PERSISTING = ("excluded", "other segment")


@wiring.once
def router() -> Router:
    return _wired()[0]


@wiring.once
def auto_closer() -> AutoCloser:
    return _wired()[1]


@wiring.once
def _wired() -> tuple[Router, AutoCloser, int]:
    settings = load_settings(SchedulerSettings)
    rules = build_online_evaluator(settings)

    def signal_holds(account_id: str, trigger: str, at: datetime) -> bool:
        outcome = next(o for o in rules.preview(account_id, at).outcomes if o.trigger == trigger)
        return outcome.held and outcome.reason not in _NOT_PERSISTING

    routing = build_routing(settings, signal_holds)
    closer = AutoCloser(
        ruleset=routing.router.ruleset,
        plays=routing.plays,
        watches=routing.watches,
        signal_holds=signal_holds,
        sender=routing.dispatcher,
    )
    return routing.router, closer, settings.auto_close_per_run


@logger.inject_lambda_context
@metrics.log_metrics
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    now = datetime.now(UTC)
    time_left = lambda: context.get_remaining_time_in_millis() > _MARGIN_MS  # noqa: E731
    released = release_due(router(), now, time_left)
    closing = close_stale_tasks(auto_closer(), now, time_left, _wired()[2])
    return {**released, **{f"auto_close_{outcome}": count for outcome, count in closing.items()}}


def close_stale_tasks(
    closer: AutoCloser, now: datetime, time_left: Any = lambda: True, limit: int = 100
) -> dict[str, int]:
    """One page of due auto-close checks; counts by outcome (`closing`: handed to the HubSpot sender)."""
    tally = closer.run(now, time_left, limit)
    for outcome, count in tally.items():
        name = (
            "TasksAutoCloseDecided"
            if outcome == "closing"
            else f"AutoCloseChecks{outcome.title().replace(' ', '')}"
        )
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=count)
    return tally


def release_due(play_router: Router, now: datetime, time_left: Any = lambda: True) -> dict[str, int]:
    """Release due plays in pages until none is due or time runs short; counts by outcome."""
    tally: dict[str, int] = {}
    seen: set[str] = set()  # the index lags the table: a released play can show up once more
    while time_left():
        due = [record for record in play_router.ledger.due(now) if record.play_id not in seen]
        if not due:
            break
        for record in due:
            if not time_left():
                break
            seen.add(record.play_id)
            try:
                outcome = play_router.release(record, now).status.value
            except Exception:  # one play's failure must not hold up the others; it waits for the next run
                logger.exception("release failed", extra={"play_id": record.play_id})
                outcome = "failed"
            tally[outcome] = tally.get(outcome, 0) + 1
            metrics.add_metric(name=f"PlaysReleased{outcome.capitalize()}", unit=MetricUnit.Count, value=1)
    return tally
