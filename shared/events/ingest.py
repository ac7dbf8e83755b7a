"""The one write path for usage events, shared by the HTTPS and EventBridge channels.

validate → drop repeats inside the batch → check each name's registered kind → conditional put
of each event into the ledger (shared/intake.py). Every event ends in exactly one result; a
rejected event writes nothing, and an event whose write failed for an infrastructure reason is
FAILED so the caller can have it retried (a retry is safe: the ledger recognises what was
already stored).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, Field

from shared.errors import StorageUnavailable
from shared.events.contract import DEFAULT_RETENTION_DAYS
from shared.events.ledger import EventLedger, ledger_item
from shared.events.metric_kinds import MetricKinds, kind_conflict
from shared.events.models import EventKind, IngestResponse, Rejection, UsageEvent
from shared.events.validation import validate_event
from shared.intake import (
    Channel,
    ItemResult,
    Noun,
    ParallelPuts,
    Status,
    Tally,
    WriteOnce,
    first_of_each,
    in_order,
    unavailable,
)
from shared.observability import logger
from shared.resources import EVENTS_TABLE, OUTCOMES_TABLE, REGISTRY_TABLE
from shared.settings import RetentionDays

EVENT = Noun(singular="event", plural="events", id_field="event_id")


class KindRegistry(Protocol):
    def resolve(self, proposals: Iterable[tuple[str, EventKind]]) -> dict[str, EventKind]:
        """Each metric's registered kind (the first proposal registers it); StorageUnavailable
        when the registry cannot answer now."""
        ...


class Ingestor:
    noun = EVENT

    def __init__(
        self, ledger: WriteOnce, kinds: KindRegistry, retention_days: int = DEFAULT_RETENTION_DAYS
    ) -> None:
        self._kinds = kinds
        self._retention_days = retention_days
        self._puts = ParallelPuts(ledger, EVENT)

    def ingest(
        self,
        raw_events: Sequence[Any],
        producer: str,
        channel: Channel,
        now: datetime,
        *,
        backfill: bool = False,
    ) -> list[ItemResult]:
        """backfill=True: history being imported before go-live (docs/operations.md, "Going live"):
        stored and counted exactly like live events, but the evaluator does not evaluate the counter
        writes they cause; the import's end evaluates each imported account once."""
        results: dict[int, ItemResult] = {}
        candidates = first_of_each(
            ((index, validate_event(raw, now, self._retention_days)) for index, raw in enumerate(raw_events)),
            EVENT,
            results,
        )
        writable = self._check_kinds(candidates, results)
        self._puts.put_all(
            writable,
            lambda event: ledger_item(event, producer, channel, now, self._retention_days, backfill=backfill),
            results,
        )
        return in_order(results, len(raw_events))

    def for_backfill(self) -> BackfillIntake:
        return BackfillIntake(self)

    def _check_kinds(
        self, candidates: list[tuple[int, UsageEvent]], results: dict[int, ItemResult]
    ) -> list[tuple[int, UsageEvent]]:
        try:
            kinds = self._kinds.resolve((event.name, event.kind) for _, event in candidates)
        except StorageUnavailable as error:
            logger.error("metric kind lookup failed", extra={"error": type(error).__name__})
            for index, event in candidates:
                results[index] = unavailable(index, event.event_id)
            return []
        writable = []
        for index, event in candidates:
            registered = kinds[event.name]
            if event.kind != registered:
                results[index] = ItemResult(
                    index,
                    Status.REJECTED,
                    event.event_id,
                    [kind_conflict(event.name, registered, event.kind)],
                )
            else:
                writable.append((index, event))
        return writable


class BackfillIntake:
    """The same intake for a request flagged `"backfill": true` (the channel sees one more intake)."""

    noun = EVENT

    def __init__(self, ingestor: Ingestor) -> None:
        self._ingestor = ingestor

    def ingest(
        self, raw_events: Sequence[Any], producer: str, channel: Channel, now: datetime
    ) -> list[ItemResult]:
        return self._ingestor.ingest(raw_events, producer, channel, now, backfill=True)


def summarize(results: Sequence[ItemResult]) -> IngestResponse:
    tally = Tally.of(results)
    return IngestResponse(
        accepted=tally.accepted,
        duplicates=tally.duplicates,
        rejected=[Rejection(index=r.index, event_id=r.item_id, errors=r.errors) for r in tally.rejected],
    )


class IngestSettings(BaseModel):
    """What every function that takes in events and outcomes reads from its environment (both channels)."""

    events_table: str = Field(min_length=1, validation_alias=EVENTS_TABLE.env_var)
    registry_table: str = Field(min_length=1, validation_alias=REGISTRY_TABLE.env_var)
    outcomes_table: str = Field(min_length=1, validation_alias=OUTCOMES_TABLE.env_var)
    retention_days: RetentionDays


def ingestor_for(client: Any, settings: IngestSettings) -> Ingestor:
    return Ingestor(
        EventLedger(client, settings.events_table),
        MetricKinds(client, settings.registry_table),
        settings.retention_days,
    )
