"""Slack's interactivity requests (POST /v1/slack/interactions): verified, then a "Not useful" click
recorded on its play.

Slack signs each request with the app's signing secret ("Verifying requests from Slack"):
`X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:<X-Slack-Request-Timestamp>:<raw body>">`. A request
whose timestamp is more than five minutes from now is refused whatever its signature (a replay). The
body is form-encoded with one field, `payload`, a JSON `block_actions` document; the button's
`value` names the play (shared/delivery/slack.py writes it). The first verdict on a play stays.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from shared.delivery.slack import NOT_USEFUL_ACTION
from shared.routing.ledger import PlayLedger
from shared.timestamps import utc_stamp

TOLERANCE_SECONDS = 300


class SlackRequestRefused(Exception):
    """Not a request Slack signed (or too old): a 401 with the reason."""


class NotAnInteraction(Exception):
    """Signed, but not a document this endpoint understands: a 400 with the reason."""


def slack_signature(signing_secret: str, timestamp: str, body: bytes) -> str:
    """`v0=<hex>`: what Slack puts in X-Slack-Signature for this body at this timestamp."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()


def verify_slack_request(
    signing_secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float
) -> None:
    """Nothing when Slack signed this body within the last five minutes; SlackRequestRefused otherwise."""
    if not timestamp or not signature:
        raise SlackRequestRefused("X-Slack-Request-Timestamp and X-Slack-Signature are required")
    if not timestamp.isdigit():
        raise SlackRequestRefused("X-Slack-Request-Timestamp is not a number of seconds")
    if abs(now - int(timestamp)) > TOLERANCE_SECONDS:
        raise SlackRequestRefused("the request's timestamp is more than 5 minutes from now (a replay?)")
    if not hmac.compare_digest(slack_signature(signing_secret, timestamp, body), signature):
        raise SlackRequestRefused("the signature does not match the body (wrong signing secret?)")


@dataclass(frozen=True)
class NotUseful:
    account_id: str
    play_id: str
    user_id: str  # Slack's user id of whoever clicked (never a name or an address)


def parse_interaction(body: bytes) -> NotUseful | None:
    """The "Not useful" click in a verified body; None for another interaction (acknowledged, ignored)."""
    fields = parse_qs(body.decode("utf-8", errors="replace"))
    if "payload" not in fields:
        raise NotAnInteraction("the body has no `payload` field (form-encoded, as Slack sends)")
    try:
        payload = json.loads(fields["payload"][0])
    except ValueError as error:
        raise NotAnInteraction(f"`payload` is not JSON: {error}") from None
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        return None
    for action in payload.get("actions") or []:
        if isinstance(action, dict) and action.get("action_id") == NOT_USEFUL_ACTION:
            return _not_useful(action, payload)
    return None


def record_not_useful(plays: PlayLedger, click: NotUseful, now: datetime) -> bool:
    """The verdict on the play; True when recorded now, False when the play had one. KeyError: no play."""
    return plays.record_feedback(
        click.account_id,
        click.play_id,
        {"verdict": "not_useful", "by": f"slack:{click.user_id}", "via": "slack", "at": utc_stamp(now)},
    )


def _not_useful(action: dict[str, Any], payload: dict[str, Any]) -> NotUseful:
    try:
        value = json.loads(str(action.get("value")))
        account_id, play_id = str(value["account_id"]), str(value["play_id"])
    except (ValueError, KeyError, TypeError):
        raise NotAnInteraction("the Not useful button's value does not name a play") from None
    user = payload.get("user")
    user = user if isinstance(user, dict) else {}
    return NotUseful(account_id=account_id, play_id=play_id, user_id=str(user.get("id") or "unknown"))
