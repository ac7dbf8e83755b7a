"""Outcomes table stream (INSERT) → attribution: the firings an expansion followed learn `expanded`.

Every source of outcomes writes the outcomes table, so every one is attributed the same way
(shared/outcomes/attribution.py). Each record is handled on its own (Powertools batch processing):
one that fails (a DynamoDB error after the SDK's retries) is reported alone and retried by Lambda
from there; records attributed before it are skipped on the retry by the plays' conditional write,
so nothing is counted twice. A record that cannot be read fails the same way and ends, after the
retries, in the on-failure queue instead of blocking the shard.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.observability import logger, metrics, traced
from shared.outcomes.attribution import Attributor, StoredOutcomeFacts
from shared.routing.ledger import PlayLedger
from shared.settings import load_settings
from shared.storage.dynamo import deserialize, dynamodb_client
from shared.wiring import Wiring

from .settings import AttributorSettings

wiring = Wiring()

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


@wiring.once
def attributor() -> Attributor:
    settings = load_settings(AttributorSettings)
    return Attributor(
        plays=PlayLedger(dynamodb_client(), settings.plays_table, settings.retention_days),
        horizon_days=settings.horizon_days,
    )


@logger.inject_lambda_context
@metrics.log_metrics
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return attribute_outcomes(event, attributor(), context)


def attribute_outcomes(
    event: dict[str, Any], outcome_attributor: Attributor, context: LambdaContext | None = None
) -> dict[str, Any]:
    def attribute_record(record: DynamoDBRecord) -> None:
        if record.raw_event.get("eventName") != "INSERT":
            return  # the event-source filter drops these already; a local pump may not
        image = record.raw_event.get("dynamodb", {}).get("NewImage")
        if not image:
            raise ValueError("an outcomes stream record without its new image")
        outcome = StoredOutcomeFacts.from_item(deserialize(image))
        result = outcome_attributor.attribute(outcome)
        if result.attributed:
            metrics.add_metric(name="ExpansionsAttributed", unit=MetricUnit.Count, value=result.attributed)

    return dict(
        process_partial_response(
            event=event, record_handler=attribute_record, processor=processor, context=context
        )
    )
