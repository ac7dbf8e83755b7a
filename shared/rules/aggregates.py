"""Where the engine's counters come from: DynamoDB online, memory in tests and the backtest.

Both fold the same events into the same `DayBucket`s (shared/counters/bucket.py) and hand the
engine a `History` of them, so an evaluation cannot depend on where its counters live.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Protocol

from shared.counters.bucket import CountedEvent, DayBucket
from shared.counters.store import CounterStore
from shared.rules.history import History


class Aggregates(Protocol):
    def history(self, account_id: str, first_day: date, last_day: date) -> History:
        """The account's counters, readable from first_day to last_day inclusive."""
        ...


class DynamoAggregates:
    """One Query per account evaluation, for exactly the days the ruleset's read plan needs.

    Strongly consistent by default: the evaluator runs because a bucket just changed, and an
    eventually consistent read could miss that very change (and with it a firing).
    """

    def __init__(self, store: CounterStore, *, consistent: bool = True) -> None:
        self._store = store
        self._consistent = consistent

    def buckets(self, account_id: str, first_day: date, last_day: date) -> list[DayBucket]:
        first, last = first_day.isoformat(), last_day.isoformat()
        return self._store.read_range(account_id, first, last, consistent=self._consistent)

    def history(self, account_id: str, first_day: date, last_day: date) -> History:
        return History.of(self.buckets(account_id, first_day, last_day), first_day, last_day)


@dataclass
class _Account:
    buckets: dict[str, tuple[DayBucket, int]] = field(default_factory=dict)  # day → (bucket, ordinal)
    history: History = field(default_factory=History)


class InMemoryAggregates:
    """Buckets folded in memory from the same events, by the same code, as the aggregator does.

    Each account's `History` is kept up to date event by event, so evaluating an account costs
    the same whatever the length of its history.
    """

    def __init__(self) -> None:
        self._accounts: dict[str, _Account] = {}

    def apply(self, events: Iterable[CountedEvent]) -> None:
        for event in events:
            account = self._accounts.get(event.account_id)
            if account is None:
                account = self._accounts[event.account_id] = _Account()
            known = account.buckets.get(event.day)
            if known is None:
                known = account.buckets[event.day] = (
                    DayBucket(event.account_id, event.day),
                    date.fromisoformat(event.day).toordinal(),
                )
            bucket, day = known
            if not bucket.apply(event):
                continue
            metric = bucket.metrics.get(event.name)
            if metric is None:  # past the bucket's metric bound: counted as overflow only
                continue
            account.history.record_metric(event.name, day, metric)
            distinct = bucket.distinct.get(event.name, {})
            for dimension in event.dimensions:
                values = distinct.get(dimension)
                if values is not None:
                    account.history.record_distinct(event.name, dimension, day, values)

    def buckets(self, account_id: str, first_day: date, last_day: date) -> list[DayBucket]:
        first, last = first_day.isoformat(), last_day.isoformat()
        account = self._accounts.get(account_id)
        days = account.buckets if account else {}
        return [days[day][0] for day in sorted(days) if first <= day <= last]

    def history(self, account_id: str, first_day: date, last_day: date) -> History:
        account = self._accounts.get(account_id)
        if account is None:
            return History(first_day.toordinal(), last_day.toordinal())
        return account.history.bounded(first_day, last_day)

    def accounts(self) -> list[str]:
        return list(self._accounts)
