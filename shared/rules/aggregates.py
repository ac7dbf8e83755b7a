"""Where the engine's counters come from: DynamoDB online, memory in tests and the backtest.

Both hand the engine the same `DayBucket`s (shared/counters/bucket.py), so an evaluation cannot
depend on where its counters live.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Protocol

from shared.counters.bucket import CountedEvent, DayBucket
from shared.counters.store import CounterStore


class Aggregates(Protocol):
    def buckets(self, account_id: str, first_day: date, last_day: date) -> list[DayBucket]:
        """The account's day buckets from first_day to last_day inclusive (days without data absent)."""
        ...


class DynamoAggregates:
    """One Query per account evaluation, for exactly the days the ruleset's read plan needs."""

    def __init__(self, store: CounterStore) -> None:
        self._store = store

    def buckets(self, account_id: str, first_day: date, last_day: date) -> list[DayBucket]:
        return self._store.read_range(account_id, first_day.isoformat(), last_day.isoformat())


class InMemoryAggregates:
    """Buckets folded in memory from the same events, by the same code, as the aggregator does."""

    def __init__(self) -> None:
        self._buckets: dict[str, dict[str, DayBucket]] = {}

    def apply(self, events: Iterable[CountedEvent]) -> None:
        for event in events:
            days = self._buckets.setdefault(event.account_id, {})
            bucket = days.get(event.day)
            if bucket is None:
                bucket = days[event.day] = DayBucket(event.account_id, event.day)
            bucket.apply(event)

    def buckets(self, account_id: str, first_day: date, last_day: date) -> list[DayBucket]:
        first, last = first_day.isoformat(), last_day.isoformat()
        days = self._buckets.get(account_id, {})
        return [days[day] for day in sorted(days) if first <= day <= last]
