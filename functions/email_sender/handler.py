"""Email deliveries (SQS) → the owner's notification through SES v2, at most once per play.

SES cannot be asked whether a message went out, so a delivery whose earlier attempt stopped
mid-send is recorded as `unknown` rather than sent again (shared/delivery/ledger.py). An error
answer from SES is a definite failure: the claim is released and the message retried, then
dead-lettered after the queue's receive limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from shared.delivery.email import render_email
from shared.delivery.ledger import DeliveryLedger, deliver_once
from shared.delivery.ses import SesMailer
from shared.observability import logger, metrics, traced
from shared.resources import EMAIL_SENDER_FUNCTION
from shared.routing.messages import PlayDelivery
from shared.rules.plays import Channel
from shared.settings import load_settings
from shared.storage.dynamo import aws_client, dynamodb_client
from shared.wiring import Wiring

from .settings import EmailSenderSettings

wiring = Wiring()

processor = BatchProcessor(event_type=EventType.SQS)
# The function's timeout: a claim younger than this may belong to an attempt still running.
FUNCTION_TIMEOUT = EMAIL_SENDER_FUNCTION.timeout  # the stack sets the same (one spec, shared/resources.py)


@dataclass
class EmailSender:
    mail: SesMailer
    ledger: DeliveryLedger

    def deliver(self, delivery: PlayDelivery, now: datetime) -> str:
        if delivery.channel is not Channel.EMAIL or not (delivery.owner and delivery.owner.email):
            raise ValueError(f"play {delivery.play_id}: not an email delivery with an owner address")
        recipient = delivery.owner.email
        claim = deliver_once(
            self.ledger,
            Channel.EMAIL.value,
            delivery.play_id,
            now,
            lambda: self.mail.send(recipient, render_email(delivery), {"play": delivery.play}),
            definite_failure=lambda error: isinstance(error, ClientError),
            stale_after=FUNCTION_TIMEOUT,
        )
        return claim.status.value if claim.fresh else f"already {claim.status.value}"


@wiring.once
def sender() -> EmailSender:
    settings = load_settings(EmailSenderSettings)
    return EmailSender(
        mail=SesMailer(aws_client("sesv2"), settings.sender_email),
        ledger=DeliveryLedger(dynamodb_client(), settings.deliveries_table, settings.retention_days),
    )


@logger.inject_lambda_context
@metrics.log_metrics
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return send_emails(event, sender(), context)


def send_emails(
    event: dict[str, Any], email: EmailSender, context: LambdaContext | None = None
) -> dict[str, Any]:
    def send_record(record: SQSRecord) -> None:
        delivery = PlayDelivery.model_validate_json(record.body)
        outcome = email.deliver(delivery, datetime.now(UTC))
        metrics.add_metric(
            name="EmailsSent" if outcome == "delivered" else "EmailsRepeated", unit=MetricUnit.Count, value=1
        )
        logger.info("email delivery", extra={"play_id": delivery.play_id, "outcome": outcome})

    return dict(
        process_partial_response(
            event=event, record_handler=send_record, processor=processor, context=context
        )
    )
