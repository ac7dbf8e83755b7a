"""The senders' idempotency ledger: one item per (channel, play id), claimed before sending.

A sender claims the delivery with a conditional put, sends, then records what it sent (the
HubSpot task id, the SES message id). A redelivered message finds the item: a completed delivery
is not sent again. A claim without a result means an earlier attempt stopped mid-send, its
outcome unknown: the HubSpot sender looks the task up before creating one; the email sender
cannot look a message up, so it does not send again (at most once) and records the doubt. A
definite failure (an error answer) releases the claim, so the retry starts afresh.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

from shared.storage.dynamo import deserialize, is_conditional_failure, serialize


class DeliveryStatus(StrEnum):
    SENDING = "sending"
    DELIVERED = "delivered"
    UNKNOWN = "unknown"  # an attempt stopped mid-send and its outcome cannot be found out


@dataclass(frozen=True)
class Claim:
    fresh: bool  # True: this attempt claimed it; False: an earlier attempt did
    status: DeliveryStatus
    external_id: str | None = None
    claimed_at: datetime | None = None


class DeliveryLedger:
    def __init__(self, client: Any, table: str, retention_days: int) -> None:
        self._client = client
        self._table = table
        self._retention = timedelta(days=retention_days)

    def claim(self, channel: str, play_id: str, now: datetime) -> Claim:
        item = {
            "pk": _key(channel, play_id),
            "status": DeliveryStatus.SENDING.value,
            "claimed_at": now.isoformat(),
            "expires_at": int((now + self._retention).timestamp()),
        }
        try:
            self._client.put_item(
                TableName=self._table, Item=serialize(item), ConditionExpression="attribute_not_exists(pk)"
            )
        except ClientError as error:
            if not is_conditional_failure(error):
                raise
            return self._existing(channel, play_id)
        return Claim(fresh=True, status=DeliveryStatus.SENDING, claimed_at=now)

    def delivered(self, channel: str, play_id: str, external_id: str, now: datetime) -> None:
        self._set(channel, play_id, DeliveryStatus.DELIVERED, now, external_id)

    def unknown(self, channel: str, play_id: str, now: datetime) -> None:
        self._set(channel, play_id, DeliveryStatus.UNKNOWN, now, None)

    def release(self, channel: str, play_id: str) -> None:
        """Forget a claim whose send failed for sure: the next attempt sends afresh."""
        self._client.delete_item(
            TableName=self._table,
            Key={"pk": {"S": _key(channel, play_id)}},
            ConditionExpression="#status = :sending",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":sending": {"S": DeliveryStatus.SENDING.value}},
        )

    def _existing(self, channel: str, play_id: str) -> Claim:
        raw = self._client.get_item(
            TableName=self._table, Key={"pk": {"S": _key(channel, play_id)}}, ConsistentRead=True
        ).get("Item")
        if not raw:  # released between our put and this read: treat as someone else's claim
            return Claim(fresh=False, status=DeliveryStatus.SENDING)
        item = deserialize(raw)
        return Claim(
            fresh=False,
            status=DeliveryStatus(item["status"]),
            external_id=item.get("external_id"),
            claimed_at=datetime.fromisoformat(item["claimed_at"]),
        )

    def _set(
        self, channel: str, play_id: str, status: DeliveryStatus, now: datetime, external_id: str | None
    ) -> None:
        values: dict[str, Any] = {":status": status.value, ":at": now.isoformat()}
        expression = "SET #status = :status, finished_at = :at"
        if external_id is not None:
            values[":id"] = external_id
            expression += ", external_id = :id"
        self._client.update_item(
            TableName=self._table,
            Key={"pk": {"S": _key(channel, play_id)}},
            UpdateExpression=expression,
            # A delivery recorded as delivered stays so (a late "unknown" must not hide it).
            ConditionExpression="#status <> :delivered",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=serialize({**values, ":delivered": DeliveryStatus.DELIVERED.value}),
        )


def _key(channel: str, play_id: str) -> str:
    return f"{channel}#{play_id}"


class DeliveryInFlight(Exception):
    """Another attempt claimed this delivery moments ago and may still be sending: retry later."""


def deliver_once(
    ledger: DeliveryLedger,
    channel: str,
    play_id: str,
    now: datetime,
    send: Callable[[], str],
    *,
    definite_failure: Callable[[Exception], bool],
    find: Callable[[], str | None] | None = None,
    stale_after: timedelta,
) -> Claim:
    """Send once per (channel, play id); what the ledger holds afterwards.

    `send` returns the external id; `find` looks a delivery up by play id after an attempt that
    stopped mid-send (None: it cannot, and such a delivery is recorded as unknown, not repeated).
    A claim younger than `stale_after` (the sender's timeout) may still be sending: DeliveryInFlight.
    """
    claim = ledger.claim(channel, play_id, now)
    if not claim.fresh:
        if claim.status is not DeliveryStatus.SENDING:
            return claim
        if claim.claimed_at is None or now - claim.claimed_at < stale_after:
            raise DeliveryInFlight(play_id)
        if find is None:
            ledger.unknown(channel, play_id, now)
            return Claim(fresh=False, status=DeliveryStatus.UNKNOWN, claimed_at=claim.claimed_at)
        found = find()
        if found is not None:
            ledger.delivered(channel, play_id, found, now)
            return Claim(fresh=False, status=DeliveryStatus.DELIVERED, external_id=found)
    try:
        external_id = send()
    except Exception as error:
        if definite_failure(error):
            ledger.release(channel, play_id)
        raise  # an unknown outcome keeps the claim: the next attempt looks before it sends
    ledger.delivered(channel, play_id, external_id, now)
    return Claim(fresh=True, status=DeliveryStatus.DELIVERED, external_id=external_id)
