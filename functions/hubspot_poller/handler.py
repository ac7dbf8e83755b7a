"""Every 5 minutes: read Upswing's HubSpot tasks back (shared/readback/tasks.py), then the closed-won
deals (shared/readback/deals.py).

Searches the tasks modified since the stored watermark, records on each play what became of its
task (completed: `worked`, deleted, reassigned, due date moved), then sweeps a slice of the open
tasks for deletions. Then searches the closed-won deals modified since the deals' own watermark and
writes each as an outcome (`source: hubspot`) of the account whose profile names the deal's company.
Each watermark moves page by page, only once a page is recorded, so a run that fails or stops at
its deadline is continued by the next one. The deals get the time the tasks left.

HubSpot's answers: 429 and 5xx are waited out and retried by the client as for the sender, within
this run's time; beyond it, the run stops (HubSpotThrottled / HubSpotUnavailable: logged, counted
as `HubSpotPollDeferred`) and the next run continues from the watermark. 401 / 403 count as
`HubSpotTokenRejected` / `HubSpotScopeMissing` (alarmed, like the sender's) and the run stops; the
read-back needs `crm.objects.contacts.read`, and for deals `crm.objects.deals.read` and
`crm.objects.companies.read` (docs/operations.md). Anything else (DynamoDB) raises: the function's
Errors alarm.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.accounts.store import AccountStore
from shared.delivery.hubspot import HubSpotAuthFailed, HubSpotClient, HubSpotThrottled, HubSpotUnavailable
from shared.delivery.hubspot_access import hubspot_client
from shared.observability import logger, metrics, traced
from shared.outcomes.intake import outcome_intake_for
from shared.readback.deals import DealPoller, DealReport
from shared.readback.tasks import PollerStateStore, PollReport, TaskPoller, TaskRegistry
from shared.readback.watermark import DEALS_STATE_KEY
from shared.routing.ledger import PlayLedger
from shared.settings import load_settings
from shared.storage.dynamo import aws_client, dynamodb_client
from shared.wiring import Wiring

from .settings import HubSpotPollerSettings

wiring = Wiring()

Report = TypeVar("Report", PollReport, DealReport)

# Stop starting HubSpot calls this long before Lambda's own deadline (a request takes ≤ 10 s).
DEADLINE_MARGIN_SECONDS = 15.0


@wiring.once
def settings() -> HubSpotPollerSettings:
    return load_settings(HubSpotPollerSettings)


@wiring.once
def client() -> HubSpotClient:
    """One client for tasks and deals: one token cache, one burst pacer, the shared search budget."""
    chosen = settings()
    built, _ = hubspot_client(
        chosen.client_settings(),
        chosen.secret_id,
        chosen.deliveries_table,
        secrets=aws_client("secretsmanager"),
        dynamodb=dynamodb_client(),
    )
    return built


@wiring.once
def poller() -> TaskPoller:
    settings_ = settings()
    dynamodb = dynamodb_client()
    return TaskPoller(
        client=client(),
        registry=TaskRegistry(dynamodb, settings_.plays_table, settings_.retention_days),
        plays=PlayLedger(dynamodb, settings_.plays_table, settings_.retention_days),
        state=PollerStateStore(dynamodb, settings_.plays_table),
        unseen_after=timedelta(minutes=settings_.unseen_after_minutes),
    )


@wiring.once
def deal_poller() -> DealPoller | None:
    """None when reading deals back is turned off (HUBSPOT_READ_DEALS=false)."""
    settings_ = settings()
    if not (settings_.read_deals and settings_.accounts_table and settings_.outcomes_table):
        return None
    dynamodb = dynamodb_client()
    return DealPoller(
        client=client(),
        accounts=AccountStore(dynamodb, settings_.accounts_table),
        outcomes=outcome_intake_for(dynamodb, settings_.outcomes_table, settings_.retention_days),
        state=PollerStateStore(dynamodb, settings_.plays_table, DEALS_STATE_KEY),
        rules=settings_.deal_rules(),
        retention_days=settings_.retention_days,
    )


@logger.inject_lambda_context
@metrics.log_metrics
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - DEADLINE_MARGIN_SECONDS
    answer = poll_tasks(poller(), deadline)
    deals = deal_poller()
    if deals is not None and "stopped" not in answer:  # HubSpot refused or failed: not again this run
        answer["deals"] = poll_deals(deals, deadline)
    return answer


def poll_tasks(task_poller: TaskPoller, deadline: float) -> dict[str, Any]:
    """One run; its counts. HubSpot refusing or failing ends the run early, never the watermark."""
    report = _guarded(lambda: task_poller.poll(deadline, lambda: time.monotonic() < deadline), "tasks")
    if isinstance(report, dict):
        return report
    _count(report)
    return report.counts()


def poll_deals(poller_of_deals: DealPoller, deadline: float) -> dict[str, Any]:
    """One run over the closed-won deals; its counts (the same answers to HubSpot's refusals)."""
    report = _guarded(lambda: poller_of_deals.poll(deadline, lambda: time.monotonic() < deadline), "deals")
    if isinstance(report, dict):
        return report
    _count_deals(report)
    return report.counts()


def _guarded(run: Callable[[], Report], what: str) -> Report | dict[str, Any]:
    """The report, or why HubSpot ended the run (counted, logged; the watermark stays)."""
    try:
        return run()
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
        logger.warning(
            "HubSpot read-back stopped; the next run continues", extra={"error": str(error), "reading": what}
        )
        return {"stopped": type(error).__name__}


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


def _count_deals(report: DealReport) -> None:
    for name, value in (
        ("DealOutcomesWritten", report.written),
        ("DealOutcomesChanged", report.changed),
        ("DealOutcomesInvalid", report.invalid),
        ("DealsWithoutAccount", report.without_company + report.unknown_company),
        ("DealsAmbiguous", report.ambiguous_company + report.ambiguous_account),
        ("HubSpotDealPages", report.pages),
    ):
        if value:
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    logger.info("deals read back", extra=report.counts())
