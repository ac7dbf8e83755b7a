"""Delivery: the HubSpot sender and the HubSpot read-back poller (the only readers of the HubSpot
token), the email sender (SES) and the webhook sender (the only reader of the webhooks' signing
secrets)."""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from shared.resources import (
    ACCOUNTS_COMPANY_INDEX,
    ACCOUNTS_TABLE,
    DELIVERIES_TABLE,
    EMAIL_SENDER_FUNCTION,
    HUBSPOT_DLQ_ENV,
    HUBSPOT_POLLER_FUNCTION,
    HUBSPOT_QUEUE,
    HUBSPOT_SECRET_ENV,
    HUBSPOT_SENDER_FUNCTION,
    OUTCOMES_TABLE,
    PLAYS_TABLE,
    RETENTION_DAYS_ENV,
    SENDER_EMAIL_ENV,
    SLACK_BOT_TOKEN_SECRET_ENV,
    SLACK_DLQ_ENV,
    SLACK_QUEUE,
    SLACK_SENDER_FUNCTION,
    WEBHOOK_DLQ_ENV,
    WEBHOOK_QUEUE,
    WEBHOOK_SENDER_FUNCTION,
)
from shared.rules.plays import WEBHOOK_SECRET_PREFIX
from shared.timezones import PORTAL_TIMEZONE_ENV

from .acknowledge import acknowledge
from .function import LambdaPackage, UpswingFunction
from .queues import QueueWithDlq
from .routing import SCHEDULE
from .settings import UpswingSettings
from .storage import Storage

# At most this many senders run at once (the least Lambda allows), so each paces itself to half
# the app's HubSpot limit and together they stay under it.
HUBSPOT_SENDER_CONCURRENCY = 2
# The read-back poller: a run stops starting requests 15 s before this, and runs every SCHEDULE.
_DELIVERY_LEDGER_ACTIONS = [
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
]


class Delivery(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        package: LambdaPackage,
        storage: Storage,
        settings: UpswingSettings,
        hubspot_queue: QueueWithDlq,
        email_queue: QueueWithDlq,
        webhook_queue: QueueWithDlq,
        slack_queue: QueueWithDlq,
    ) -> None:
        super().__init__(scope, construct_id)
        deliveries_table = storage.table(DELIVERIES_TABLE)
        plays_table = storage.table(PLAYS_TABLE)
        accounts_table = storage.table(ACCOUNTS_TABLE)
        outcomes_table = storage.table(OUTCOMES_TABLE)

        self.hubspot_secret = secretsmanager.Secret(
            self,
            "HubSpotToken",
            secret_name=settings.hubspot_secret,
            description="HubSpot private-app token for the Upswing task sender (put the token here)",
        )
        acknowledge(
            self.hubspot_secret,
            "AwsSolutions-SMG4",
            "A HubSpot private-app token is rotated in HubSpot, not by a Lambda; the sender re-reads "
            "the secret every five minutes, so a rotated token is picked up without a deploy.",
        )
        self.hubspot_sender = UpswingFunction(
            self,
            "HubSpotSender",
            spec=HUBSPOT_SENDER_FUNCTION,
            package=package,
            description="Creates one HubSpot task per play",
            environment={
                DELIVERIES_TABLE.env_var: deliveries_table.table_name,
                PLAYS_TABLE.env_var: plays_table.table_name,
                ACCOUNTS_TABLE.env_var: accounts_table.table_name,
                HUBSPOT_QUEUE.env_var: hubspot_queue.queue.queue_url,
                HUBSPOT_DLQ_ENV: hubspot_queue.dead_letter_queue.queue_url,
                HUBSPOT_SECRET_ENV: self.hubspot_secret.secret_arn,
                RETENTION_DAYS_ENV: str(settings.retention_days),
                "HUBSPOT_REQUESTS_PER_10S": str(settings.hubspot_requests_per_10s),
                PORTAL_TIMEZONE_ENV: settings.hubspot_portal_timezone,
                "HUBSPOT_SENDER_CONCURRENCY": str(HUBSPOT_SENDER_CONCURRENCY),
                "HUBSPOT_DUE_HOUR": str(settings.hubspot_due_hour),
                "HUBSPOT_PLAY_ID_PROPERTY": settings.hubspot_play_id_property or "",
            },
        )
        self.hubspot_secret.grant_read(self.hubspot_sender.function)
        # The deliveries ledger, and the shared search pacer's item in the same table.
        self.hubspot_sender.allow(_DELIVERY_LEDGER_ACTIONS, deliveries_table.table_arn)
        # On the play: the task id, or HubSpot's refusal, and a delivery's problems (updates); the
        # task's entry for the read-back (a conditional put in the `hubspot#tasks` partition).
        self.hubspot_sender.allow(["dynamodb:UpdateItem", "dynamodb:PutItem"], plays_table.table_arn)
        # A company found by domain, on the account's item (a conditional update; never the profile).
        self.hubspot_sender.allow(["dynamodb:UpdateItem"], accounts_table.table_arn)
        hubspot_queue.dead_letter_queue.grant_send_messages(self.hubspot_sender.function)
        self.hubspot_sender.function.add_event_source(
            event_sources.SqsEventSource(
                hubspot_queue.queue,
                batch_size=10,
                max_concurrency=HUBSPOT_SENDER_CONCURRENCY,
                report_batch_item_failures=True,
            )
        )

        self.hubspot_poller = UpswingFunction(
            self,
            "HubSpotPoller",
            spec=HUBSPOT_POLLER_FUNCTION,
            package=package,
            description="Reads HubSpot back: Upswing's tasks (completed, deleted, ...), closed-won deals",
            environment={
                DELIVERIES_TABLE.env_var: deliveries_table.table_name,
                PLAYS_TABLE.env_var: plays_table.table_name,
                HUBSPOT_SECRET_ENV: self.hubspot_secret.secret_arn,
                RETENTION_DAYS_ENV: str(settings.retention_days),
                PORTAL_TIMEZONE_ENV: settings.hubspot_portal_timezone,
                "HUBSPOT_PLAY_ID_PROPERTY": settings.hubspot_play_id_property or "",
                **self._deal_environment(settings, accounts_table.table_name, outcomes_table.table_name),
            },
        )
        self.hubspot_secret.grant_read(self.hubspot_poller.function)
        # The task registry (batch get, the deletion sweep's query), the watermark item, and the
        # facts it records on plays: reads and updates, no puts or deletes.
        self.hubspot_poller.allow(
            ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:UpdateItem"],
            plays_table.table_arn,
        )
        # The search pacer's item, shared with the senders (one budget per HubSpot account).
        self.hubspot_poller.allow(["dynamodb:GetItem", "dynamodb:UpdateItem"], deliveries_table.table_arn)
        if settings.hubspot_read_deals:
            # Deals: company id → account ids (the keys-only index only, never the profiles), and the
            # outcome's conditional put (no update, no delete: an outcome is written once).
            self.hubspot_poller.allow(
                ["dynamodb:Query"], f"{accounts_table.table_arn}/index/{ACCOUNTS_COMPANY_INDEX.name}"
            )
            self.hubspot_poller.allow(["dynamodb:PutItem"], outcomes_table.table_arn)
        events.Rule(
            self,
            "PollHubSpotEvery5Minutes",
            description="Read Upswing's HubSpot tasks back",
            schedule=events.Schedule.rate(SCHEDULE),
            targets=[targets.LambdaFunction(self.hubspot_poller.function, retry_attempts=0)],
        )

        self.email_sender = UpswingFunction(
            self,
            "EmailSender",
            spec=EMAIL_SENDER_FUNCTION,
            package=package,
            description="Emails each play to its owner through SES",
            environment={
                DELIVERIES_TABLE.env_var: deliveries_table.table_name,
                SENDER_EMAIL_ENV: settings.sender_email,
                RETENTION_DAYS_ENV: str(settings.retention_days),
            },
        )
        self.email_sender.allow(_DELIVERY_LEDGER_ACTIONS, deliveries_table.table_arn)
        # SES authorizes a send against the sender's identity: the address, or its verified domain.
        domain = settings.sender_email.split("@", 1)[1]
        self.email_sender.allow(
            ["ses:SendEmail"],
            *(
                Stack.of(self).format_arn(service="ses", resource="identity", resource_name=name)
                for name in (settings.sender_email, domain)
            ),
        )
        self.email_sender.function.add_event_source(
            event_sources.SqsEventSource(
                email_queue.queue,
                batch_size=10,
                max_batching_window=Duration.seconds(1),
                report_batch_item_failures=True,
            )
        )

        self.slack_token = secretsmanager.Secret(
            self,
            "SlackBotToken",
            secret_name=settings.slack_bot_token_secret,
            description="Slack bot token (xoxb-...) for the Upswing Slack sender (put the token here)",
        )
        acknowledge(
            self.slack_token,
            "AwsSolutions-SMG4",
            "A Slack bot token is rotated in Slack (reinstalling the app), not by a Lambda; the sender "
            "re-reads the secret every five minutes.",
        )
        self.slack_sender = UpswingFunction(
            self,
            "SlackSender",
            spec=SLACK_SENDER_FUNCTION,
            package=package,
            description="Messages each play to its owner or channel in Slack",
            environment={
                DELIVERIES_TABLE.env_var: deliveries_table.table_name,
                PLAYS_TABLE.env_var: plays_table.table_name,
                SLACK_QUEUE.env_var: slack_queue.queue.queue_url,
                SLACK_DLQ_ENV: slack_queue.dead_letter_queue.queue_url,
                SLACK_BOT_TOKEN_SECRET_ENV: self.slack_token.secret_arn,
                RETENTION_DAYS_ENV: str(settings.retention_days),
                **({"HUBSPOT_PORTAL_ID": settings.hubspot_portal_id} if settings.hubspot_portal_id else {}),
            },
        )
        self.slack_token.grant_read(self.slack_sender.function)
        self.slack_sender.allow(_DELIVERY_LEDGER_ACTIONS, deliveries_table.table_arn)
        # On the play: a refusal Slack gave (delivery_problems), nothing else.
        self.slack_sender.allow(["dynamodb:UpdateItem"], plays_table.table_arn)
        slack_queue.dead_letter_queue.grant_send_messages(self.slack_sender.function)
        self.slack_sender.function.add_event_source(
            event_sources.SqsEventSource(
                slack_queue.queue,
                batch_size=10,
                max_batching_window=Duration.seconds(1),
                # Two at once: each paces itself to a post a second, Slack's pace per channel.
                max_concurrency=2,
                report_batch_item_failures=True,
            )
        )

        self.webhook_sender = UpswingFunction(
            self,
            "WebhookSender",
            spec=WEBHOOK_SENDER_FUNCTION,
            package=package,
            description="POSTs each play, signed, to its webhook destinations",
            environment={
                DELIVERIES_TABLE.env_var: deliveries_table.table_name,
                WEBHOOK_QUEUE.env_var: webhook_queue.queue.queue_url,
                WEBHOOK_DLQ_ENV: webhook_queue.dead_letter_queue.queue_url,
                RETENTION_DAYS_ENV: str(settings.retention_days),
            },
        )
        # Claim, then record what the destination accepted: no deletes (a claim is never released).
        self.webhook_sender.allow(
            ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"], deliveries_table.table_arn
        )
        # The signing secrets the rules file names: all under one prefix (docs/decisions.md, 40).
        webhook_secrets = Stack.of(self).format_arn(
            service="secretsmanager",
            resource="secret",
            resource_name=f"{WEBHOOK_SECRET_PREFIX}*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.webhook_sender.allow(["secretsmanager:GetSecretValue"], webhook_secrets)
        acknowledge(
            self.webhook_sender.role,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:"
            f"secret:{WEBHOOK_SECRET_PREFIX}*]",
            "The webhook destinations and their signing secrets are declared in the rules file, which "
            "changes without a deploy; the sender may read the secrets under upswing/webhooks/ only.",
        )
        webhook_queue.dead_letter_queue.grant_send_messages(self.webhook_sender.function)
        self.webhook_sender.function.add_event_source(
            event_sources.SqsEventSource(
                webhook_queue.queue,
                batch_size=10,
                max_batching_window=Duration.seconds(1),
                report_batch_item_failures=True,
            )
        )

    @staticmethod
    def _deal_environment(
        settings: UpswingSettings, accounts_table: str, outcomes_table: str
    ) -> dict[str, str]:
        """The poller's deal read-back settings (functions/hubspot_poller/settings.py)."""
        if not settings.hubspot_read_deals:
            return {"HUBSPOT_READ_DEALS": "false"}
        return {
            "HUBSPOT_READ_DEALS": "true",
            ACCOUNTS_TABLE.env_var: accounts_table,
            OUTCOMES_TABLE.env_var: outcomes_table,
            "HUBSPOT_DEAL_CLOSED_WON_STAGES": settings.hubspot_deal_closed_won_stages,
            "HUBSPOT_DEAL_PIPELINES": settings.hubspot_deal_pipelines,
            "HUBSPOT_DEAL_KIND_PROPERTY": settings.hubspot_deal_kind_property or "",
            "HUBSPOT_DEAL_DEFAULT_KIND": settings.hubspot_deal_default_kind,
            "HUBSPOT_DEAL_EXCLUDED_TYPES": settings.hubspot_deal_excluded_types,
            "HUBSPOT_COMPANY_CURRENCY": settings.hubspot_company_currency,
        }
