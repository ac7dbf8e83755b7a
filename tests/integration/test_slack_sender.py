"""The Slack sender against a scripted Slack Web API (httpx MockTransport) and moto: one Block Kit
message per play, DMs found by e-mail (cached), rate limits waited out, refusals made visible."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from functions.slack_sender.handler import send_slack_messages
from shared.delivery.backoff import Backoff
from shared.delivery.ledger import DeliveryLedger
from shared.delivery.pacing import Pacer
from shared.delivery.queue import DeliveryQueue
from shared.delivery.slack import NOT_USEFUL_ACTION, SlackClient, SlackSender
from shared.resources import DELIVERIES_TABLE, PLAYS_TABLE, SLACK_QUEUE, SLACK_SENDER_FUNCTION
from shared.routing.ledger import PlayLedger, PlayRecord, PlayStatus
from shared.routing.messages import PlayDelivery
from tests.conftest import TEST_RETENTION_DAYS, Aws
from tests.integration.builders import received_from

BOT_TOKEN = "xoxb-test-token"
PLAY_ID = "b" * 24
EVIDENCE = (
    "Evidence (ruleset 2026-11-23.2, score 82):\n- seat_saturation: latest seats.active / plan limit = 0.92"
)


def delivery(play_id: str = PLAY_ID, **changes: Any) -> PlayDelivery:
    fields: dict[str, Any] = {
        "play_id": play_id,
        "channel": "slack",
        "firing_id": "f" * 24,
        "account_id": "acct-1",
        "account_name": "Acme <Labs>",
        "trigger": "seats",
        "play": "seat-expansion",
        "tier": 0,
        "ruleset_version": "2026-11-23.2",
        "subject": "Seat expansion: Acme <Labs>",
        "body": f"Acme is at 46 of 50 seats.\n\n{EVIDENCE}\n",
        "due": "2026-11-27",
        "priority": "HIGH",
        "owner": {"role": "csm", "name": "Casey", "email": "casey@example.com", "hubspot_owner_id": "501"},
        "hubspot": {"company_id": "77"},
        "routed_at": "2026-11-25T10:00:00Z",
    }
    return PlayDelivery.model_validate(fields | changes)


class Slack:
    """A scripted Slack Web API: per method, queued answers (then ok), every call recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.answers: dict[str, list[httpx.Response]] = {}

    def then(self, method: str, *answers: httpx.Response) -> Slack:
        self.answers.setdefault(method, []).extend(answers)
        return self

    def __call__(self, request: httpx.Request) -> httpx.Response:
        method = request.url.path.rsplit("/", 1)[-1]
        assert request.headers["authorization"] == f"Bearer {BOT_TOKEN}"
        if request.headers["content-type"].startswith("application/json"):
            arguments = json.loads(request.content)
        else:
            arguments = {key: values[0] for key, values in parse_qs(request.content.decode()).items()}
        self.calls.append((method, arguments))
        queued = self.answers.get(method)
        if queued:
            return queued.pop(0)
        if method == "users.lookupByEmail":
            return httpx.Response(200, json={"ok": True, "user": {"id": "U0CASEY"}})
        return httpx.Response(
            200, json={"ok": True, "channel": arguments["channel"], "ts": "1764979200.000100"}
        )

    def posts(self) -> list[dict[str, Any]]:
        return [arguments for method, arguments in self.calls if method == "chat.postMessage"]

    def lookups(self) -> list[dict[str, Any]]:
        return [arguments for method, arguments in self.calls if method == "users.lookupByEmail"]


class RecordingSqs:
    def __init__(self, sqs: Any) -> None:
        self._sqs = sqs
        self.holds: list[int] = []

    def change_message_visibility(self, **request: Any) -> Any:
        self.holds.append(request["VisibilityTimeout"])
        return self._sqs.change_message_visibility(**request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sqs, name)


@pytest.fixture
def slack() -> Slack:
    return Slack()


@pytest.fixture
def dlq(aws: Aws) -> str:
    return str(aws.sqs.create_queue(QueueName="slack-dlq")["QueueUrl"])


def make_sender(aws: Aws, dlq: str, slack: Slack, **options: Any) -> tuple[SlackSender, RecordingSqs]:
    sqs = RecordingSqs(aws.sqs)
    client = SlackClient(
        httpx.Client(transport=httpx.MockTransport(slack)),
        lambda: BOT_TOKEN,
        post_pacer=Pacer(1000, 1.0),
        lookup_pacer=Pacer(1000, 1.0),
    )
    sender = SlackSender(
        client=client,
        ledger=DeliveryLedger(aws.dynamodb, aws.tables[DELIVERIES_TABLE.env_var], TEST_RETENTION_DAYS),
        plays=PlayLedger(aws.dynamodb, aws.tables[PLAYS_TABLE.env_var], TEST_RETENTION_DAYS),
        queue=DeliveryQueue(sqs, aws.queues[SLACK_QUEUE.env_var], dlq, SLACK_SENDER_FUNCTION, 10),
        hubspot_portal_id="4455",
        backoff=Backoff(first_seconds=30, longest_seconds=3600),
        **options,
    )
    return sender, sqs


def received(aws: Aws, body: str) -> dict[str, Any]:
    return received_from(aws, SLACK_QUEUE, body)


def routed_play(aws: Aws, play_id: str = PLAY_ID) -> PlayLedger:
    """The play in the ledger, as the router left it (routed), for the sender to note problems on."""
    ledger = PlayLedger(aws.dynamodb, aws.tables[PLAYS_TABLE.env_var], TEST_RETENTION_DAYS)
    ledger.schedule(
        PlayRecord(
            account_id="acct-1",
            play_id=play_id,
            firing_id="f" * 24,
            tier=0,
            firing={"trigger": "seats", "play": "seat-expansion", "ruleset_version": "2026-11-23.2"},
            status=PlayStatus.ROUTED,
            updated_at=datetime(2026, 11, 25, 10, tzinfo=UTC),
        )
    )
    return ledger


def dead_letters(aws: Aws, dlq: str) -> list[dict[str, Any]]:
    return aws.sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, MessageAttributeNames=["All"]).get(
        "Messages", []
    )


# ── the message ─────────────────────────────────────────────────────────────────────────────────


def test_the_owner_gets_one_dm_with_the_trigger_evidence_due_date_and_both_buttons(
    aws: Aws, dlq: str, slack: Slack
) -> None:
    sender, _ = make_sender(aws, dlq, slack)

    answer = send_slack_messages(received(aws, delivery().model_dump_json()), sender)

    assert answer == {"batchItemFailures": []}
    assert slack.lookups() == [{"email": "casey@example.com"}]
    [post] = slack.posts()
    assert post["channel"] == "U0CASEY"  # a DM: the bot's conversation with the owner
    assert post["text"] == "Seat expansion: Acme <Labs> (due 2026-11-27)"
    header, facts, narrative, context, actions = post["blocks"]
    assert header["text"] == {"type": "plain_text", "text": "Seat expansion: Acme <Labs>"}
    assert (
        facts["text"]["text"] == "*Acme &lt;Labs&gt;* · trigger `seats`\nPriority *high* · due *2026-11-27*"
    )
    assert EVIDENCE in narrative["text"]["text"]
    assert PLAY_ID in context["elements"][0]["text"]
    open_in_hubspot, not_useful = actions["elements"]
    assert open_in_hubspot["url"] == "https://app.hubspot.com/contacts/4455/company/77"
    assert open_in_hubspot["text"]["text"] == "Open in HubSpot"
    assert not_useful["action_id"] == NOT_USEFUL_ACTION
    assert json.loads(not_useful["value"]) == {"account_id": "acct-1", "play_id": PLAY_ID}


def test_a_play_naming_a_channel_is_posted_there_without_a_lookup(aws: Aws, dlq: str, slack: Slack) -> None:
    sender, _ = make_sender(aws, dlq, slack)

    send_slack_messages(received(aws, delivery(slack_channel="C0ENTERPR1").model_dump_json()), sender)

    assert slack.lookups() == []
    assert [post["channel"] for post in slack.posts()] == ["C0ENTERPR1"]


def test_without_a_company_or_portal_there_is_no_hubspot_button(aws: Aws, dlq: str, slack: Slack) -> None:
    sender, _ = make_sender(aws, dlq, slack)

    send_slack_messages(received(aws, delivery(hubspot={}).model_dump_json()), sender)

    [post] = slack.posts()
    assert [button["action_id"] for button in post["blocks"][-1]["elements"]] == [NOT_USEFUL_ACTION]


# ── at most once, and the lookup cache ──────────────────────────────────────────────────────────


def test_a_redelivered_message_is_not_posted_again_and_lookups_are_cached(
    aws: Aws, dlq: str, slack: Slack
) -> None:
    sender, _ = make_sender(aws, dlq, slack)

    send_slack_messages(received(aws, delivery().model_dump_json()), sender)
    send_slack_messages(received(aws, delivery().model_dump_json()), sender)
    send_slack_messages(received(aws, delivery("c" * 24).model_dump_json()), sender)

    assert len(slack.posts()) == 2  # the first play once, the second play once
    assert len(slack.lookups()) == 1  # the same owner: looked up once


def test_a_post_without_an_answer_is_never_repeated_it_is_recorded_unknown(
    aws: Aws, dlq: str, slack: Slack
) -> None:
    slack.then("chat.postMessage", httpx.Response(502))
    sender, sqs = make_sender(aws, dlq, slack, stale_after=timedelta(0))
    body = delivery().model_dump_json()

    with pytest.raises(BatchProcessingError):
        send_slack_messages(received(aws, body), sender)
    send_slack_messages(received(aws, body), sender)

    assert len(slack.posts()) == 1
    assert sqs.holds == [30]
    [item] = aws.scan(aws.tables[DELIVERIES_TABLE.env_var])
    assert item["status"] == "unknown"


# ── rate limits and refusals ────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "limited",
    [
        httpx.Response(429, headers={"Retry-After": "7"}),
        httpx.Response(200, headers={"Retry-After": "7"}, json={"ok": False, "error": "ratelimited"}),
    ],
)
def test_a_rate_limited_post_waits_retry_after_then_is_posted_once(
    aws: Aws, dlq: str, slack: Slack, limited: httpx.Response
) -> None:
    slack.then("chat.postMessage", limited)
    sender, sqs = make_sender(aws, dlq, slack)
    body = delivery().model_dump_json()

    with pytest.raises(BatchProcessingError):
        send_slack_messages(received(aws, body), sender)
    send_slack_messages(received(aws, body), sender)

    assert sqs.holds == [7]
    assert len(slack.posts()) == 2  # the refused attempt, then the one that went out
    assert dead_letters(aws, dlq) == []


def test_an_owner_slack_does_not_know_is_a_visible_failure_on_the_play_and_in_the_dlq(
    aws: Aws, dlq: str, slack: Slack
) -> None:
    plays = routed_play(aws)
    slack.then("users.lookupByEmail", httpx.Response(200, json={"ok": False, "error": "users_not_found"}))
    sender, _ = make_sender(aws, dlq, slack)

    answer = send_slack_messages(received(aws, delivery().model_dump_json()), sender)

    assert answer == {"batchItemFailures": []}
    assert slack.posts() == []
    [dead] = dead_letters(aws, dlq)
    reason = dead["MessageAttributes"]["error"]["StringValue"]
    assert reason.startswith(
        "Slack users.lookupByEmail: users_not_found: no Slack user has the owner's e-mail"
    )
    record = plays.get("acct-1", PLAY_ID)
    assert record is not None
    [problem] = record.delivery_problems
    assert problem["channel"] == "slack"
    assert "users_not_found" in problem["problem"]
    assert "casey@example.com" not in problem["problem"]


def test_a_revoked_token_holds_the_message_instead_of_dead_lettering_it(
    aws: Aws, dlq: str, slack: Slack
) -> None:
    slack.then("chat.postMessage", httpx.Response(200, json={"ok": False, "error": "token_revoked"}))
    sender, sqs = make_sender(aws, dlq, slack)

    with pytest.raises(BatchProcessingError):
        send_slack_messages(received(aws, delivery(slack_channel="C0ENTERPR1").model_dump_json()), sender)

    assert sqs.holds == [30]
    assert dead_letters(aws, dlq) == []
    [item] = aws.scan(aws.tables[DELIVERIES_TABLE.env_var]) or [None]
    assert item is None  # the claim was released: the next attempt posts afresh
