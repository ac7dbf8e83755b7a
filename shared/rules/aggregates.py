"""Where the engine's counters come from: the port (`Aggregates`), and memory for tests and the backtest.

Online they come from DynamoDB (shared/rules/dynamo_aggregates.py). Both fold the same events into
the same `DayBucket`s (shared/counters/bucket.py) and hand the engine a `History` of them, so an
evaluation cannot depend on where its counters live. This module imports no AWS client: the
engine depends on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Protocol

from shared.accounts.models import MAX_CHILDREN
from shared.counters.bucket import CountedEvent, DayBucket
from shared.counters.family import fold_family, members_capped
from shared.counters.slices import NO_SLICING, Slicing
from shared.rules.history import History


class Aggregates(Protocol):
    def history(self, account_id: str, first_day: date, last_day: date) -> History:
        """The account's counters, readable from first_day to last_day inclusive."""
        ...

    def family_history(
        self, account_id: str, first_day: date, last_day: date, family_metrics: frozenset[str]
    ) -> History:
        """`history`, plus the family's folded days of `family_metrics` (the account and its children:
        shared/counters/family.py) under the family keys."""
        ...


@dataclass
class _Account:
    buckets: dict[str, tuple[DayBucket, int]] = field(default_factory=dict)  # day → (bucket, ordinal)
    history: History = field(default_factory=History)


class InMemoryAggregates:
    """Buckets folded in memory from the same events, by the same code, as the aggregator does.

    Each account's `History` is kept up to date event by event, so evaluating an account costs
    the same whatever the length of its history.
    """

    def __init__(
        self,
        slicing: Slicing = NO_SLICING,
        *,
        parents: Mapping[str, str] | None = None,
        family_metrics: frozenset[str] = frozenset(),
    ) -> None:
        self._accounts: dict[str, _Account] = {}
        self._slicing = slicing  # the slices the rules read, folded as the aggregator folds them
        # Families (child → parent, from the profiles): each root's history also holds its family's
        # days of `family_metrics`, folded again whenever a member's day changes.
        self._parents = dict(parents or {})
        self._family_metrics = family_metrics
        children: dict[str, list[str]] = {}
        for child, parent in self._parents.items():
            children.setdefault(parent, []).append(child)
        self._children = {parent: members_capped(kids, MAX_CHILDREN) for parent, kids in children.items()}

    def apply(self, events: Iterable[CountedEvent]) -> None:
        # A batch is mostly one account's day (the backtest's, an aggregator batch's runs): its
        # bucket is looked up when the account or the day changes, and each metric it touched is
        # recorded into the history once, after the batch is folded. The history keeps the
        # buckets' own objects, so what it holds is the same as recording event by event.
        accounts = self._accounts
        touched: dict[tuple[str, str], tuple[_Account, DayBucket, int, dict[str, None]]] = {}
        account_id = day_text = ""
        bucket: DayBucket | None = None
        names: dict[str, None] = {}  # a dict: ordered, so histories are built alike run after run
        for event in events:
            if bucket is None or event.account_id != account_id or event.day != day_text:
                account_id, day_text = event.account_id, event.day
                known = touched.get((account_id, day_text))
                if known is None:
                    account = accounts.get(account_id)
                    if account is None:
                        account = accounts[account_id] = _Account()
                    stored = account.buckets.get(day_text)
                    if stored is None:
                        stored = account.buckets[day_text] = (
                            DayBucket(account_id, day_text),
                            date.fromisoformat(day_text).toordinal(),
                        )
                    known = touched[(account_id, day_text)] = (account, stored[0], stored[1], {})
                bucket, names = known[1], known[3]
            if bucket.apply(event, self._slicing):
                names[event.name] = None
        sliced = self._slicing.metrics()
        for account, bucket, day, names in touched.values():
            history = account.history
            if names:  # an event was counted that day (a new bucket online writes first_seen)
                history.seen(day)
            for name in names:
                metric = bucket.metrics.get(name)
                if metric is None:  # past the bucket's metric bound: counted as overflow only
                    continue
                history.record_metric(name, day, metric)
                for dimension, values in bucket.distinct.get(name, {}).items():
                    history.record_distinct(name, dimension, day, values)
                if sliced and name in sliced:
                    for key in bucket.slice_keys(name):
                        history.record_metric(key, day, bucket.metrics[key])
        if self._family_metrics:
            self._fold_families(
                {(self._parents.get(account_id, account_id), day) for (account_id, day) in touched}
            )

    def _fold_families(self, days: set[tuple[str, str]]) -> None:
        """Fold again each (family root, day) a member's events touched, into the root's history."""
        for root, day_text in sorted(days):
            members, _ = self._children.get(root, ([], 0))
            buckets = []
            for member in (root, *members):
                account = self._accounts.get(member)
                stored = account.buckets.get(day_text) if account else None
                if stored is not None:
                    buckets.append(stored[0])
            home = self._accounts.get(root)
            if home is None:
                home = self._accounts[root] = _Account()
            home.history.record_family(
                date.fromisoformat(day_text).toordinal(), *fold_family(buckets, self._family_metrics)
            )

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

    def family_history(
        self, account_id: str, first_day: date, last_day: date, family_metrics: frozenset[str]
    ) -> History:
        if not family_metrics <= self._family_metrics:
            raise RuntimeError(
                "fold families for the rules' family metrics: InMemoryAggregates(family_metrics=...)"
            )
        return self.history(account_id, first_day, last_day)

    def accounts(self) -> list[str]:
        return list(self._accounts)
