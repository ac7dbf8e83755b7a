"""Webhook deliveries (SQS) → signed POSTs to the plays' destinations (shared/delivery/webhook.py)."""

from __future__ import annotations

from typing import Any

import httpx
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.delivery.ledger import DeliveryLedger
from shared.delivery.queue import DeliveryQueue
from shared.delivery.webhook import USER_AGENT, WebhookSender
from shared.observability import logger, metrics, traced
from shared.resources import WEBHOOK_QUEUE, WEBHOOK_SENDER_FUNCTION
from shared.settings import load_settings
from shared.storage.dynamo import aws_client, dynamodb_client
from shared.wiring import Wiring

from .settings import WebhookSenderSettings

processor = BatchProcessor(event_type=EventType.SQS)
wiring = Wiring()


@wiring.once
def sender() -> WebhookSender:
    settings = load_settings(WebhookSenderSettings)
    sqs = aws_client("sqs")
    return WebhookSender(
        # Redirects are not followed: a destination that moved is a configuration to fix (the DLQ says so).
        http=httpx.Client(follow_redirects=False, headers={"User-Agent": USER_AGENT}),
        ledger=DeliveryLedger(dynamodb_client(), settings.deliveries_table, settings.retention_days),
        queue=DeliveryQueue(
            sqs,
            settings.queue_url,
            settings.dead_letter_queue_url,
            WEBHOOK_SENDER_FUNCTION,
            WEBHOOK_QUEUE.max_receive_count,
        ),
        secrets_client=aws_client("secretsmanager"),
    )


@logger.inject_lambda_context
@metrics.log_metrics
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return send_webhooks(event, sender(), context)


def send_webhooks(
    event: dict[str, Any], webhooks: WebhookSender, context: LambdaContext | None = None
) -> dict[str, Any]:
    return dict(
        process_partial_response(
            event=event, record_handler=webhooks.handle, processor=processor, context=context
        )
    )
