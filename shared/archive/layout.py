"""The events archive: what one archived event holds, and where it lies in S3.

Accepted events are archived from the ledger's stream (functions/archiver) through a Firehose
delivery stream that converts them to Parquet and writes one folder per event day:

    s3://<bucket>/events/day=YYYY-MM-DD/<stream>-<n>-<time>-<uuid>.parquet

The columns are those of ARCHIVE_COLUMNS (the Glue table Firehose converts with is built from
them, infra/archive.py); the day is the folder, as Hive-style partitions are. Delivery is at least
once (a retried stream batch is archived again), so readers keep one row per (account_id,
event_id): an event id is unique per account in the ledger, so two rows with it are one event.
Properties are not archived: the counters never read them, and they are where free-form personal
data would sit.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

from shared.storage.dynamo import deserialize

EVENTS_PREFIX = "events/"
PARTITION_KEY = "day"
# (column, Glue/Hive type). `value` is the ledger's exact decimal as text: a float column would
# round values the counters add up exactly.
ARCHIVE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("event_id", "string"),
    ("account_id", "string"),
    ("name", "string"),
    ("kind", "string"),
    ("value", "string"),
    ("occurred_at", "string"),
    ("dimensions", "map<string,string>"),
    ("received_at", "string"),
)


def archive_row(new_image: Mapping[str, Any]) -> dict[str, Any]:
    """One archived event from a ledger item as a stream record's NewImage shows it. `day` is kept
    for the delivery stream's partitioning (it is the folder, not a column)."""
    item = deserialize(new_image)
    return {
        "event_id": item["sk"],
        "account_id": item["pk"],
        "name": item["name"],
        "kind": item["kind"],
        "value": str(item["value"]),
        "occurred_at": item["occurred_at"],
        "dimensions": {str(key): str(value) for key, value in dict(item.get("dimensions", {})).items()},
        "received_at": item.get("received_at", ""),
        PARTITION_KEY: item["day"],
    }


def day_prefix(prefix: str, day: date) -> str:
    """The folder of one event day under the archive's prefix (`events/` by default)."""
    return f"{prefix}{PARTITION_KEY}={day.isoformat()}/"


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]
