"""The whole of Upswing on one machine: emulated AWS, the real handlers, HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import os
import secrets as secrets_module
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from shared.events.contract import DEFAULT_RETENTION_DAYS
from shared.observability import logger
from shared.producers import ProducerKeys, Scope
from shared.resources import (
    BUS_INGEST_QUEUE,
    COUNTERS_TABLE,
    DEFAULT_RULESET_PATH,
    EMAIL_QUEUE,
    EVENTS_TABLE,
    FIRED_QUEUE,
    FUNCTIONS,
    HUBSPOT_QUEUE,
    HUBSPOT_SECRET_ENV,
    OUTCOMES_TABLE,
    PLAYS_TABLE,
    REGISTRY_TABLE,
    RETENTION_DAYS_ENV,
    RULESET_PATH_ENV,
    SENDER_EMAIL_ENV,
    SLACK_BOT_TOKEN_SECRET_ENV,
    SLACK_QUEUE,
    SLACK_SIGNING_SECRET_ENV,
    WEBHOOK_QUEUE,
)
from shared.routing.ledger import PlayLedger
from shared.routing.models import PlayRecord
from shared.storage import dynamo
from shared.wiring import reset_handlers
from upswing.local.aws import EmulatedAws, LocalResources, create_resources
from upswing.local.channel_sinks import SlackSink, WebhookSink
from upswing.local.gateway import LocalGateway
from upswing.local.hubspot_sink import HubSpotSink
from upswing.local.lambda_runtime import LocalFunction
from upswing.local.pumps import Pump, QueuePump, SchedulePump, StreamPump

# Locally, traces and EMF metrics would only be noise on the terminal.
QUIET_POWERTOOLS = {
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "POWERTOOLS_DEV": "false",
}
DEV_PRODUCER = "local-dev"
LOCAL_SENDER_EMAIL = "upswing@example.com"
HUBSPOT_SECRET_NAME = "upswing/local/hubspot-token"  # noqa: S105 (a name, not a secret)
# To send the demo's tasks to a real HubSpot portal instead of the sink (docs/operations.md).
REAL_HUBSPOT_TOKEN_ENV = "UPSWING_HUBSPOT_TOKEN"  # noqa: S105 (a variable name)
REAL_HUBSPOT_URL_ENV = "UPSWING_HUBSPOT_BASE_URL"
SINK_LOG = Path(".local/hubspot-requests.jsonl")
SLACK_SINK_LOG = Path(".local/slack-requests.jsonl")
WEBHOOK_SINK_LOG = Path(".local/webhook-requests.jsonl")
SLACK_BOT_SECRET_NAME = "upswing/local/slack-bot-token"  # noqa: S105 (a name, not a secret)
SLACK_SIGNING_SECRET_NAME = "upswing/local/slack-signing-secret"  # noqa: S105 (a name, not a secret)
# A rules file can post to the local webhook sink: webhook:local-sink with this secret and the URL
# the stack prints (docs/operations.md, "The local stack").
WEBHOOK_SECRET_NAME = "upswing/webhooks/local-sink"  # noqa: S105 (a name, not a secret)
SCHEDULER_EVERY_SECONDS = 60.0
HUBSPOT_POLLER_EVERY_SECONDS = 60.0  # 5 minutes in AWS; a minute here, like the scheduler


class LocalStack:
    def __init__(self, port: int = 0, retention_days: int = DEFAULT_RETENTION_DAYS) -> None:
        self._port = port
        self._retention_days = retention_days
        self._aws = EmulatedAws()
        self._pumps: list[Pump] = []
        self._gateway: LocalGateway | None = None
        self.hubspot_sink: HubSpotSink | None = None
        self.slack_sink: SlackSink | None = None
        self.webhook_sink: WebhookSink | None = None
        # The local Slack app's signing secret: sign a Slack interaction with it to try the route.
        self.slack_signing_secret = ""
        self._hubspot_poller: LocalFunction | None = None
        self.hubspot_url = ""
        self.resources: LocalResources | None = None
        self.aws_endpoint = ""
        self.producer_key = ""

    @property
    def endpoint(self) -> str:
        assert self._gateway, "start() the stack first"
        return self._gateway.endpoint

    def start(self) -> LocalStack:
        for name, value in QUIET_POWERTOOLS.items():
            os.environ.setdefault(name, value)
        # The shared logger may exist already (imported before the environment was set).
        logger.setLevel(os.environ["POWERTOOLS_LOG_LEVEL"])
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        self.aws_endpoint = self._aws.start()
        self.resources = create_resources()
        os.environ.update(self.resources.environment())
        os.environ[RETENTION_DAYS_ENV] = str(self._retention_days)
        self._start_delivery()

        from functions.aggregator import handler as aggregator
        from functions.api import handler as api
        from functions.attributor import handler as attributor
        from functions.authorizer import handler as authorizer
        from functions.bus_ingest import handler as bus_ingest
        from functions.email_sender import handler as email_sender
        from functions.evaluator import handler as evaluator
        from functions.hubspot_poller import handler as hubspot_poller
        from functions.hubspot_sender import handler as hubspot_sender
        from functions.router import handler as router
        from functions.router import scheduler
        from functions.slack_sender import handler as slack_sender
        from functions.webhook_sender import handler as webhook_sender

        forget_handler_dependencies()
        self._hubspot_poller = LocalFunction("hubspot_poller", hubspot_poller.handler)
        queues = self.resources.queues
        self._gateway = LocalGateway(
            LocalFunction("authorizer", authorizer.handler), LocalFunction("api", api.handler), self._port
        )
        self._pumps = [
            StreamPump(
                self.resources.stream_arns[EVENTS_TABLE.env_var],
                LocalFunction("aggregator", aggregator.handler),
            ),
            QueuePump(
                self.resources.queues[BUS_INGEST_QUEUE.env_var],
                LocalFunction("bus_ingest", bus_ingest.handler),
            ),
            # Counter changes → the rules (the CDK filter passes INSERT and MODIFY only, too).
            StreamPump(
                self.resources.stream_arns[COUNTERS_TABLE.env_var],
                LocalFunction("evaluator", evaluator.handler),
                event_names=("INSERT", "MODIFY"),
            ),
            QueuePump(queues[FIRED_QUEUE.env_var], LocalFunction("router", router.handler)),
            # New outcomes → attribution (whatever wrote them: the API, the bus, a read-back).
            StreamPump(
                self.resources.stream_arns[OUTCOMES_TABLE.env_var],
                LocalFunction("attributor", attributor.handler),
            ),
            QueuePump(queues[HUBSPOT_QUEUE.env_var], LocalFunction("hubspot_sender", hubspot_sender.handler)),
            QueuePump(queues[EMAIL_QUEUE.env_var], LocalFunction("email_sender", email_sender.handler)),
            QueuePump(queues[SLACK_QUEUE.env_var], LocalFunction("slack_sender", slack_sender.handler)),
            QueuePump(queues[WEBHOOK_QUEUE.env_var], LocalFunction("webhook_sender", webhook_sender.handler)),
            SchedulePump(
                LocalFunction("scheduler", scheduler.handler), every_seconds=SCHEDULER_EVERY_SECONDS
            ),
            SchedulePump(self._hubspot_poller, every_seconds=HUBSPOT_POLLER_EVERY_SECONDS),
        ]
        self._gateway.start()
        for pump in self._pumps:
            pump.start()
        # The developer's key does everything the demo and a person trying the API do.
        self.producer_key = self.producer_keys().issue(DEV_PRODUCER, scopes=set(Scope)).key
        return self

    def _start_delivery(self) -> None:
        """The HubSpot token secret, the SES sender identity, and HubSpot itself: the local sink,
        or a real portal when UPSWING_HUBSPOT_TOKEN is set."""
        token = os.environ.get(REAL_HUBSPOT_TOKEN_ENV)
        if token:
            self.hubspot_url = os.environ.get(REAL_HUBSPOT_URL_ENV, "https://api.hubapi.com")
        else:
            token = "local-sink-token"  # noqa: S105 (the sink accepts any bearer token)
            SINK_LOG.parent.mkdir(parents=True, exist_ok=True)
            self.hubspot_sink = HubSpotSink(SINK_LOG).start()
            self.hubspot_url = self.hubspot_sink.endpoint
            self._register_pool_owners()
        secret = dynamo.aws_client("secretsmanager").create_secret(
            Name=HUBSPOT_SECRET_NAME, SecretString=token
        )
        dynamo.aws_client("sesv2").create_email_identity(EmailIdentity=LOCAL_SENDER_EMAIL)
        self._start_channel_sinks()
        os.environ.update(
            {
                HUBSPOT_SECRET_ENV: secret["ARN"],
                "HUBSPOT_BASE_URL": self.hubspot_url,
                SENDER_EMAIL_ENV: LOCAL_SENDER_EMAIL,
                # One local sender thread: it may use the app's whole HubSpot limit.
                "HUBSPOT_SENDER_CONCURRENCY": "1",
            }
        )

    def _start_channel_sinks(self) -> None:
        """Slack and a webhook receiver on 127.0.0.1, with the secrets the senders and the API read."""
        secrets = dynamo.aws_client("secretsmanager")
        self.slack_sink = SlackSink(SLACK_SINK_LOG).start()
        bot = secrets.create_secret(Name=SLACK_BOT_SECRET_NAME, SecretString="xoxb-local-sink")
        self.slack_signing_secret = secrets_module.token_hex(16)
        signing = secrets.create_secret(
            Name=SLACK_SIGNING_SECRET_NAME,
            SecretString=json.dumps({"signing_secret": self.slack_signing_secret}),
        )
        webhook_secret = "whsec_" + secrets_module.token_hex(16)
        self.webhook_sink = WebhookSink(webhook_secret, WEBHOOK_SINK_LOG).start()
        secrets.create_secret(Name=WEBHOOK_SECRET_NAME, SecretString=webhook_secret)
        os.environ.update(
            {
                SLACK_BOT_TOKEN_SECRET_ENV: bot["ARN"],
                "SLACK_BASE_URL": f"{self.slack_sink.endpoint}/api",
                SLACK_SIGNING_SECRET_ENV: signing["ARN"],
            }
        )

    def register_in_hubspot(self, profiles: Iterable[Mapping[str, Any]]) -> None:
        """Tell the local sink about the owners and records these account profiles name: it refuses
        ids its portal does not know, as HubSpot does. (A real portal has them already.)"""
        if not self.hubspot_sink:
            return
        profiles = list(profiles)  # read twice below
        owners: list[str] = []
        records: dict[str, list[str]] = {"companies": [], "contacts": [], "deals": []}
        for profile in profiles:
            owners += [
                o["hubspot_owner_id"]
                for o in (profile.get("owners") or {}).values()
                if o.get("hubspot_owner_id")
            ]
            refs = profile.get("hubspot") or {}
            for kind, field in (
                ("companies", "company_id"),
                ("contacts", "contact_id"),
                ("deals", "deal_id"),
            ):
                if refs.get(field):
                    records[kind].append(refs[field])
        self.hubspot_sink.register(owners=owners, **records)
        # The portal finds them by e-mail and domain too (profiles may name them so instead of ids).
        for profile in profiles:
            for owner in (profile.get("owners") or {}).values():
                if owner.get("hubspot_owner_id") and owner.get("email"):
                    self.hubspot_sink.register_owner(owner["hubspot_owner_id"], owner["email"])
            refs = profile.get("hubspot") or {}
            if refs.get("company_id") and refs.get("domain"):
                self.hubspot_sink.register_company(refs["company_id"], refs["domain"])

    def _register_pool_owners(self) -> None:
        """The fallback pools' owners of the ruleset the stack runs are in the sink's portal."""
        assert self.hubspot_sink
        from shared.rules.online import active_ruleset

        ruleset, _ = active_ruleset(os.environ.get(RULESET_PATH_ENV) or DEFAULT_RULESET_PATH)
        self.hubspot_sink.register(
            owners=[
                owner.hubspot_owner_id
                for play in ruleset.plays.values()
                if play.fallback
                for pool in play.fallback.pools.values()
                for owner in pool
                if owner.hubspot_owner_id
            ]
        )

    def poll_hubspot(self) -> dict[str, Any]:
        """Run the HubSpot read-back now (the schedule runs it every minute), as its schedule would."""
        assert self._hubspot_poller, "start() the stack first"
        answer: dict[str, Any] = self._hubspot_poller.invoke(
            {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
        )
        return answer

    def sent_emails(self) -> list[dict[str, Any]]:
        """What the emulated SES has sent (moto runs in this process)."""
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.ses.models import ses_backends

        backend = ses_backends[DEFAULT_ACCOUNT_ID][os.environ.get("AWS_REGION", "us-east-1")]
        return [
            {"id": m.id, "to": m.destinations.get("ToAddresses", []), "subject": m.subject, "html": m.body}
            for m in backend.sent_messages
        ]

    def plays(self, account_id: str) -> list[PlayRecord]:
        assert self.resources, "start() the stack first"
        ledger = PlayLedger(dynamo.dynamodb_client(), self.resources.tables[PLAYS_TABLE.env_var], 1)
        return ledger.plays(account_id)

    def producer_keys(self) -> ProducerKeys:
        assert self.resources, "start() the stack first"
        return ProducerKeys(dynamo.dynamodb_client(), self.resources.tables[REGISTRY_TABLE.env_var])

    def settle(self, timeout: float = 30.0, quiet_for: float = 0.3) -> None:
        """Wait until every pump has found nothing to do for `quiet_for` seconds in a row."""
        deadline = time.monotonic() + timeout
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            if all(pump.idle.is_set() for pump in self._pumps):
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= quiet_for:
                    return
            else:
                quiet_since = None
            time.sleep(0.02)
        raise TimeoutError(f"the local stack was still busy after {timeout} s")

    def pump_failures(self) -> list[dict[str, Any]]:
        return [failure for pump in self._pumps for failure in pump.failures]

    def stop(self) -> None:
        for pump in self._pumps:
            pump.stop()
        for pump in self._pumps:
            pump.join(timeout=5)
        if self._gateway:
            self._gateway.stop()
        for sink in (self.hubspot_sink, self.slack_sink, self.webhook_sink):
            if sink:
                sink.stop()
        self._aws.stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def forget_handler_dependencies() -> None:
    """Handlers keep clients per process; a new local stack (or test) has a new endpoint and tables."""
    dynamo.forget_clients()
    reset_handlers([function.handler for function in FUNCTIONS])
