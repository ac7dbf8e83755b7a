"""A function on a DynamoDB stream, the way every Upswing stream consumer runs."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from .queues import dead_letter_queue


def consume_stream(
    scope: Construct,
    failures_id: str,
    function: lambda_.IFunction,
    table: dynamodb.ITable,
    *,
    event_names: tuple[str, ...],
    batch_size: int,
    used_by: str,
    sort_key_prefix: str | None = None,
) -> sqs.IQueue:
    """Attach `function` to the table's stream; return the queue for batches that keep failing.

    Only records of `event_names` invoke it (filtered by Lambda, free of charge). A poison record
    is isolated by halving the batch instead of blocking the shard; after 5 retries the batch's
    description (shard, sequence range) goes to the failures queue, for replay.
    """
    failures = dead_letter_queue(scope, failures_id, used_by=used_by)
    names = (
        lambda_.FilterRule.is_equal(event_names[0])
        if len(event_names) == 1
        else lambda_.FilterRule.or_(*event_names)
    )
    pattern: dict[str, Any] = {"eventName": names}
    if sort_key_prefix is not None:  # only items whose sort key starts so (a table's other items never)
        pattern["dynamodb"] = {"Keys": {"sk": {"S": lambda_.FilterRule.begins_with(sort_key_prefix)}}}
    function.add_event_source(
        event_sources.DynamoEventSource(
            table,
            starting_position=lambda_.StartingPosition.TRIM_HORIZON,
            batch_size=batch_size,
            max_batching_window=Duration.seconds(1),
            bisect_batch_on_error=True,
            retry_attempts=5,
            report_batch_item_failures=True,
            on_failure=event_sources.SqsDlq(failures),
            filters=[lambda_.FilterCriteria.filter(pattern)],
        )
    )
    return failures
