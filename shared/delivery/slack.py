"""Slack deliveries (SQS) → one Block Kit message per play, at most once: a DM to the owner or a post
in the channel the play names.

The owner is found by e-mail address (`users.lookupByEmail`, cached for an hour per process), the
message posted with `chat.postMessage` under the bot token (Secrets Manager, re-read every five
minutes). Like the email, a Slack message cannot be looked up afterwards, so a delivery whose post
may have gone out (a 5xx, a timeout) is never posted again: the deliveries ledger records it as
`unknown` (shared/delivery/ledger.py). Slack's answers:

- HTTP 429 or `ratelimited`: the message waits Retry-After (held on the queue), nothing was posted.
  Each process also paces itself: one post per second, 50 lookups a minute (Slack's tiers).
- `users_not_found`, `channel_not_found`, `not_in_channel`, `is_archived` and the other refusals a
  retry cannot change: the play records the problem (GET .../signals, `delivery_problems`) and the
  message goes to the Slack DLQ with the reason: visible, never a silent drop.
- `invalid_auth`, `token_revoked`, `missing_scope` and the like: the token is wrong, not the play;
  the message is held and retried (with backoff) until someone fixes the token, and `SlackTokenRejected`
  alarms.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from botocore.exceptions import ClientError
from pydantic import ValidationError

from shared.delivery.backoff import Backoff, retry_after
from shared.delivery.ledger import Claim, DeliveryInFlight, DeliveryLedger, DeliveryStatus, deliver_once
from shared.delivery.pacing import Pacer
from shared.delivery.queue import DeliveryQueue
from shared.events.validation import describe_errors
from shared.observability import logger, metrics
from shared.routing.ledger import PlayLedger
from shared.routing.messages import PlayDelivery
from shared.rules.plays import Channel

SLACK_API = "https://slack.com/api"
NOT_USEFUL_ACTION = "upswing_not_useful"
OPEN_IN_HUBSPOT_ACTION = "upswing_open_in_hubspot"
_TEXT_LIMIT = 3000  # characters of one Block Kit text object
_HEADER_LIMIT = 150
_AUTH_ERRORS = {
    "not_authed",
    "invalid_auth",
    "account_inactive",
    "token_revoked",
    "token_expired",
    "missing_scope",
    "no_permission",
    "not_allowed_token_type",
    "ekm_access_denied",
}
_UNAVAILABLE_ERRORS = {"internal_error", "fatal_error", "service_unavailable", "request_timeout"}
# What a refusal means, in words for whoever reads the play or the DLQ.
REFUSALS = {
    "users_not_found": "no Slack user has the owner's e-mail address (is it right, and are they in the "
    "workspace?)",
    "user_not_found": "the Slack user does not exist",
    "channel_not_found": "the channel does not exist, or the bot cannot see it (invite the bot)",
    "not_in_channel": "the bot is not in the channel: invite it (/invite @Upswing)",
    "is_archived": "the channel is archived",
    "restricted_action": "the workspace does not let the bot post there",
    "msg_too_long": "the message is too long for Slack",
    "invalid_blocks": "Slack refused the message's blocks",
    "no_text": "the message had no text",
}


class SlackRateLimited(Exception):
    """429 or `ratelimited`: nothing was posted; try again after `wait_seconds`."""

    def __init__(self, method: str, wait_seconds: float) -> None:
        super().__init__(f"Slack {method} rate limited: retry in {wait_seconds:g} s")
        self.wait_seconds = wait_seconds


class SlackRefused(Exception):
    """Slack answered `ok: false` with an error a retry cannot change (nothing was posted)."""

    def __init__(self, method: str, code: str) -> None:
        meaning = REFUSALS.get(code, "see https://api.slack.com/methods/" + method)
        super().__init__(f"Slack {method}: {code}: {meaning}")
        self.code = code


class SlackAuthFailed(Exception):
    """The bot token is missing, revoked or lacks a scope (chat:write, users:read.email)."""

    def __init__(self, method: str, code: str) -> None:
        super().__init__(
            f"Slack {method}: {code}: fix the bot token in its secret (scopes chat:write, users:read.email)"
        )
        self.code = code


class SlackUnavailable(Exception):
    """A 5xx, a timeout, a broken connection: the outcome of a post is unknown."""


@dataclass
class SlackClient:
    http: httpx.Client
    token: Callable[[], str]
    base_url: str = SLACK_API
    # chat.postMessage: about one message a second per channel; users.lookupByEmail: Tier 3.
    post_pacer: Pacer = field(default_factory=lambda: Pacer(1, 1.0))
    lookup_pacer: Pacer = field(default_factory=lambda: Pacer(50, 60.0))
    cache_seconds: float = 3600.0
    clock: Callable[[], float] = time.monotonic
    _users: dict[str, tuple[str, float]] = field(default_factory=dict)

    def user_id(self, email: str) -> str:
        """The Slack user id of an e-mail address (cached; a miss is asked again next time)."""
        cached = self._users.get(email.lower())
        if cached and self.clock() - cached[1] < self.cache_seconds:
            return cached[0]
        self.lookup_pacer.acquire()
        answer = self._call("users.lookupByEmail", data={"email": email})
        user = str(answer["user"]["id"])
        self._users[email.lower()] = (user, self.clock())
        return user

    def post_message(self, channel: str, text: str, blocks: list[dict[str, Any]]) -> str:
        """Post; `<channel id>/<ts>` of the message."""
        self.post_pacer.acquire()
        answer = self._call(
            "chat.postMessage",
            json_body={"channel": channel, "text": text, "blocks": blocks, "unfurl_links": False},
        )
        return f"{answer.get('channel', channel)}/{answer.get('ts', '')}"

    def _call(
        self, method: str, *, data: dict[str, str] | None = None, json_body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token()}"}
        try:
            if json_body is not None:
                answer = self.http.post(
                    f"{self.base_url}/{method}",
                    content=json.dumps(json_body, ensure_ascii=False).encode(),
                    headers={**headers, "Content-Type": "application/json; charset=utf-8"},
                )
            else:
                answer = self.http.post(f"{self.base_url}/{method}", data=data, headers=headers)
        except httpx.TransportError as error:
            raise SlackUnavailable(f"Slack {method}: {type(error).__name__}") from error
        if answer.status_code == 429:
            raise SlackRateLimited(method, retry_after(answer, datetime.now(UTC)) or 30.0)
        if answer.status_code >= 500:
            raise SlackUnavailable(f"Slack {method}: HTTP {answer.status_code}")
        try:
            document = answer.json()
        except ValueError:
            raise SlackUnavailable(f"Slack {method}: HTTP {answer.status_code}, not JSON") from None
        if document.get("ok") is True:
            return dict(document)
        code = str(document.get("error") or f"HTTP {answer.status_code}")
        if code == "ratelimited":
            raise SlackRateLimited(method, retry_after(answer, datetime.now(UTC)) or 30.0)
        if code in _AUTH_ERRORS:
            raise SlackAuthFailed(method, code)
        if code in _UNAVAILABLE_ERRORS:
            raise SlackUnavailable(f"Slack {method}: {code}")
        raise SlackRefused(method, code)


def slack_message(delivery: PlayDelivery, hubspot_portal_id: str | None) -> tuple[str, list[dict[str, Any]]]:
    """The fallback text and the Block Kit blocks: the trigger, the narrative with its evidence (the
    play's rendered body, shared/routing/narrative.py), the due date, and the two buttons."""
    escalation = f" (escalation {delivery.tier})" if delivery.tier else ""
    facts = (
        f"*{_mrkdwn(delivery.account_name)}* · trigger `{_mrkdwn(delivery.trigger)}`{escalation}\n"
        f"Priority *{delivery.priority.lower()}* · due *{delivery.due.isoformat()}*"
    )
    buttons: list[dict[str, Any]] = []
    company = delivery.hubspot.company_id
    if hubspot_portal_id and company:
        buttons.append(
            {
                "type": "button",
                "action_id": OPEN_IN_HUBSPOT_ACTION,
                "text": {"type": "plain_text", "text": "Open in HubSpot"},
                "url": f"https://app.hubspot.com/contacts/{hubspot_portal_id}/company/{company}",
            }
        )
    buttons.append(
        {
            "type": "button",
            "action_id": NOT_USEFUL_ACTION,
            "text": {"type": "plain_text", "text": "Not useful"},
            "value": json.dumps({"account_id": delivery.account_id, "play_id": delivery.play_id}),
        }
    )
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(delivery.subject, _HEADER_LIMIT)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": facts}},
        {"type": "section", "text": {"type": "plain_text", "text": _cut(delivery.body.strip(), _TEXT_LIMIT)}},
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"Play {_mrkdwn(delivery.play)} · ruleset {_mrkdwn(delivery.ruleset_version)} · "
                    f"play id {delivery.play_id}",
                }
            ],
        },
        {"type": "actions", "block_id": f"upswing_play_{delivery.play_id}", "elements": buttons},
    ]
    return f"{delivery.subject} (due {delivery.due.isoformat()})", blocks


@dataclass
class SlackSender:
    client: SlackClient
    ledger: DeliveryLedger
    plays: PlayLedger
    queue: DeliveryQueue
    hubspot_portal_id: str | None = None
    stale_after: timedelta = timedelta(seconds=30)  # the sender's timeout: a younger claim may be running
    backoff: Backoff = field(default_factory=Backoff)

    def deliver(self, delivery: PlayDelivery, now: datetime) -> Claim:
        if delivery.channel is not Channel.SLACK:
            raise ValueError(f"play {delivery.play_id}: a {delivery.channel} delivery on the Slack queue")
        email = delivery.owner.email if delivery.owner else None
        if delivery.slack_channel is None and email is None:
            raise ValueError(f"play {delivery.play_id}: neither a Slack channel nor an owner address to DM")
        text, blocks = slack_message(delivery, self.hubspot_portal_id)

        def post() -> str:
            target = delivery.slack_channel or self.client.user_id(str(email))
            return self.client.post_message(target, text, blocks)

        return deliver_once(
            self.ledger,
            Channel.SLACK.value,
            delivery.play_id,
            now,
            post,
            # Slack answered, so nothing was posted: the claim is released and a retry starts afresh.
            definite_failure=lambda error: isinstance(
                error, SlackRateLimited | SlackRefused | SlackAuthFailed
            ),
            stale_after=self.stale_after,
        )

    def handle(self, record: SQSRecord) -> None:
        """One SQS message: posted (or found posted before), held for a retry (raises: the record fails
        and stays on the queue), or dead-lettered with the reason (returns)."""
        try:
            delivery = PlayDelivery.model_validate_json(record.body)
        except ValidationError as error:
            reason = "not a play delivery: " + "; ".join(
                describe_errors(error, PlayDelivery, noun="delivery")
            )
            self._dead_letter(record, reason, None, kind="invalid message")
            return
        now = datetime.now(UTC)
        try:
            claim = self.deliver(delivery, now)
        except ValueError as error:
            self._dead_letter(record, str(error), delivery.play_id, kind="invalid message")
            return
        except SlackRefused as error:
            self._record_problem(delivery, str(error), now)
            self._dead_letter(record, str(error), delivery.play_id, kind=error.code)
            return
        except SlackRateLimited as error:
            self.queue.hold(record, error.wait_seconds)
            metrics.add_metric(name="SlackThrottled", unit=MetricUnit.Count, value=1)
            raise
        except SlackAuthFailed as error:
            self._hold_with_backoff(record)
            metrics.add_metric(name="SlackTokenRejected", unit=MetricUnit.Count, value=1)
            logger.error(str(error), extra={"play_id": delivery.play_id})
            raise
        except (SlackUnavailable, ClientError) as error:
            self._hold_with_backoff(record)
            logger.warning(
                "slack delivery retried", extra={"play_id": delivery.play_id, "reason": str(error)}
            )
            raise
        except DeliveryInFlight:
            raise  # another attempt may still be posting: the queue's visibility decides when to look again
        if claim.fresh:
            name = "SlackMessagesSent"
        elif claim.status is DeliveryStatus.UNKNOWN:
            name = "SlackOutcomeUnknown"  # an earlier attempt may have posted it: not posted again
        else:
            name = "SlackRepeated"
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
        logger.info(
            "slack delivery",
            extra={"play_id": delivery.play_id, "outcome": claim.status.value, "fresh": claim.fresh},
        )

    def _hold_with_backoff(self, record: SQSRecord) -> None:
        receives = int(record.attributes.approximate_receive_count or 1)
        self.queue.hold(record, self.backoff.after(receives))

    def _record_problem(self, delivery: PlayDelivery, problem: str, now: datetime) -> None:
        try:
            self.plays.record_delivery_problem(
                delivery.account_id, delivery.play_id, Channel.SLACK.value, problem, now
            )
        except ClientError as error:  # the DLQ, the metric and the log still tell
            logger.error(
                "could not record the delivery problem on the play",
                extra={"play_id": delivery.play_id, "error": error.response.get("Error", {}).get("Code")},
            )

    def _dead_letter(self, record: SQSRecord, reason: str, play_id: str | None, *, kind: str) -> None:
        self.queue.dead_letter(record, reason)
        metrics.add_metric(name="SlackDeadLettered", unit=MetricUnit.Count, value=1)
        logger.error("slack delivery dead-lettered", extra={"play_id": play_id, "kind": kind})


def _mrkdwn(text: str) -> str:
    """Text safe inside Slack mrkdwn: its three control characters escaped, as Slack asks."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
