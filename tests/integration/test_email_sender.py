"""The email sender on moto's SES v2: one notification per play, plain text and HTML, never twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from functions.email_sender.handler import EmailSender, send_emails
from shared.delivery.email import render_email
from shared.delivery.ledger import DeliveryInFlight, DeliveryLedger, DeliveryStatus
from shared.delivery.ses import SesMailer
from shared.resources import DELIVERIES_TABLE
from shared.routing.messages import PlayDelivery
from tests.conftest import TEST_RETENTION_DAYS, Aws, _test_client
from tests.integration.builders import sqs_event

SENDER = "upswing@example.com"
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def delivery(play_id: str = "a" * 24, **changes: Any) -> PlayDelivery:
    fields: dict[str, Any] = {
        "play_id": play_id,
        "channel": "email",
        "firing_id": "f" * 24,
        "account_id": "acct-1",
        "account_name": "Acme <Labs>",
        "trigger": "seats",
        "play": "seat-expansion",
        "tier": 0,
        "ruleset_version": "2026-11-23.2",
        "subject": "Seat expansion: Acme <Labs> is running out of seats",
        "body": "Current state: 46 of 50 seats.\n\nEvidence:\n- seat_saturation: held\n  - detail",
        "due": "2026-11-27",
        "priority": "HIGH",
        "owner": {"role": "csm", "name": "Casey", "email": "casey@example.com", "hubspot_owner_id": "501"},
        "routed_at": "2026-11-25T10:00:00Z",
    }
    return PlayDelivery.model_validate(fields | changes)


def sent_messages() -> list[Any]:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    return list(ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages)


@pytest.fixture
def email(aws: Aws) -> EmailSender:
    ses = _test_client("sesv2")
    ses.create_email_identity(EmailIdentity=SENDER)
    ledger = DeliveryLedger(aws.dynamodb, aws.tables[DELIVERIES_TABLE.env_var], TEST_RETENTION_DAYS)
    return EmailSender(mail=SesMailer(ses, SENDER), ledger=ledger)


def test_the_owner_gets_one_email_with_the_narrative(aws: Aws, email: EmailSender) -> None:
    assert email.deliver(delivery(), NOW) == "delivered"

    [message] = sent_messages()
    assert message.source == SENDER
    assert message.destinations == {"ToAddresses": ["casey@example.com"]}
    assert message.subject == "Seat expansion: Acme <Labs> is running out of seats"
    assert "<p>Current state: 46 of 50 seats.</p>" in message.body  # moto keeps the HTML part
    claim = email.ledger.claim("email", "a" * 24, NOW)
    assert (claim.fresh, claim.status, claim.external_id) == (False, DeliveryStatus.DELIVERED, message.id)


def test_a_redelivered_message_sends_nothing_twice(aws: Aws, email: EmailSender) -> None:
    email.deliver(delivery(), NOW)
    assert email.deliver(delivery(), NOW + timedelta(minutes=3)) == "already delivered"
    assert len(sent_messages()) == 1


def test_an_attempt_that_stopped_mid_send_is_recorded_as_unknown_not_repeated(
    aws: Aws, email: EmailSender
) -> None:
    # Given an earlier attempt claimed the delivery and vanished (a timeout mid-send)
    email.ledger.claim("email", "a" * 24, NOW)

    # While it may still be running, the message waits
    with pytest.raises(DeliveryInFlight):
        email.deliver(delivery(), NOW + timedelta(seconds=5))
    # Once it cannot be running any more, the doubt is recorded and nothing is sent
    assert email.deliver(delivery(), NOW + timedelta(minutes=5)) == "already unknown"
    assert sent_messages() == []


def test_an_ses_error_releases_the_claim_so_the_retry_sends(aws: Aws) -> None:
    ses = _test_client("sesv2")  # no verified identity: SES rejects the sender
    ledger = DeliveryLedger(aws.dynamodb, aws.tables[DELIVERIES_TABLE.env_var], TEST_RETENTION_DAYS)
    email = EmailSender(mail=SesMailer(ses, SENDER), ledger=ledger)

    # A batch whose every record failed is failed whole (Powertools raises; Lambda retries it)
    with pytest.raises(BatchProcessingError, match="Email address not verified"):
        send_emails(sqs_event([delivery().model_dump_json()]), email)

    ses.create_email_identity(EmailIdentity=SENDER)
    assert email.deliver(delivery(), NOW) == "delivered"
    assert len(sent_messages()) == 1


def test_a_poison_message_fails_alone(aws: Aws, email: EmailSender) -> None:
    event = sqs_event(
        ["{not json", delivery().model_dump_json(), delivery(channel="hubspot_task").model_dump_json()]
    )

    answer = send_emails(event, email)

    failed = {failure["itemIdentifier"] for failure in answer["batchItemFailures"]}
    assert failed == {event["Records"][0]["messageId"], event["Records"][2]["messageId"]}
    assert len(sent_messages()) == 1


def test_the_email_escapes_what_it_shows_and_keeps_the_evidence_indented() -> None:
    content = render_email(delivery(tier=2))

    assert (
        '<h2 style="font-size: 18px;">Seat expansion: Acme &lt;Labs&gt; is running out of seats</h2>'
        in content.html
    )
    assert "<p>Evidence:<br>- seat_saturation: held<br>&nbsp;&nbsp;- detail</p>" in content.html
    assert "seat-expansion (escalation 2)" in content.html
    assert content.text.startswith("Hi Casey,\n\nSeat expansion: Acme <Labs> is running out of seats\n\n")
    assert "Due: 2026-11-27 · Priority: high · Play: seat-expansion (escalation 2)" in content.text
