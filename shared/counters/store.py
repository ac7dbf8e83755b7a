"""DynamoDB storage of day buckets: one item per (account, day), see docs/storage.md."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from botocore.exceptions import ClientError

from shared.counters.bucket import DayBucket
from shared.storage.dynamo import deserialize, is_conditional_failure, serialize

BucketKey = tuple[str, str]  # (account_id, day)
# Who moved a bucket last: live events (evaluated on the stream) or an import (evaluated at its end).
WRITTEN_BY = "written_by"
LIVE, BACKFILL = "live", "backfill"
_BATCH_GET_LIMIT = 100


def sort_key(day: str) -> str:
    return f"day#{day}"


# The account's earliest day with counted events (docs/storage.md): one small item beside its
# buckets, sorting after every `day#` key, so the evaluator's Query for its read plan reaches it too.
FIRST_SEEN_KEY = "first_seen"


class CounterStore:
    def __init__(self, client: Any, table: str, retention_days: int) -> None:
        self._client = client
        self._table = table
        self._retention_days = retention_days

    def load_many(self, keys: Iterable[BucketKey]) -> dict[BucketKey, DayBucket]:
        """Current buckets for the keys (strongly consistent); a key with no item gets an empty one."""
        wanted = list(dict.fromkeys(keys))
        found: dict[BucketKey, DayBucket] = {key: DayBucket(*key) for key in wanted}
        for start in range(0, len(wanted), _BATCH_GET_LIMIT):
            request = {
                self._table: {
                    "Keys": [
                        self._key(account, day) for account, day in wanted[start : start + _BATCH_GET_LIMIT]
                    ],
                    "ConsistentRead": True,
                }
            }
            while request:
                answer = self._client.batch_get_item(RequestItems=request)
                for raw in answer.get("Responses", {}).get(self._table, []):
                    bucket = DayBucket.from_item(deserialize(raw))
                    found[(bucket.account_id, bucket.day)] = bucket
                request = answer.get("UnprocessedKeys") or {}
        return found

    def save(self, bucket: DayBucket, previous_sequence: str, *, backfill: bool = False) -> bool:
        """Write the bucket if nobody else wrote it since it was read; False when someone did.
        backfill=True: only imported history changed it (the evaluator lets the write pass)."""
        expires = datetime.combine(date.fromisoformat(bucket.day), time(), tzinfo=UTC) + timedelta(
            days=self._retention_days + 1
        )
        item = {**self._key_values(bucket.account_id, bucket.day), **bucket.to_item()}
        item["expires_at"] = int(expires.timestamp())
        item[WRITTEN_BY] = BACKFILL if backfill else LIVE
        condition: dict[str, Any]
        if previous_sequence:
            condition = {
                "ConditionExpression": "applied_sequence = :previous",
                "ExpressionAttributeValues": {":previous": {"S": previous_sequence}},
            }
        else:
            condition = {"ConditionExpression": "attribute_not_exists(pk)"}
        try:
            self._client.put_item(TableName=self._table, Item=serialize(item), **condition)
        except ClientError as error:
            if is_conditional_failure(error):
                return False
            raise
        return True

    def read_range(
        self, account_id: str, first_day: str, last_day: str, *, consistent: bool = False
    ) -> list[DayBucket]:
        """The account's buckets from first_day to last_day inclusive, oldest first."""
        buckets: list[DayBucket] = []
        query: dict[str, Any] = {
            "TableName": self._table,
            "ConsistentRead": consistent,
            "KeyConditionExpression": "pk = :account AND sk BETWEEN :first AND :last",
            "ExpressionAttributeValues": {
                ":account": {"S": account_id},
                ":first": {"S": sort_key(first_day)},
                ":last": {"S": sort_key(last_day)},
            },
        }
        while True:
            page = self._client.query(**query)
            buckets.extend(DayBucket.from_item(deserialize(raw)) for raw in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return buckets
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def read_plan_range(
        self, account_id: str, first_day: str, last_day: str, *, consistent: bool = False
    ) -> tuple[list[DayBucket], str | None]:
        """`read_range` and the account's first_seen day (None: no marker), in one Query.

        The Query runs from the first day to the marker, which sorts after every day: days after
        `last_day` (events dated ahead of the evaluation) come back too and are left out here.
        """
        buckets: list[DayBucket] = []
        first_seen: str | None = None
        last = sort_key(last_day)
        query: dict[str, Any] = {
            "TableName": self._table,
            "ConsistentRead": consistent,
            "KeyConditionExpression": "pk = :account AND sk BETWEEN :first AND :marker",
            "ExpressionAttributeValues": {
                ":account": {"S": account_id},
                ":first": {"S": sort_key(first_day)},
                ":marker": {"S": FIRST_SEEN_KEY},
            },
        }
        while True:
            page = self._client.query(**query)
            for raw in page.get("Items", []):
                key = raw["sk"]["S"]
                if key == FIRST_SEEN_KEY:
                    first_seen = raw.get("first_seen", {}).get("S")
                elif key <= last:
                    buckets.append(DayBucket.from_item(deserialize(raw)))
            if "LastEvaluatedKey" not in page:
                return buckets, first_seen
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def note_first_seen(self, account_id: str, day: str) -> None:
        """Keep the account's `first_seen` at its earliest counted day: called when a day's bucket is
        first written, before it is (a retry or a lost race writes the same minimum again).

        One conditional UpdateItem per new (account, day) bucket; a day later than the marker fails
        the condition and changes nothing. When the marker is new, the account may have buckets from
        before it existed (counted before this marker was introduced): one Query for its earliest
        bucket, once per account, moves it back to that day.
        """
        if not self._lower_first_seen(account_id, day, created=True):
            return
        page = self._client.query(
            TableName=self._table,
            ConsistentRead=True,
            KeyConditionExpression="pk = :account AND sk BETWEEN :first AND :before",
            ExpressionAttributeValues={
                ":account": {"S": account_id},
                ":first": {"S": sort_key("0000-00-00")},
                ":before": {"S": sort_key(day)},
            },
            ProjectionExpression="sk",
            Limit=1,
        )
        items = page.get("Items", [])
        if items:
            earliest = items[0]["sk"]["S"].removeprefix(sort_key(""))
            if earliest < day:
                self._lower_first_seen(account_id, earliest, created=False)

    def _lower_first_seen(self, account_id: str, day: str, *, created: bool) -> bool:
        """Set first_seen to `day` if it is earlier (or absent); True when this created the marker."""
        try:
            answer = self._client.update_item(
                TableName=self._table,
                Key=self._key_values_raw(account_id, FIRST_SEEN_KEY),
                UpdateExpression="SET first_seen = :day",
                ConditionExpression="attribute_not_exists(first_seen) OR first_seen > :day",
                ExpressionAttributeValues={":day": {"S": day}},
                ReturnValues="UPDATED_OLD",
            )
        except ClientError as error:
            if is_conditional_failure(error):
                return False
            raise
        return created and "first_seen" not in answer.get("Attributes", {})

    @staticmethod
    def _key_values_raw(account_id: str, sort: str) -> dict[str, Any]:
        return {"pk": {"S": account_id}, "sk": {"S": sort}}

    @staticmethod
    def _key_values(account_id: str, day: str) -> dict[str, str]:
        return {"pk": account_id, "sk": sort_key(day)}

    def _key(self, account_id: str, day: str) -> dict[str, Any]:
        return serialize(self._key_values(account_id, day))
