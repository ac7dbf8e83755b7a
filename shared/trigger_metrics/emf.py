"""The live trigger counts as CloudWatch metrics (EMF), with a `trigger` dimension.

Published after the transaction that counted them committed, one EMF document per transition, from
their own (ephemeral) metrics object: the shared `metrics` of shared/observability.py keeps its
single `service` dimension, so no other metric gains a `trigger` dimension. These metrics feed the
business dashboard; the exact numbers are the cohort items behind GET /v1/triggers (an EMF line can
be lost with its invocation; a count in DynamoDB cannot).
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from shared.resources import METRICS_NAMESPACE, SERVICE_NAME
from shared.trigger_metrics.counters import Count, Tally

TRIGGER_DIMENSION = "trigger"
CURRENCY_DIMENSION = "currency"
METRIC_NAMES = {
    Count.FIRINGS: "TriggerFired",
    Count.ROUTED: "TriggerRouted",
    Count.DEFERRED: "TriggerDeferred",
    Count.SUPPRESSED: "TriggerSuppressed",
    Count.ESCALATED: "TriggerEscalated",
    Count.WORKED: "TriggerWorked",
    Count.EXPANDED: "TriggerExpanded",
    Count.HELD_OUT: "TriggerHeldOut",
    Count.SHADOW: "TriggerShadow",
}
HOURS_TO_WORK_METRIC = "TriggerHoursToWork"
AMOUNT_METRIC = "TriggerExpansionAmount"


def publish(tally: Tally) -> None:
    """Emit what a committed transition counted."""
    counts = _metrics(tally.cohort.trigger)
    for count, value in tally.counts.items():
        if value:
            counts.add_metric(name=METRIC_NAMES[count], unit=MetricUnit.Count, value=value)
    if tally.hours_to_work is not None:
        counts.add_metric(
            name=HOURS_TO_WORK_METRIC, unit=MetricUnit.NoUnit, value=max(0.0, tally.hours_to_work)
        )
    counts.flush_metrics()
    if tally.amount is not None:
        # Amounts in different currencies cannot be added up: the currency is a dimension too.
        currency, amount = tally.amount
        amounts = _metrics(tally.cohort.trigger)
        amounts.add_dimension(name=CURRENCY_DIMENSION, value=currency)
        amounts.add_metric(name=AMOUNT_METRIC, unit=MetricUnit.NoUnit, value=float(amount))
        amounts.flush_metrics()


def _metrics(trigger: str) -> EphemeralMetrics:
    metrics = EphemeralMetrics(namespace=METRICS_NAMESPACE, service=SERVICE_NAME)
    metrics.add_dimension(name=TRIGGER_DIMENSION, value=trigger)
    return metrics
