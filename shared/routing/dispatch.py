"""Handing routed plays over: deliveries to each channel's SQS queue, `play.routed` to the bus."""

from __future__ import annotations

import json
from typing import Any

from shared.resources import EVENT_SOURCE, PLAY_ROUTED_DETAIL_TYPE
from shared.routing.messages import PlayDelivery, TaskClose
from shared.routing.models import PlayRecord
from shared.routing.views import play_summary, stamp
from shared.rules.plays import Channel
from shared.sqs import Outgoing, send_batch


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
            outgoing = [
                Outgoing(delivery.play_id, delivery.model_dump_json(), delivery.type)
                for delivery in deliveries
                if delivery.channel is channel
            ]
            unsent = send_batch(self._sqs, self._queues[channel], outgoing)
            if unsent:
                raise HandOverFailed(f"{len(unsent)} {channel} deliveries not queued")

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

    def close_task(self, message: TaskClose) -> None:
        """A decided auto-close to the HubSpot sender (shared/routing/autoclose.py)."""
        self._sqs.send_message(
            QueueUrl=self._queues[Channel.HUBSPOT_TASK],
            MessageBody=message.model_dump_json(),
            MessageAttributes={"type": {"DataType": "String", "StringValue": message.type}},
        )


def routed_event(record: PlayRecord) -> dict[str, Any]:
    """The `play.routed` detail (docs/api.md): who got which play, how, by when."""
    return {**play_summary(record), "routed_at": stamp(record.updated_at)}
