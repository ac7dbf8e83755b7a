"""A day of one account's usage: the unit the counters are stored and read in.

Pure data and arithmetic, no I/O: the aggregator folds ledger events into buckets and stores
them; the backtest (later) folds the same events into the same buckets in memory.

What a bucket keeps per metric name, for the rules to use:
- counts: the sum of values and the number of events;
- gauges: the same, plus the latest value by event time (ties: the later arrival) and the
  day's low and high;
- per dimension, the set of distinct values seen (as short hashes: equality is all a distinct
  count needs, and raw user ids or emails never sit in the counters).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

from shared.events.models import EventKind

if TYPE_CHECKING:
    from shared.counters.slices import Slicing

_GAUGE = EventKind.GAUGE  # read for every event: a module constant, not an enum attribute

# A stream sequence number, zero-padded so that string order is numeric order (DynamoDB compares
# strings byte by byte in condition expressions and so do we).
SEQUENCE_WIDTH = 40
# Distinct values kept per metric, dimension and day. Past it the set stops growing and the
# (metric, dimension) pair is listed in `capped`, so a rule can tell "≥ 1000" from "exactly".
MAX_DISTINCT_PER_DAY = 1000
# A bucket is one DynamoDB item (400 KB at most): these bounds keep it well under, whatever
# producers send (≈ 12 bytes a distinct value, ≈ 100 bytes a metric). Events past the metric
# bound are counted in `overflow_events`, never silently lost from view.
MAX_DISTINCT_PER_BUCKET = 20_000
MAX_METRICS_PER_BUCKET = 500
# Fewer sets than this, each under MAX_DISTINCT_PER_DAY, cannot reach MAX_DISTINCT_PER_BUCKET.
_FEW_SETS = -(-MAX_DISTINCT_PER_BUCKET // MAX_DISTINCT_PER_DAY)


def padded_sequence(sequence_number: str) -> str:
    return sequence_number.zfill(SEQUENCE_WIDTH)


@lru_cache(maxsize=1 << 16)
def distinct_token(value: str) -> str:
    # Cached: the same users and teams come back event after event (a pure function, bounded memory).
    digest = hashlib.blake2b(value.encode(), digest_size=8).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class CountedEvent(NamedTuple):
    """An accepted event as the counters see it, in ledger (stream) order.

    A NamedTuple rather than a frozen dataclass: as immutable, and ten times cheaper to make,
    which matters when the backtest makes ten million of them."""

    sequence: str  # padded, for ordering
    stream_sequence: str  # as the stream wrote it, for reporting a failure back to Lambda
    account_id: str
    event_id: str
    name: str
    kind: EventKind
    value: Decimal
    occurred_at: str  # ISO 8601 UTC, fixed width, so string order is time order
    day: str
    dimensions: dict[str, str]
    backfill: bool = False  # imported history (docs/operations.md, "Going live")


@dataclass
class MetricDay:
    kind: EventKind
    total: Decimal = Decimal(0)
    events: int = 0
    last: Decimal | None = None
    last_at: str | None = None
    low: Decimal | None = None
    high: Decimal | None = None

    def add(self, value: Decimal, occurred_at: str) -> None:
        self.total += value
        self.events += 1
        if self.kind is _GAUGE:
            if self.last_at is None or occurred_at >= self.last_at:
                self.last, self.last_at = value, occurred_at
            # As min() and max() would, keeping the earlier of two equal values (2 and 2.0 differ).
            if self.low is None or value < self.low:
                self.low = value
            if self.high is None or value > self.high:
                self.high = value

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {"kind": self.kind.value, "total": self.total, "events": self.events}
        if self.kind is EventKind.GAUGE:
            item |= {"last": self.last, "last_at": self.last_at, "low": self.low, "high": self.high}
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> MetricDay:
        return cls(
            kind=EventKind(item["kind"]),
            total=Decimal(item["total"]),
            events=int(item["events"]),
            last=item.get("last"),
            last_at=item.get("last_at"),
            low=item.get("low"),
            high=item.get("high"),
        )


@dataclass
class DayBucket:
    account_id: str
    day: str
    metrics: dict[str, MetricDay] = field(default_factory=dict)
    distinct: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    capped: set[str] = field(default_factory=set)
    overflow_events: int = 0
    applied_sequence: str = ""

    def apply(self, event: CountedEvent, slicing: Slicing | None = None) -> bool:
        """Fold one event in, unless this bucket has already seen it (by stream sequence); with a
        slicing, into the slices of its metric it belongs to as well (shared/counters/slices.py)."""
        if event.sequence <= self.applied_sequence:
            return False
        self.applied_sequence = event.sequence
        name = event.name
        metric = self.metrics.get(name)
        if metric is None:
            if len(self.metrics) >= MAX_METRICS_PER_BUCKET:
                self.overflow_events += 1
                return True
            metric = self.metrics[name] = MetricDay(event.kind)
        if metric.kind is _GAUGE:
            metric.add(event.value, event.occurred_at)
        else:  # MetricDay.add for a count, inlined: most events are counts
            metric.total += event.value
            metric.events += 1
        if slicing and event.dimensions and name in slicing.metrics():
            self._slice(event, metric.kind, slicing)
        if event.dimensions:
            # The backtest folds millions of events: the lookups are hoisted out of the loop, and
            # a value already seen that day (the usual case) costs a token and a set lookup.
            dimensions = self.distinct.get(name)
            if dimensions is None:
                dimensions = self.distinct[name] = {}
            for dimension, value in event.dimensions.items():
                values = dimensions.get(dimension)
                if values is None:
                    values = dimensions[dimension] = set()
                token = distinct_token(value)
                if token in values:
                    continue
                # Too few sets for the bucket's bound (see _distinct_total): no need to count values.
                if len(values) < MAX_DISTINCT_PER_DAY and sum(map(len, self.distinct.values())) < _FEW_SETS:
                    values.add(token)
                else:
                    self._add_distinct(name, dimension, values, token)
        return True

    def _slice(self, event: CountedEvent, kind: EventKind, slicing: Slicing) -> None:
        from shared.counters.slices import MAX_GROUPS_PER_DAY, group_prefix, slice_key

        name, dimensions = event.name, event.dimensions
        keys = set(slicing.filter_keys(name, dimensions))
        for dimension in slicing.groups.get(name, ()):
            value = dimensions.get(dimension)
            if value is None:
                continue
            key = slice_key(name, dimension, [value])
            if key not in self.metrics:
                prefix = group_prefix(name, dimension)
                if sum(1 for known in self.metrics if known.startswith(prefix)) >= MAX_GROUPS_PER_DAY:
                    self.capped.add(f"{name}/{dimension}")
                    continue
            keys.add(key)
        for key in keys:
            sliced = self.metrics.get(key)
            if sliced is None:
                if len(self.metrics) >= MAX_METRICS_PER_BUCKET:
                    self.capped.add(key.split("=", 1)[0].replace("|", "/"))
                    continue
                sliced = self.metrics[key] = MetricDay(kind)
            sliced.add(event.value, event.occurred_at)

    def slice_keys(self, name: str) -> list[str]:
        """The keys of the metric's slices in this bucket."""
        prefix = f"{name}|"
        return [key for key in self.metrics if key.startswith(prefix)]

    def distinct_count(self, name: str, dimension: str) -> int:
        return len(self.distinct.get(name, {}).get(dimension, ()))

    def _add_distinct(self, name: str, dimension: str, values: set[str], token: str) -> None:
        """A value new to the day's set, unless the set or the bucket is at its bound."""
        if len(values) >= MAX_DISTINCT_PER_DAY or self._distinct_total() >= MAX_DISTINCT_PER_BUCKET:
            self.capped.add(f"{name}/{dimension}")
            return
        values.add(token)

    def _distinct_total(self) -> int:
        sets = sum(map(len, self.distinct.values()))
        if sets < _FEW_SETS:  # too few sets to reach the bound
            return 0
        return sum(len(values) for dimensions in self.distinct.values() for values in dimensions.values())

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "account_id": self.account_id,
            "day": self.day,
            "metrics": {name: metric.to_item() for name, metric in self.metrics.items()},
            "distinct": {
                name: {dimension: values for dimension, values in dimensions.items() if values}
                for name, dimensions in self.distinct.items()
            },
            "applied_sequence": self.applied_sequence,
        }
        if self.capped:
            item["capped"] = set(self.capped)
        if self.overflow_events:
            item["overflow_events"] = self.overflow_events
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> DayBucket:
        return cls(
            account_id=item["account_id"],
            day=item["day"],
            metrics={name: MetricDay.from_item(m) for name, m in item.get("metrics", {}).items()},
            distinct={
                name: {dimension: set(values) for dimension, values in dimensions.items()}
                for name, dimensions in item.get("distinct", {}).items()
            },
            capped=set(item.get("capped", ())),
            overflow_events=int(item.get("overflow_events", 0)),
            applied_sequence=item.get("applied_sequence", ""),
        )
