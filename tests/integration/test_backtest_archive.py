"""`upswing backtest --from-stack`: the archive, the accounts and outcomes tables → the same backtest.

A simulated history is laid out in moto S3 the way the deployed archive lays it out (Firehose's
Parquet, one `day=YYYY-MM-DD/` folder per event day, several objects a day, some rows delivered
twice: at least once), its profiles written to the accounts table and its expansions to the
outcomes table (a churn beside them, which is no expansion), the stack's outputs naming them. The
backtest of what `gather` reads must equal the backtest of the original JSONL files.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as arrow
import pyarrow.parquet as parquet
import pytest

from shared.accounts.models import AccountProfile
from shared.accounts.store import AccountStore
from shared.archive.layout import ARCHIVE_COLUMNS, day_prefix
from shared.intake import Channel
from shared.outcomes.models import AccountOutcome
from shared.outcomes.store import outcome_item
from shared.storage.dynamo import serialize, to_decimal
from tests.conftest import TEST_RETENTION_DAYS, Aws
from tests.integration.builders import TEST_WRITER
from upswing.backtest import BacktestConfig, backtest
from upswing.backtest.archive import gather, source_from_stack, source_from_uri
from upswing.backtest.events import InputError
from upswing.simulate import SimulationConfig, simulate

SIMULATION = SimulationConfig(accounts=6, days=45, seed=11, start=date(2025, 3, 1))
BUCKET = "upswing-archive-test"
RECEIVED = datetime(2025, 6, 1, tzinfo=UTC)
ARROW_SCHEMA = arrow.schema(
    [
        (name, arrow.map_(arrow.string(), arrow.string()) if kind.startswith("map") else arrow.string())
        for name, kind in ARCHIVE_COLUMNS
    ]
)


@pytest.fixture
def history(tmp_path: Path) -> Path:
    simulate(SIMULATION, tmp_path, ("jsonl",))
    return tmp_path


def archive(aws_s3: Any, events_file: Path) -> int:
    """Write the events as the archive does; returns the number of rows written (duplicates too)."""
    by_day: dict[str, list[dict[str, Any]]] = {}
    for number, line in enumerate(events_file.read_text().splitlines()):
        event = json.loads(line)
        row = {
            "event_id": event["event_id"],
            "account_id": event["account_id"],
            "name": event["name"],
            "kind": event.get("kind", "count"),
            "value": str(to_decimal(event.get("value", 1))),
            "occurred_at": event["occurred_at"].replace("Z", ".000000Z"),
            "dimensions": event.get("dimensions", {}),
            # the ledger's clock: arrival order is the file's order
            "received_at": (RECEIVED + timedelta(milliseconds=number)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
            + "Z",
        }
        by_day.setdefault(event["occurred_at"][:10], []).append(row)
    written = 0
    for day, rows in by_day.items():
        half = len(rows) // 2
        # Two objects a day (two Firehose buffers); the first rows of the second are redelivered
        # copies of the first's last rows (a retried stream batch).
        parts = [rows[: half + 1], rows[max(0, half - 2) :]]
        for index, part in enumerate(parts):
            rows_out = [{**row, "dimensions": list(row["dimensions"].items())} for row in part]
            table = arrow.Table.from_pylist(rows_out, schema=ARROW_SCHEMA)
            sink = io.BytesIO()
            parquet.write_table(table, sink, compression="snappy")
            key = f"{day_prefix('events/', date.fromisoformat(day))}upswing-archive-1-{day}-{index}.parquet"
            aws_s3.put_object(Bucket=BUCKET, Key=key, Body=sink.getvalue())
            written += len(part)
    # What else Firehose leaves in the bucket is not read: records it could not convert.
    aws_s3.put_object(Bucket=BUCKET, Key="errors/format-conversion-failed/2025-03-02/x", Body=b"{}")
    return written


# The simulator's expansion kinds, as the outcomes API names them.
KINDS = {"seats": "seat_expansion"}


def outcomes_with_api_kinds(folder: Path) -> Path:
    """The simulated outcomes file with its kinds as the outcomes table holds them."""
    with (folder / "outcomes.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    path = folder / "outcomes-api-kinds.csv"
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(
            out, fieldnames=["account_id", "expansion_date", "kind", "amount", "currency"]
        )
        writer.writeheader()
        writer.writerows({**row, "kind": KINDS.get(row["kind"], row["kind"])} for row in rows)
    return path


def store_truth(aws: Aws, folder: Path) -> None:
    accounts = AccountStore(aws.dynamodb, aws.accounts_table)
    for line in (folder / "accounts.jsonl").read_text().splitlines():
        document = json.loads(line)
        accounts.put(document["account_id"], AccountProfile.model_validate(document["profile"]), TEST_WRITER)
    outcomes_table = aws.tables["OUTCOMES_TABLE"]
    with outcomes_with_api_kinds(folder).open() as stream:
        rows = list(csv.DictReader(stream))
    rows.append(  # a churn: an outcome, not an expansion
        {
            "account_id": rows[0]["account_id"],
            "expansion_date": "2025-04-01",
            "kind": "churn",
            "amount": "0",
            "currency": "USD",
        }
    )
    for number, row in enumerate(rows):
        outcome = AccountOutcome.model_validate(
            {
                "outcome_id": f"o-{number}",
                "account_id": row["account_id"],
                "kind": row["kind"],
                "occurred_at": f"{row['expansion_date']}T12:00:00Z",
                "amount": row["amount"],
                "currency": row["currency"],
                "source": "billing",
            }
        )
        item = outcome_item(outcome, "billing", Channel.HTTPS, RECEIVED, TEST_RETENTION_DAYS * 10)
        aws.dynamodb.put_item(TableName=outcomes_table, Item=serialize(item))


class FakeCloudFormation:
    def __init__(self, outputs: dict[str, str]) -> None:
        self._outputs = outputs

    def describe_stacks(self, StackName: str) -> dict[str, Any]:
        if StackName != "Upswing-prod":
            raise RuntimeError(f"Stack with id {StackName} does not exist")
        return {
            "Stacks": [{"Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in self._outputs.items()]}]
        }


def comparable(result: dict[str, Any]) -> dict[str, Any]:
    """The result without what differs by construction: when, how long, which files, the command."""
    document = {
        key: value for key, value in result.items() if key not in ("generated_at", "seconds", "command")
    }
    document["input"] = {key: value for key, value in result["input"].items() if key != "files"}
    document["rulesets"] = [
        {key: value for key, value in ruleset.items() if key not in ("rules",)}
        for ruleset in result["rulesets"]
    ]
    return document


def test_given_the_archive_and_the_tables_of_a_stack_when_backtested_then_it_equals_the_file_backtest(
    aws: Aws, history: Path, tmp_path: Path
):
    # Given: the history archived (with redeliveries), its profiles and outcomes in the stack's tables
    s3 = _s3()
    s3.create_bucket(Bucket=BUCKET)
    rows = archive(s3, history / "events.jsonl")
    store_truth(aws, history)
    cloudformation = FakeCloudFormation(
        {
            "ArchiveBucketName": BUCKET,
            "AccountsTableName": aws.accounts_table,
            "OutcomesTableName": aws.tables["OUTCOMES_TABLE"],
        }
    )

    # When: gathered from the stack and backtested, beside the backtest of the files
    source = source_from_stack("Upswing-prod", cloudformation)
    gathered = gather(source, tmp_path, s3=s3, dynamodb=aws.dynamodb)
    from_stack = backtest(
        BacktestConfig(
            events=(gathered.events,), outcomes=gathered.outcomes, accounts=gathered.accounts, workers=1
        )
    )
    from_files = backtest(
        BacktestConfig(
            events=(history / "events.jsonl",),
            outcomes=history / "outcomes-api-kinds.csv",
            accounts=history / "accounts.jsonl",
            workers=1,
        )
    )

    # Then: one event per (account, event id), every one of them, and the same backtest
    events = len((history / "events.jsonl").read_text().splitlines())
    assert rows > events  # the archive held redelivered copies
    assert gathered.events_kept == events
    assert from_stack.result["input"]["duplicates"] == 0
    assert from_stack.firings == from_files.firings
    assert from_stack.firings  # the comparison says something: triggers fired
    assert comparable(from_stack.result) == comparable(from_files.result)


def test_given_a_date_range_when_gathered_then_only_those_day_folders_are_read(
    aws: Aws, history: Path, tmp_path: Path
):
    s3 = _s3()
    s3.create_bucket(Bucket=BUCKET)
    archive(s3, history / "events.jsonl")

    gathered = gather(
        source_from_uri(f"s3://{BUCKET}/events/"),
        tmp_path,
        s3=s3,
        since=date(2025, 3, 10),
        until=date(2025, 3, 11),
    )

    days = {json.loads(line)["occurred_at"][:10] for line in gathered.events.read_text().splitlines()}
    assert days == {"2025-03-10", "2025-03-11"}
    assert gathered.objects == 4
    # an S3 URI names no tables
    assert gathered.accounts is None
    assert gathered.outcomes is None
    expected = [
        line
        for line in (history / "events.jsonl").read_text().splitlines()
        if json.loads(line)["occurred_at"][:10] in days
    ]
    assert len(gathered.events.read_text().splitlines()) == len(expected)


def test_given_wrong_sources_then_the_messages_say_what_to_do(aws: Aws, tmp_path: Path):
    s3 = _s3()
    s3.create_bucket(Bucket=BUCKET)
    with pytest.raises(InputError, match="not an S3 URI: use s3://BUCKET/PREFIX"):
        source_from_uri("https://example.com/archive")
    with pytest.raises(InputError, match="no day= folders from 2025-01-01 to the end"):
        gather(source_from_uri(f"s3://{BUCKET}"), tmp_path, s3=s3, since=date(2025, 1, 1))
    with pytest.raises(
        InputError, match="has no ArchiveBucketName output: deploy a version with the events archive"
    ):
        source_from_stack("Upswing-prod", FakeCloudFormation({"ApiUrl": "https://x"}))
    with pytest.raises(InputError, match=r"stack Upswing-dev: .*does not exist"):
        source_from_stack("Upswing-dev", FakeCloudFormation({}))
    assert source_from_uri(f"s3://{BUCKET}").prefix == "events/"
    assert source_from_uri(f"s3://{BUCKET}/old/events").prefix == "old/events/"


def test_given_a_value_with_many_digits_then_the_gathered_line_keeps_them(aws: Aws, tmp_path: Path):
    s3 = _s3()
    s3.create_bucket(Bucket=BUCKET)
    row = {
        "event_id": "e-1",
        "account_id": "acme",
        "name": "api.calls",
        "kind": "count",
        "value": str(Decimal("0.000001234")),
        "occurred_at": "2025-03-01T10:00:00.000000Z",
        "dimensions": [("team", "t-1")],
        "received_at": "2025-03-01T10:00:01.000Z",
    }
    sink = io.BytesIO()
    parquet.write_table(arrow.Table.from_pylist([row], schema=ARROW_SCHEMA), sink)
    s3.put_object(Bucket=BUCKET, Key="events/day=2025-03-01/a.parquet", Body=sink.getvalue())

    gathered = gather(source_from_uri(f"s3://{BUCKET}"), tmp_path, s3=s3)

    line = gathered.events.read_text()
    assert '"value":0.000001234' in line
    assert json.loads(line)["dimensions"] == {"team": "t-1"}


def _s3() -> Any:
    from tests.conftest import _test_client

    return _test_client("s3")


def test_given_the_cli_with_an_s3_uri_when_run_then_it_writes_the_backtest_of_the_archive(
    aws: Aws, history: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    from upswing.cli import main

    s3 = _s3()
    s3.create_bucket(Bucket=BUCKET)
    archive(s3, history / "events.jsonl")
    out = tmp_path / "results"

    code = main(
        [
            "backtest",
            "--from",
            f"s3://{BUCKET}/events/",
            "--outcomes",
            str(history / "outcomes.csv"),
            "--accounts",
            str(history / "accounts.jsonl"),
            "--workers",
            "1",
            "--out",
            str(out),
        ]
    )

    assert code == 0
    result = json.loads((out / "backtest.json").read_text())
    assert result["input"]["events"] == len((history / "events.jsonl").read_text().splitlines())
    assert "one per account and event id" in capsys.readouterr().err
    # --since without an archive is a mistake, said so
    assert main(["backtest", "--events", "x.jsonl", "--since", "2025-01-01", "--outcomes", "o.csv"]) == 2
    assert "use them with --from-stack or --from" in capsys.readouterr().err
