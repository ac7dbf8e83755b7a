"""EventBridge → (SQS) → the intakes: `usage.event` to the event ingestor, `outcome` to the outcome
intake, each the same write path as over HTTPS.

The messages of an SQS batch are grouped by detail type and source, and each group goes through
its intake at once so its writes run in parallel (per-record processing would serialise them).
Results per message:
- accepted or duplicate: done;
- rejected (invalid item, unknown detail type, or not an EventBridge event at all): sent to the
  rejects queue with the reasons, then done — retrying would not make it valid;
- failed (storage trouble), or the reject could not be recorded: reported as a batch item
  failure, so SQS delivers it again and, after maxReceiveCount, moves it to the DLQ.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import ValidationError

from shared.events.validation import describe_errors
from shared.intake import BatchIntake, Channel, ItemResult, Status
from shared.json_input import JsonInputError, decode_json
from shared.observability import metrics
from shared.sqs import Outgoing, send_batch
from shared.timestamps import utc_stamp


def process_messages(
    event: dict[str, Any],
    intakes: Mapping[str, BatchIntake],
    sqs: Any,
    rejects_queue_url: str,
    now: datetime,
) -> dict[str, Any]:
    """Take in an SQS batch of EventBridge events; `intakes` by the detail type they take."""
    records = event.get("Records", [])
    rejects: list[tuple[str, dict[str, Any]]] = []
    failed: list[str] = []
    groups: dict[tuple[str, str], list[tuple[dict[str, Any], BusEnvelope]]] = {}

    for record in records:
        envelope, problem = _envelope(record.get("body", ""), intakes)
        if envelope is None:
            reasons = [problem or "unreadable"]
            rejects.append((record["messageId"], _reject(record.get("body", ""), reasons, None, None, now)))
        else:
            groups.setdefault((envelope.detail_type, envelope.source), []).append((record, envelope))

    for (detail_type, source), items in groups.items():
        intake = intakes[detail_type]
        results = intake.ingest(
            [envelope.detail for _, envelope in items], f"eventbridge:{source}", Channel.EVENTBRIDGE, now
        )
        for (record, envelope), result in zip(items, results, strict=True):
            if result.status is Status.FAILED:
                failed.append(record["messageId"])
            elif result.status is Status.REJECTED:
                rejects.append(
                    (
                        record["messageId"],
                        _reject(envelope.detail, result.errors, source, detail_type, now),
                    )
                )
        _count(intake.noun.plural.capitalize(), results)

    unreadable = len(records) - sum(len(items) for items in groups.values())
    if unreadable:
        metrics.add_metric(name="BusMessagesUnreadable", unit=MetricUnit.Count, value=unreadable)
    failed.extend(_send_rejects(sqs, rejects_queue_url, rejects))
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}


class BusEnvelope(EventBridgeModel):
    """Powertools' EventBridge event; its `detail` is judged by the intake, in the API's words.
    `account` is not read, and moto's bus-to-SQS target leaves it out (the local stack's path)."""

    detail: Any
    account: str | None = None  # type: ignore[assignment]


def _envelope(body: str, intakes: Mapping[str, BatchIntake]) -> tuple[BusEnvelope | None, str | None]:
    try:
        document = decode_json(body, subject="The message")  # the API's limits on depth and numbers
    except JsonInputError as error:
        return None, str(error)
    if not isinstance(document, dict) or "detail" not in document or "source" not in document:
        return None, "the message is not an EventBridge event (no source/detail)"
    if document.get("detail-type") not in intakes:
        expected = " or ".join(repr(detail_type) for detail_type in intakes)
        return None, f"detail-type must be {expected}, got {document.get('detail-type')!r}"
    try:
        return BusEnvelope.model_validate(document), None
    except ValidationError as error:
        problems = "; ".join(describe_errors(error, BusEnvelope, noun="message"))
        return None, f"the message is not an EventBridge event: {problems}"


def _reject(
    payload: Any, errors: list[str], source: str | None, detail_type: str | None, now: datetime
) -> dict[str, Any]:
    return {
        "errors": errors,
        "source": source,
        "detail_type": detail_type,
        "rejected_at": utc_stamp(now, "seconds"),
        "event": payload,
    }


def _send_rejects(sqs: Any, queue_url: str, rejects: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Record each rejected message with its reasons; return the messages whose reject was not recorded."""
    outgoing = [
        Outgoing(message_id, json.dumps(body, ensure_ascii=False, default=str))
        for message_id, body in rejects
    ]
    return send_batch(sqs, queue_url, outgoing)


def _count(prefix: str, results: list[ItemResult]) -> None:
    """EventsAccepted / OutcomesAccepted, ...Duplicate, ...Rejected."""
    for status, suffix in (
        (Status.ACCEPTED, "Accepted"),
        (Status.DUPLICATE, "Duplicate"),
        (Status.REJECTED, "Rejected"),
    ):
        metrics.add_metric(
            name=f"{prefix}{suffix}", unit=MetricUnit.Count, value=sum(r.status is status for r in results)
        )
