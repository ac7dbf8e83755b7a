"""Ledger stream → day buckets. Triggered by INSERT records of the events table only."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.aggregator.settings import AggregatorSettings
from shared.counters.aggregate import CountedEvent, aggregate, counted_event
from shared.counters.slices import NO_SLICING, Slicing
from shared.counters.store import CounterStore
from shared.observability import logger, metrics, traced
from shared.rules.loading import load_ruleset
from shared.rules.online import BUNDLE_ROOT
from shared.rules.slicing import ruleset_slicing
from shared.rules.versions import shadow_paths
from shared.settings import load_settings
from shared.storage.dynamo import dynamodb_client
from shared.wiring import Wiring

wiring = Wiring()


@wiring.once
def counter_store() -> CounterStore:
    settings = load_settings(AggregatorSettings)
    return CounterStore(dynamodb_client(), settings.counters_table, settings.retention_days)


@wiring.once
def slicing() -> Slicing:
    """The slices the live and shadow rulesets filter or group by (the evaluator reads the same files)."""
    settings = load_settings(AggregatorSettings)
    paths = [settings.ruleset_path, *shadow_paths(settings.shadow_rulesets)]
    return ruleset_slicing(*(load_ruleset(BUNDLE_ROOT / path) for path in paths))


@logger.inject_lambda_context
@metrics.log_metrics
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_stream_batch(event, counter_store(), slicing())


def process_stream_batch(
    event: dict[str, Any], store: CounterStore, slicing: Slicing = NO_SLICING
) -> dict[str, Any]:
    """Apply the batch; report the earliest failed record so Lambda retries from there.

    A stream batch is retried from the lowest reported sequence number on, so everything after it
    comes back too; that is safe because buckets skip what they have already absorbed. A record
    that cannot be decoded fails the same way and, after the retries and bisections, reaches the
    on-failure destination instead of blocking the shard.
    """
    counted: list[CountedEvent] = []
    failed: list[str] = []
    for record in event.get("Records", []):
        stream_data = record.get("dynamodb", {})
        if record.get("eventName") != "INSERT":
            continue  # the event-source filter drops these already; a local pump may not
        try:
            counted.append(counted_event(stream_data["SequenceNumber"], stream_data["NewImage"]))
        except (KeyError, TypeError, ValueError, ArithmeticError) as error:
            logger.error("undecodable ledger record", extra={"error": type(error).__name__})
            failed.append(stream_data.get("SequenceNumber", ""))
    result = aggregate(counted, store, slicing)
    failed.extend(event.stream_sequence for event in result.failed)
    metrics.add_metric(name="EventsCounted", unit=MetricUnit.Count, value=result.applied)
    metrics.add_metric(name="EventsReplayed", unit=MetricUnit.Count, value=result.replayed)
    if not failed:
        return {"batchItemFailures": []}
    metrics.add_metric(name="AggregationFailures", unit=MetricUnit.Count, value=len(failed))
    earliest = min(failed, key=lambda sequence: (len(sequence), sequence))
    return {"batchItemFailures": [{"itemIdentifier": earliest}]}
