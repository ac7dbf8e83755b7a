"""Every AWS resource Upswing needs, described once.

The CDK stack (infra/) and the local stack (upswing/local/) both build their tables, queues and
bus from these specs, so keys, stream settings and names cannot drift apart. Functions find the
deployed names through the environment variables named here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum


class StreamView(StrEnum):
    NEW_IMAGE = "NEW_IMAGE"
    NEW_AND_OLD_IMAGES = "NEW_AND_OLD_IMAGES"


@dataclass(frozen=True)
class IndexSpec:
    """A global secondary index (string keys; every attribute projected, or only the keys)."""

    name: str
    partition_key: str
    sort_key: str
    keys_only: bool = False  # a lookup index: the table's keys are all a reader needs


@dataclass(frozen=True)
class TableSpec:
    construct_id: str
    env_var: str
    partition_key: str
    sort_key: str | None = None
    ttl_attribute: str | None = None
    stream: StreamView | None = None
    indexes: tuple[IndexSpec, ...] = ()

    def local_name(self, prefix: str) -> str:
        return f"{prefix}-{self.construct_id.lower()}"


@dataclass(frozen=True)
class QueueSpec:
    construct_id: str
    env_var: str
    retention_days: int = 4
    max_receive_count: int = 5

    def local_name(self, prefix: str) -> str:
        return f"{prefix}-{self.construct_id.lower()}"


# Event ledger: one item per accepted event, keyed (account_id, event_id). The conditional put
# of this item *is* the deduplication; its stream feeds the aggregator.
EVENTS_TABLE = TableSpec(
    construct_id="Events",
    env_var="EVENTS_TABLE",
    partition_key="pk",
    sort_key="sk",
    ttl_attribute="expires_at",
    stream=StreamView.NEW_IMAGE,
)

# Counters: one item per (account, UTC day) holding every metric of that day. Its stream (old and
# new images) feeds the rules evaluator.
COUNTERS_TABLE = TableSpec(
    construct_id="Counters",
    env_var="COUNTERS_TABLE",
    partition_key="pk",
    sort_key="sk",
    ttl_attribute="expires_at",
    stream=StreamView.NEW_AND_OLD_IMAGES,
)

# Account profiles (segment, plan, owners, flags) written by PUT /v1/accounts/{account_id}. A
# profile naming a HubSpot company carries its id as `hubspot_company_id`, in the sparse keys-only
# `hubspot_company` index: HubSpot company id → account ids, for the deal read-back.
ACCOUNTS_COMPANY_INDEX = IndexSpec(
    name="hubspot_company", partition_key="hubspot_company_id", sort_key="pk", keys_only=True
)
# A child account (its profile names `parent_account_id`) carries the parent's id as a top-level
# attribute too, in the sparse keys-only `parent` index: parent → children, for family-scope rules.
ACCOUNTS_PARENT_INDEX = IndexSpec(
    name="parent", partition_key="parent_account_id", sort_key="pk", keys_only=True
)
ACCOUNTS_TABLE = TableSpec(
    construct_id="Accounts",
    env_var="ACCOUNTS_TABLE",
    partition_key="pk",
    indexes=(ACCOUNTS_COMPANY_INDEX, ACCOUNTS_PARENT_INDEX),
)

# Small configuration items: producer key hashes and the kind each metric name is registered as.
REGISTRY_TABLE = TableSpec(construct_id="Registry", env_var="REGISTRY_TABLE", partition_key="pk")

# The firing ledger: per account, one `state` item (trigger cooldowns, arming, last contact,
# firings not yet handed off) and one item per firing with its evidence.
FIRINGS_TABLE = TableSpec(
    construct_id="Firings",
    env_var="FIRINGS_TABLE",
    partition_key="pk",
    sort_key="sk",
    ttl_attribute="expires_at",
)

# The play ledger: one item per play tier of a firing (accepted, deferred, scheduled, routed,
# suppressed, lapsed), plus the fatigue-budget and fallback-pool counters. Deferred and scheduled
# plays are in the sparse `due` index until the scheduler releases them.
PLAYS_DUE_INDEX = IndexSpec(name="due", partition_key="due_shard", sort_key="due_at")
PLAYS_TABLE = TableSpec(
    construct_id="Plays",
    env_var="PLAYS_TABLE",
    partition_key="pk",
    sort_key="sk",
    ttl_attribute="expires_at",
    indexes=(PLAYS_DUE_INDEX,),
)

# The senders' idempotency ledger: one item per (channel, play id), holding what was delivered
# (the HubSpot task id, the SES message id).
DELIVERIES_TABLE = TableSpec(
    construct_id="Deliveries", env_var="DELIVERIES_TABLE", partition_key="pk", ttl_attribute="expires_at"
)

# Outcomes (expansions, upgrades, contractions, churn) per account: one item per
# (account_id, outcome_id), written once by a conditional put like the event ledger. Its stream
# (new items) feeds the attributor, which tells the plays their account expanded.
OUTCOMES_TABLE = TableSpec(
    construct_id="Outcomes",
    env_var="OUTCOMES_TABLE",
    partition_key="pk",
    sort_key="sk",
    ttl_attribute="expires_at",
    stream=StreamView.NEW_IMAGE,
)

TABLES = (
    EVENTS_TABLE,
    COUNTERS_TABLE,
    ACCOUNTS_TABLE,
    REGISTRY_TABLE,
    FIRINGS_TABLE,
    PLAYS_TABLE,
    DELIVERIES_TABLE,
    OUTCOMES_TABLE,
)

# EventBridge → this queue → the bus ingest function.
BUS_INGEST_QUEUE = QueueSpec(construct_id="BusIngestQueue", env_var="BUS_INGEST_QUEUE_URL")
# Events that arrived on the bus and failed validation, kept with the reason for 14 days.
REJECTS_QUEUE = QueueSpec(construct_id="RejectsQueue", env_var="REJECTS_QUEUE_URL", retention_days=14)
# `trigger.fired` messages, one per firing, for the play router.
FIRED_QUEUE = QueueSpec(construct_id="FiredQueue", env_var="FIRED_QUEUE_URL", retention_days=14)
# Play deliveries, one queue per channel. HubSpot's daily limit can hold a message back for hours,
# so its queue allows more receives before the DLQ.
HUBSPOT_QUEUE = QueueSpec(
    construct_id="HubSpotQueue", env_var="HUBSPOT_QUEUE_URL", retention_days=14, max_receive_count=10
)
# The HubSpot sender dead-letters a message HubSpot rejects for good itself, with HubSpot's message.
HUBSPOT_DLQ_ENV = "HUBSPOT_DLQ_URL"
EMAIL_QUEUE = QueueSpec(construct_id="EmailQueue", env_var="EMAIL_QUEUE_URL", retention_days=14)
# Slack messages; Slack's rate limits and Retry-After can hold one back for a while.
SLACK_QUEUE = QueueSpec(
    construct_id="SlackQueue", env_var="SLACK_QUEUE_URL", retention_days=14, max_receive_count=10
)
# Signed webhooks: a destination that answers 5xx or times out is retried with a growing delay
# (the sender sets the message's visibility), up to 10 receives, then the DLQ; the sender
# dead-letters a refusal for good (4xx other than 408 and 429) itself, with the reason.
WEBHOOK_QUEUE = QueueSpec(
    construct_id="WebhookQueue", env_var="WEBHOOK_QUEUE_URL", retention_days=14, max_receive_count=10
)
SLACK_DLQ_ENV = "SLACK_DLQ_URL"
WEBHOOK_DLQ_ENV = "WEBHOOK_DLQ_URL"

QUEUES = (
    BUS_INGEST_QUEUE,
    REJECTS_QUEUE,
    FIRED_QUEUE,
    HUBSPOT_QUEUE,
    EMAIL_QUEUE,
    SLACK_QUEUE,
    WEBHOOK_QUEUE,
)

EVENT_BUS_ENV = "EVENT_BUS_NAME"
# The Firehose delivery stream the archiver puts accepted events on (the Parquet archive on S3).
ARCHIVE_STREAM_ENV = "ARCHIVE_DELIVERY_STREAM"
# How far back events are accepted and how long ledger and counters keep them (days).
RETENTION_DAYS_ENV = "RETENTION_DAYS"
# "true" loads Powertools' Tracer (X-Ray SDK) in every function: see shared/observability.py.
DETAILED_TRACING_ENV = "UPSWING_DETAILED_TRACING"
# The ruleset file the evaluator runs, relative to the bundle (rules/ is packaged with the code).
RULESET_PATH_ENV = "RULESET_PATH"
DEFAULT_RULESET_PATH = "rules/reference.yaml"
# The shadow rulesets, comma-separated files under rules/ (evaluated and recorded, never routed).
SHADOW_RULESETS_ENV = "SHADOW_RULESETS"
# Who deployed and from which git revision, as the synth was told (recorded with each version).
RULESET_DEPLOYER_ENV = "RULESET_DEPLOYER"
RULESET_GIT_REVISION_ENV = "RULESET_GIT_REVISION"
USAGE_EVENT_DETAIL_TYPE = "usage.event"
OUTCOME_DETAIL_TYPE = "outcome"
# What the bus ingest function takes from the bus: the rule's pattern (CDK and local stack).
BUS_INTAKE_DETAIL_TYPES = (USAGE_EVENT_DETAIL_TYPE, OUTCOME_DETAIL_TYPE)
PLAY_ROUTED_DETAIL_TYPE = "play.routed"
EVENT_SOURCE = "upswing"
# The Secrets Manager secret (name or ARN) holding the HubSpot private-app token; only the
# HubSpot sender may read it. The token itself is never in the environment.
HUBSPOT_SECRET_ENV = "HUBSPOT_SECRET_ID"  # noqa: S105 (a variable name, not a secret)
# The Slack bot token (xoxb-..., only the Slack sender may read it) and the Slack app's signing
# secret (only the API may read it: it verifies POST /v1/slack/interactions), by secret name or ARN.
SLACK_BOT_TOKEN_SECRET_ENV = "SLACK_BOT_SECRET_ID"  # noqa: S105 (a variable name, not a secret)
SLACK_SIGNING_SECRET_ENV = "SLACK_SIGNING_SECRET_ID"  # noqa: S105 (a variable name, not a secret)
# The verified SES identity the email sender sends from.
SENDER_EMAIL_ENV = "SENDER_EMAIL"
SERVICE_NAME = "upswing"
METRICS_NAMESPACE = "Upswing"


@dataclass(frozen=True)
class FunctionSpec:
    """A Lambda function: its handler, timeout and memory, stated once for the stack (infra) and for
    the code whose exactly-once reasoning depends on them (a sender treats a claim younger than its
    own timeout as possibly still running)."""

    handler: str
    timeout_seconds: int
    memory_mb: int = 512

    @property
    def timeout(self) -> timedelta:
        return timedelta(seconds=self.timeout_seconds)


API_FUNCTION = FunctionSpec("functions.api.handler.handler", 10)
AUTHORIZER_FUNCTION = FunctionSpec("functions.authorizer.handler.handler", 5)
BUS_INGEST_FUNCTION = FunctionSpec("functions.bus_ingest.handler.handler", 30)
AGGREGATOR_FUNCTION = FunctionSpec("functions.aggregator.handler.handler", 60)
EVALUATOR_FUNCTION = FunctionSpec("functions.evaluator.handler.handler", 60)
ROUTER_FUNCTION = FunctionSpec("functions.router.handler.handler", 30)
SCHEDULER_FUNCTION = FunctionSpec("functions.router.scheduler.handler", 120)
HUBSPOT_SENDER_FUNCTION = FunctionSpec("functions.hubspot_sender.handler.handler", 60)
EMAIL_SENDER_FUNCTION = FunctionSpec("functions.email_sender.handler.handler", 30)
SLACK_SENDER_FUNCTION = FunctionSpec("functions.slack_sender.handler.handler", 30)
WEBHOOK_SENDER_FUNCTION = FunctionSpec("functions.webhook_sender.handler.handler", 60)
HUBSPOT_POLLER_FUNCTION = FunctionSpec("functions.hubspot_poller.handler.handler", 120)
ATTRIBUTOR_FUNCTION = FunctionSpec("functions.attributor.handler.handler", 60)
ARCHIVER_FUNCTION = FunctionSpec("functions.archiver.handler.handler", 60, memory_mb=256)
FUNCTIONS = (
    API_FUNCTION,
    AUTHORIZER_FUNCTION,
    BUS_INGEST_FUNCTION,
    AGGREGATOR_FUNCTION,
    EVALUATOR_FUNCTION,
    ROUTER_FUNCTION,
    SCHEDULER_FUNCTION,
    HUBSPOT_SENDER_FUNCTION,
    EMAIL_SENDER_FUNCTION,
    SLACK_SENDER_FUNCTION,
    WEBHOOK_SENDER_FUNCTION,
    HUBSPOT_POLLER_FUNCTION,
    ATTRIBUTOR_FUNCTION,
    ARCHIVER_FUNCTION,
)
