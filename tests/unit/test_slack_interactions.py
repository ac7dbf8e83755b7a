"""Slack's request signature, checked against Slack's own documented example ("Verifying requests
from Slack"), and the ways a request is refused."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from shared.delivery.slack import NOT_USEFUL_ACTION
from shared.delivery.slack_interactions import (
    NotAnInteraction,
    NotUseful,
    SlackRequestRefused,
    parse_interaction,
    slack_signature,
    verify_slack_request,
)

# Slack's documented example: its signing secret, timestamp, body and the signature it expects.
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TIMESTAMP = "1531420618"
BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
EXPECTED = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
THEN = float(TIMESTAMP)


def test_given_slacks_documented_example_then_the_signature_is_the_one_slack_expects() -> None:
    assert slack_signature(SECRET, TIMESTAMP, BODY) == EXPECTED
    verify_slack_request(SECRET, TIMESTAMP, EXPECTED, BODY, now=THEN + 10)  # does not raise


@pytest.mark.parametrize(
    ("timestamp", "signature", "body", "now", "reason"),
    [
        (TIMESTAMP, EXPECTED, BODY + b"&text=hi", THEN, "does not match the body"),
        (TIMESTAMP, EXPECTED.replace("a2", "b2", 1), BODY, THEN, "does not match the body"),
        (TIMESTAMP, EXPECTED, BODY, THEN + 301, "more than 5 minutes from now"),
        (TIMESTAMP, EXPECTED, BODY, THEN - 301, "more than 5 minutes from now"),
        (None, EXPECTED, BODY, THEN, "are required"),
        (TIMESTAMP, None, BODY, THEN, "are required"),
        ("yesterday", EXPECTED, BODY, THEN, "not a number"),
    ],
)
def test_given_a_tampered_stale_or_unsigned_request_then_it_is_refused(
    timestamp: str | None, signature: str | None, body: bytes, now: float, reason: str
) -> None:
    with pytest.raises(SlackRequestRefused, match=reason):
        verify_slack_request(SECRET, timestamp, signature, body, now=now)


def test_given_the_wrong_signing_secret_then_slacks_example_is_refused() -> None:
    with pytest.raises(SlackRequestRefused):
        verify_slack_request("another-secret", TIMESTAMP, EXPECTED, BODY, now=THEN)


def interaction(actions: list[dict[str, object]], kind: str = "block_actions") -> bytes:
    payload = {"type": kind, "user": {"id": "U0CASEY", "name": "casey"}, "actions": actions}
    return urlencode({"payload": json.dumps(payload)}).encode()


def test_given_a_not_useful_click_then_it_names_the_play_and_the_slack_user() -> None:
    value = json.dumps({"account_id": "acct-1", "play_id": "b" * 24})
    body = interaction([{"action_id": NOT_USEFUL_ACTION, "type": "button", "value": value}])

    assert parse_interaction(body) == NotUseful(account_id="acct-1", play_id="b" * 24, user_id="U0CASEY")


def test_given_another_interaction_then_it_is_ignored() -> None:
    assert (
        parse_interaction(interaction([{"action_id": "upswing_open_in_hubspot", "type": "button"}])) is None
    )
    assert parse_interaction(interaction([], kind="view_submission")) is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"token=abc", "no `payload` field"),
        (b"payload=%7Bnot-json", "not JSON"),
        (interaction([{"action_id": NOT_USEFUL_ACTION, "value": "acct-1"}]), "does not name a play"),
    ],
)
def test_given_a_signed_body_that_is_not_an_interaction_then_it_says_why(body: bytes, reason: str) -> None:
    with pytest.raises(NotAnInteraction, match=reason):
        parse_interaction(body)
