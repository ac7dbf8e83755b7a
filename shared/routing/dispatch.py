"""Handing routed plays over: deliveries to each channel's SQS queue, `play.routed` to the bus."""

from __future__ import annotations

import json
from typing import Any

from shared.resources import EVENT_SOURCE, PLAY_ROUTED_DETAIL_TYPE
from shared.routing.ledger import PlayRecord
from shared.routing.messages import PlayDelivery
from shared.rules.plays import Channel


class HandOverFailed(Exception):
    """A queue or the bus refused part of a hand-over; the router's message is retried."""


class AwsDispatcher:
    def __init__(self, sqs: Any, queues: dict[Channel, str], events: Any, bus_name: str) -> None:
        self._sqs = sqs
        self._queues = queues
        self._events = events
        self._bus_name = bus_name

    def deliver(self, deliveries: list[PlayDelivery]) -> None:
        for channel in dict.fromkeys(delivery.channel for delivery in deliveries):
            entries = [
                {
                    "Id": str(index),
                    "MessageBody": delivery.model_dump_json(),
                    "MessageAttributes": {"type": {"DataType": "String", "StringValue": delivery.type}},
                }
                for index, delivery in enumerate(d for d in deliveries if d.channel is channel)
            ]
            answer = self._sqs.send_message_batch(QueueUrl=self._queues[channel], Entries=entries)
            if answer.get("Failed"):
                raise HandOverFailed(f"{len(answer['Failed'])} {channel} deliveries not queued")

    def announce(self, record: PlayRecord) -> None:
        answer = self._events.put_events(
            Entries=[
                {
                    "EventBusName": self._bus_name,
                    "Source": EVENT_SOURCE,
                    "DetailType": PLAY_ROUTED_DETAIL_TYPE,
                    "Detail": json.dumps(routed_event(record), separators=(",", ":"), ensure_ascii=False),
                }
            ]
        )
        if answer.get("FailedEntryCount"):
            raise HandOverFailed(f"play.routed not published: {answer['Entries'][0].get('ErrorCode')}")


def routed_event(record: PlayRecord) -> dict[str, Any]:
    """The `play.routed` detail (docs/api.md): who got which play, how, by when. No e-mail
    addresses or names: consumers that need them look the owner up by HubSpot id or role."""
    first = record.deliveries[0] if record.deliveries else None
    return {
        "play_id": record.play_id,
        "firing_id": record.firing_id,
        "account_id": record.account_id,
        "trigger": record.trigger,
        "play": record.play,
        "tier": record.tier,
        "ruleset_version": record.firing["ruleset_version"],
        "channels": [delivery.channel.value for delivery in record.deliveries],
        "skipped": record.skipped,
        "owner": (
            {
                "role": record.owner.role,
                "hubspot_owner_id": record.owner.hubspot_owner_id,
                "from_pool": record.owner.from_pool,
            }
            if record.owner
            else None
        ),
        "due": first.due.isoformat() if first else None,
        "priority": first.priority if first else None,
        "routed_at": record.updated_at.isoformat().replace("+00:00", "Z"),
    }
