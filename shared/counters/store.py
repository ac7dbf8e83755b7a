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

    @staticmethod
    def _key_values(account_id: str, day: str) -> dict[str, str]:
        return {"pk": account_id, "sk": sort_key(day)}

    def _key(self, account_id: str, day: str) -> dict[str, Any]:
        return serialize(self._key_values(account_id, day))
