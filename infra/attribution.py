"""Attribution: the outcomes table's stream feeds the attributor, which tells the plays their
account expanded (and counts it for their trigger)."""

from __future__ import annotations

from aws_cdk import aws_sqs as sqs
from constructs import Construct

from shared.horizon import HORIZON_ENV
from shared.resources import ATTRIBUTOR_FUNCTION, OUTCOMES_TABLE, PLAYS_TABLE, RETENTION_DAYS_ENV

from .function import LambdaPackage, UpswingFunction
from .settings import UpswingSettings
from .storage import Storage
from .streams import consume_stream


class Attribution(Construct):
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
        outcomes_table = storage.table(OUTCOMES_TABLE)
        plays_table = storage.table(PLAYS_TABLE)

        self.attributor = UpswingFunction(
            self,
            "Attributor",
            spec=ATTRIBUTOR_FUNCTION,
            package=package,
            description="Marks the plays an expansion outcome followed as expanded, and counts it",
            environment={
                PLAYS_TABLE.env_var: plays_table.table_name,
                RETENTION_DAYS_ENV: str(settings.retention_days),
                HORIZON_ENV: str(settings.expansion_horizon_days),
            },
            wildcard_resource_reasons=(
                "The DynamoDB stream event source also needs dynamodb:ListStreams, which cannot "
                "be scoped to a table (CDK grant_stream_read); reading records is scoped to the "
                "outcomes table's stream.",
            ),
        )
        # The account's plays (one Query), then per attributed firing one transaction of two
        # updates: the play's `expanded` (conditional) and its trigger cohort's counters.
        self.attributor.allow(["dynamodb:Query", "dynamodb:UpdateItem"], plays_table.table_arn)

        # New outcomes only: TTL-expiry REMOVE records must not invoke it (nothing modifies one).
        self.failures = consume_stream(
            self,
            "AttributorFailures",
            self.attributor.function,
            outcomes_table,
            event_names=("INSERT",),
            batch_size=100,
            used_by="on-failure destination of the attributor's stream mapping",
        )
        self.dead_letter_queues: list[sqs.IQueue] = [self.failures]
