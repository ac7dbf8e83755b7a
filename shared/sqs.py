"""Sending messages to an SQS queue in batches: the one way every function does it.

SQS takes at most 10 messages a call and may refuse some of a batch while taking the rest (its
answer lists them under `Failed`); a call that fails as a whole (throttled, a timeout, an answer
lost on the way back) may or may not have queued its messages. Either way the caller gets back the
keys of the messages it cannot count as queued, and decides: retry them (the evaluator's outbox,
the router's hand-over) or record the loss (the bus intake's rejects). Consumers deduplicate, so a
message queued twice after a lost answer is harmless; one never queued is what must not happen
silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.observability import logger

SQS_BATCH_LIMIT = 10  # messages per SendMessageBatch call


@dataclass(frozen=True)
class Outgoing:
    key: str  # the caller's name for the message (a firing id, a play id...): what comes back if unsent
    body: str
    message_type: str | None = None  # the `type` message attribute, for consumers that filter on it


def send_batch(sqs: Any, queue_url: str, messages: Sequence[Outgoing]) -> list[str]:
    """Queue the messages, 10 a call; the keys of those not known to be queued (in order)."""
    unsent: list[str] = []
    for start in range(0, len(messages), SQS_BATCH_LIMIT):
        chunk = messages[start : start + SQS_BATCH_LIMIT]
        entries = [_entry(position, message) for position, message in enumerate(chunk)]
        try:
            answer = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        except (ClientError, BotoCoreError) as error:
            logger.warning(
                "SQS batch not sent", extra={"error": type(error).__name__, "messages": len(chunk)}
            )
            unsent.extend(message.key for message in chunk)
            continue
        failed = sorted(int(failure["Id"]) for failure in answer.get("Failed", []))
        unsent.extend(chunk[position].key for position in failed)
    return unsent


def _entry(position: int, message: Outgoing) -> dict[str, Any]:
    entry: dict[str, Any] = {"Id": str(position), "MessageBody": message.body}
    if message.message_type:
        entry["MessageAttributes"] = {"type": {"DataType": "String", "StringValue": message.message_type}}
    return entry
