"""Webhook deliveries (SQS) → the signed `play.routed` document POSTed to a destination, at least once.

A receiver (an in-app guidance tool, an internal service) can check that Upswing sent the request
and that it is fresh, and can tell a redelivery from a new play:

- `Upswing-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, keyed with the
  destination's signing secret (Stripe's scheme; docs/api.md, "Webhooks", has the check in Python).
- `Idempotency-Key: <play id>.<destination>`: the same on every attempt of the same play to the
  same destination, so a receiver that keeps the keys it has processed does each play once.

Delivery is at least once, not at most once (unlike the HubSpot task and the email): a receiver
deduplicates by the key, so an attempt whose answer was lost is simply sent again. The delivery
ledger only remembers a delivery the destination accepted, so a redelivered SQS message is not
POSTed again. A 2xx is accepted; a 408, a 429, a 5xx, a timeout or a broken connection is retried
with a growing delay (the message's visibility; Retry-After when given), then the DLQ after the
queue's receive limit; any other 4xx or a redirect is a refusal retrying cannot change: to the DLQ
at once, with the destination's status and the start of its answer as the reason.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from botocore.exceptions import ClientError
from pydantic import ValidationError

from shared.delivery.backoff import Backoff, retry_after
from shared.delivery.ledger import DeliveryLedger, DeliveryStatus
from shared.delivery.queue import DeliveryQueue
from shared.delivery.secrets import CachedSecret
from shared.events.validation import describe_errors
from shared.observability import logger, metrics
from shared.routing.messages import PlayDelivery
from shared.rules.plays import Channel

SIGNATURE_HEADER = "Upswing-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
USER_AGENT = "Upswing-Webhooks/1"
_RETRYABLE_STATUSES = {408, 429}
_ANSWER_EXCERPT = 300  # characters of a refusing answer kept in the DLQ reason (never logged)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `Upswing-Signature` value: `t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`."""
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def idempotency_key(play_id: str, destination: str) -> str:
    """Stable per play and destination: every attempt of one play to one destination carries it."""
    return f"{play_id}.{destination}"


def webhook_body(delivery: PlayDelivery) -> bytes:
    """What is POSTed: the `play.routed` detail the bus got, in an envelope naming its type and key."""
    if delivery.webhook is None or delivery.event is None:
        raise ValueError(f"play {delivery.play_id}: a webhook delivery without its destination or event")
    envelope = {
        "type": "play.routed",
        "id": idempotency_key(delivery.play_id, delivery.webhook.name),
        "detail": delivery.event,
    }
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()


class WebhookRetry(Exception):
    """The destination could not take it now (408, 429, 5xx, a timeout): try again later."""

    def __init__(self, reason: str, wait_seconds: float | None = None) -> None:
        super().__init__(reason)
        self.wait_seconds = wait_seconds


class WebhookRefused(Exception):
    """The destination refused it for good (a 4xx other than 408/429, a redirect): the DLQ."""


@dataclass
class WebhookSender:
    http: httpx.Client
    ledger: DeliveryLedger
    queue: DeliveryQueue
    secrets_client: Any
    backoff: Backoff = field(default_factory=Backoff)
    clock: Callable[[], float] = time.time  # the signature's timestamp (wall clock, unix seconds)
    _secrets: dict[str, CachedSecret] = field(default_factory=dict)

    def deliver(self, delivery: PlayDelivery, now: datetime) -> str:
        """POST the delivery unless the destination accepted it before; the outcome, in words."""
        if delivery.channel is not Channel.WEBHOOK or delivery.webhook is None:
            raise ValueError(f"play {delivery.play_id}: a {delivery.channel} delivery on the webhook queue")
        target = delivery.webhook
        channel = delivery.channel_name
        claim = self.ledger.claim(channel, delivery.play_id, now)
        if not claim.fresh and claim.status is DeliveryStatus.DELIVERED:
            return "already delivered"
        # A claim left `sending` by an attempt whose answer never came: send again (at least once;
        # the receiver deduplicates by the Idempotency-Key).
        body = webhook_body(delivery)
        timestamp = int(self.clock())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: sign(self._secret(target.secret), timestamp, body),
            IDEMPOTENCY_HEADER: idempotency_key(delivery.play_id, target.name),
        }
        try:
            answer = self.http.post(target.url, content=body, headers=headers, timeout=target.timeout_seconds)
        except httpx.TimeoutException as error:
            raise WebhookRetry(f"{target.name}: no answer within {target.timeout_seconds:g} s") from error
        except httpx.TransportError as error:
            raise WebhookRetry(f"{target.name}: {type(error).__name__}") from error
        _judge(target.name, answer, now)
        self.ledger.delivered(channel, delivery.play_id, f"HTTP {answer.status_code}", now)
        return "delivered"

    def handle(self, record: SQSRecord) -> None:
        """One SQS message: delivered, held for a retry (raises, so the record fails and stays on the
        queue), or dead-lettered with the reason (returns, so the record leaves the queue)."""
        try:
            delivery = PlayDelivery.model_validate_json(record.body)
            outcome = self.deliver(delivery, datetime.now(UTC))
        except ValidationError as error:
            reason = "not a play delivery: " + "; ".join(
                describe_errors(error, PlayDelivery, noun="delivery")
            )
            self._dead_letter(record, reason, play_id=None)
            return
        except (ValueError, WebhookRefused) as error:
            self._dead_letter(record, str(error), play_id=_play_id(record))
            return
        except WebhookRetry as error:
            receives = int(record.attributes.approximate_receive_count or 1)
            wait = error.wait_seconds if error.wait_seconds is not None else self.backoff.after(receives)
            self.queue.hold(record, wait)
            metrics.add_metric(name="WebhookRetried", unit=MetricUnit.Count, value=1)
            logger.warning(
                "webhook retried",
                extra={
                    "play_id": _play_id(record),
                    "reason": str(error),
                    "wait_seconds": wait,
                    "receives": receives,
                },
            )
            raise
        metrics.add_metric(
            name="WebhooksDelivered" if outcome == "delivered" else "WebhooksRepeated",
            unit=MetricUnit.Count,
            value=1,
        )
        logger.info("webhook delivery", extra={"play_id": delivery.play_id, "outcome": outcome})

    def _secret(self, secret_id: str) -> str:
        if secret_id not in self._secrets:
            self._secrets[secret_id] = CachedSecret(
                self.secrets_client,
                secret_id,
                key="secret",
                what=f"the webhook signing secret {secret_id} is empty: store the secret",
            )
        try:
            return self._secrets[secret_id]()
        except ValueError as error:  # an empty secret: held until someone stores it, not dropped
            raise WebhookRetry(str(error)) from error
        except ClientError as error:  # missing, or not readable by this function
            code = error.response.get("Error", {}).get("Code")
            raise WebhookRetry(f"cannot read the webhook signing secret {secret_id}: {code}") from error

    def _dead_letter(self, record: SQSRecord, reason: str, *, play_id: str | None) -> None:
        self.queue.dead_letter(record, reason)
        metrics.add_metric(name="WebhookDeadLettered", unit=MetricUnit.Count, value=1)
        # The reason may quote the destination's answer: the DLQ keeps it, the log does not.
        logger.error("webhook dead-lettered", extra={"play_id": play_id, "kind": reason.split(":", 1)[0]})


def _judge(destination: str, answer: httpx.Response, now: datetime) -> None:
    """Nothing for a 2xx; WebhookRetry or WebhookRefused otherwise."""
    status = answer.status_code
    if 200 <= status < 300:
        return
    said = answer.text[:_ANSWER_EXCERPT].strip()
    if status in _RETRYABLE_STATUSES or status >= 500:
        raise WebhookRetry(f"{destination}: HTTP {status}", retry_after(answer, now))
    where = f" to {answer.headers.get('location')}" if 300 <= status < 400 else ""
    raise WebhookRefused(f"{destination}: HTTP {status}{where} (refused for good): {said or 'no body'}")


def _play_id(record: SQSRecord) -> str | None:
    try:
        play_id = json.loads(record.body).get("play_id")
    except (ValueError, AttributeError):
        return None
    return play_id if isinstance(play_id, str) else None
