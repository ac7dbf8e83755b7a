"""The play router on moto: owners and fallbacks, budgets and deferral, do-not-contact, escalation,
redelivery — each play lands on its channel queues once, with `play.routed` on the bus.

Routing times are fixed: Wednesday 2026-11-25 10:00 UTC unless a test says otherwise.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.router.handler import route_fired
from functions.router.scheduler import release_due
from shared.accounts.models import AccountProfile
from shared.accounts.store import AccountStore
from shared.resources import EMAIL_QUEUE, HUBSPOT_QUEUE, PLAYS_TABLE, SLACK_QUEUE, WEBHOOK_QUEUE
from shared.routing.dispatch import AwsDispatcher
from shared.routing.ledger import PlayLedger
from shared.routing.models import AlreadyTaken, PlayStatus, TaskFacts, TaskStatus
from shared.routing.router import FiredMessage, Router, play_id
from shared.rules.loading import parse_ruleset
from shared.rules.plays import Channel
from tests.conftest import TEST_RETENTION_DAYS, Aws
from tests.firings import fired_message
from tests.integration.builders import TEST_WRITER, account_path, call_api, proxy_event, sqs_event

WEDNESDAY = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
BUS = "upswing-test-bus"

RULES = parse_ruleset(
    """
version: router-test-1
metrics: {seats.active: gauge}
signals:
  busy: {measure: latest, metric: seats.active, window: 1d, at_least: 10}
triggers:
  seats: {category: commercial, owner_role: csm, play: seat-expansion, when: busy, cooldown: 30d}
  seats-desk: {category: commercial, owner_role: csm, play: desk, when: busy, cooldown: 30d}
  upgrade: {category: commercial, owner_role: csm, play: upgrade-proposal, when: busy, cooldown: 30d}
  nudge: {category: commercial, owner_role: csm, play: nudge, when: busy, cooldown: 30d}
destinations:
  webhooks:
    in-app: {url: "https://hooks.example.com/in-app", secret: upswing/webhooks/in-app}
budgets: {plays_per_account: 2, account_period: week, tasks_per_owner_per_day: 2}
plays:
  seat-expansion:
    channels: [hubspot_task, email]
    sla_business_days: 2
    priority: {high_at: 70, medium_at: 40, valuable_arr: 100000}
    fallback:
      pick: least_loaded
      pools:
        smb:
          - {name: Ana, email: ana@example.com, hubspot_owner_id: "901"}
          - {name: Ben, email: ben@example.com, hubspot_owner_id: "902"}
        default:
          - {name: Desk, email: desk@example.com, hubspot_owner_id: "910"}
    message:
      subject: "Seats: $account.name"
      body: "Now: $detail. Owner: $owner.name. Due $due."
  desk:
    channels: [hubspot_task]
    fallback:
      pick: round_robin
      pools:
        default:
          - {name: One, hubspot_owner_id: "801"}
          - {name: Two, hubspot_owner_id: "802"}
          - {name: Three, hubspot_owner_id: "803"}
  nudge:
    channels: [slack, webhook:in-app]
    slack: {channels: {enterprise: C0ENTERPR1}}
  upgrade-proposal:
    escalation:
      - {after: 0d, channels: [email]}
      - {after: 7d, channels: [hubspot_task]}
      - {after: 14d, role: ae, channels: [hubspot_task, email]}
""",
    "router-test.yaml",
)

CSM = {"name": "Casey CSM", "email": "casey@example.com", "hubspot_owner_id": "501"}
AE = {"name": "Alex AE", "email": "alex@example.com", "hubspot_owner_id": "601"}


# ── builders ───────────────────────────────────────────────────────────────────────────────────


class Signals:
    """Whether each (account, trigger) still holds, as the scheduler's rules check would say."""

    def __init__(self) -> None:
        self.cleared: set[tuple[str, str]] = set()

    def __call__(self, account_id: str, trigger: str, at: datetime) -> bool:
        return (account_id, trigger) not in self.cleared


def fired(
    account_id: str, trigger: str = "seats", play: str = "seat-expansion", **changes: Any
) -> FiredMessage:
    at = changes.pop("at", WEDNESDAY - timedelta(hours=1))
    return fired_message(
        account_id,
        at,
        trigger=trigger,
        play=play,
        version="router-test-1",
        category="expansion",
        firing_id=(account_id + trigger + "0" * 24).encode().hex()[:24],
        **changes,
    )


def put_account(aws: Aws, account_id: str, **profile: Any) -> None:
    AccountStore(aws.dynamodb, aws.accounts_table).put(
        account_id, AccountProfile.model_validate({"name": account_id.title(), **profile}), TEST_WRITER
    )


@pytest.fixture
def bus(aws: Aws) -> str:
    """The event bus, with every `play.routed` forwarded to a queue the tests read."""
    from tests.conftest import _test_client

    events = _test_client("events")
    events.create_event_bus(Name=BUS)
    url = aws.sqs.create_queue(QueueName="routed-events")["QueueUrl"]
    arn = aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="routed", EventBusName=BUS, EventPattern='{"detail-type": ["play.routed"]}')
    events.put_targets(Rule="routed", EventBusName=BUS, Targets=[{"Id": "q", "Arn": arn}])
    return url


@pytest.fixture
def signals() -> Signals:
    return Signals()


@pytest.fixture
def router(aws: Aws, bus: str, signals: Signals) -> Router:
    from tests.conftest import _test_client

    return Router(
        ruleset=RULES,
        accounts=AccountStore(aws.dynamodb, aws.accounts_table),
        ledger=PlayLedger(aws.dynamodb, aws.tables[PLAYS_TABLE.env_var], TEST_RETENTION_DAYS),
        dispatcher=AwsDispatcher(
            aws.sqs,
            {
                Channel.HUBSPOT_TASK: aws.queues[HUBSPOT_QUEUE.env_var],
                Channel.EMAIL: aws.queues[EMAIL_QUEUE.env_var],
                Channel.SLACK: aws.queues[SLACK_QUEUE.env_var],
                Channel.WEBHOOK: aws.queues[WEBHOOK_QUEUE.env_var],
            },
            _test_client("events"),
            BUS,
        ),
        signal_holds=signals,
    )


def deliveries(aws: Aws, queue: Any) -> list[dict[str, Any]]:
    return [json.loads(message["Body"]) for message in aws.queue_messages(aws.queues[queue.env_var])]


def routed_events(aws: Aws, bus_queue: str) -> list[dict[str, Any]]:
    return [json.loads(message["Body"])["detail"] for message in aws.queue_messages(bus_queue)]


# ── routing to owners ──────────────────────────────────────────────────────────────────────────


def test_a_play_reaches_the_accounts_owner_on_every_channel_and_the_bus(
    aws: Aws, router: Router, bus: str
) -> None:
    # Given an account with a CSM and a HubSpot company
    put_account(aws, "acct-1", segment="smb", arr="150000", owners={"csm": CSM}, hubspot={"company_id": "77"})

    # When its firing is routed on a Wednesday
    record = router.route_firing(fired("acct-1"), WEDNESDAY)

    # Then one task and one email go to the CSM, due two business days later, HIGH (valuable)
    assert record.status is PlayStatus.ROUTED
    [task] = deliveries(aws, HUBSPOT_QUEUE)
    [email] = deliveries(aws, EMAIL_QUEUE)
    assert task["play_id"] == email["play_id"] == play_id(fired("acct-1").firing_id, 0)
    assert task["owner"] == {
        "role": "csm",
        "name": "Casey CSM",
        "email": "casey@example.com",
        "hubspot_owner_id": "501",
        "from_pool": False,
    }
    assert task["due"] == "2026-11-27"
    assert task["priority"] == "HIGH"
    assert task["subject"] == "Seats: Acct-1"
    assert task["body"] == "Now: latest seats.active = 12. Owner: Casey CSM. Due 2026-11-27.\n"
    assert task["hubspot"]["company_id"] == "77"
    assert email["channel"] == "email"
    # And play.routed names the owner by role and HubSpot id, never by e-mail address
    [event] = routed_events(aws, bus)
    assert event["play_id"] == task["play_id"]
    assert event["owner"] == {"role": "csm", "hubspot_owner_id": "501", "from_pool": False}
    assert event["channels"] == ["hubspot_task", "email"]
    assert "casey@example.com" not in json.dumps(event)


def test_given_slack_and_a_webhook_then_the_owner_is_messaged_and_the_destination_gets_play_routed(
    aws: Aws, router: Router, bus: str
) -> None:
    # Given an SMB account whose CSM has an e-mail address (the play names a channel for enterprise only)
    put_account(aws, "acct-s", segment="smb", owners={"csm": CSM})

    # When its firing of the nudge play is routed
    router.route_firing(fired("acct-s", trigger="nudge", play="nudge"), WEDNESDAY)

    # Then Slack gets a DM delivery to the CSM (found by e-mail), no channel
    [slack] = deliveries(aws, SLACK_QUEUE)
    assert slack["channel"] == "slack"
    assert slack["slack_channel"] is None
    assert slack["owner"]["email"] == "casey@example.com"
    # And the webhook delivery names its destination and carries exactly the bus's play.routed detail
    [hook] = deliveries(aws, WEBHOOK_QUEUE)
    assert hook["webhook"] == {
        "name": "in-app",
        "url": "https://hooks.example.com/in-app",
        "secret": "upswing/webhooks/in-app",
        "timeout_seconds": 10.0,
    }
    [event] = routed_events(aws, bus)
    assert hook["event"] == event
    assert event["channels"] == ["slack", "webhook:in-app"]


def test_given_an_enterprise_account_then_slack_posts_in_the_segments_channel_even_without_an_email(
    aws: Aws, router: Router
) -> None:
    put_account(
        aws, "acct-e", segment="enterprise", owners={"csm": {"name": "No Mail", "hubspot_owner_id": "5"}}
    )

    router.route_firing(fired("acct-e", trigger="nudge", play="nudge"), WEDNESDAY)

    [slack] = deliveries(aws, SLACK_QUEUE)
    assert slack["slack_channel"] == "C0ENTERPR1"
    assert slack["owner"]["name"] == "No Mail"


def test_given_no_slack_channel_and_an_owner_without_email_then_slack_is_skipped_visibly(
    aws: Aws, router: Router, bus: str
) -> None:
    put_account(aws, "acct-n", segment="smb", owners={"csm": {"name": "No Mail", "hubspot_owner_id": "5"}})

    record = router.route_firing(fired("acct-n", trigger="nudge", play="nudge"), WEDNESDAY)

    assert deliveries(aws, SLACK_QUEUE) == []
    assert "no e-mail address" in record.skipped["slack"]
    [event] = routed_events(aws, bus)
    assert event["channels"] == ["webhook:in-app"]
    assert "slack" in event["skipped"]


def test_a_redelivered_firing_routes_nothing_twice(aws: Aws, router: Router, bus: str) -> None:
    put_account(aws, "acct-1", owners={"csm": CSM})
    router.route_firing(fired("acct-1"), WEDNESDAY)
    again = router.route_firing(fired("acct-1"), WEDNESDAY + timedelta(minutes=5))

    assert again.status is PlayStatus.ROUTED
    assert len(deliveries(aws, HUBSPOT_QUEUE)) == 1
    assert len(deliveries(aws, EMAIL_QUEUE)) == 1
    assert len(routed_events(aws, bus)) == 1


def test_an_accepted_play_whose_hand_over_failed_is_handed_over_on_redelivery(
    aws: Aws, router: Router
) -> None:
    # Given the router crashed after accepting the play, before the queues took it
    put_account(aws, "acct-1", owners={"csm": CSM})
    real_deliver = router.dispatcher.deliver

    def crash(_: Any) -> None:
        raise RuntimeError("lost the connection")

    router.dispatcher.deliver = crash  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        router.route_firing(fired("acct-1"), WEDNESDAY)
    assert router.ledger.get("acct-1", play_id(fired("acct-1").firing_id, 0)).status is PlayStatus.ACCEPTED  # type: ignore[union-attr]

    # When the message comes back
    router.dispatcher.deliver = real_deliver  # type: ignore[method-assign]
    record = router.route_firing(fired("acct-1"), WEDNESDAY + timedelta(minutes=1))

    # Then the same deliveries go out, and the budget was charged once
    assert record.status is PlayStatus.ROUTED
    assert len(deliveries(aws, HUBSPOT_QUEUE)) == 1
    assert router.ledger.counts(["budget#account#acct-1"], "week#2026-W48") == {"budget#account#acct-1": 1}


def test_do_not_contact_suppresses_the_play(aws: Aws, router: Router, bus: str) -> None:
    put_account(aws, "acct-1", owners={"csm": CSM}, flags={"do_not_contact": True})

    record = router.route_firing(fired("acct-1"), WEDNESDAY)

    assert record.status is PlayStatus.SUPPRESSED
    assert record.reason == "do not contact"
    assert deliveries(aws, HUBSPOT_QUEUE) == deliveries(aws, EMAIL_QUEUE) == routed_events(aws, bus) == []
    assert router.ledger.get("acct-1", record.play_id).status is PlayStatus.SUPPRESSED  # type: ignore[union-attr]


def test_without_an_owner_the_least_loaded_of_the_segments_pool_gets_it(aws: Aws, router: Router) -> None:
    # Given three smb accounts without a CSM, and one mid-market account
    for number in (1, 2, 3):
        put_account(aws, f"acct-{number}", segment="smb")
    put_account(aws, "acct-4", segment="mid-market")

    owners = [router.route_firing(fired(f"acct-{n}"), WEDNESDAY).owner for n in (1, 2, 3, 4)]

    # Then smb alternates Ana, Ben, Ana (fewest tasks today, ties to the first) and the
    # mid-market account goes to the default pool
    assert [owner.name for owner in owners if owner] == ["Ana", "Ben", "Ana", "Desk"]
    assert all(owner and owner.from_pool for owner in owners)


def test_round_robin_pools_take_turns(aws: Aws, router: Router) -> None:
    for number in range(4):
        put_account(aws, f"acct-{number}")

    owners = [
        router.route_firing(fired(f"acct-{n}", trigger="seats-desk", play="desk"), WEDNESDAY).owner
        for n in range(4)
    ]

    assert [owner.hubspot_owner_id for owner in owners if owner] == ["801", "802", "803", "801"]


def test_an_owner_without_an_email_address_gets_the_task_and_the_email_is_skipped_visibly(
    aws: Aws, router: Router
) -> None:
    # Given a CSM reachable on HubSpot only
    put_account(aws, "acct-1", segment="smb", owners={"csm": {"name": "Casey", "hubspot_owner_id": "501"}})

    record = router.route_firing(fired("acct-1"), WEDNESDAY)

    # Then the CSM keeps the play (the pool is for accounts nobody can be reached for)
    assert record.owner
    assert (record.owner.name, record.owner.from_pool) == ("Casey", False)
    assert [delivery.channel for delivery in record.deliveries] == [Channel.HUBSPOT_TASK]
    assert record.skipped == {"email": "nobody to email: the owner has no e-mail address"}
    assert deliveries(aws, EMAIL_QUEUE) == []


def test_an_owner_no_channel_of_the_tier_reaches_is_replaced_by_the_pool(aws: Aws, router: Router) -> None:
    # Given a CSM known by name only, and a play that makes HubSpot tasks only
    put_account(aws, "acct-1", owners={"csm": {"name": "Casey"}})

    record = router.route_firing(fired("acct-1", trigger="seats-desk", play="desk"), WEDNESDAY)

    assert record.owner
    assert (record.owner.hubspot_owner_id, record.owner.from_pool) == ("801", True)


def test_given_an_owner_known_by_email_only_then_a_hubspot_tier_keeps_them_for_the_sender_to_resolve(
    aws: Aws, router: Router
) -> None:
    # Given a CSM with an e-mail address only (no HubSpot owner id), and a play that makes HubSpot tasks only
    put_account(aws, "acct-1", owners={"csm": {"name": "Casey", "email": "casey@example.com"}})

    record = router.route_firing(fired("acct-1", trigger="seats-desk", play="desk"), WEDNESDAY)

    # Then the CSM keeps the play: the HubSpot sender finds their owner id by the address
    assert record.owner
    assert (record.owner.email, record.owner.hubspot_owner_id, record.owner.from_pool) == (
        "casey@example.com",
        None,
        False,
    )
    [task] = deliveries(aws, HUBSPOT_QUEUE)
    assert task["owner"]["email"] == "casey@example.com"


def test_an_owner_without_an_email_address_cannot_get_an_email_only_tier(aws: Aws, router: Router) -> None:
    put_account(aws, "acct-2", owners={"csm": {"name": "Casey", "hubspot_owner_id": "501"}})

    record = router.route_firing(fired("acct-2", trigger="upgrade", play="upgrade-proposal"), WEDNESDAY)

    assert record.status is PlayStatus.ROUTED
    assert record.deliveries == ()
    assert record.skipped == {"email": "nobody to email: the owner has no e-mail address"}


def test_an_unknown_account_gets_an_unassigned_task(aws: Aws, router: Router) -> None:
    record = router.route_firing(fired("acct-unknown", trigger="seats-desk", play="desk"), WEDNESDAY)
    assert record.status is PlayStatus.ROUTED
    [task] = deliveries(aws, HUBSPOT_QUEUE)
    assert task["account_name"] == "acct-unknown"
    assert task["owner"]["from_pool"] is True  # the desk pool serves every segment


# ── budgets and deferral ───────────────────────────────────────────────────────────────────────


def test_plays_over_the_accounts_budget_are_deferred_to_next_week_then_routed(
    aws: Aws, router: Router, bus: str
) -> None:
    # Given an account whose weekly budget is 2 plays
    put_account(aws, "acct-1", owners={"csm": CSM, "ae": AE})
    first = router.route_firing(fired("acct-1", trigger="seats"), WEDNESDAY)
    second = router.route_firing(fired("acct-1", trigger="seats-desk", play="desk"), WEDNESDAY)

    # When a third firing comes the same week
    third = router.route_firing(fired("acct-1", trigger="upgrade", play="upgrade-proposal"), WEDNESDAY)

    # Then it is deferred to Monday, visibly, and nothing of it is delivered yet
    assert (first.status, second.status) == (PlayStatus.ROUTED, PlayStatus.ROUTED)
    assert third.status is PlayStatus.DEFERRED
    assert third.due_at == datetime(2026, 11, 30, tzinfo=UTC)
    assert third.reason == "at most 2 plays per account per week"
    assert [event["trigger"] for event in routed_events(aws, bus)] == ["seats", "seats-desk"]
    assert release_due(router, WEDNESDAY + timedelta(days=2)) == {}

    # When the scheduler runs on Monday, the play is routed
    assert release_due(router, datetime(2026, 11, 30, 0, 5, tzinfo=UTC)) == {"routed": 1}
    [event] = routed_events(aws, bus)
    assert event["trigger"] == "upgrade"
    assert router.ledger.get("acct-1", third.play_id).status is PlayStatus.ROUTED  # type: ignore[union-attr]


def test_the_signals_route_shows_the_accounts_plays_newest_first_with_why_they_wait(
    aws: Aws, router: Router
) -> None:
    # Given two plays routed and a third deferred by the weekly budget, and another account's play
    put_account(aws, "acct-1", owners={"csm": CSM})
    put_account(aws, "acct-2", owners={"csm": CSM})
    triggers = [("seats", "seat-expansion"), ("seats-desk", "desk"), ("upgrade", "upgrade-proposal")]
    for minute, (trigger, play) in enumerate(triggers):
        router.route_firing(
            fired("acct-1", trigger=trigger, play=play), WEDNESDAY + timedelta(minutes=minute)
        )
    router.route_firing(fired("acct-2"), WEDNESDAY)

    # When RevOps asks for acct-1's signals
    status, answer = call_api(
        proxy_event(
            "GET",
            account_path("acct-1", "/signals"),
            None,
            content_type=None,
            resource="/v1/accounts/{account_id}/signals",
        )
    )

    # Then its plays are listed, last updated first, each with where it stands
    assert status == 200
    plays = answer["recent_plays"]
    assert [(play["trigger"], play["tier"], play["status"]) for play in plays] == [
        ("upgrade", 0, "deferred"),
        ("upgrade", 1, "scheduled"),  # its escalation tiers, due 7 and 14 days on
        ("upgrade", 2, "scheduled"),
        ("seats-desk", 0, "routed"),
        ("seats", 0, "routed"),
    ]
    deferred, escalation, routed = plays[0], plays[1], plays[4]
    assert escalation["release_at"] == "2026-12-02T09:00:00Z"  # 7 days after the firing (09:00)
    assert deferred["reason"] == "at most 2 plays per account per week"
    assert deferred["release_at"] == "2026-11-30T00:00:00Z"
    assert deferred["channels"] == []
    assert routed["release_at"] is None
    assert routed["channels"] == ["hubspot_task", "email"]
    assert routed["updated_at"] == "2026-11-25T10:00:00Z"
    assert routed["due"] == "2026-11-27"
    assert routed["owner"] == {"role": "csm", "hubspot_owner_id": "501", "from_pool": False}
    assert "casey@example.com" not in json.dumps(answer)  # owners by role and HubSpot id only


def test_tasks_over_the_owners_daily_budget_wait_for_the_next_day(aws: Aws, router: Router) -> None:
    # Given one CSM owning three accounts, two new tasks a day at most
    for number in (1, 2, 3):
        put_account(aws, f"acct-{number}", owners={"csm": CSM})

    statuses = [router.route_firing(fired(f"acct-{n}"), WEDNESDAY).status for n in (1, 2, 3)]

    assert statuses == [PlayStatus.ROUTED, PlayStatus.ROUTED, PlayStatus.DEFERRED]
    deferred = router.ledger.get("acct-3", play_id(fired("acct-3").firing_id, 0))
    assert deferred
    assert deferred.due_at == datetime(2026, 11, 26, tzinfo=UTC)
    assert deferred.reason == "at most 2 new tasks per owner per day"
    # The deferral charged no budget: the account's own budget is untouched
    assert router.ledger.counts(["budget#account#acct-3"], "week#2026-W48") == {"budget#account#acct-3": 0}
    assert release_due(router, datetime(2026, 11, 26, 0, 1, tzinfo=UTC)) == {"routed": 1}
    assert len(deliveries(aws, HUBSPOT_QUEUE)) == 3


# ── escalation ─────────────────────────────────────────────────────────────────────────────────


def test_escalation_emails_first_then_tasks_the_csm_then_the_ae_while_the_signal_holds(
    aws: Aws, router: Router, signals: Signals
) -> None:
    put_account(aws, "acct-1", owners={"csm": CSM, "ae": AE})
    message = fired("acct-1", trigger="upgrade", play="upgrade-proposal", at=WEDNESDAY)

    first = router.route_firing(message, WEDNESDAY)
    assert [d.channel for d in first.deliveries] == [Channel.EMAIL]
    assert deliveries(aws, HUBSPOT_QUEUE) == []

    # A week later the signal still holds: a task for the CSM
    assert release_due(router, WEDNESDAY + timedelta(days=7)) == {"routed": 1}
    [task] = deliveries(aws, HUBSPOT_QUEUE)
    assert (task["tier"], task["owner"]["role"], task["owner"]["hubspot_owner_id"]) == (1, "csm", "501")

    # Two weeks later it holds still: the AE gets a task and an email
    assert release_due(router, WEDNESDAY + timedelta(days=14)) == {"routed": 1}
    [ae_task] = deliveries(aws, HUBSPOT_QUEUE)
    assert (ae_task["tier"], ae_task["owner"]["role"]) == (2, "ae")
    assert {d["owner"]["role"] for d in deliveries(aws, EMAIL_QUEUE)} == {"csm", "ae"}


def test_an_escalation_lapses_when_the_signal_has_cleared(aws: Aws, router: Router, signals: Signals) -> None:
    put_account(aws, "acct-1", owners={"csm": CSM, "ae": AE})
    message = fired("acct-1", trigger="upgrade", play="upgrade-proposal", at=WEDNESDAY)
    router.route_firing(message, WEDNESDAY)

    signals.cleared.add(("acct-1", "upgrade"))
    assert release_due(router, WEDNESDAY + timedelta(days=30)) == {"lapsed": 2}

    assert deliveries(aws, HUBSPOT_QUEUE) == []
    lapsed = router.ledger.get("acct-1", play_id(message.firing_id, 1))
    assert lapsed
    assert (lapsed.status, lapsed.reason) == (PlayStatus.LAPSED, "the signal cleared")


def test_given_the_csm_completed_the_tier_1_task_when_the_ae_tier_is_due_then_the_escalation_stops(
    aws: Aws, router: Router
) -> None:
    put_account(aws, "acct-1", owners={"csm": CSM, "ae": AE})
    message = fired("acct-1", trigger="upgrade", play="upgrade-proposal", at=WEDNESDAY)
    router.route_firing(message, WEDNESDAY)
    assert release_due(router, WEDNESDAY + timedelta(days=7)) == {"routed": 1}
    csm_task = play_id(message.firing_id, 1)
    router.ledger.record_task_created("acct-1", csm_task, "7001", "501", "2026-12-04T17:00:00Z", WEDNESDAY)

    # When the read-back records the CSM's task as completed
    worked = {"at": "2026-12-03T15:00:00.000Z", "by": "501"}
    router.ledger.record_task_change(
        "acct-1",
        csm_task,
        TaskFacts(task_id="7001", status=TaskStatus.COMPLETED, modified_ms=1, worked=worked),
    )

    # Then the AE tier does not go out, and says why
    assert release_due(router, WEDNESDAY + timedelta(days=14)) == {"stopped": 1}
    assert [d["tier"] for d in deliveries(aws, HUBSPOT_QUEUE)] == [1]  # the CSM's task only
    stopped = router.ledger.get("acct-1", play_id(message.firing_id, 2))
    assert stopped
    assert stopped.status is PlayStatus.STOPPED
    assert stopped.reason
    assert "tier 1's task was completed" in stopped.reason
    assert "501" in stopped.reason


def test_given_an_open_expansion_opportunity_flag_when_an_escalation_is_due_then_it_stops(
    aws: Aws, router: Router
) -> None:
    put_account(aws, "acct-1", owners={"csm": CSM, "ae": AE})
    message = fired("acct-1", trigger="upgrade", play="upgrade-proposal", at=WEDNESDAY)
    router.route_firing(message, WEDNESDAY)

    # The flag appears after the firing (this trigger does not exclude it, so the signal still holds)
    put_account(aws, "acct-1", owners={"csm": CSM, "ae": AE}, flags={"open_expansion_opportunity": True})

    assert release_due(router, WEDNESDAY + timedelta(days=30)) == {"stopped": 2}
    assert deliveries(aws, HUBSPOT_QUEUE) == []
    stopped = router.ledger.get("acct-1", play_id(message.firing_id, 1))
    assert stopped
    assert stopped.reason == "the account has an open expansion opportunity"


# ── the ledger's guarantees ────────────────────────────────────────────────────────────────────


def test_two_routers_accepting_the_same_play_accept_it_once(aws: Aws, router: Router) -> None:
    put_account(aws, "acct-1", owners={"csm": CSM})
    router.route_firing(fired("acct-1"), WEDNESDAY)
    record = router.ledger.get("acct-1", play_id(fired("acct-1").firing_id, 0))
    assert record

    waiting = record.moved(PlayStatus.SCHEDULED, WEDNESDAY)
    with pytest.raises(AlreadyTaken):
        router.ledger.accept(waiting.moved(PlayStatus.ACCEPTED, WEDNESDAY), [])


# ── the handler ────────────────────────────────────────────────────────────────────────────────


def test_a_malformed_message_fails_alone_and_the_rest_of_the_batch_is_routed(
    aws: Aws, router: Router
) -> None:
    put_account(aws, "acct-1", owners={"csm": CSM})
    event = sqs_event(['{"type": "trigger.fired", "firing_id": "nope"}', fired("acct-1").model_dump_json()])

    answer = route_fired(event, router)

    assert answer == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert len(deliveries(aws, HUBSPOT_QUEUE)) == 1
