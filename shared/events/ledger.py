"""The event ledger: one DynamoDB item per accepted event.

Writing an event is a conditional put on (account_id, event_id), so the ledger is the
deduplication: whatever channel or retry brings an event back, only the first put succeeds, and
only that put reaches the table's stream, which is what the counters are built from.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from shared.events.models import UsageEvent
from shared.intake import Channel, ConditionalLedger, Existing
from shared.storage.dynamo import to_decimal
from shared.timestamps import utc_stamp

__all__ = ["Channel", "EventLedger", "Existing", "day_of", "ledger_item"]


def day_of(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")


def ledger_item(
    event: UsageEvent,
    producer: str,
    channel: Channel,
    received_at: datetime,
    retention_days: int,
    *,
    backfill: bool = False,
) -> dict[str, Any]:
    """The event's ledger item; `backfill` marks imported history (the counters it moves are not
    evaluated per batch, shared/counters/aggregate.py). Not part of the fingerprint: the same event
    sent live and in an import is one event."""
    expires = event.occurred_at + timedelta(days=retention_days + 1)
    item = {
        "pk": event.account_id,
        "sk": event.event_id,
        "name": event.name,
        "kind": event.kind.value,
        "value": to_decimal(event.value),
        "occurred_at": utc_stamp(event.occurred_at, "microseconds"),
        "day": day_of(event.occurred_at),
        "dimensions": dict(event.dimensions),
        # Kept as a JSON string: free-form context round-trips exactly and is never read by rules.
        "properties": json.dumps(event.properties, separators=(",", ":"), ensure_ascii=False),
        "producer": producer,
        "channel": channel.value,
        "received_at": utc_stamp(received_at, "milliseconds"),
        "fingerprint": event.fingerprint(),
        "expires_at": int(expires.timestamp()),
    }
    if backfill:
        item["backfill"] = True
    return item


class EventLedger(ConditionalLedger):
    """The events table: an event's item is put once, keyed (account_id, event_id)."""
