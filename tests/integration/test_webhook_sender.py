"""The webhook sender: signed POSTs (httpx MockTransport), the same Idempotency-Key on every attempt,
retries held with backoff on the real (moto) queue, refusals dead-lettered with the reason."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from functions.webhook_sender.handler import send_webhooks
from shared.delivery.backoff import Backoff
from shared.delivery.ledger import DeliveryLedger
from shared.delivery.queue import DeliveryQueue
from shared.delivery.webhook import WebhookSender, idempotency_key, sign
from shared.resources import DELIVERIES_TABLE, WEBHOOK_QUEUE, WEBHOOK_SENDER_FUNCTION
from shared.routing.messages import PlayDelivery
from tests.conftest import TEST_RETENTION_DAYS, Aws, _test_client
from tests.integration.builders import received_from

SECRET_ID = "upswing/webhooks/in-app"
SIGNING_SECRET = "whsec_upswing_example"
SIGNED_AT = 1764979200  # 2025-12-06T00:00:00Z
PLAY_ID = "a" * 24
EVENT = {
    "play_id": PLAY_ID,
    "firing_id": "f" * 24,
    "account_id": "acct-1",
    "trigger": "seats",
    "play": "nudge",
    "tier": 0,
    "ruleset_version": "2026-11-23.2",
    "channels": ["webhook:in-app"],
    "skipped": {},
    "owner": {"role": "csm", "hubspot_owner_id": "501", "from_pool": False},
    "due": "2026-11-27",
    "priority": "HIGH",
    "routed_at": "2026-11-25T10:00:00Z",
}


def delivery(play_id: str = PLAY_ID, **changes: Any) -> PlayDelivery:
    fields: dict[str, Any] = {
        "play_id": play_id,
        "channel": "webhook",
        "firing_id": "f" * 24,
        "account_id": "acct-1",
        "account_name": "Acme",
        "trigger": "seats",
        "play": "nudge",
        "tier": 0,
        "ruleset_version": "2026-11-23.2",
        "subject": "Nudge: Acme",
        "body": "Now: 46 of 50 seats.",
        "due": "2026-11-27",
        "priority": "HIGH",
        "owner": {"role": "csm", "name": "Casey", "email": "casey@example.com", "hubspot_owner_id": "501"},
        "routed_at": "2026-11-25T10:00:00Z",
        "webhook": {"name": "in-app", "url": "https://hooks.example.com/in-app", "secret": SECRET_ID},
        "event": {**EVENT, "play_id": play_id},
    }
    return PlayDelivery.model_validate(fields | changes)


class Destination:
    """The receiving end: answers from a script, records every request it got."""

    def __init__(self, *answers: httpx.Response | type[Exception]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if self.answers else httpx.Response(200)
        if isinstance(answer, type):
            raise answer("simulated", request=request)
        return answer


class RecordingSqs:
    """The real (moto) SQS client, with the visibility changes the sender asks for written down."""

    def __init__(self, sqs: Any) -> None:
        self._sqs = sqs
        self.holds: list[int] = []

    def change_message_visibility(self, **request: Any) -> Any:
        self.holds.append(request["VisibilityTimeout"])
        return self._sqs.change_message_visibility(**request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sqs, name)


@pytest.fixture
def dlq(aws: Aws) -> str:
    return str(aws.sqs.create_queue(QueueName="webhook-dlq")["QueueUrl"])


def make_sender(aws: Aws, dlq: str, destination: Destination) -> tuple[WebhookSender, RecordingSqs]:
    secrets = _test_client("secretsmanager")
    secrets.create_secret(Name=SECRET_ID, SecretString=json.dumps({"secret": SIGNING_SECRET}))
    sqs = RecordingSqs(aws.sqs)
    sender = WebhookSender(
        http=httpx.Client(transport=httpx.MockTransport(destination)),
        ledger=DeliveryLedger(aws.dynamodb, aws.tables[DELIVERIES_TABLE.env_var], TEST_RETENTION_DAYS),
        queue=DeliveryQueue(sqs, aws.queues[WEBHOOK_QUEUE.env_var], dlq, WEBHOOK_SENDER_FUNCTION, 10),
        secrets_client=secrets,
        backoff=Backoff(first_seconds=30, longest_seconds=3600),
        clock=lambda: SIGNED_AT,
    )
    return sender, sqs


def received(aws: Aws, body: str) -> dict[str, Any]:
    return received_from(aws, WEBHOOK_QUEUE, body)


def dead_letters(aws: Aws, dlq: str) -> list[dict[str, Any]]:
    messages = aws.sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, MessageAttributeNames=["All"])
    return messages.get("Messages", [])


# ── the signature ───────────────────────────────────────────────────────────────────────────────


def test_given_a_known_vector_then_the_signature_is_stripes_scheme() -> None:
    # The expected digest was computed outside Python, by hand:
    #   printf '%s' '1764979200.{"type":"play.routed","id":"x"}' \
    #     | openssl dgst -sha256 -hmac 'whsec_upswing_example'
    body = b'{"type":"play.routed","id":"x"}'

    assert sign(SIGNING_SECRET, SIGNED_AT, body) == (
        "t=1764979200,v1=56fe0ff9ca0878d760e4dbdc82083f5ade81eb224127c9d161e84e2e36518b6e"
    )


def test_the_destination_gets_play_routed_signed_so_the_documented_check_accepts_it(
    aws: Aws, dlq: str
) -> None:
    destination = Destination(httpx.Response(204))
    sender, _ = make_sender(aws, dlq, destination)

    answer = send_webhooks(received(aws, delivery().model_dump_json()), sender)

    assert answer == {"batchItemFailures": []}
    [request] = destination.requests
    assert request.method == "POST"
    assert str(request.url) == "https://hooks.example.com/in-app"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"] == f"{PLAY_ID}.in-app"
    document = json.loads(request.content)
    assert document == {"type": "play.routed", "id": f"{PLAY_ID}.in-app", "detail": EVENT}
    assert "casey@example.com" not in request.content.decode()
    # The receiver's check, exactly as docs/api.md ("Webhooks") writes it:
    parts = dict(item.split("=", 1) for item in request.headers["upswing-signature"].split(","))
    expected = hmac.new(
        SIGNING_SECRET.encode(), parts["t"].encode() + b"." + request.content, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(expected, parts["v1"])
    assert int(parts["t"]) == SIGNED_AT


# ── redelivery, retries, refusals ───────────────────────────────────────────────────────────────


def test_given_a_5xx_then_a_429_then_the_retries_carry_the_same_key_with_backoff_then_retry_after(
    aws: Aws, dlq: str
) -> None:
    destination = Destination(
        httpx.Response(503, text="busy"),
        httpx.Response(429, headers={"Retry-After": "120"}),
        httpx.Response(200),
    )
    sender, sqs = make_sender(aws, dlq, destination)
    body = delivery().model_dump_json()

    # Given a first attempt answered 503: the record fails and is held for the first backoff step
    with pytest.raises(BatchProcessingError):
        send_webhooks(received(aws, body), sender)
    # And a redelivery answered 429 with Retry-After: held for what the destination asked
    with pytest.raises(BatchProcessingError):
        send_webhooks(received(aws, body), sender)
    # When a third attempt is accepted
    assert send_webhooks(received(aws, body), sender) == {"batchItemFailures": []}

    # Then every attempt carried the same Idempotency-Key and body; nothing was dead-lettered
    assert sqs.holds == [30, 120]
    assert {request.headers["idempotency-key"] for request in destination.requests} == {f"{PLAY_ID}.in-app"}
    assert len({request.content for request in destination.requests}) == 1
    assert dead_letters(aws, dlq) == []


def test_given_a_timeout_then_it_is_retried_with_a_growing_delay(aws: Aws, dlq: str) -> None:
    destination = Destination(httpx.ReadTimeout)
    sender, sqs = make_sender(aws, dlq, destination)
    event = received(aws, delivery().model_dump_json())
    event["Records"][0]["attributes"]["ApproximateReceiveCount"] = "4"

    with pytest.raises(BatchProcessingError):
        send_webhooks(event, sender)

    assert sqs.holds == [240]  # 30 s * 2^(4 - 1)


def test_given_an_accepted_delivery_when_sqs_redelivers_it_then_it_is_not_posted_again(
    aws: Aws, dlq: str
) -> None:
    destination = Destination(httpx.Response(200), httpx.Response(200))
    sender, _ = make_sender(aws, dlq, destination)
    body = delivery().model_dump_json()

    send_webhooks(received(aws, body), sender)
    send_webhooks(received(aws, body), sender)

    assert len(destination.requests) == 1


def test_given_two_destinations_then_each_gets_its_own_key(aws: Aws, dlq: str) -> None:
    assert idempotency_key(PLAY_ID, "in-app") != idempotency_key(PLAY_ID, "crm-sync")
    assert idempotency_key(PLAY_ID, "in-app") == idempotency_key(PLAY_ID, "in-app")


def test_given_a_400_then_the_delivery_is_dead_lettered_with_the_reason_and_not_retried(
    aws: Aws, dlq: str
) -> None:
    destination = Destination(httpx.Response(400, json={"error": "unknown account acct-1"}))
    sender, sqs = make_sender(aws, dlq, destination)
    body = delivery().model_dump_json()

    answer = send_webhooks(received(aws, body), sender)

    assert answer == {"batchItemFailures": []}  # off the queue: retrying cannot change a 400
    assert sqs.holds == []
    [dead] = dead_letters(aws, dlq)
    assert dead["Body"] == body
    reason = dead["MessageAttributes"]["error"]["StringValue"]
    assert reason.startswith("in-app: HTTP 400 (refused for good): ")
    assert "unknown account acct-1" in reason


def test_given_a_redirect_then_it_is_dead_lettered_naming_where_it_points(aws: Aws, dlq: str) -> None:
    destination = Destination(httpx.Response(301, headers={"Location": "https://new.example.com/hook"}))
    sender, _ = make_sender(aws, dlq, destination)

    send_webhooks(received(aws, delivery().model_dump_json()), sender)

    [dead] = dead_letters(aws, dlq)
    assert "HTTP 301 to https://new.example.com/hook" in dead["MessageAttributes"]["error"]["StringValue"]


def test_given_a_malformed_message_then_it_is_dead_lettered_alone(aws: Aws, dlq: str) -> None:
    destination = Destination()
    sender, _ = make_sender(aws, dlq, destination)

    send_webhooks(received(aws, '{"type": "play.deliver"}'), sender)

    [dead] = dead_letters(aws, dlq)
    assert dead["MessageAttributes"]["error"]["StringValue"].startswith("not a play delivery: ")
    assert destination.requests == []


def test_given_an_empty_signing_secret_then_the_delivery_waits_rather_than_being_dropped(
    aws: Aws, dlq: str
) -> None:
    destination = Destination()
    sender, sqs = make_sender(aws, dlq, destination)
    _test_client("secretsmanager").put_secret_value(SecretId=SECRET_ID, SecretString="  ")

    with pytest.raises(BatchProcessingError):
        send_webhooks(received(aws, delivery().model_dump_json()), sender)

    assert destination.requests == []
    assert sqs.holds == [30]
    assert dead_letters(aws, dlq) == []


def test_over_loopback_the_local_webhook_sink_verifies_what_the_sender_signs(aws: Aws, dlq: str) -> None:
    """The real sender, a real HTTP hop, and a receiver checking the signature as docs/api.md says."""
    from upswing.local.channel_sinks import WebhookSink

    sink = WebhookSink(SIGNING_SECRET).start()
    try:
        sender, _ = make_sender(aws, dlq, Destination())
        sender.http = httpx.Client(timeout=5)
        sender.clock = time.time
        target = {"name": "in-app", "url": f"{sink.endpoint}/hook", "secret": SECRET_ID}

        send_webhooks(received(aws, delivery(webhook=target).model_dump_json()), sender)

        [request] = sink.requests
        assert request["verified"] is True
        assert request["idempotency_key"] == f"{PLAY_ID}.in-app"
        assert request["body"]["detail"] == EVENT
    finally:
        sink.stop()


def test_a_receiver_with_another_secret_refuses_and_the_delivery_is_dead_lettered(aws: Aws, dlq: str) -> None:
    from upswing.local.channel_sinks import WebhookSink

    sink = WebhookSink("not-the-same-secret").start()
    try:
        sender, _ = make_sender(aws, dlq, Destination())
        sender.http = httpx.Client(timeout=5)
        target = {"name": "in-app", "url": f"{sink.endpoint}/hook", "secret": SECRET_ID}

        send_webhooks(received(aws, delivery(webhook=target).model_dump_json()), sender)

        assert [request["verified"] for request in sink.requests] == [False]
        [dead] = dead_letters(aws, dlq)
        assert dead["MessageAttributes"]["error"]["StringValue"].startswith(
            "in-app: HTTP 401 (refused for good)"
        )
    finally:
        sink.stop()
