"""The engine's counters online: the account's day buckets in DynamoDB, one Query per evaluation."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from aws_lambda_powertools.metrics import MetricUnit

from shared.accounts.models import MAX_CHILDREN
from shared.counters.bucket import DayBucket
from shared.counters.family import fold_family, members_capped
from shared.counters.store import CounterStore
from shared.observability import logger, metrics
from shared.rules.history import History


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
