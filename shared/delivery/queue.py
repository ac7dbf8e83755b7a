"""A sender's own SQS queue and its dead-letter queue, as the sender needs them beyond "fail the record".

A sender answers a limit by holding a message (its visibility), a broken token by holding it
without ever dead-lettering it (a fresh, delayed copy replaces it before its last receive), and a
permanent refusal by dead-lettering it at once with the reason as a message attribute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from shared.resources import FunctionSpec

_LONGEST_DELAY_SECONDS = 15 * 60  # SQS's maximum message delay
_LONGEST_VISIBILITY_SECONDS = 12 * 3600  # SQS's maximum, counted from the receive
_ERROR_ATTRIBUTE_LIMIT = 4000  # the DLQ's `error` attribute: a provider's details fit, an HTML page does not


@dataclass(frozen=True)
class DeliveryQueue:
    sqs: Any
    url: str
    dead_letter_url: str
    consumer: FunctionSpec  # the function that receives from it: its timeout bounds a hold
    max_receives: int  # the redrive policy's count (shared/resources.py, the queue's spec)

    @property
    def longest_hold_seconds(self) -> int:
        """SQS caps visibility at 12 hours counted from the receive, not from the call: the message
        was received at most one function timeout ago, so a hold leaves that much room."""
        return _LONGEST_VISIBILITY_SECONDS - self.consumer.timeout_seconds

    def hold(self, record: SQSRecord, seconds: float) -> None:
        """Keep the message invisible for `seconds` (then it is delivered again)."""
        self.sqs.change_message_visibility(
            QueueUrl=self.url,
            ReceiptHandle=record.receipt_handle,
            VisibilityTimeout=min(self.longest_hold_seconds, max(1, math.ceil(seconds))),
        )

    def hold_without_dead_lettering(self, record: SQSRecord, seconds: float) -> bool:
        """Hold the message; True when it stays on the queue (the record must fail), False when a fresh
        copy replaced it because one more receive would send it to the DLQ (the record succeeds)."""
        receives = int(record.attributes.approximate_receive_count or 1)
        if receives < self.max_receives - 1:
            self.hold(record, seconds)
            return True
        self.sqs.send_message(
            QueueUrl=self.url,
            MessageBody=record.body,
            DelaySeconds=min(_LONGEST_DELAY_SECONDS, max(0, math.ceil(seconds))),
        )
        return False

    def dead_letter(self, record: SQSRecord, reason: str, **attributes: str) -> None:
        """To the DLQ now, with the reason (and any other attributes) for whoever replays it."""
        values = {"error": reason[:_ERROR_ATTRIBUTE_LIMIT], **attributes}
        self.sqs.send_message(
            QueueUrl=self.dead_letter_url,
            MessageBody=record.body,
            MessageAttributes={
                name: {"DataType": "String", "StringValue": value} for name, value in values.items() if value
            },
        )
