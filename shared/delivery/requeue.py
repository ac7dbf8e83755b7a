"""What a sender does with a message it cannot deliver now, or ever: hold it, or dead-letter it.

A retryable failure (a 5xx, a timeout, a 429) leaves the message on its queue and sets how long it
stays invisible: the destination's Retry-After when it gave one, else a delay that doubles with
each receive (SQS counts them). After the queue's receive limit SQS moves it to the DLQ itself. A
refusal for good (a 4xx that retrying cannot change) goes to the DLQ at once, with the reason in a
message attribute, so whoever reads the DLQ sees why without the logs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

# SQS allows a message to stay invisible for at most 12 hours from its receipt.
LONGEST_HOLD_SECONDS = 12 * 3600 - 120
_REASON_LIMIT = 4000  # a message attribute holds more, but a reason longer than this is a page, not a reason


@dataclass(frozen=True)
class Backoff:
    """first * 2^(receives - 1), at most `longest`: 30 s, 60 s, 2 min... up to an hour by default."""

    first_seconds: float = 30.0
    longest_seconds: float = 3600.0

    def after(self, receives: int) -> float:
        return min(self.longest_seconds, self.first_seconds * 2 ** max(0, receives - 1))


@dataclass(frozen=True)
class DeliveryQueue:
    sqs: Any
    queue_url: str
    dead_letter_queue_url: str

    def hold(self, receipt_handle: str, seconds: float) -> None:
        """Keep the message invisible for `seconds`; then SQS delivers it again."""
        self.sqs.change_message_visibility(
            QueueUrl=self.queue_url,
            ReceiptHandle=receipt_handle,
            VisibilityTimeout=min(LONGEST_HOLD_SECONDS, max(1, math.ceil(seconds))),
        )

    def dead_letter(self, body: str, reason: str) -> None:
        """The message to the DLQ with why (the caller then lets the original succeed)."""
        self.sqs.send_message(
            QueueUrl=self.dead_letter_queue_url,
            MessageBody=body,
            MessageAttributes={"error": {"DataType": "String", "StringValue": reason[:_REASON_LIMIT]}},
        )


def retry_after(answer: httpx.Response, now: datetime) -> float | None:
    """Retry-After in seconds (delta-seconds or an HTTP date), None when absent or unreadable."""
    value = answer.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, (parsedate_to_datetime(value) - now).total_seconds())
    except (TypeError, ValueError):
        return None
