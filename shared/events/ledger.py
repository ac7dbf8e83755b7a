"""The event ledger: one DynamoDB item per accepted event.

Writing an event is a conditional put on (account_id, event_id), so the ledger is the
deduplication: whatever channel or retry brings an event back, only the first put succeeds, and
only that put reaches the table's stream, which is what the counters are built from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

from shared.events.models import UsageEvent
from shared.storage.dynamo import is_conditional_failure, serialize, to_decimal


class Channel(StrEnum):
    HTTPS = "https"
    EVENTBRIDGE = "eventbridge"


@dataclass(frozen=True)
class Existing:
    """The ledger already holds this event id; `fingerprint` tells whether it is the same event."""

    fingerprint: str
    received_at: str


def day_of(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")


def ledger_item(
    event: UsageEvent, producer: str, channel: Channel, received_at: datetime, retention_days: int
) -> dict[str, Any]:
    expires = event.occurred_at + timedelta(days=retention_days + 1)
    return {
        "pk": event.account_id,
        "sk": event.event_id,
        "name": event.name,
        "kind": event.kind.value,
        "value": to_decimal(event.value),
        "occurred_at": event.occurred_at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "day": day_of(event.occurred_at),
        "dimensions": dict(event.dimensions),
        # Kept as a JSON string: free-form context round-trips exactly and is never read by rules.
        "properties": json.dumps(event.properties, separators=(",", ":"), ensure_ascii=False),
        "producer": producer,
        "channel": channel.value,
        "received_at": received_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "fingerprint": event.fingerprint(),
        "expires_at": int(expires.timestamp()),
    }


class EventLedger:
    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def put_new(self, item: dict[str, Any]) -> Existing | None:
        """Store the event unless its id is already there; return what is there if so."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item=serialize(item),
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not is_conditional_failure(error):
                raise
            old = error.response.get("Item", {})
            return Existing(
                fingerprint=old.get("fingerprint", {}).get("S", ""),
                received_at=old.get("received_at", {}).get("S", ""),
            )
        return None
