"""EventBridge `usage.event` and `outcome` → (SQS) → the same write paths as HTTPS.

The work is in shared/bus_intake.py: invalid messages go to the rejects queue with their reasons,
storage failures come back to SQS as batch item failures.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.bus_ingest.settings import BusIngestSettings
from shared.bus_intake import process_messages
from shared.events.ingest import ingestor_for
from shared.intake import BatchIntake
from shared.observability import logger, metrics, traced
from shared.outcomes.intake import outcome_intake_for
from shared.resources import OUTCOME_DETAIL_TYPE, USAGE_EVENT_DETAIL_TYPE
from shared.settings import load_settings
from shared.storage.dynamo import aws_client, dynamodb_client
from shared.wiring import Wiring

wiring = Wiring()

__all__ = ["handler", "process_messages"]


@wiring.once
def settings() -> BusIngestSettings:
    return load_settings(BusIngestSettings)


@wiring.once
def intakes() -> dict[str, BatchIntake]:
    """The intake for each detail type the bus rule lets through."""
    config = settings()
    return {
        USAGE_EVENT_DETAIL_TYPE: ingestor_for(dynamodb_client(), config),
        OUTCOME_DETAIL_TYPE: outcome_intake_for(
            dynamodb_client(), config.outcomes_table, config.retention_days
        ),
    }


@wiring.once
def sqs_client() -> Any:
    return aws_client("sqs")


@logger.inject_lambda_context
@metrics.log_metrics
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_messages(event, intakes(), sqs_client(), settings().rejects_queue_url, datetime.now(UTC))
