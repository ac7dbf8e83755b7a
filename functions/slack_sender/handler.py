"""Slack deliveries (SQS) → one message per play to its owner or channel (shared/delivery/slack.py)."""

from __future__ import annotations

from typing import Any

import httpx
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.delivery.ledger import DeliveryLedger
from shared.delivery.queue import DeliveryQueue
from shared.delivery.secrets import CachedSecret
from shared.delivery.slack import SlackClient, SlackSender
from shared.observability import logger, metrics, traced
from shared.resources import SLACK_QUEUE, SLACK_SENDER_FUNCTION
from shared.routing.ledger import PlayLedger
from shared.settings import load_settings
from shared.storage.dynamo import aws_client, dynamodb_client
from shared.wiring import Wiring

from .settings import SlackSenderSettings

processor = BatchProcessor(event_type=EventType.SQS)
wiring = Wiring()
# Slack answers within seconds; a post that gets no answer in 10 s is retried (its outcome unknown).
SLACK_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


@wiring.once
def sender() -> SlackSender:
    settings = load_settings(SlackSenderSettings)
    client = dynamodb_client()
    token = CachedSecret(
        aws_client("secretsmanager"),
        settings.bot_token_secret_id,
        what="the Slack bot token secret is empty: store the bot token (xoxb-...)",
    )
    return SlackSender(
        client=SlackClient(httpx.Client(timeout=SLACK_TIMEOUT), token, base_url=settings.base_url),
        ledger=DeliveryLedger(client, settings.deliveries_table, settings.retention_days),
        plays=PlayLedger(client, settings.plays_table, settings.retention_days),
        queue=DeliveryQueue(
            aws_client("sqs"),
            settings.queue_url,
            settings.dead_letter_queue_url,
            SLACK_SENDER_FUNCTION,
            SLACK_QUEUE.max_receive_count,
        ),
        hubspot_portal_id=settings.hubspot_portal_id,
        stale_after=SLACK_SENDER_FUNCTION.timeout,
    )


@logger.inject_lambda_context
@metrics.log_metrics
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return send_slack_messages(event, sender(), context)


def send_slack_messages(
    event: dict[str, Any], slack: SlackSender, context: LambdaContext | None = None
) -> dict[str, Any]:
    return dict(
        process_partial_response(
            event=event, record_handler=slack.handle, processor=processor, context=context
        )
    )
