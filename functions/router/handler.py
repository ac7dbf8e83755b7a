"""`trigger.fired` (SQS) → the play router → deliveries on the channel queues, `play.routed` on the bus.

Each message is one firing; a malformed one fails alone (partial batch response) and reaches the
fired queue's DLQ after its retries. Redeliveries are harmless: the play ledger knows each play.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.observability import logger, metrics, traced
from shared.routing.router import FiredMessage, Router
from shared.settings import load_settings
from shared.wiring import Wiring

from .build import build_routing
from .settings import RouterSettings

wiring = Wiring()

processor = BatchProcessor(event_type=EventType.SQS)


def _no_signal_checks(account_id: str, trigger: str, at: datetime) -> bool:
    raise RuntimeError("the router routes first tiers only; escalations are the scheduler's")


@wiring.once
def router() -> Router:
    return build_routing(load_settings(RouterSettings), _no_signal_checks).router


@logger.inject_lambda_context
@metrics.log_metrics
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return route_fired(event, router(), context)


def route_fired(
    event: dict[str, Any], play_router: Router, context: LambdaContext | None = None
) -> dict[str, Any]:
    def route_record(record: SQSRecord) -> None:
        message = FiredMessage.model_validate_json(record.body)
        routed = play_router.route_firing(message, datetime.now(UTC))
        status = "".join(part.capitalize() for part in routed.status.value.split("_"))  # PlaysHeldOut
        metrics.add_metric(name=f"Plays{status}", unit=MetricUnit.Count, value=1)
        logger.info(
            "firing routed",
            extra={"play_id": routed.play_id, "trigger": routed.trigger, "status": routed.status.value},
        )

    return dict(
        process_partial_response(
            event=event, record_handler=route_record, processor=processor, context=context
        )
    )
