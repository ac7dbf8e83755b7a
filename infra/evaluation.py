"""Evaluation: the counters table's stream feeds the rules evaluator, which records firings and
hands each one off as a `trigger.fired` message on the fired queue."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import aws_sqs as sqs
from constructs import Construct

from shared.counters.store import sort_key
from shared.resources import (
    ACCOUNTS_PARENT_INDEX,
    ACCOUNTS_TABLE,
    COUNTERS_TABLE,
    EVALUATOR_FUNCTION,
    FIRED_QUEUE,
    FIRINGS_TABLE,
    REGISTRY_TABLE,
    RETENTION_DAYS_ENV,
    ROUTER_FUNCTION,
    RULESET_DEPLOYER_ENV,
    RULESET_GIT_REVISION_ENV,
    RULESET_PATH_ENV,
    SHADOW_RULESETS_ENV,
)
from shared.rules.versions import LOCK_FILE, check_locked, deployment, read_lock

from .function import LambdaPackage, UpswingFunction
from .queues import queue_with_dlq
from .settings import UpswingSettings
from .storage import Storage
from .streams import consume_stream

_REPO_ROOT = Path(__file__).resolve().parents[1]


class Evaluation(Construct):
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
        # A ruleset with a mistake fails the synth, long before it could fail in Lambda; so do two
        # rulesets with one version, and a version whose content differs from rules/versions.lock.
        check_locked(
            deployment(_REPO_ROOT, settings.ruleset_path, settings.shadow_rulesets),
            read_lock(_REPO_ROOT / LOCK_FILE),
        )
        counters_table = storage.table(COUNTERS_TABLE)
        registry_table = storage.table(REGISTRY_TABLE)
        accounts_table = storage.table(ACCOUNTS_TABLE)
        firings_table = storage.table(FIRINGS_TABLE)
        fired = queue_with_dlq(self, FIRED_QUEUE, consumer=ROUTER_FUNCTION)
        self.fired_queue = fired.queue

        self.evaluator = UpswingFunction(
            self,
            "Evaluator",
            spec=EVALUATOR_FUNCTION,
            package=package,
            description="Evaluates the expansion rules when an account's counters change",
            environment={
                COUNTERS_TABLE.env_var: counters_table.table_name,
                ACCOUNTS_TABLE.env_var: accounts_table.table_name,
                FIRINGS_TABLE.env_var: firings_table.table_name,
                FIRED_QUEUE.env_var: fired.queue.queue_url,
                RULESET_PATH_ENV: settings.ruleset_path,
                SHADOW_RULESETS_ENV: ",".join(settings.shadow_rulesets),
                REGISTRY_TABLE.env_var: registry_table.table_name,
                **({RULESET_DEPLOYER_ENV: settings.deployer} if settings.deployer else {}),
                **({RULESET_GIT_REVISION_ENV: settings.git_revision} if settings.git_revision else {}),
                RETENTION_DAYS_ENV: str(settings.retention_days),
            },
            wildcard_resource_reasons=(
                "The DynamoDB stream event source also needs dynamodb:ListStreams, which cannot "
                "be scoped to a table (CDK grant_stream_read); reading records is scoped to the "
                "counters table's stream.",
            ),
        )
        # The read plan's days of one account (Query), its profile (GetItem).
        self.evaluator.allow(["dynamodb:Query"], counters_table.table_arn)
        self.evaluator.allow(["dynamodb:GetItem"], accounts_table.table_arn)
        # Family-scope rules: a family's members, from the accounts' keys-only `parent` index.
        self.evaluator.allow(
            ["dynamodb:Query"], f"{accounts_table.table_arn}/index/{ACCOUNTS_PARENT_INDEX.name}"
        )
        # The firing ledger: read the state, commit state + firings in one conditional transaction
        # (PutItem per item), find pending firings (Query), clear them once sent (UpdateItem).
        self.evaluator.allow(
            ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"],
            firings_table.table_arn,
        )
        fired.queue.grant_send_messages(self.evaluator.function)
        # Each ruleset version it runs, recorded once: conditional writes only, never a read (the
        # registry also holds the producer keys' hashes, the authorizer's and the API's business).
        self.evaluator.allow(["dynamodb:PutItem", "dynamodb:UpdateItem"], registry_table.table_arn)

        # Counter changes only: TTL expiry (REMOVE) never invokes the rules.
        self.failures = consume_stream(
            self,
            "EvaluatorFailures",
            self.evaluator.function,
            counters_table,
            event_names=("INSERT", "MODIFY"),
            batch_size=100,
            used_by="on-failure destination of the evaluator's stream mapping",
            # Day buckets only: an account's first_seen marker changes just before a new bucket,
            # whose own record evaluates the account (docs/storage.md).
            sort_key_prefix=sort_key(""),
        )
        self.dead_letter_queues: list[sqs.IQueue] = [self.failures, fired.dead_letter_queue]
