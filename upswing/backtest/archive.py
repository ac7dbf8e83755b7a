"""`upswing backtest --from-stack NAME` (or `--from s3://bucket/prefix`): production history in.

The deployed stack archives every accepted event as Parquet, one folder per event day
(shared/archive/layout.py, infra/archive.py), kept for `archive_retention_days` — past the
ledger's retention. This module gathers what a backtest reads from a stack into the files the
backtest already takes, then the backtest runs as on any files:

- events: the Parquet objects of the day folders in the date range, one row kept per
  (account_id, event_id) (the archive is written at least once), in arrival order — the order of
  `received_at`, the ledger's clock (ties by account and event id) — as one JSONL file;
- profiles: the accounts table (Scan), as the JSONL of `--accounts`;
- outcomes: the outcomes table's expansions (Scan; contractions and churn are not expansions), as
  the CSV of `--outcomes`. Outcomes expire with the ledger's retention: for older years pass an
  outcomes file instead.

So a backtest from the archive scores exactly what a backtest of the same events as a file scores
(tests/integration/test_backtest_archive.py).
"""

from __future__ import annotations

import csv
import json
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from shared.accounts.models import AccountProfile, StoredAccount
from shared.archive.layout import ARCHIVE_COLUMNS, EVENTS_PREFIX, PARTITION_KEY
from shared.outcomes.models import OutcomeKind
from shared.outcomes.store import SORT_KEY_PREFIX
from shared.storage.dynamo import deserialize
from upswing.backtest.events import InputError

BUCKET_OUTPUT = "ArchiveBucketName"
ACCOUNTS_OUTPUT = "AccountsTableName"
OUTCOMES_OUTPUT = "OutcomesTableName"
_COLUMNS = [name for name, _ in ARCHIVE_COLUMNS]


@dataclass(frozen=True)
class ArchiveSource:
    """Where a stack keeps its history: the archive (bucket, prefix) and, from a stack, its tables."""

    bucket: str
    prefix: str = EVENTS_PREFIX
    accounts_table: str | None = None
    outcomes_table: str | None = None


@dataclass(frozen=True)
class Gathered:
    events: Path
    accounts: Path | None
    outcomes: Path | None
    objects: int  # Parquet objects read
    rows: int  # rows in them
    events_kept: int  # after keeping one row per (account_id, event_id)


def source_from_stack(stack: str, cloudformation: Any) -> ArchiveSource:
    """The archive and tables of a deployed stack, from its outputs."""
    try:
        (found,) = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except Exception as error:  # botocore's ClientError for a stack that does not exist
        raise InputError(f"stack {stack}: {error}") from None
    outputs = {output["OutputKey"]: output["OutputValue"] for output in found.get("Outputs", [])}
    if BUCKET_OUTPUT not in outputs:
        raise InputError(
            f"stack {stack} has no {BUCKET_OUTPUT} output: deploy a version with the events archive "
            "(docs/operations.md, 'The events archive'), or give --events files"
        )
    return ArchiveSource(
        bucket=outputs[BUCKET_OUTPUT],
        accounts_table=outputs.get(ACCOUNTS_OUTPUT),
        outcomes_table=outputs.get(OUTCOMES_OUTPUT),
    )


def source_from_uri(uri: str) -> ArchiveSource:
    """`s3://bucket/prefix` (the prefix holding the `day=` folders; `events/` when only a bucket)."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise InputError(f"{uri!r} is not an S3 URI: use s3://BUCKET/PREFIX, e.g. s3://my-archive/events/")
    prefix = parsed.path.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return ArchiveSource(bucket=parsed.netloc, prefix=prefix or EVENTS_PREFIX)


def gather(
    source: ArchiveSource,
    folder: Path,
    *,
    s3: Any,
    dynamodb: Any | None = None,
    since: date | None = None,
    until: date | None = None,
    report: Callable[[str], None] = lambda _: None,
) -> Gathered:
    """Write the source's events (and, from a stack, profiles and outcomes) into `folder`."""
    if since and until and since > until:
        raise InputError(f"--since {since} is after --until {until}")
    days = [
        day for day in _day_folders(s3, source) if (not since or day >= since) and (not until or day <= until)
    ]
    if not days:
        raise InputError(
            f"s3://{source.bucket}/{source.prefix}: no {PARTITION_KEY}= folders"
            + (f" from {since or 'the start'} to {until or 'the end'}" if since or until else "")
        )
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    objects = total = 0
    for day in days:
        for key in _objects(s3, source.bucket, f"{source.prefix}{PARTITION_KEY}={day.isoformat()}/"):
            objects += 1
            for row in _parquet_rows(s3, source.bucket, key):
                total += 1
                known = rows.get((row["account_id"], row["event_id"]))
                if known is None or row["received_at"] < known["received_at"]:
                    rows[(row["account_id"], row["event_id"])] = row
        report(f"{day}: {len(rows):,} events so far")
    events = folder / "archive-events.jsonl"
    with events.open("w", encoding="utf-8") as out:
        for row in sorted(rows.values(), key=lambda r: (r["received_at"], r["account_id"], r["event_id"])):
            out.write(_event_line(row))
    accounts = outcomes = None
    if source.accounts_table and dynamodb is not None:
        accounts = folder / "archive-profiles.jsonl"
        _write_profiles(dynamodb, source.accounts_table, accounts)
    if source.outcomes_table and dynamodb is not None:
        outcomes = folder / "archive-outcomes.csv"
        _write_outcomes(dynamodb, source.outcomes_table, outcomes)
    return Gathered(events, accounts, outcomes, objects, total, len(rows))


def scratch_folder() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="upswing-archive-")


# ── S3 ─────────────────────────────────────────────────────────────────────────────────────────


def _day_folders(s3: Any, source: ArchiveSource) -> list[date]:
    days = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=source.bucket, Prefix=source.prefix, Delimiter="/"
    ):
        for common in page.get("CommonPrefixes", []):
            name = common["Prefix"][len(source.prefix) :].rstrip("/")
            key, _, value = name.partition("=")
            if key != PARTITION_KEY:
                continue
            try:
                days.append(date.fromisoformat(value))
            except ValueError:
                continue  # not a day folder: not the archive's
    return sorted(days)


def _objects(s3: Any, bucket: str, prefix: str) -> Iterator[str]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if item["Key"].endswith(".parquet"):
                yield item["Key"]


def _parquet_rows(s3: Any, bucket: str, key: str) -> Iterator[dict[str, Any]]:
    try:
        import pyarrow as arrow
        import pyarrow.parquet as parquet
    except ImportError:
        raise InputError("reading the archive needs pyarrow: pip install 'upswing[parquet]'") from None
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    try:
        table = parquet.read_table(arrow.BufferReader(body), columns=_COLUMNS)
    except Exception as error:  # pyarrow raises several types for a file that is not Parquet
        raise InputError(f"s3://{bucket}/{key}: not an archive Parquet file ({error})") from None
    for row in table.to_pylist():
        dimensions = row["dimensions"]
        # Arrow gives a map as a list of (key, value) pairs.
        row["dimensions"] = dict(dimensions) if dimensions else {}
        yield row


def _event_line(row: dict[str, Any]) -> str:
    """The event as POST /v1/events takes it; the value's exact decimal text as a JSON number."""
    document = {
        "event_id": row["event_id"],
        "account_id": row["account_id"],
        "name": row["name"],
        "kind": row["kind"],
        "occurred_at": row["occurred_at"],
        "dimensions": row["dimensions"],
    }
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    return f'{text[:-1]},"value":{row["value"]}}}\n'


# ── DynamoDB ───────────────────────────────────────────────────────────────────────────────────


def _scan(dynamodb: Any, table: str) -> Iterator[dict[str, Any]]:
    for page in dynamodb.get_paginator("scan").paginate(TableName=table):
        yield from page.get("Items", [])


def _write_profiles(dynamodb: Any, table: str, path: Path) -> None:
    fields = set(AccountProfile.model_fields)
    with path.open("w", encoding="utf-8") as out:
        for raw in _scan(dynamodb, table):
            if "profile" not in raw:
                continue
            stored = StoredAccount.model_validate_json(raw["profile"]["S"])
            profile = stored.model_dump(mode="json", include=fields, exclude_none=True)
            out.write(json.dumps({"account_id": raw["pk"]["S"], "profile": profile}) + "\n")


def _write_outcomes(dynamodb: Any, table: str, path: Path) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["account_id", "expansion_date", "kind", "amount", "currency"])
        rows = []
        for raw in _scan(dynamodb, table):
            item = deserialize(raw)
            if not str(item.get("sk", "")).startswith(SORT_KEY_PREFIX):
                continue
            if not OutcomeKind(item["kind"]).is_expansion:
                continue
            amount = item.get("amount")
            rows.append(
                [
                    item["pk"],
                    item["occurred_at"][:10],
                    item["kind"],
                    "" if amount is None else str(amount),
                    item.get("currency") or "",
                ]
            )
        writer.writerows(sorted(rows))
