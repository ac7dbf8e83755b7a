"""EventBridge `usage.event` → (SQS) → the same write path as HTTPS.

The whole SQS batch goes through the ingestor at once so its ledger writes run in parallel
(per-record processing would serialise them). Outcomes per message:
- accepted or duplicate: done;
- rejected (invalid event, or not an EventBridge event at all): sent to the rejects queue with
  the reasons, then done — retrying would not make it valid;
- failed (storage trouble), or the reject could not be recorded: reported as a batch item
  failure, so SQS delivers it again and, after maxReceiveCount, moves it to the DLQ.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from functions.bus_ingest.settings import BusIngestSettings
from shared.events.ingest import Ingestor, Outcome, Status, ingestor_for
from shared.events.ledger import Channel
from shared.json_input import JsonInputError, decode_json
from shared.observability import logger, metrics, traced
from shared.resources import USAGE_EVENT_DETAIL_TYPE
from shared.settings import load_settings
from shared.storage.dynamo import aws_client, dynamodb_client

_SQS_BATCH_LIMIT = 10


@cache
def settings() -> BusIngestSettings:
    return load_settings(BusIngestSettings)


@cache
def ingestor() -> Ingestor:
    return ingestor_for(dynamodb_client(), settings())


@cache
def sqs_client() -> Any:
    return aws_client("sqs")


@logger.inject_lambda_context
@metrics.log_metrics
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_messages(event, ingestor(), sqs_client(), settings().rejects_queue_url, datetime.now(UTC))


def process_messages(
    event: dict[str, Any], ingest: Ingestor, sqs: Any, rejects_queue_url: str, now: datetime
) -> dict[str, Any]:
    records = event.get("Records", [])
    rejects: list[tuple[str, dict[str, Any]]] = []
    failed: list[str] = []
    by_source: dict[str, list[tuple[dict[str, Any], Any]]] = {}

    for record in records:
        envelope, problem = _envelope(record.get("body", ""))
        if problem:
            rejects.append((record["messageId"], _reject(record.get("body", ""), [problem], None, now)))
        else:
            by_source.setdefault(str(envelope["source"]), []).append((record, envelope))

    for source, items in by_source.items():
        outcomes = ingest.ingest(
            [envelope["detail"] for _, envelope in items], f"eventbridge:{source}", Channel.EVENTBRIDGE, now
        )
        for (record, envelope), outcome in zip(items, outcomes, strict=True):
            if outcome.status is Status.FAILED:
                failed.append(record["messageId"])
            elif outcome.status is Status.REJECTED:
                rejects.append(
                    (record["messageId"], _reject(envelope["detail"], outcome.errors, source, now))
                )
        _count(outcomes)

    failed.extend(_send_rejects(sqs, rejects_queue_url, rejects))
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}


def _envelope(body: str) -> tuple[dict[str, Any], str | None]:
    try:
        envelope = decode_json(body, subject="The message")
    except JsonInputError as error:
        return {}, str(error)
    if not isinstance(envelope, dict) or "detail" not in envelope or "source" not in envelope:
        return {}, "the message is not an EventBridge event (no source/detail)"
    if envelope.get("detail-type") != USAGE_EVENT_DETAIL_TYPE:
        return {}, f"detail-type must be {USAGE_EVENT_DETAIL_TYPE!r}, got {envelope.get('detail-type')!r}"
    return envelope, None


def _reject(payload: Any, errors: list[str], source: str | None, now: datetime) -> dict[str, Any]:
    return {
        "errors": errors,
        "source": source,
        "rejected_at": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "event": payload,
    }


def _send_rejects(sqs: Any, queue_url: str, rejects: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Record each rejected event with its reasons; return the messages whose reject was not recorded."""
    unrecorded: list[str] = []
    for start in range(0, len(rejects), _SQS_BATCH_LIMIT):
        chunk = rejects[start : start + _SQS_BATCH_LIMIT]
        entries = [
            {"Id": str(position), "MessageBody": json.dumps(body, ensure_ascii=False, default=str)}
            for position, (_, body) in enumerate(chunk)
        ]
        try:
            answer = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        except (ClientError, BotoCoreError) as error:
            logger.error("recording rejects failed", extra={"error": type(error).__name__})
            unrecorded.extend(message_id for message_id, _ in chunk)
            continue
        unrecorded.extend(chunk[int(failure["Id"])][0] for failure in answer.get("Failed", []))
    if rejects:
        metrics.add_metric(name="EventsRejected", unit=MetricUnit.Count, value=len(rejects))
    return unrecorded


def _count(outcomes: list[Outcome]) -> None:
    metrics.add_metric(
        name="EventsAccepted", unit=MetricUnit.Count, value=sum(o.status is Status.ACCEPTED for o in outcomes)
    )
    metrics.add_metric(
        name="EventsDuplicate",
        unit=MetricUnit.Count,
        value=sum(o.status is Status.DUPLICATE for o in outcomes),
    )
