"""Counting: the events table's stream feeds the aggregator, which keeps per-day counters."""

from __future__ import annotations

from aws_cdk import aws_sqs as sqs
from constructs import Construct

from shared.resources import (
    AGGREGATOR_FUNCTION,
    COUNTERS_TABLE,
    EVENTS_TABLE,
    RETENTION_DAYS_ENV,
    RULESET_PATH_ENV,
    SHADOW_RULESETS_ENV,
)

from .function import LambdaPackage, UpswingFunction
from .settings import UpswingSettings
from .storage import Storage
from .streams import consume_stream


class Counting(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        package: LambdaPackage,
        storage: Storage,
        settings: UpswingSettings,
    ) -> None:
        super().__init__(scope, construct_id)
        events_table = storage.table(EVENTS_TABLE)
        counters_table = storage.table(COUNTERS_TABLE)

        self.aggregator = UpswingFunction(
            self,
            "Aggregator",
            spec=AGGREGATOR_FUNCTION,
            package=package,
            description="Adds newly recorded events to the per-day counters",
            environment={
                COUNTERS_TABLE.env_var: counters_table.table_name,
                RETENTION_DAYS_ENV: str(settings.retention_days),
                # The slices the rules filter or group by are counted too (shared/counters/slices.py).
                RULESET_PATH_ENV: settings.ruleset_path,
                SHADOW_RULESETS_ENV: ",".join(settings.shadow_rulesets),
            },
            wildcard_resource_reasons=(
                "The DynamoDB stream event source also needs dynamodb:ListStreams, which cannot "
                "be scoped to a table (CDK grant_stream_read); reading records is scoped to the "
                "events table's stream.",
            ),
        )
        # Load the day buckets (BatchGetItem/GetItem), write them back with a conditional put; keep
        # each account's first_seen marker (a conditional UpdateItem, and once per account a Query
        # for its earliest bucket: shared/counters/store.py).
        self.aggregator.allow(
            [
                "dynamodb:BatchGetItem",
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:Query",
            ],
            counters_table.table_arn,
        )

        # Only new ledger items count: MODIFY and TTL-expiry REMOVE records must not invoke it.
        self.failures = consume_stream(
            self,
            "AggregatorFailures",
            self.aggregator.function,
            events_table,
            event_names=("INSERT",),
            batch_size=500,
            used_by="on-failure destination of the aggregator's stream mapping",
        )
        self.dead_letter_queues: list[sqs.IQueue] = [self.failures]
