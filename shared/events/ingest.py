"""The one write path for usage events, shared by the HTTPS and EventBridge channels.

validate → drop repeats inside the batch → check each name's registered kind → conditional put
of each event into the ledger. Every event ends in exactly one outcome; a rejected event writes
nothing, and an event whose write failed for an infrastructure reason is FAILED so the caller can
have it retried (a retry is safe: the ledger recognises what was already stored).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, Field

from shared.events.contract import DEFAULT_RETENTION_DAYS
from shared.events.ledger import Channel, EventLedger, Existing, ledger_item
from shared.events.metric_kinds import MetricKinds, kind_conflict
from shared.events.models import IngestResponse, Rejection, UsageEvent
from shared.events.validation import InvalidEvent, validate_event
from shared.observability import logger
from shared.resources import EVENTS_TABLE, REGISTRY_TABLE, RETENTION_DAYS_ENV

_PARALLEL_WRITES = 16


class Status(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    FAILED = "failed"


@dataclass
class Outcome:
    index: int
    status: Status
    event_id: str | None
    errors: list[str] = field(default_factory=list)


class Ingestor:
    def __init__(
        self, ledger: EventLedger, kinds: MetricKinds, retention_days: int = DEFAULT_RETENTION_DAYS
    ) -> None:
        self._ledger = ledger
        self._kinds = kinds
        self._retention_days = retention_days
        self._pool = ThreadPoolExecutor(max_workers=_PARALLEL_WRITES, thread_name_prefix="ledger")

    def ingest(
        self, raw_events: Sequence[Any], producer: str, channel: Channel, now: datetime
    ) -> list[Outcome]:
        outcomes: dict[int, Outcome] = {}
        candidates: list[tuple[int, UsageEvent]] = []
        first_seen: dict[tuple[str, str], UsageEvent] = {}

        for index, raw in enumerate(raw_events):
            checked = validate_event(raw, now, self._retention_days)
            if isinstance(checked, InvalidEvent):
                outcomes[index] = Outcome(index, Status.REJECTED, checked.event_id, checked.errors)
                continue
            key = (checked.account_id, checked.event_id)
            if key in first_seen:
                outcomes[index] = _repeat_in_batch(index, checked, first_seen[key])
                continue
            first_seen[key] = checked
            candidates.append((index, checked))

        writable = self._check_kinds(candidates, outcomes)
        stamps = [ledger_item(event, producer, channel, now, self._retention_days) for _, event in writable]
        results = self._pool.map(self._put, stamps)
        for (index, event), result in zip(writable, results, strict=True):
            outcomes[index] = _outcome_of_put(index, event, result)
        return [outcomes[index] for index in range(len(raw_events))]

    def _check_kinds(
        self, candidates: list[tuple[int, UsageEvent]], outcomes: dict[int, Outcome]
    ) -> list[tuple[int, UsageEvent]]:
        try:
            kinds = self._kinds.resolve((event.name, event.kind) for _, event in candidates)
        except (ClientError, BotoCoreError) as error:
            logger.error("metric kind lookup failed", extra={"error": type(error).__name__})
            for index, event in candidates:
                outcomes[index] = Outcome(index, Status.FAILED, event.event_id, ["storage unavailable"])
            return []
        writable = []
        for index, event in candidates:
            registered = kinds[event.name]
            if event.kind != registered:
                outcomes[index] = Outcome(
                    index,
                    Status.REJECTED,
                    event.event_id,
                    [kind_conflict(event.name, registered, event.kind)],
                )
            else:
                writable.append((index, event))
        return writable

    def _put(self, item: dict[str, Any]) -> Existing | Exception | None:
        try:
            return self._ledger.put_new(item)
        except (ClientError, BotoCoreError) as error:
            return error


def summarize(outcomes: Sequence[Outcome]) -> IngestResponse:
    return IngestResponse(
        accepted=sum(o.status is Status.ACCEPTED for o in outcomes),
        duplicates=sum(o.status is Status.DUPLICATE for o in outcomes),
        rejected=[
            Rejection(index=o.index, event_id=o.event_id, errors=o.errors)
            for o in outcomes
            if o.status is Status.REJECTED
        ],
    )


def _repeat_in_batch(index: int, event: UsageEvent, first: UsageEvent) -> Outcome:
    if event.fingerprint() == first.fingerprint():
        return Outcome(index, Status.DUPLICATE, event.event_id)
    return Outcome(
        index,
        Status.REJECTED,
        event.event_id,
        ["event_id: repeated in this request with different content; event ids must be unique per account"],
    )


def _outcome_of_put(index: int, event: UsageEvent, result: Existing | Exception | None) -> Outcome:
    if result is None:
        return Outcome(index, Status.ACCEPTED, event.event_id)
    if isinstance(result, Exception):
        logger.error("ledger write failed", extra={"error": type(result).__name__})
        return Outcome(index, Status.FAILED, event.event_id, ["storage unavailable"])
    if result.fingerprint == event.fingerprint():
        return Outcome(index, Status.DUPLICATE, event.event_id)
    return Outcome(
        index,
        Status.REJECTED,
        event.event_id,
        [
            f"event_id: already accepted at {result.received_at} with different content; "
            "event ids must be unique per account"
        ],
    )


class IngestSettings(BaseModel):
    """What every function that ingests events reads from its environment (both channels)."""

    events_table: str = Field(min_length=1, validation_alias=EVENTS_TABLE.env_var)
    registry_table: str = Field(min_length=1, validation_alias=REGISTRY_TABLE.env_var)
    retention_days: int = Field(default=DEFAULT_RETENTION_DAYS, gt=0, validation_alias=RETENTION_DAYS_ENV)


def ingestor_for(client: Any, settings: IngestSettings) -> Ingestor:
    return Ingestor(
        EventLedger(client, settings.events_table),
        MetricKinds(client, settings.registry_table),
        settings.retention_days,
    )
