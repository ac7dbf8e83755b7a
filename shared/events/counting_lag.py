"""Whether an account's counters have caught up with its ledger: every stored event folded in.

The aggregator folds the ledger's stream into day buckets a few seconds behind the API. Going live
(POST /v1/imports/finish) evaluates an account once with its whole history, so it must not run
before the last imported events are counted, or it would judge part of the history — the very
mistake backfill mode exists to avoid. The check is exact: the number of events in the account's
ledger partition against the number its buckets say they absorbed (each metric's `events`, slices
left out since they count the same events again, plus `overflow_events`). Days near the end of
the retention are left out on both sides: there the TTL removes ledger items and buckets at slightly
different moments (and lazily), which would look like a lag that never ends.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from shared.counters.store import CounterStore

_LAST_DAY = "9999-12-31"
_EXPIRY_MARGIN_DAYS = 3


class CountingLag:
    def __init__(self, client: Any, events_table: str, counters: CounterStore, retention_days: int) -> None:
        self._client = client
        self._events_table = events_table
        self._counters = counters
        self._retention_days = retention_days

    def uncounted(self, account_id: str, today: date) -> int:
        """Events stored for the account but not yet folded into its buckets (0: caught up)."""
        first_day = (today - timedelta(days=self._retention_days - _EXPIRY_MARGIN_DAYS)).isoformat()
        return max(0, self._stored(account_id, first_day) - self._counted(account_id, first_day))

    def _stored(self, account_id: str, first_day: str) -> int:
        query: dict[str, Any] = {
            "TableName": self._events_table,
            "KeyConditionExpression": "pk = :account",
            "FilterExpression": "#day >= :first",
            "ExpressionAttributeNames": {"#day": "day"},
            "ExpressionAttributeValues": {":account": {"S": account_id}, ":first": {"S": first_day}},
            "Select": "COUNT",
            "ConsistentRead": True,
        }
        total = 0
        while True:
            page = self._client.query(**query)
            total += int(page.get("Count", 0))
            if "LastEvaluatedKey" not in page:
                return total
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _counted(self, account_id: str, first_day: str) -> int:
        buckets = self._counters.read_range(account_id, first_day, _LAST_DAY, consistent=True)
        return sum(
            sum(metric.events for name, metric in bucket.metrics.items() if "|" not in name)
            + bucket.overflow_events
            for bucket in buckets
        )
