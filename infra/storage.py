"""The DynamoDB tables, built from shared/resources.TABLES so keys and streams cannot drift."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from shared.resources import TABLES, TableSpec


class Storage(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, deletion_protection: bool) -> None:
        super().__init__(scope, construct_id)
        self._tables = {spec.construct_id: _table(self, spec, deletion_protection) for spec in TABLES}

    def table(self, spec: TableSpec) -> dynamodb.Table:
        return self._tables[spec.construct_id]

    def named_tables(self) -> list[tuple[TableSpec, dynamodb.Table]]:
        return [(spec, self.table(spec)) for spec in TABLES]


def _table(scope: Construct, spec: TableSpec, deletion_protection: bool) -> dynamodb.Table:
    table = dynamodb.Table(
        scope,
        spec.construct_id,
        partition_key=dynamodb.Attribute(name=spec.partition_key, type=dynamodb.AttributeType.STRING),
        sort_key=(
            dynamodb.Attribute(name=spec.sort_key, type=dynamodb.AttributeType.STRING)
            if spec.sort_key
            else None
        ),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        time_to_live_attribute=spec.ttl_attribute,
        stream=dynamodb.StreamViewType(spec.stream.value) if spec.stream else None,
        encryption=dynamodb.TableEncryption.AWS_MANAGED,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        deletion_protection=deletion_protection,
        # The ledger and counters are the product's data: never let a stack update drop them.
        removal_policy=RemovalPolicy.RETAIN,
    )
    for index in spec.indexes:
        table.add_global_secondary_index(
            index_name=index.name,
            partition_key=dynamodb.Attribute(name=index.partition_key, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=index.sort_key, type=dynamodb.AttributeType.STRING),
            projection_type=(
                dynamodb.ProjectionType.KEYS_ONLY if index.keys_only else dynamodb.ProjectionType.ALL
            ),
        )
    return table
