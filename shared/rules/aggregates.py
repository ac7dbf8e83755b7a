"""Where the engine's counters come from: DynamoDB online, memory in tests and the backtest.

Both fold the same events into the same `DayBucket`s (shared/counters/bucket.py) and hand the
engine a `History` of them, so an evaluation cannot depend on where its counters live.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Protocol

from aws_lambda_powertools.metrics import MetricUnit

from shared.accounts.models import MAX_CHILDREN
from shared.counters.bucket import CountedEvent, DayBucket
from shared.counters.family import fold_family, members_capped
from shared.counters.slices import NO_SLICING, Slicing
from shared.counters.store import CounterStore
from shared.observability import logger, metrics
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


class DynamoAggregates:
    """One Query per account evaluation, for exactly the days the ruleset's read plan needs.

    Strongly consistent by default: the evaluator runs because a bucket just changed, and an
    eventually consistent read could miss that very change (and with it a firing).
    """

    def __init__(
        self,
        store: CounterStore,
        *,
        consistent: bool = True,
        children: Callable[[str], list[str]] | None = None,
    ) -> None:
        self._store = store
        self._consistent = consistent
        self._children = children  # AccountStore.children_of: needed by family-scope rules only

    def buckets(self, account_id: str, first_day: date, last_day: date) -> list[DayBucket]:
        first, last = first_day.isoformat(), last_day.isoformat()
        return self._store.read_range(account_id, first, last, consistent=self._consistent)

    def history(self, account_id: str, first_day: date, last_day: date) -> History:
        return self._own_history(account_id, first_day, last_day)[0]

    def _own_history(
        self, account_id: str, first_day: date, last_day: date
    ) -> tuple[History, list[DayBucket]]:
        """The read plan's days and the account's `first_seen` marker, in the same Query."""
        buckets, first_seen = self._store.read_plan_range(
            account_id, first_day.isoformat(), last_day.isoformat(), consistent=self._consistent
        )
        history = History.of(buckets, first_day, last_day)
        if first_seen is not None:
            history.seen(date.fromisoformat(first_seen).toordinal())
        return history, buckets

    def family_history(
        self, account_id: str, first_day: date, last_day: date, family_metrics: frozenset[str]
    ) -> History:
        """One Query of the `parent` index, then one counters Query per member (N + 2 for N children)."""
        if self._children is None:
            raise RuntimeError(
                "family-scope rules read the accounts' parent index: give DynamoAggregates children"
            )
        history, own = self._own_history(account_id, first_day, last_day)
        children, left_out = members_capped(self._children(account_id), MAX_CHILDREN)
        if left_out:
            family_capped(account_id, left_out)
        by_day: dict[str, list[DayBucket]] = {}
        for bucket in own:
            by_day.setdefault(bucket.day, []).append(bucket)
        for child in children:
            for bucket in self.buckets(child, first_day, last_day):
                by_day.setdefault(bucket.day, []).append(bucket)
        for day in sorted(by_day):
            history.record_family(
                date.fromisoformat(day).toordinal(), *fold_family(by_day[day], family_metrics)
            )
        return history


def family_capped(parent_id: str, left_out: int) -> None:
    """A family past MAX_CHILDREN (profiles written before the bound, or a race of two writes): read
    with its first MAX_CHILDREN children by id, loudly."""
    logger.error(
        "family larger than the bound: children left out of family-scope rules",
        extra={"parent_account_id": parent_id, "left_out": left_out, "bound": MAX_CHILDREN},
    )
    metrics.add_metric(name="FamilyChildrenLeftOut", unit=MetricUnit.Count, value=left_out)


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
