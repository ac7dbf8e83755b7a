"""Ledger stream → the events archive (Firehose → Parquet on S3). INSERT records of the events table.

Every accepted event is written to the ledger once, and its INSERT record reaches this function at
least once: the archive may hold an event twice (a retried batch), never miss one that was counted.
Readers keep one row per (account_id, event_id) (shared/archive/layout.py). A record Firehose does
not take after retries fails the batch from that record on: Lambda retries from there, bisecting,
then sends the batch's description to the failures queue (alarmed) rather than block the shard.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.archiver.settings import ArchiverSettings
from shared.archive.firehose import put_rows
from shared.archive.layout import archive_row
from shared.observability import logger, metrics, traced
from shared.settings import load_settings
from shared.storage.dynamo import aws_client
from shared.wiring import Wiring

wiring = Wiring()


@wiring.once
def delivery() -> tuple[Any, str]:
    settings = load_settings(ArchiverSettings)
    return aws_client("firehose"), settings.delivery_stream


@logger.inject_lambda_context
@metrics.log_metrics
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    client, stream = delivery()
    return archive_stream_batch(event, client, stream)


def archive_stream_batch(event: dict[str, Any], client: Any, stream: str) -> dict[str, Any]:
    """Archive the batch's new ledger items; report the earliest record that was not archived."""
    rows: list[dict[str, Any]] = []
    sequences: list[str] = []
    failed: list[str] = []
    for record in event.get("Records", []):
        stream_data = record.get("dynamodb", {})
        if record.get("eventName") != "INSERT":
            continue  # the event-source filter drops these already; a local pump may not
        try:
            rows.append(archive_row(stream_data["NewImage"]))
            sequences.append(stream_data["SequenceNumber"])
        except (KeyError, TypeError, ValueError, ArithmeticError) as error:
            logger.error("undecodable ledger record", extra={"error": type(error).__name__})
            failed.append(stream_data.get("SequenceNumber", ""))
    refused = put_rows(client, stream, rows) if rows else []
    failed.extend(sequences[index] for index in refused)
    metrics.add_metric(name="EventsArchived", unit=MetricUnit.Count, value=len(rows) - len(refused))
    if not failed:
        return {"batchItemFailures": []}
    metrics.add_metric(name="ArchiveFailures", unit=MetricUnit.Count, value=len(failed))
    earliest = min(failed, key=lambda sequence: (len(sequence), sequence))
    return {"batchItemFailures": [{"itemIdentifier": earliest}]}
