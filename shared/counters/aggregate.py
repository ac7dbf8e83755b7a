"""Folding ledger events into day buckets, exactly once.

The ledger's stream delivers each accepted event once, but a Lambda batch can be retried (a
failure, a bisection, a timeout). Every bucket remembers the highest stream sequence number it
has absorbed; the stream keeps one account's records in order (the account is the ledger's
partition key), so "sequence ≤ applied" means "already counted" and a replay changes nothing.
Each bucket is written with a condition on the sequence it was read at, so a concurrent writer
can never be overwritten: the loser re-reads and re-applies.

A write whose newly applied events are all imported history (`backfill` ledger items) says so
(`written_by: backfill`), and the evaluator does not evaluate it: an import evaluates each account
once, at its end, with the whole history (shared/rules/golive.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.counters.bucket import CountedEvent, padded_sequence
from shared.counters.slices import NO_SLICING, Slicing
from shared.counters.store import BucketKey, CounterStore
from shared.events.models import EventKind
from shared.observability import logger
from shared.storage.dynamo import deserialize

_SAVE_ATTEMPTS = 3


class BucketContention(Exception):
    """A bucket changed under every attempt to save it; the events are retried with the batch."""


@dataclass
class AggregationResult:
    applied: int = 0
    replayed: int = 0
    failed: list[CountedEvent] = field(default_factory=list)


def counted_event(sequence_number: str, new_image: Mapping[str, Any]) -> CountedEvent:
    """Decode a ledger item as it appears in a stream record's NewImage."""
    item = deserialize(new_image)
    return CountedEvent(
        sequence=padded_sequence(sequence_number),
        stream_sequence=sequence_number,
        account_id=item["pk"],
        event_id=item["sk"],
        name=item["name"],
        kind=EventKind(item["kind"]),
        value=Decimal(item["value"]),
        occurred_at=item["occurred_at"],
        day=item["day"],
        dimensions=dict(item.get("dimensions", {})),
        backfill=bool(item.get("backfill", False)),
    )


def aggregate(
    events: Sequence[CountedEvent], store: CounterStore, slicing: Slicing = NO_SLICING
) -> AggregationResult:
    """Apply events (in stream order) to their buckets (and the slices the ruleset reads); report
    the ones that could not be saved."""
    groups = _group_by_bucket(events)
    result = AggregationResult()
    try:
        buckets = store.load_many(groups)
    except (ClientError, BotoCoreError) as error:
        logger.error("loading buckets failed", extra={"error": type(error).__name__})
        result.failed = list(events)
        return result
    for key, group in groups.items():
        try:
            applied = _apply_group(store, buckets[key], group, slicing)
        except (ClientError, BotoCoreError, BucketContention) as error:
            logger.error("saving a bucket failed", extra={"error": type(error).__name__, "day": key[1]})
            result.failed.extend(group)
            continue
        result.applied += applied
        result.replayed += len(group) - applied
    return result


def _apply_group(store: CounterStore, bucket: Any, group: list[CountedEvent], slicing: Slicing) -> int:
    for _ in range(_SAVE_ATTEMPTS):
        previous = bucket.applied_sequence
        fresh = [event for event in group if bucket.apply(event, slicing)]
        if fresh and not previous:
            # The account's first bucket for this day: its coverage may start here (docs/rules.md,
            # "Data coverage"). Written before the bucket, so a failure in between is retried with it.
            store.note_first_seen(bucket.account_id, bucket.day)
        backfill = all(event.backfill for event in fresh)
        if not fresh or store.save(bucket, previous, backfill=backfill):
            return len(fresh)
        # Someone wrote the bucket since we read it: start again from what is there now.
        bucket = store.load_many([(bucket.account_id, bucket.day)])[(bucket.account_id, bucket.day)]
    raise BucketContention(f"bucket {bucket.day} kept changing after {_SAVE_ATTEMPTS} attempts")


def _group_by_bucket(events: Iterable[CountedEvent]) -> dict[BucketKey, list[CountedEvent]]:
    groups: dict[BucketKey, list[CountedEvent]] = {}
    for event in events:
        groups.setdefault((event.account_id, event.day), []).append(event)
    return groups
