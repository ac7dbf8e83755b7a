"""Counters stream → the rules engine → firings (ledger) → `trigger.fired` (SQS).

The event-source filter passes only INSERT and MODIFY records (TTL removals never invoke it).
A batch is handled record by record by Powertools' batch processor, but each account is
evaluated once per batch: its other records share the result (success, or the same failure,
so Lambda retries the account's records together and bisects around a poison record).

With family-scope rules, a child's change moves its family's roll-up: the parent (from the
child's profile) is evaluated too, once per batch like any account, and a failure to evaluate
it fails the child's records as well, so the retry evaluates both again.

A counter write made only by imported history (`written_by: backfill`) is not evaluated: judging
history batch by batch, at wall-clock time and half loaded, fires what already held long ago. The
import's end evaluates each imported account once instead (shared/rules/golive.py).

Shadow rulesets are evaluated in the same pass and their firings recorded, never handed off
(shared/rules/online.py). On a cold start the evaluator records the versions it runs, once each
(shared/rules/versions.py): GET /v1/rulesets lists them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from functions.evaluator.settings import EvaluatorSettings
from shared.counters.store import BACKFILL, FIRST_SEEN_KEY, WRITTEN_BY
from shared.observability import logger, metrics, traced
from shared.rules.build import build_online_evaluator
from shared.rules.online import OnlineEvaluator, active_deployment, sqs_publisher
from shared.rules.versions import DeployedRuleset, Role, RulesetRecords, shadow_paths
from shared.settings import load_settings
from shared.storage.dynamo import aws_client, dynamodb_client
from shared.wiring import Wiring

wiring = Wiring()

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


@wiring.once
def evaluator() -> OnlineEvaluator:
    settings = load_settings(EvaluatorSettings)
    deployed = active_deployment(settings.ruleset_path, shadow_paths(settings.shadow_rulesets))
    records = RulesetRecords(dynamodb_client(), settings.registry_table)
    record_versions(deployed, records, settings, datetime.now(UTC))
    return build_online_evaluator(
        settings,
        sqs_publisher(aws_client("sqs"), settings.fired_queue_url),
        shadows=[one.ruleset for one in deployed if one.role is Role.SHADOW],
    )


def record_versions(
    deployed: tuple[DeployedRuleset, ...], records: RulesetRecords, settings: EvaluatorSettings, at: datetime
) -> None:
    """Record each version run, once. Bookkeeping must not stop the rules: a failed write is logged
    and counted (`RulesetRecordFailed`), and the next cold start records it."""
    for one in deployed:
        try:
            recorded = records.record(one, at, deployer=settings.deployer, git_revision=settings.git_revision)
        except (ClientError, BotoCoreError):
            logger.exception("ruleset version not recorded", extra={"ruleset_version": one.version})
            metrics.add_metric(name="RulesetRecordFailed", unit=MetricUnit.Count, value=1)
            continue
        if recorded:
            logger.info("ruleset version recorded", extra={"ruleset_version": one.version, "role": one.role})


@logger.inject_lambda_context
@metrics.log_metrics
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return evaluate_changed_accounts(event, evaluator(), datetime.now(UTC), context)


def evaluate_changed_accounts(
    event: dict[str, Any], online: OnlineEvaluator, at: datetime, context: LambdaContext | None = None
) -> dict[str, Any]:
    results: dict[str, BaseException | None] = {}
    parents: dict[str, str | None] = {}

    def evaluate_once(account_id: str) -> BaseException | None:
        if account_id not in results:
            try:
                evaluation = online.evaluate(account_id, at)
            except Exception as error:  # handed to the batch processor below, per record
                results[account_id] = error
            else:
                results[account_id] = None
                for firing in evaluation.firings:
                    logger.info("trigger fired", extra={"trigger": firing.trigger, "score": firing.score})
        return results[account_id]

    def evaluate_record(record: DynamoDBRecord) -> None:
        if _written_by_backfill(record):
            return
        account_id = str(record.dynamodb.keys["pk"]) if record.dynamodb and record.dynamodb.keys else None
        if not account_id:
            raise ValueError("a counters stream record without a pk key")
        if str(record.dynamodb.keys.get("sk", "")) == FIRST_SEEN_KEY:  # type: ignore[union-attr]
            # The first_seen marker: written just before a new day's bucket, whose own record
            # evaluates the account (the event-source filter drops these; a local pump may not).
            return
        failure = evaluate_once(account_id)
        if failure is None:
            if account_id not in parents:
                parents[account_id] = online.family_parent(account_id)
            parent = parents[account_id]
            failure = evaluate_once(parent) if parent else None
        if failure is not None:
            raise failure

    answer = process_partial_response(
        event=event, record_handler=evaluate_record, processor=processor, context=context
    )
    return dict(answer)


def _written_by_backfill(record: DynamoDBRecord) -> bool:
    image = (record.dynamodb.new_image if record.dynamodb else None) or {}
    return image.get(WRITTEN_BY) == BACKFILL
