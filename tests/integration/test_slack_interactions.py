"""POST /v1/slack/interactions through the API function: Slack's signed "Not useful" click is
recorded on its play and shown by GET .../signals; unsigned, stale or unknown clicks are refused."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest

from shared.delivery.slack import NOT_USEFUL_ACTION
from shared.delivery.slack_interactions import slack_signature
from shared.resources import PLAYS_TABLE, SLACK_SIGNING_SECRET_ENV
from shared.routing.ledger import PlayLedger, PlayRecord, PlayStatus
from tests.conftest import TEST_RETENTION_DAYS, Aws, _test_client
from tests.integration.builders import account_path, call_api, proxy_event

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
PLAY_ID = "b" * 24


@pytest.fixture
def slack_app(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = _test_client("secretsmanager").create_secret(
        Name="upswing/test/slack-signing-secret", SecretString=json.dumps({"signing_secret": SIGNING_SECRET})
    )
    monkeypatch.setenv(SLACK_SIGNING_SECRET_ENV, secret["ARN"])
    PlayLedger(aws.dynamodb, aws.tables[PLAYS_TABLE.env_var], TEST_RETENTION_DAYS).schedule(
        PlayRecord(
            account_id="acct-1",
            play_id=PLAY_ID,
            firing_id="f" * 24,
            tier=0,
            firing={
                "trigger": "seats",
                "play": "seat-expansion",
                "ruleset_version": "2026-11-23.2",
                "evaluated_at": "2026-11-25T09:00:00Z",
            },
            status=PlayStatus.ROUTED,
            updated_at=datetime.now(UTC),
        )
    )


def click(play_id: str = PLAY_ID, *, secret: str = SIGNING_SECRET, age: int = 0) -> dict[str, Any]:
    """Slack's POST for a click on the play's Not useful button, signed as Slack signs it."""
    payload = {
        "type": "block_actions",
        "user": {"id": "U0CASEY", "username": "casey"},
        "actions": [
            {
                "action_id": NOT_USEFUL_ACTION,
                "type": "button",
                "value": json.dumps({"account_id": "acct-1", "play_id": play_id}),
            }
        ],
    }
    body = urlencode({"payload": json.dumps(payload)})
    timestamp = str(int(time.time()) - age)
    event = proxy_event(
        "POST", "/v1/slack/interactions", body, content_type="application/x-www-form-urlencoded"
    )
    # Slack sends no producer key; API Gateway runs no authorizer on this route.
    del event["headers"]["Authorization"], event["multiValueHeaders"]["Authorization"]
    event["requestContext"].pop("authorizer")
    event["headers"]["X-Slack-Request-Timestamp"] = timestamp
    event["headers"]["X-Slack-Signature"] = slack_signature(secret, timestamp, body.encode())
    return event


def test_a_signed_not_useful_click_is_recorded_once_and_shown_with_the_play(
    aws: Aws, slack_app: None
) -> None:
    status, answer = call_api(click())
    again_status, again = call_api(click())

    assert (status, answer) == (200, {"message": "Recorded: not useful."})
    assert (again_status, again) == (200, {"message": "This play already has feedback."})
    status, signals = call_api(proxy_event("GET", account_path("acct-1", "/signals")))
    assert status == 200
    [play] = [play for play in signals["recent_plays"] if play["play_id"] == PLAY_ID]
    assert play["feedback"]["verdict"] == "not_useful"
    assert play["feedback"]["by"] == "slack:U0CASEY"
    assert play["feedback"]["via"] == "slack"


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            lambda: click(secret="not-the-apps-secret"),
            "Not a request from Slack: the signature does not match",
        ),
        (lambda: click(age=600), "Not a request from Slack: the request's timestamp is more than 5 minutes"),
    ],
)
def test_a_forged_or_replayed_click_is_refused_and_records_nothing(
    aws: Aws, slack_app: None, event: Any, expected: str
) -> None:
    status, answer = call_api(event())

    assert status == 401
    assert answer["message"].startswith(expected)
    record = PlayLedger(aws.dynamodb, aws.tables[PLAYS_TABLE.env_var], TEST_RETENTION_DAYS).get(
        "acct-1", PLAY_ID
    )
    assert record is not None
    assert record.feedback is None


def test_a_tampered_body_is_refused(aws: Aws, slack_app: None) -> None:
    event = click()
    event["body"] = event["body"].replace("U0CASEY", "U0MALLORY")

    status, _ = call_api(event)

    assert status == 401


def test_a_click_on_a_play_upswing_does_not_have_is_a_404(aws: Aws, slack_app: None) -> None:
    status, answer = call_api(click("c" * 24))

    assert status == 404
    assert "c" * 24 in answer["message"]


def test_without_a_signing_secret_the_route_says_slack_is_not_set_up(aws: Aws) -> None:
    status, answer = call_api(click())

    assert status == 503
    assert "not set up" in answer["message"]
