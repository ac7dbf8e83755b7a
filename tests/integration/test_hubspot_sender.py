"""The HubSpot sender on moto (ledger, queues) against a scripted HubSpot (httpx mock transport).

One task per play whatever happens to the message: redelivery, an attempt that stopped mid-send,
a rejected neighbour in the batch, HubSpot's daily limit.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from functions.hubspot_sender.handler import FUNCTION_TIMEOUT, HubSpotSender, send_tasks
from functions.hubspot_sender.settings import HubSpotSenderSettings
from shared.delivery.hubspot import SEARCH_INDEX_LAG, HubSpotClient, HubSpotSettings
from shared.delivery.ledger import DeliveryInFlight, DeliveryLedger, DeliveryStatus
from shared.delivery.secrets import CachedSecret
from shared.resources import (
    DELIVERIES_TABLE,
    HUBSPOT_DLQ_ENV,
    HUBSPOT_QUEUE,
    HUBSPOT_SECRET_ENV,
    PLAYS_TABLE,
)
from shared.routing.ledger import PlayLedger
from shared.routing.messages import PlayDelivery
from shared.routing.models import PlayRecord, PlayStatus
from shared.routing.views import play_state
from shared.settings import load_settings
from tests.conftest import TEST_RETENTION_DAYS, Aws
from tests.integration.builders import hubspot_queue, sqs_event

TOKEN = "pat-na1-00000000-secret-token"
Reply = Callable[[httpx.Request], httpx.Response]
UNAUTHORIZED = {
    "status": "error",
    "message": "Authentication credentials not found.",
    "correlationId": "401-c0ffee",
    "category": "INVALID_AUTHENTICATION",
}


class FakeHubSpot:
    """Answers task creations with increasing ids unless a reply is scripted; records requests."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.script: list[Reply] = []
        self.tasks: dict[str, str] = {}  # task id → body
        self.created: dict[str, dict[str, Any]] = {}  # task id → the creation request
        self.valid_token = TOKEN

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append((request.url.path, body))
        if request.headers["Authorization"] != f"Bearer {self.valid_token}":
            return httpx.Response(401, json=UNAUTHORIZED)
        if self.script:
            return self.script.pop(0)(request)
        if request.url.path.endswith("/search"):
            token = body["filterGroups"][0]["filters"][0]["value"]
            found = [{"id": task_id} for task_id, text in self.tasks.items() if token in text]
            return httpx.Response(200, json={"total": len(found), "results": found})
        task_id = str(1000 + len(self.tasks))
        self.tasks[task_id] = body["properties"]["hs_task_body"]
        self.created[task_id] = body
        return httpx.Response(201, json={"id": task_id, "properties": body["properties"]})

    def creations(self) -> list[dict[str, Any]]:
        return [body for path, body in self.requests if path == "/crm/v3/objects/tasks"]


def delivery(play_id: str = "a" * 24, **changes: Any) -> PlayDelivery:
    fields: dict[str, Any] = {
        "play_id": play_id,
        "channel": "hubspot_task",
        "firing_id": "f" * 24,
        "account_id": "acct-1",
        "account_name": "Acme",
        "trigger": "seats",
        "play": "seat-expansion",
        "tier": 0,
        "ruleset_version": "2026-11-23.2",
        "subject": "Seat expansion: Acme is running out of seats",
        "body": "Current state: 46 of 50 seats.",
        "due": "2026-11-27",
        "priority": "HIGH",
        "owner": {"role": "csm", "name": "Casey", "hubspot_owner_id": "501"},
        "hubspot": {"company_id": "77"},
        "routed_at": "2026-11-25T10:00:00Z",
    }
    return PlayDelivery.model_validate(fields | changes)


@pytest.fixture
def hubspot_api() -> FakeHubSpot:
    return FakeHubSpot()


NOON = datetime(2026, 11, 24, 12, tzinfo=UTC)


@pytest.fixture
def sender(aws: Aws, hubspot_api: FakeHubSpot) -> HubSpotSender:
    client = HubSpotClient(
        HubSpotSettings(),
        token=lambda: TOKEN,
        http=httpx.Client(transport=httpx.MockTransport(hubspot_api)),
        sleep=lambda seconds: None,
        jitter=lambda: 0.0,
        # Noon, far from the portal's midnight: a DAILY 429 must not be waited out inside the run
        # (run near midnight with the real clock, the wait fits the deadline and the test flips).
        wall_clock=lambda: NOON,
    )
    dlq = aws.sqs.create_queue(QueueName="hubspot-dlq")["QueueUrl"]
    return HubSpotSender(
        client=client,
        ledger=DeliveryLedger(aws.dynamodb, aws.tables[DELIVERIES_TABLE.env_var], TEST_RETENTION_DAYS),
        queue=hubspot_queue(aws.sqs, aws.queues[HUBSPOT_QUEUE.env_var], dlq),
    )


def far_deadline() -> float:
    import time

    return time.monotonic() + 60


def queued_event(aws: Aws, bodies: list[str]) -> dict[str, Any]:
    """Messages really on the HubSpot queue, received, as Lambda would hand them over."""
    url = aws.queues[HUBSPOT_QUEUE.env_var]
    for body in bodies:
        aws.sqs.send_message(QueueUrl=url, MessageBody=body)
    received = aws.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30)["Messages"]
    by_body = {message["Body"]: message for message in received}
    event = sqs_event(bodies)
    for record in event["Records"]:
        message = by_body[record["body"]]
        record["messageId"], record["receiptHandle"] = message["MessageId"], message["ReceiptHandle"]
    return event


def test_a_delivery_becomes_one_task_and_its_id_is_kept(
    aws: Aws, sender: HubSpotSender, hubspot_api: FakeHubSpot
) -> None:
    answer = send_tasks(sqs_event([delivery().model_dump_json()]), sender, far_deadline())

    assert answer == {"batchItemFailures": []}
    [created] = hubspot_api.creations()
    assert created["properties"]["hs_task_subject"] == "Seat expansion: Acme is running out of seats"
    assert created["properties"]["hubspot_owner_id"] == "501"
    assert created["associations"][0]["to"] == {"id": "77"}
    claim = sender.ledger.claim("hubspot_task", "a" * 24, delivery().routed_at)
    assert (claim.status, claim.external_id) == (DeliveryStatus.DELIVERED, "1000")


def test_a_redelivered_message_creates_no_second_task(
    sender: HubSpotSender, hubspot_api: FakeHubSpot
) -> None:
    body = delivery().model_dump_json()
    send_tasks(sqs_event([body]), sender, far_deadline())
    send_tasks(sqs_event([body, body]), sender, far_deadline())

    assert len(hubspot_api.creations()) == 1


def test_after_an_attempt_lost_mid_send_the_task_is_found_not_created_again(
    sender: HubSpotSender, hubspot_api: FakeHubSpot
) -> None:
    # Given HubSpot created the task, but the attempt stopped before recording it
    hubspot_api.tasks["4242"] = f"<p>Upswing play {'a' * 24}</p>"
    stale = delivery().routed_at.replace(year=2025)
    sender.ledger.claim("hubspot_task", "a" * 24, stale)

    send_tasks(sqs_event([delivery().model_dump_json()]), sender, far_deadline())

    assert hubspot_api.creations() == []
    claim = sender.ledger.claim("hubspot_task", "a" * 24, stale)
    assert (claim.status, claim.external_id) == (DeliveryStatus.DELIVERED, "4242")


def test_a_task_created_behind_a_5xx_is_looked_up_once_search_shows_it_and_not_created_twice(
    sender: HubSpotSender, hubspot_api: FakeHubSpot
) -> None:
    def created_then_failed(request: httpx.Request) -> httpx.Response:
        hubspot_api.tasks["4242"] = json.loads(request.content)["properties"]["hs_task_body"]
        return httpx.Response(502, text="Bad gateway")

    hubspot_api.script.append(created_then_failed)
    body = delivery().model_dump_json()

    # The 5xx sends the message back to the queue at once, its claim kept
    with pytest.raises(BatchProcessingError):
        send_tasks(sqs_event([body]), sender, far_deadline())
    # A redelivery while that attempt may still be sending, or its task not yet searchable, waits
    with pytest.raises(BatchProcessingError):
        send_tasks(sqs_event([body]), sender, far_deadline())
    claimed_at = sender.ledger.claim("hubspot_task", "a" * 24, delivery().routed_at).claimed_at
    assert claimed_at is not None
    with pytest.raises(DeliveryInFlight):
        sender.deliver(delivery(), claimed_at + FUNCTION_TIMEOUT + SEARCH_INDEX_LAG / 2, far_deadline())
    # Later, the lookup finds the task
    claim = sender.deliver(delivery(), claimed_at + FUNCTION_TIMEOUT + SEARCH_INDEX_LAG, far_deadline())

    assert (claim.status, claim.external_id) == (DeliveryStatus.DELIVERED, "4242")
    assert len(hubspot_api.creations()) == 1
    assert [path for path, _ in hubspot_api.requests].count("/crm/v3/objects/tasks/search") == 1


def test_a_rejected_delivery_goes_to_the_dlq_with_hubspots_details_and_the_batch_goes_on(
    aws: Aws, sender: HubSpotSender, hubspot_api: FakeHubSpot, caplog: pytest.LogCaptureFixture
) -> None:
    problem = {
        "status": "error",
        "message": "Property values were not valid: 'Jane Roe <jane@example.com>' is too long",
        "category": "VALIDATION_ERROR",
        "correlationId": "c0ffee",
        "context": {"properties": ["hs_task_subject"]},
        "errors": [
            {
                "message": "'Jane Roe <jane@example.com>' is too long",
                "code": "INVALID_LENGTH",
                "context": {"propertyName": ["hs_task_subject"]},
            }
        ],
    }
    hubspot_api.script.append(lambda request: httpx.Response(400, json=problem))
    rejected, fine = delivery("b" * 24).model_dump_json(), delivery("c" * 24).model_dump_json()

    answer = send_tasks(sqs_event([rejected, fine, "{not json"]), sender, far_deadline())

    assert answer == {"batchItemFailures": []}  # nothing left to retry: two dead-lettered, one done
    assert len(hubspot_api.tasks) == 1
    dead = aws.sqs.receive_message(
        QueueUrl=sender.queue.dead_letter_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )["Messages"]
    errors = {message["Body"]: message["MessageAttributes"]["error"]["StringValue"] for message in dead}
    # Which property, which id, and the id HubSpot support asks for: all in the DLQ's `error`
    assert errors[rejected].startswith(
        "HubSpot rejected the request: 400 VALIDATION_ERROR: Property values were not valid"
    )
    assert '"correlationId":"c0ffee"' in errors[rejected]
    assert '"context":{"properties":["hs_task_subject"]}' in errors[rejected]
    assert '"code":"INVALID_LENGTH"' in errors[rejected]
    [with_attributes] = [message for message in dead if message["Body"] == rejected]
    assert with_attributes["MessageAttributes"]["hubspot_correlation_id"]["StringValue"] == "c0ffee"
    assert errors["{not json"].startswith("not a play delivery: ")
    # The log keeps the correlation id, the context and the error codes, not HubSpot's messages
    [line] = [vars(r) for r in caplog.records if r.getMessage() == "delivery dead-lettered" and r.play_id]
    assert line["correlation_id"] == "c0ffee"
    assert line["hubspot_context"] == {"properties": ["hs_task_subject"]}
    assert line["hubspot_errors"] == [
        {"code": "INVALID_LENGTH", "context": {"propertyName": ["hs_task_subject"]}}
    ]
    assert "jane@example.com" not in caplog.text + "".join(repr(vars(r)) for r in caplog.records)
    # The rejected play's claim was released: a corrected replay may create it
    assert sender.ledger.claim("hubspot_task", "b" * 24, delivery().routed_at).fresh


def test_the_daily_limit_holds_back_the_whole_batch_until_midnight(
    aws: Aws, sender: HubSpotSender, hubspot_api: FakeHubSpot
) -> None:
    daily = {"status": "error", "errorType": "RATE_LIMIT", "policyName": "DAILY", "message": "daily limit"}
    hubspot_api.script.append(lambda request: httpx.Response(429, json=daily))
    bodies = [delivery("d" * 24).model_dump_json(), delivery("e" * 24).model_dump_json()]
    event = queued_event(aws, bodies)

    # Every record failed, so the batch fails whole (Powertools raises)
    with pytest.raises(BatchProcessingError, match="DAILY"):
        send_tasks(event, sender, far_deadline())

    assert len(hubspot_api.requests) == 1  # the second was not even tried
    # Both stay invisible (SQS would hand them back after the visibility timeout set)
    url = aws.queues[HUBSPOT_QUEUE.env_var]
    assert aws.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []) == []
    # Neither play is claimed: tomorrow's attempt creates them
    assert sender.ledger.claim("hubspot_task", "d" * 24, delivery().routed_at).fresh


def test_the_token_is_read_from_secrets_manager_once_then_cached() -> None:
    reads: list[str] = []
    now = [0.0]

    class Secrets:
        def get_secret_value(self, SecretId: str) -> dict[str, str]:
            reads.append(SecretId)
            return {"SecretString": json.dumps({"token": TOKEN})}

    token = CachedSecret(Secrets(), "upswing/dev/hubspot", max_age=300, clock=lambda: now[0])
    assert token() == token() == TOKEN
    now[0] = 301
    assert token() == TOKEN
    assert reads == ["upswing/dev/hubspot"] * 2
    assert TOKEN not in repr(token)


def test_an_empty_secret_says_what_to_store() -> None:
    class Secrets:
        def get_secret_value(self, SecretId: str) -> dict[str, str]:
            return {"SecretString": "  "}

    with pytest.raises(ValueError, match="store the private-app token"):
        CachedSecret(Secrets(), "upswing/dev/hubspot")()


def test_a_portal_time_zone_reaches_the_client_and_an_unknown_one_stops_the_sender_at_start(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(HUBSPOT_DLQ_ENV, "https://sqs.us-east-1.amazonaws.com/123456789012/hubspot-dlq")
    monkeypatch.setenv(HUBSPOT_SECRET_ENV, "upswing/test/hubspot-token")
    monkeypatch.setenv("HUBSPOT_PORTAL_TIMEZONE", "Europe/Paris")
    assert load_settings(HubSpotSenderSettings).client_settings().portal_timezone == "Europe/Paris"

    monkeypatch.setenv("HUBSPOT_PORTAL_TIMEZONE", "Paris")
    with pytest.raises(RuntimeError, match=r"HUBSPOT_PORTAL_TIMEZONE.*unknown time zone 'Paris'"):
        load_settings(HubSpotSenderSettings)


# --- 401 / 403: hold, re-read the secret, resume without a redrive ---------------------------


class Secrets:
    """Secrets Manager as the sender sees it: one secret whose value the test changes."""

    def __init__(self, value: str) -> None:
        self.value = value
        self.reads = 0

    def get_secret_value(self, SecretId: str) -> dict[str, str]:
        self.reads += 1
        return {"SecretString": self.value}


@pytest.fixture
def secrets() -> Secrets:
    return Secrets("pat-na1-revoked-token")


@pytest.fixture
def rotating_sender(
    aws: Aws, sender: HubSpotSender, hubspot_api: FakeHubSpot, secrets: Secrets
) -> HubSpotSender:
    """The sender with its token read from a (fake) secret, as deployed."""
    token = CachedSecret(secrets, "upswing/test/hubspot-token")
    sender.client = HubSpotClient(
        HubSpotSettings(),
        token=token,
        forget_token=token.forget,
        http=httpx.Client(transport=httpx.MockTransport(hubspot_api)),
        sleep=lambda seconds: None,
        jitter=lambda: 0.0,
    )
    sender.token = token
    return sender


def visible_again(aws: Aws, event: dict[str, Any]) -> None:
    """Time passes: the event's held messages become visible on the HubSpot queue again."""
    url = aws.queues[HUBSPOT_QUEUE.env_var]
    for record in event["Records"]:
        aws.sqs.change_message_visibility(
            QueueUrl=url, ReceiptHandle=record["receiptHandle"], VisibilityTimeout=0
        )


def received_again(aws: Aws) -> dict[str, Any]:
    url = aws.queues[HUBSPOT_QUEUE.env_var]
    received = aws.sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30, AttributeNames=["All"]
    )["Messages"]
    event = sqs_event([message["Body"] for message in received])
    for record, message in zip(event["Records"], received, strict=True):
        record["messageId"], record["receiptHandle"] = message["MessageId"], message["ReceiptHandle"]
        record["attributes"]["ApproximateReceiveCount"] = message["Attributes"]["ApproximateReceiveCount"]
    return event


def dead_lettered(aws: Aws, sender: HubSpotSender) -> list[dict[str, Any]]:
    return aws.sqs.receive_message(QueueUrl=sender.queue.dead_letter_url, MaxNumberOfMessages=10).get(
        "Messages", []
    )


def test_given_a_revoked_token_then_the_batch_is_held_not_dead_lettered_and_resumes_with_a_new_token(
    aws: Aws,
    rotating_sender: HubSpotSender,
    hubspot_api: FakeHubSpot,
    secrets: Secrets,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bodies = [delivery("d" * 24).model_dump_json(), delivery("e" * 24).model_dump_json()]
    event = queued_event(aws, bodies)

    # Given HubSpot refuses the token in the secret: every message of the batch is held
    with pytest.raises(BatchProcessingError):
        send_tasks(event, rotating_sender, far_deadline())

    assert dead_lettered(aws, rotating_sender) == []
    assert hubspot_api.tasks == {}
    # The first record asked HubSpot once, then read the secret again (the same token: no retry)
    assert len(hubspot_api.requests) == 1
    assert secrets.reads == 2
    assert any("put a valid token in the HubSpot secret" in record.getMessage() for record in caplog.records)
    url = aws.queues[HUBSPOT_QUEUE.env_var]
    assert aws.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []) == []  # held

    # While the secret holds the refused token, a later batch does not ask HubSpot again
    visible_again(aws, event)
    event = received_again(aws)
    with pytest.raises(BatchProcessingError):
        send_tasks(event, rotating_sender, far_deadline())
    assert len(hubspot_api.requests) == 1

    # When a new token is stored, the held messages are delivered: no redrive
    secrets.value = TOKEN
    visible_again(aws, event)
    answer = send_tasks(received_again(aws), rotating_sender, far_deadline())

    assert answer == {"batchItemFailures": []}
    assert len(hubspot_api.tasks) == 2
    assert dead_lettered(aws, rotating_sender) == []


def test_given_a_rotated_token_when_hubspot_refuses_the_cached_one_then_the_new_one_is_used_at_once(
    rotating_sender: HubSpotSender, hubspot_api: FakeHubSpot, secrets: Secrets
) -> None:
    secrets.value = TOKEN
    rotating_sender.token()  # cached
    hubspot_api.valid_token = "pat-na1-rotated-token"
    secrets.value = "pat-na1-rotated-token"

    answer = send_tasks(sqs_event([delivery().model_dump_json()]), rotating_sender, far_deadline())

    assert answer == {"batchItemFailures": []}
    assert len(hubspot_api.tasks) == 1
    assert [path for path, _ in hubspot_api.requests] == ["/crm/v3/objects/tasks"] * 2


def test_given_a_missing_scope_when_held_near_the_receive_limit_then_a_fresh_copy_replaces_the_message(
    aws: Aws, rotating_sender: HubSpotSender, hubspot_api: FakeHubSpot, secrets: Secrets
) -> None:
    secrets.value = TOKEN
    missing_scope = {
        "status": "error",
        "message": "This app hasn't been granted all required scopes to make this call.",
        "correlationId": "403-c0ffee",
        "category": "MISSING_SCOPES",
        "errors": [
            {
                "message": "One or more of the following scopes are required.",
                "context": {"requiredScopes": ["crm.objects.contacts.write"]},
            }
        ],
    }
    hubspot_api.script.append(lambda request: httpx.Response(403, json=missing_scope))
    body = delivery().model_dump_json()
    event = queued_event(aws, [body])
    # Given the message has been received as often as the queue allows but once
    event["Records"][0]["attributes"]["ApproximateReceiveCount"] = str(HUBSPOT_QUEUE.max_receive_count - 1)

    answer = send_tasks(event, rotating_sender, far_deadline())

    # The original is let go (a fresh copy is on the queue, delayed): never the DLQ
    assert answer == {"batchItemFailures": []}
    assert dead_lettered(aws, rotating_sender) == []
    url = aws.queues[HUBSPOT_QUEUE.env_var]
    attributes = aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (
        int(attributes["ApproximateNumberOfMessagesDelayed"]) + int(attributes["ApproximateNumberOfMessages"])
        >= 1
    )


# --- 423, 477: transient, never dead-lettered ----------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "policy_wait"),
    [(423, {}, 2), (477, {"Retry-After": "3600"}, 3600)],
    ids=["423-locked", "477-migration"],
)
def test_given_a_transient_refusal_that_outlasts_the_invocation_then_the_messages_are_held_not_dead_lettered(
    aws: Aws,
    sender: HubSpotSender,
    hubspot_api: FakeHubSpot,
    status: int,
    headers: dict[str, str],
    policy_wait: int,
) -> None:
    for _ in range(10):
        hubspot_api.script.append(
            lambda request: httpx.Response(status, json={"status": "error"}, headers=headers)
        )
    event = queued_event(aws, [delivery("d" * 24).model_dump_json()])

    import time

    with pytest.raises(BatchProcessingError):
        send_tasks(event, sender, time.monotonic() + 1.0)  # too little time to wait it out here

    assert dead_lettered(aws, sender) == []
    assert sender.ledger.claim(
        "hubspot_task", "d" * 24, delivery().routed_at
    ).fresh  # no task, claim released


# --- a stale owner or company: fall back, record it, count it ------------------------------------


@pytest.fixture
def routed_play(aws: Aws) -> PlayLedger:
    plays = PlayLedger(aws.dynamodb, aws.tables[PLAYS_TABLE.env_var], TEST_RETENTION_DAYS)
    plays.schedule(
        PlayRecord(
            account_id="acct-1",
            play_id="a" * 24,
            firing_id="f" * 24,
            tier=0,
            firing={
                "trigger": "seats",
                "play": "seat-expansion",
                "ruleset_version": "2026-11-23.2",
                "evaluated_at": "2026-11-25T09:00:00Z",
            },
            status=PlayStatus.ROUTED,
            updated_at=delivery().routed_at,
        )
    )
    return plays


INVALID_OWNER = {
    "status": "error",
    "message": 'Property values were not valid: [{"isValid":false,"message":"501 is not a valid owner id",'
    '"error":"INVALID_OWNER_ID","name":"hubspot_owner_id"}]',
    "correlationId": "owner-c0ffee",
    "category": "VALIDATION_ERROR",
}
INVALID_COMPANY = {
    "status": "error",
    "message": "One or more associations are invalid",
    "correlationId": "assoc-c0ffee",
    "context": {
        "INVALID_OBJECT_IDS": ["COMPANY=77 is not valid"],
        "objectId": ["77"],
        "objectType": ["COMPANY"],
    },
    "category": "VALIDATION_ERROR",
}


@pytest.mark.parametrize(
    ("refusals", "expected_owner", "expected_associations", "note", "problem"),
    [
        ([INVALID_OWNER], None, [{"id": "77"}], "HubSpot owner 501", "HubSpot does not know owner 501"),
        ([INVALID_COMPANY], "501", [], "HubSpot company 77", "HubSpot does not know record 77"),
        ([INVALID_OWNER, INVALID_COMPANY], None, [], "HubSpot company 77", "owner 501"),
    ],
    ids=["stale-owner", "stale-company", "both"],
)
def test_given_a_400_for_a_stale_owner_or_company_then_the_task_is_created_without_it_and_the_play_says_so(
    aws: Aws,
    sender: HubSpotSender,
    hubspot_api: FakeHubSpot,
    routed_play: PlayLedger,
    refusals: list[dict[str, Any]],
    expected_owner: str | None,
    expected_associations: list[dict[str, str]],
    note: str,
    problem: str,
) -> None:
    sender.plays = routed_play
    for refusal in refusals:
        hubspot_api.script.append(lambda request, refusal=refusal: httpx.Response(400, json=refusal))

    answer = send_tasks(sqs_event([delivery().model_dump_json()]), sender, far_deadline())

    assert answer == {"batchItemFailures": []}
    assert dead_lettered(aws, sender) == []
    [created] = hubspot_api.created.values()
    assert created["properties"].get("hubspot_owner_id") == expected_owner
    assert [association["to"] for association in created["associations"]] == expected_associations
    assert note in created["properties"]["hs_task_body"]
    assert "Upswing play " + "a" * 24 in created["properties"]["hs_task_body"]
    # The play records it, and GET .../signals shows it
    record = routed_play.get("acct-1", "a" * 24)
    assert record is not None
    [recorded] = play_state(record)["delivery_problems"]
    assert recorded["channel"] == "hubspot_task"
    assert problem in recorded["problem"]


def test_given_a_stale_owner_when_the_play_is_not_in_the_ledger_then_the_task_is_still_created(
    sender: HubSpotSender, hubspot_api: FakeHubSpot, aws: Aws
) -> None:
    sender.plays = PlayLedger(aws.dynamodb, aws.tables[PLAYS_TABLE.env_var], TEST_RETENTION_DAYS)
    hubspot_api.script.append(lambda request: httpx.Response(400, json=INVALID_OWNER))

    answer = send_tasks(sqs_event([delivery().model_dump_json()]), sender, far_deadline())

    assert answer == {"batchItemFailures": []}
    assert len(hubspot_api.tasks) == 1
