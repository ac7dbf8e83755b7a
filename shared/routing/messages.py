"""The messages the router sends each channel's sender: everything a sender needs, nothing to look up.

A `PlayDelivery` is one play tier on one channel. The router writes it to the channel's queue
(HubSpot tasks, email, Slack, webhooks); the sender parses it at its edge and delivers it once per
`play_id` and channel name (its own ledger; `webhook:NAME` per destination). Owner e-mail
addresses travel in the message body, never in logs or events.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.accounts.models import Email, HubSpotId, HubSpotRefs, Label
from shared.routing.narrative import TaskPriority
from shared.rules.plays import Channel, SlackChannel, WebhookDestination

PlayId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{24}$")]
DELIVERY_TYPE: Literal["play.deliver"] = "play.deliver"


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeliveryOwner(_Message):
    role: Label
    name: str | None = None
    email: Email | None = None
    hubspot_owner_id: HubSpotId | None = None
    from_pool: bool = Field(default=False, description="Picked from the play's fallback pool.")


class WebhookTarget(WebhookDestination):
    """A destination as the router found it in the ruleset (the sender looks nothing up)."""

    name: str


class PlayDelivery(_Message):
    type: Literal["play.deliver"] = DELIVERY_TYPE
    play_id: PlayId = Field(description="One play tier of one firing: the senders' idempotency key.")
    channel: Channel
    firing_id: str
    account_id: str
    account_name: str
    trigger: str
    play: str
    tier: int = Field(ge=0, description="0: the play itself; 1, 2...: escalation tiers.")
    ruleset_version: str
    subject: str = Field(max_length=250)
    body: str = Field(description="Plain text: the value narrative and the evidence.")
    due: date
    priority: TaskPriority
    task_type: Literal["TODO", "CALL", "EMAIL"] = "TODO"
    owner: DeliveryOwner | None = Field(
        default=None, description="None: nobody owns it (an unassigned task)."
    )
    hubspot: HubSpotRefs = Field(default_factory=HubSpotRefs)
    routed_at: datetime
    slack_channel: SlackChannel | None = Field(
        default=None, description="Slack: the channel to post in; None: a DM to the owner's e-mail address."
    )
    webhook: WebhookTarget | None = Field(default=None, description="Webhook: where to POST.")
    event: dict[str, Any] | None = Field(
        default=None,
        description="Webhook: the `play.routed` detail to POST, set when the play is handed over.",
    )

    @property
    def channel_name(self) -> str:
        """The channel as the play names it: `webhook:NAME` for a webhook."""
        return f"{self.channel.value}:{self.webhook.name}" if self.webhook else self.channel.value


CLOSE_TYPE: Literal["task.close"] = "task.close"


class TaskClose(_Message):
    """The scheduler's word to the HubSpot sender (on the HubSpot queue): complete this play's task,
    whose trigger no longer holds, with a note saying why (shared/routing/autoclose.py). The sender
    acts at most once per `play_id` and leaves a task a person completed or deleted alone."""

    type: Literal["task.close"] = CLOSE_TYPE
    play_id: PlayId
    account_id: str
    task_id: HubSpotId
    trigger: str
    play: str
    tier: int = Field(ge=0)
    not_holding_since: datetime = Field(description="The first check that found the signal not holding.")
    after: str = Field(description="The play's auto_close.after, e.g. 7d.")
    decided_at: datetime
