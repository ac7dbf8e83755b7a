"""The router as both of its functions build it: from the environment, clients created once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from shared.accounts.store import AccountStore
from shared.routing.dispatch import AwsDispatcher
from shared.routing.ledger import PlayLedger
from shared.routing.router import Router, SignalCheck
from shared.routing.watches import AutoCloseWatches
from shared.rules.online import active_ruleset
from shared.rules.plays import Channel
from shared.storage.dynamo import aws_client, dynamodb_client
from shared.timezones import portal_zone

from .settings import RouterSettings


@dataclass(frozen=True)
class Routing:
    """The router and the adapters it runs on; the scheduler's auto-closer and releases share them."""

    router: Router
    plays: PlayLedger
    watches: AutoCloseWatches
    dispatcher: AwsDispatcher


def build_routing(settings: RouterSettings, signal_holds: SignalCheck) -> Routing:
    ruleset, _ = active_ruleset(settings.ruleset_path)
    client = dynamodb_client()
    plays = PlayLedger(client, settings.plays_table, settings.retention_days)
    watches = AutoCloseWatches(
        client,
        settings.plays_table,
        settings.retention_days,
        check_every=timedelta(minutes=settings.auto_close_check_minutes),
    )
    dispatcher = AwsDispatcher(
        aws_client("sqs"),
        {
            Channel.HUBSPOT_TASK: settings.hubspot_queue_url,
            Channel.EMAIL: settings.email_queue_url,
            Channel.SLACK: settings.slack_queue_url,
            Channel.WEBHOOK: settings.webhook_queue_url,
        },
        aws_client("events"),
        settings.event_bus_name,
    )
    router = Router(
        ruleset=ruleset,
        accounts=AccountStore(client, settings.accounts_table),
        ledger=plays,
        dispatcher=dispatcher,
        signal_holds=signal_holds,
        business_zone=portal_zone(settings.business_timezone),
        watches=watches,
    )
    return Routing(router, plays, watches, dispatcher)
