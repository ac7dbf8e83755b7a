"""Every SQS queue is built here, the same way: encrypted, TLS-only, and never without a DLQ."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from shared.resources import FunctionSpec, QueueSpec

from .acknowledge import acknowledge

DEAD_LETTER_RETENTION = Duration.days(14)
# Lambda's SQS poller can hold a message for up to the function timeout per attempt, and retries
# inside a batching window; AWS recommends a visibility timeout of six times the timeout.
_VISIBILITY_PER_FUNCTION_TIMEOUT = 6


@dataclass(frozen=True)
class QueueWithDlq:
    queue: sqs.Queue
    dead_letter_queue: sqs.Queue


def queue_with_dlq(scope: Construct, spec: QueueSpec, *, consumer: FunctionSpec | None) -> QueueWithDlq:
    """The queue a spec describes, with its own DLQ that receives after `spec.max_receive_count` tries;
    its visibility timeout follows from its consumer function's timeout (None: no Lambda consumer)."""
    dead_letters = dead_letter_queue(scope, f"{spec.construct_id}Dlq")
    visibility = (
        Duration.seconds(consumer.timeout_seconds * _VISIBILITY_PER_FUNCTION_TIMEOUT) if consumer else None
    )
    queue = sqs.Queue(
        scope,
        spec.construct_id,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=Duration.days(spec.retention_days),
        visibility_timeout=visibility,
        dead_letter_queue=sqs.DeadLetterQueue(queue=dead_letters, max_receive_count=spec.max_receive_count),
    )
    return QueueWithDlq(queue=queue, dead_letter_queue=dead_letters)


def dead_letter_queue(scope: Construct, construct_id: str, *, used_by: str | None = None) -> sqs.Queue:
    """A queue that only ever receives what something else failed to process.

    `used_by` names the AWS service that sends to it when that is not an SQS redrive policy
    (an EventBridge target or a Lambda on-failure destination), which cdk-nag cannot see.
    """
    queue = sqs.Queue(
        scope,
        construct_id,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=DEAD_LETTER_RETENTION,
    )
    if used_by:
        acknowledge(
            queue,
            "AwsSolutions-SQS3",
            f"This queue is itself a dead-letter queue ({used_by}); a DLQ of a DLQ would only move "
            "the same messages again. Its depth is alarmed instead.",
        )
    return queue
