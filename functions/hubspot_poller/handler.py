"""Every 5 minutes: read Upswing's HubSpot tasks back (shared/readback/tasks.py).

Searches the tasks modified since the stored watermark, records on each play what became of its
task (completed: `worked`, deleted, reassigned, due date moved), then sweeps a slice of the open
tasks for deletions. The watermark moves page by page, only once a page is recorded, so a run that
fails or stops at its deadline is continued by the next one.

HubSpot's answers: 429 and 5xx are waited out and retried by the client as for the sender, within
this run's time; beyond it, the run stops (HubSpotThrottled / HubSpotUnavailable: logged, counted
as `HubSpotPollDeferred`) and the next run continues from the watermark. 401 / 403 count as
`HubSpotTokenRejected` / `HubSpotScopeMissing` (alarmed, like the sender's) and the run stops; the
read-back needs `crm.objects.contacts.read` (docs/operations.md). Anything else (DynamoDB) raises:
the function's Errors alarm.
"""

from __future__ import annotations

import time
from datetime import timedelta
from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.delivery.hubspot import HubSpotAuthFailed, HubSpotThrottled, HubSpotUnavailable
from shared.delivery.hubspot_access import hubspot_client
from shared.observability import logger, metrics, traced
from shared.readback.tasks import PollerStateStore, PollReport, TaskPoller, TaskRegistry
from shared.routing.ledger import PlayLedger
from shared.settings import load_settings
from shared.storage.dynamo import aws_client, dynamodb_client

from .settings import HubSpotPollerSettings

# Stop starting HubSpot calls this long before Lambda's own deadline (a request takes ≤ 10 s).
DEADLINE_MARGIN_SECONDS = 15.0


@cache
def poller() -> TaskPoller:
    settings = load_settings(HubSpotPollerSettings)
    dynamodb = dynamodb_client()
    client, _ = hubspot_client(
        settings.client_settings(),
        settings.secret_id,
        settings.deliveries_table,
        secrets=aws_client("secretsmanager"),
        dynamodb=dynamodb,
    )
    return TaskPoller(
        client=client,
        registry=TaskRegistry(dynamodb, settings.plays_table, settings.retention_days),
        plays=PlayLedger(dynamodb, settings.plays_table, settings.retention_days),
        state=PollerStateStore(dynamodb, settings.plays_table),
        unseen_after=timedelta(minutes=settings.unseen_after_minutes),
    )


@logger.inject_lambda_context
@metrics.log_metrics
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - DEADLINE_MARGIN_SECONDS
    return poll_tasks(poller(), deadline)


def poll_tasks(task_poller: TaskPoller, deadline: float) -> dict[str, Any]:
    """One run; its counts. HubSpot refusing or failing ends the run early, never the watermark."""
    try:
        report = task_poller.poll(deadline, lambda: time.monotonic() < deadline)
    except HubSpotAuthFailed as error:
        metrics.add_metric(
            name="HubSpotTokenRejected" if error.status == 401 else "HubSpotScopeMissing",
            unit=MetricUnit.Count,
            value=1,
        )
        logger.error(error.what_to_fix, extra=error.details.log_fields())
        return {"stopped": "token refused"}
    except (HubSpotThrottled, HubSpotUnavailable) as error:
        metrics.add_metric(name="HubSpotPollDeferred", unit=MetricUnit.Count, value=1)
        logger.warning("HubSpot read-back stopped; the next run continues", extra={"error": str(error)})
        return {"stopped": type(error).__name__}
    _count(report)
    return report.counts()


def _count(report: PollReport) -> None:
    for name, value in (
        ("TasksWorked", report.worked),
        ("TasksDeleted", report.deleted),
        ("TasksReassigned", report.reassigned),
        ("TasksDueMoved", report.due_moved),
        ("HubSpotPollPages", report.pages),
    ):
        if value:
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    logger.info("tasks read back", extra=report.counts())
