"""Routing: the play router on the fired queue, the scheduler that releases waiting plays, and one
delivery queue per channel (HubSpot tasks, email, Slack, webhooks)."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from shared.resources import (
    ACCOUNTS_PARENT_INDEX,
    ACCOUNTS_TABLE,
    COUNTERS_TABLE,
    EMAIL_QUEUE,
    EMAIL_SENDER_FUNCTION,
    EVENT_BUS_ENV,
    FIRINGS_TABLE,
    HUBSPOT_QUEUE,
    HUBSPOT_SENDER_FUNCTION,
    PLAYS_DUE_INDEX,
    PLAYS_TABLE,
    RETENTION_DAYS_ENV,
    ROUTER_FUNCTION,
    RULESET_PATH_ENV,
    SCHEDULER_FUNCTION,
    SLACK_QUEUE,
    SLACK_SENDER_FUNCTION,
    WEBHOOK_QUEUE,
    WEBHOOK_SENDER_FUNCTION,
)
from shared.timezones import PORTAL_TIMEZONE_ENV

from .function import LambdaPackage, UpswingFunction
from .queues import queue_with_dlq
from .settings import UpswingSettings
from .storage import Storage

SCHEDULE = Duration.minutes(5)
_PLAY_LEDGER_ACTIONS = [
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:BatchGetItem",  # least-loaded pools read the owners' counters together
    "dynamodb:Query",
]


class Routing(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        package: LambdaPackage,
        storage: Storage,
        settings: UpswingSettings,
        fired_queue: sqs.IQueue,
        event_bus: events.IEventBus,
    ) -> None:
        super().__init__(scope, construct_id)
        plays_table = storage.table(PLAYS_TABLE)
        accounts_table = storage.table(ACCOUNTS_TABLE)
        hubspot = queue_with_dlq(self, HUBSPOT_QUEUE, consumer=HUBSPOT_SENDER_FUNCTION)
        email = queue_with_dlq(self, EMAIL_QUEUE, consumer=EMAIL_SENDER_FUNCTION)
        slack = queue_with_dlq(self, SLACK_QUEUE, consumer=SLACK_SENDER_FUNCTION)
        webhook = queue_with_dlq(self, WEBHOOK_QUEUE, consumer=WEBHOOK_SENDER_FUNCTION)
        self.hubspot_queue = hubspot
        self.email_queue = email
        self.slack_queue = slack
        self.webhook_queue = webhook
        environment = {
            PLAYS_TABLE.env_var: plays_table.table_name,
            ACCOUNTS_TABLE.env_var: accounts_table.table_name,
            HUBSPOT_QUEUE.env_var: hubspot.queue.queue_url,
            EMAIL_QUEUE.env_var: email.queue.queue_url,
            SLACK_QUEUE.env_var: slack.queue.queue_url,
            WEBHOOK_QUEUE.env_var: webhook.queue.queue_url,
            EVENT_BUS_ENV: event_bus.event_bus_name,
            RULESET_PATH_ENV: settings.ruleset_path,
            RETENTION_DAYS_ENV: str(settings.retention_days),
            PORTAL_TIMEZONE_ENV: settings.hubspot_portal_timezone,
            "AUTO_CLOSE_CHECK_MINUTES": str(settings.auto_close_check_hours * 60),
        }

        self.router = UpswingFunction(
            self,
            "Router",
            spec=ROUTER_FUNCTION,
            package=package,
            description="Routes each firing's play: owner, budgets, channels",
            environment=environment,
        )
        self.router.function.add_event_source(
            event_sources.SqsEventSource(
                fired_queue,
                batch_size=10,
                max_batching_window=Duration.seconds(1),
                report_batch_item_failures=True,
            )
        )

        counters_table = storage.table(COUNTERS_TABLE)
        firings_table = storage.table(FIRINGS_TABLE)
        self.scheduler = UpswingFunction(
            self,
            "Scheduler",
            spec=SCHEDULER_FUNCTION,
            package=package,
            description="Releases deferred plays and due escalation tiers",
            environment={
                **environment,
                COUNTERS_TABLE.env_var: counters_table.table_name,
                FIRINGS_TABLE.env_var: firings_table.table_name,
            },
        )
        # Whether an escalation's signal still holds: the rules' read plan and the trigger state.
        self.scheduler.allow(["dynamodb:Query"], counters_table.table_arn)
        self.scheduler.allow(["dynamodb:GetItem"], firings_table.table_arn)
        # The due index, read page by page.
        self.scheduler.allow(["dynamodb:Query"], f"{plays_table.table_arn}/index/{PLAYS_DUE_INDEX.name}")
        # Its escalation and auto-close checks evaluate the rules: a family-scope rule reads the
        # family's members from the accounts' `parent` index.
        self.scheduler.allow(
            ["dynamodb:Query"], f"{accounts_table.table_arn}/index/{ACCOUNTS_PARENT_INDEX.name}"
        )
        events.Rule(
            self,
            "Every5Minutes",
            description="Release the plays whose time has come",
            schedule=events.Schedule.rate(SCHEDULE),
            targets=[targets.LambdaFunction(self.scheduler.function, retry_attempts=0)],
        )

        for function in (self.router, self.scheduler):
            function.allow(_PLAY_LEDGER_ACTIONS, plays_table.table_arn)
            function.allow(["dynamodb:GetItem"], accounts_table.table_arn)
            for channel_queue in (hubspot, email, slack, webhook):
                channel_queue.queue.grant_send_messages(function.function)
            event_bus.grant_put_events_to(function.function)

        self.dead_letter_queues: list[sqs.IQueue] = [
            channel_queue.dead_letter_queue for channel_queue in (hubspot, email, slack, webhook)
        ]
