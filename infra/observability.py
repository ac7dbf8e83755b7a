"""Alarms (to one encrypted SNS topic) and a dashboard for the whole ingestion path."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from shared.resources import METRICS_NAMESPACE, SERVICE_NAME

ITERATOR_AGE_LIMIT = Duration.seconds(60)
_ONE_MINUTE = Duration.minutes(1)
_FIVE_MINUTES = Duration.minutes(5)
_ONE_DAY = Duration.days(1)
# The HubSpot sender's own metrics (EMF, functions/hubspot_sender/handler.py) that need a person: each
# alarm's description says what to do.
HUBSPOT_ALARMS = {
    "HubSpotTokenRejected": (
        "HubSpot refuses the private-app token (401: revoked, rotated or wrong). Plays are held, not "
        "lost. Put a valid token in the HubSpot secret (docs/operations.md, 'HubSpot refuses the "
        "token'); held plays are delivered within 5 minutes, no redrive needed."
    ),
    "HubSpotScopeMissing": (
        "HubSpot refuses the private-app token's scopes (403 MISSING_SCOPES). Plays are held, not "
        "lost. Grant the private app the scope the sender's log names (crm.objects.contacts.write for "
        "tasks), then store its token in the HubSpot secret; held plays follow within 5 minutes."
    ),
    "HubSpotFallbacks": (
        "HubSpot did not know a play's owner or company (a stale id): the task was created unassigned "
        "or unassociated, with a note. Fix the account's owners / hubspot ids (PUT /v1/accounts/{id}); "
        "GET /v1/accounts/{id}/signals shows the play's delivery_problems."
    ),
    "HubSpotUnresolved": (
        "A profile's owner e-mail or company domain resolved to no current HubSpot owner (unknown or "
        "archived) or to no single company: the task was created unassigned or unassociated, with a "
        "note. Fix the account's owner e-mail or hubspot.domain, or give the id (PUT /v1/accounts/{id}); "
        "GET /v1/accounts/{id}/signals shows the play's delivery_problems."
    ),
}


class Observability(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage: str,
        alarm_email: str | None,
        functions: Mapping[str, lambda_.IFunction],
        stream_consumers: Mapping[str, lambda_.IFunction],
        api_stage: apigateway.Stage,
        dead_letter_queues: Mapping[str, sqs.IQueue],
        rejects_queue: sqs.IQueue,
    ) -> None:
        super().__init__(scope, construct_id)
        self.alarm_topic = self._alarm_topic(alarm_email)
        self.alarms: list[cloudwatch.Alarm] = []

        for name, function in functions.items():
            self._alarm(
                f"{name}Errors",
                function.metric_errors(period=_ONE_MINUTE, statistic="Sum"),
                threshold=0,
                description=f"The {name} function raised errors.",
            )
        iterator_ages = {
            name: function.metric("IteratorAge", period=_ONE_MINUTE, statistic="Maximum")
            for name, function in stream_consumers.items()
        }
        for name, iterator_age in iterator_ages.items():
            self._alarm(
                f"{name}IteratorAge",
                iterator_age,
                threshold=ITERATOR_AGE_LIMIT.to_milliseconds(),
                description=f"The {name} is falling behind its stream (iterator age over 60 s).",
            )
        self._alarm(
            "Api5xx",
            api_stage.metric_server_error(period=_FIVE_MINUTES, statistic="Sum"),
            threshold=0,
            description="The HTTP API answered with 5XX errors.",
        )
        for name, queue in dead_letter_queues.items():
            self._alarm(
                f"{name}Depth",
                _queue_depth(queue),
                threshold=0,
                description=f"Messages are waiting in the {name} dead-letter queue.",
            )
        self._alarm(
            "RejectsDepth",
            _queue_depth(rejects_queue),
            threshold=0,
            description="Events on the bus failed validation; the rejects queue holds them with reasons.",
        )

        for metric_name, description in HUBSPOT_ALARMS.items():
            self._alarm(
                metric_name,
                cloudwatch.Metric(
                    namespace=METRICS_NAMESPACE,
                    metric_name=metric_name,
                    dimensions_map={"service": SERVICE_NAME},  # Powertools' default dimension
                    period=_FIVE_MINUTES,
                    statistic="Sum",
                ),
                threshold=0,
                description=description,
            )

        self._dashboard(
            stage,
            functions,
            list(iterator_ages.values()),
            api_stage,
            {**dead_letter_queues, "Rejects": rejects_queue},
        )
        self._business_dashboard(stage)

    def _alarm_topic(self, alarm_email: str | None) -> sns.Topic:
        key = kms.Key(
            self,
            "AlarmTopicKey",
            description="Encrypts Upswing alarm notifications",
            enable_key_rotation=True,
        )
        # CloudWatch publishes alarm notifications to the topic, so it must use the key.
        key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
            )
        )
        topic = sns.Topic(self, "AlarmTopic", display_name="Upswing alarms", master_key=key, enforce_ssl=True)
        if alarm_email:
            topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        return topic

    def _alarm(
        self, construct_id: str, metric: cloudwatch.IMetric, *, threshold: float, description: str
    ) -> None:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            metric=metric,
            threshold=threshold,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            # No data means nothing happened (no errors, empty queue), which is healthy.
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
        alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.alarm_topic))
        self.alarms.append(alarm)

    def _dashboard(
        self,
        stage: str,
        functions: Mapping[str, lambda_.IFunction],
        iterator_ages: list[cloudwatch.IMetric],
        api_stage: apigateway.Stage,
        queues: Mapping[str, sqs.IQueue],
    ) -> None:
        def per_function(metric_name: str, statistic: str) -> list[cloudwatch.IMetric]:
            return [
                function.metric(metric_name, statistic=statistic, period=_FIVE_MINUTES, label=name)
                for name, function in functions.items()
            ]

        cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"upswing-{stage}",
            widgets=[
                [cloudwatch.AlarmStatusWidget(title="Alarms", alarms=self.alarms, width=24)],
                [
                    cloudwatch.GraphWidget(
                        title="API requests and errors",
                        left=[
                            api_stage.metric_count(period=_FIVE_MINUTES, statistic="Sum", label="requests")
                        ],
                        right=[
                            api_stage.metric_client_error(period=_FIVE_MINUTES, statistic="Sum", label="4XX"),
                            api_stage.metric_server_error(period=_FIVE_MINUTES, statistic="Sum", label="5XX"),
                        ],
                        width=12,
                    ),
                    cloudwatch.GraphWidget(
                        title="API latency (ms)",
                        left=[
                            api_stage.metric_latency(period=_FIVE_MINUTES, statistic="p50", label="p50"),
                            api_stage.metric_latency(period=_FIVE_MINUTES, statistic="p99", label="p99"),
                        ],
                        width=12,
                    ),
                ],
                [
                    cloudwatch.GraphWidget(
                        title="Function errors", left=per_function("Errors", "Sum"), width=8
                    ),
                    cloudwatch.GraphWidget(
                        title="Function duration p99 (ms)", left=per_function("Duration", "p99"), width=8
                    ),
                    cloudwatch.GraphWidget(title="Stream iterator age (ms)", left=iterator_ages, width=8),
                ],
                [
                    cloudwatch.GraphWidget(
                        title="Dead-letter and rejects queue depth",
                        left=[_queue_depth(queue, label=name) for name, queue in queues.items()],
                        width=24,
                    )
                ],
            ],
        )

    def _business_dashboard(self, stage: str) -> None:
        """Per trigger: fired, worked, expanded, amount — one line per trigger, found by SEARCH over
        the `trigger` dimension (shared/trigger_metrics/emf.py), so a new trigger appears without a
        deploy. The exact, cohort-based numbers are GET /v1/triggers; these are their daily flow."""

        def per_trigger(metric: str, label: str, *, currency: bool = False) -> cloudwatch.MathExpression:
            dimensions = "service,trigger,currency" if currency else "service,trigger"
            return cloudwatch.MathExpression(
                expression=(
                    f"SEARCH('{{{METRICS_NAMESPACE},{dimensions}}} MetricName=\"{metric}\"', 'Sum', 86400)"
                ),
                label=label,
                period=_ONE_DAY,
            )

        def graph(title: str, *metrics: str, currency: bool = False) -> cloudwatch.GraphWidget:
            return cloudwatch.GraphWidget(
                title=title,
                left=[
                    per_trigger(metric, metric if len(metrics) > 1 else "", currency=currency)
                    for metric in metrics
                ],
                width=12,
                period=_ONE_DAY,
            )

        cloudwatch.Dashboard(
            self,
            "BusinessDashboard",
            dashboard_name=f"upswing-{stage}-triggers",
            default_interval=Duration.days(90),
            widgets=[
                [
                    cloudwatch.TextWidget(
                        markdown=(
                            "## Triggers: fired, worked, expanded\n"
                            "Daily sums per trigger (EMF, dimension `trigger`). Cohort numbers, "
                            "precision and medians: `GET /v1/triggers` (docs/api.md)."
                        ),
                        width=24,
                        height=2,
                    )
                ],
                [
                    graph("Fired per day", "TriggerFired"),
                    graph("Tasks worked per day", "TriggerWorked"),
                ],
                [
                    graph("Accounts expanded per day (attributed)", "TriggerExpanded"),
                    graph("Expansion amount per day (per currency)", "TriggerExpansionAmount", currency=True),
                ],
                [
                    graph("Routed per day", "TriggerRouted"),
                    graph("Deferred and suppressed per day", "TriggerDeferred", "TriggerSuppressed"),
                ],
            ],
        )


def _queue_depth(queue: sqs.IQueue, label: str | None = None) -> cloudwatch.Metric:
    return queue.metric_approximate_number_of_messages_visible(
        period=_ONE_MINUTE, statistic="Maximum", label=label
    )
