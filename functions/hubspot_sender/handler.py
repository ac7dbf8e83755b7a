"""HubSpot deliveries (SQS) → one HubSpot task per play, never two.

Each delivery is claimed in the deliveries ledger, created through the paced HubSpot client and
recorded with its task id; a redelivered message finds the task id and stops. After an attempt
that stopped mid-send (or failed so that HubSpot may have created the task) the task is looked up
by the play id it carries before another is created — on a redelivery, once HubSpot's search index
shows every task that attempt could have created.

What HubSpot answers decides what happens to the message:
- a permanent 4xx (validation, scope, unknown association target): straight to the DLQ with
  HubSpot's message, so the rest of the batch goes on and nobody waits for five retries;
- 429 beyond what the client could wait out: the message goes back to the queue, invisible for
  as long as HubSpot asks; the daily limit holds back the rest of the batch too;
- a 5xx or a timeout once the request went out: back to the queue at once (HubSpot may have
  created the task; the redelivery looks first), then dead-lettered after the queue's retries;
- connection failures the client could not get past: retried by the queue likewise.
A message that is not a valid delivery is dead-lettered with the validation error.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from shared.delivery.hubspot import (
    DAILY,
    SEARCH_INDEX_LAG,
    HubSpotClient,
    HubSpotRejected,
    HubSpotThrottled,
)
from shared.delivery.ledger import Claim, DeliveryLedger, deliver_once
from shared.delivery.secrets import CachedSecret
from shared.events.validation import describe_errors
from shared.observability import logger, metrics, traced
from shared.routing.messages import PlayDelivery
from shared.rules.plays import Channel
from shared.settings import load_settings
from shared.storage.dynamo import aws_client, dynamodb_client

from .settings import HubSpotSenderSettings

processor = BatchProcessor(event_type=EventType.SQS)
FUNCTION_TIMEOUT = timedelta(seconds=60)  # infra/delivery.py sets the same
# Stop starting HubSpot calls this long before Lambda's own deadline.
_DEADLINE_MARGIN_SECONDS = 5.0
_LONGEST_HOLD_SECONDS = 12 * 3600  # SQS's maximum visibility timeout


@dataclass
class HubSpotSender:
    client: HubSpotClient
    ledger: DeliveryLedger
    sqs: Any
    queue_url: str
    dead_letter_queue_url: str
    clock: Callable[[], float] = field(default=time.monotonic)

    def deliver(self, delivery: PlayDelivery, now: datetime, deadline: float) -> Claim:
        if delivery.channel is not Channel.HUBSPOT_TASK:
            raise ValueError(f"play {delivery.play_id}: a {delivery.channel} delivery on the HubSpot queue")
        return deliver_once(
            self.ledger,
            Channel.HUBSPOT_TASK.value,
            delivery.play_id,
            now,
            lambda: self.client.create_task(delivery, deadline),
            # Refused for sure: no task was created (create_task stops at an ambiguous failure).
            definite_failure=lambda error: isinstance(error, HubSpotRejected | HubSpotThrottled),
            find=lambda: self.client.find_task(delivery.play_id, deadline),
            # The claiming attempt may send until it times out; its task shows in search only
            # SEARCH_INDEX_LAG later. A lookup any sooner could miss it and create a second task.
            stale_after=FUNCTION_TIMEOUT + SEARCH_INDEX_LAG,
        )

    def dead_letter(self, record: SQSRecord, reason: str) -> None:
        self.sqs.send_message(
            QueueUrl=self.dead_letter_queue_url,
            MessageBody=record.body,
            MessageAttributes={"error": {"DataType": "String", "StringValue": reason[:1000]}},
        )

    def hold(self, record: SQSRecord, seconds: float) -> None:
        """Keep the message invisible for `seconds` (then it is delivered again)."""
        self.sqs.change_message_visibility(
            QueueUrl=self.queue_url,
            ReceiptHandle=record.receipt_handle,
            VisibilityTimeout=min(_LONGEST_HOLD_SECONDS, max(1, math.ceil(seconds))),
        )


@cache
def sender() -> HubSpotSender:
    settings = load_settings(HubSpotSenderSettings)
    token = CachedSecret(aws_client("secretsmanager"), settings.secret_id)
    return HubSpotSender(
        client=HubSpotClient(settings.client_settings(), token),
        ledger=DeliveryLedger(dynamodb_client(), settings.deliveries_table, settings.retention_days),
        sqs=aws_client("sqs"),
        queue_url=settings.queue_url,
        dead_letter_queue_url=settings.dead_letter_queue_url,
    )


@logger.inject_lambda_context
@metrics.log_metrics
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    remaining = context.get_remaining_time_in_millis() / 1000
    return send_tasks(event, sender(), deadline=time.monotonic() + remaining - _DEADLINE_MARGIN_SECONDS)


def send_tasks(event: dict[str, Any], hubspot: HubSpotSender, deadline: float) -> dict[str, Any]:
    daily_limit: HubSpotThrottled | None = None

    def send_record(record: SQSRecord) -> None:
        nonlocal daily_limit
        if daily_limit is not None:  # no point asking again today
            hubspot.hold(record, daily_limit.wait_seconds)
            raise daily_limit
        try:
            delivery = PlayDelivery.model_validate_json(record.body)
        except ValidationError as error:
            reason = "not a play delivery: " + "; ".join(describe_errors(error))
            _dead_lettered(hubspot, record, reason, kind="invalid message")
            return
        try:
            claim = hubspot.deliver(delivery, datetime.now(UTC), deadline)
        except HubSpotRejected as error:
            kind = f"HubSpot {error.status} {error.category}"
            _dead_lettered(hubspot, record, str(error), kind=kind, play_id=delivery.play_id)
            return
        except HubSpotThrottled as error:
            hubspot.hold(record, error.wait_seconds)
            if error.policy == DAILY:
                daily_limit = error
            metrics.add_metric(name="HubSpotThrottled", unit=MetricUnit.Count, value=1)
            raise
        metrics.add_metric(
            name="HubSpotTasksCreated" if claim.fresh else "HubSpotRedeliveries",
            unit=MetricUnit.Count,
            value=1,
        )
        logger.info("hubspot task", extra={"play_id": delivery.play_id, "task_id": claim.external_id})

    answer = process_partial_response(event=event, record_handler=send_record, processor=processor)
    return dict(answer)


def _dead_lettered(
    hubspot: HubSpotSender, record: SQSRecord, reason: str, *, kind: str, play_id: str | None = None
) -> None:
    """To the DLQ with the full reason; the log gets its kind only (HubSpot's messages can quote
    property values, which may be personal data)."""
    hubspot.dead_letter(record, reason)
    metrics.add_metric(name="HubSpotDeadLettered", unit=MetricUnit.Count, value=1)
    logger.error("delivery dead-lettered", extra={"play_id": play_id, "kind": kind})
