"""Reading the trigger cohorts back: one Query per trigger for a range of firing days.

No scan, whatever the number of plays: a trigger's partition holds one item per (firing day,
ruleset version) it fired on — at most 90 items (plus one per extra version) for the 90-day window,
≈ 300 bytes each, so ≈ 3.5 read units eventually consistent (docs/storage.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from shared.storage.dynamo import deserialize
from shared.trigger_metrics.counters import (
    AMOUNT_PREFIX,
    ARM_PREFIX,
    DAY_PREFIX,
    HISTOGRAM_PREFIX,
    PARTITION_PREFIX,
    TIME_TO_WORK_BOUNDS_HOURS,
    Cohort,
    Count,
)


@dataclass(frozen=True)
class CohortCounts:
    """One cohort item: the counts, the time-to-work histogram and the amounts by currency."""

    cohort: Cohort
    counts: Mapping[Count, int]
    time_to_work: tuple[int, ...]  # one count per bucket of TIME_TO_WORK_BOUNDS_HOURS, plus the open one
    amounts: Mapping[str, Decimal] = field(default_factory=dict)
    # The experiment counts by attribute name without its prefix: `<salt>#<arm>#accounts`, ...
    arms: Mapping[str, Decimal] = field(default_factory=dict)

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> CohortCounts:
        buckets = len(TIME_TO_WORK_BOUNDS_HOURS) + 1
        return cls(
            cohort=Cohort(
                trigger=str(item["trigger"]),
                ruleset_version=str(item["ruleset_version"]),
                day=date.fromisoformat(str(item["day"])),
            ),
            counts={count: int(item.get(count.value, 0)) for count in Count},
            time_to_work=tuple(int(item.get(f"{HISTOGRAM_PREFIX}{i:02d}", 0)) for i in range(buckets)),
            amounts={
                name.removeprefix(AMOUNT_PREFIX): Decimal(value)
                for name, value in item.items()
                if name.startswith(AMOUNT_PREFIX)
            },
            arms={
                name.removeprefix(ARM_PREFIX): Decimal(value)
                for name, value in item.items()
                if name.startswith(ARM_PREFIX)
            },
        )


class TriggerMetricsStore:
    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def cohorts(self, trigger: str, first: date, last: date) -> list[CohortCounts]:
        """The trigger's cohorts fired from `first` to `last` (inclusive), every ruleset version."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :trigger AND sk BETWEEN :first AND :last",
            "ExpressionAttributeValues": {
                ":trigger": {"S": PARTITION_PREFIX + trigger},
                ":first": {"S": f"{DAY_PREFIX}{first.isoformat()}#"},
                ":last": {"S": f"{DAY_PREFIX}{last.isoformat()}#\U0010ffff"},
            },
        }
        found: list[CohortCounts] = []
        while True:
            page = self._client.query(**request)
            found += [CohortCounts.from_item(deserialize(raw)) for raw in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return found
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
