"""Plays: what happens when a trigger fires — who gets what, through which channel, by when.

Written beside the triggers in the same rules file (docs/rules.md, "Plays") and validated the
same way. A play names the fallback owners when the account has none for the trigger's role,
the SLA (business days to the due date), how the priority follows from the firing's score and
the account's value, the channels, the message (the value narrative, a template), the
escalation tiers, and whether a stale HubSpot task is closed by itself (`auto_close`).
"""

from __future__ import annotations

import itertools
import re
import string
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from shared.accounts.models import Label, Owner
from shared.rules.durations import days

Wait = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,3}[dw]$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Channel(StrEnum):
    HUBSPOT_TASK = "hubspot_task"  # a task in HubSpot for the owner, associated to the company
    EMAIL = "email"  # an email to the owner (SES)
    EVENT = "event"  # `play.routed` on the EventBridge bus only (every play is published there anyway)
    SLACK = "slack"  # a Slack message: a DM to the owner (by e-mail) or a channel the play names
    WEBHOOK = "webhook"  # `play.routed`, signed, POSTed to a declared destination (`webhook:NAME`)


DESTINATION_NAME = r"[a-z0-9][a-z0-9_-]{0,62}"
_CHANNEL_NAME = rf"^(hubspot_task|email|event|slack|webhook:{DESTINATION_NAME})$"


def _channel_name(text: str) -> str:
    kind, _, destination = text.partition(":")
    if kind == Channel.WEBHOOK and not destination:
        raise ValueError(
            "a webhook channel names its destination: webhook:NAME (declared under destinations)"
        )
    if re.fullmatch(_CHANNEL_NAME, text) is None:
        raise ValueError(
            f"unknown channel {text!r}: one of hubspot_task, email, event, slack, webhook:NAME "
            "(NAME: lowercase letters, digits, - and _)"
        )
    return text


# A channel as a play writes it; `channel_kind` and `destination_of` read it.
ChannelName = Annotated[
    str,
    AfterValidator(_channel_name),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": _CHANNEL_NAME,
            "description": "hubspot_task, email, event, slack, or webhook:NAME (a destination under "
            "destinations.webhooks)",
        }
    ),
]


def channel_kind(name: str) -> Channel:
    """The channel a name is: `webhook:crm-sync` is Channel.WEBHOOK."""
    return Channel(name.partition(":")[0])


def destination_of(name: str) -> str | None:
    """The destination a `webhook:NAME` channel names (None for the other channels)."""
    kind, _, destination = name.partition(":")
    return destination if kind == Channel.WEBHOOK else None


class Pick(StrEnum):
    ROUND_ROBIN = "round_robin"
    LEAST_LOADED = "least_loaded"  # the fewest plays routed to them today


class Fallback(_Strict):
    """Owners for accounts that have none for the trigger's role, by segment."""

    pools: dict[Label, Annotated[list[Owner], Field(min_length=1, max_length=100)]] = Field(
        min_length=1, description="Segment → owners; the key `default` serves every other segment."
    )
    pick: Pick = Pick.ROUND_ROBIN


class Priority(_Strict):
    """HIGH from `high_at` up, MEDIUM from `medium_at`, else LOW; one level up for valuable accounts."""

    high_at: float = Field(default=70, ge=0, le=100, description="Score at and above which a play is HIGH.")
    medium_at: float = Field(default=40, ge=0, le=100)
    valuable_arr: float | None = Field(
        default=None, ge=0, description="Accounts with at least this ARR get one priority level more."
    )

    @model_validator(mode="after")
    def _ordered(self) -> Priority:
        if self.medium_at > self.high_at:
            raise ValueError("medium_at must not be above high_at")
        return self


# Placeholders a message can use: `$name` or `${name}`; names may contain dots.
PLACEHOLDERS = {
    "account.id": "the account id",
    "account.name": "the account's name",
    "account.segment": "its segment (or 'unknown')",
    "plan.name": "its plan (or 'unknown')",
    "owner.name": "the owner the play goes to",
    "trigger": "the trigger that fired",
    "play": "the play",
    "score": "the firing's score, 0-100",
    "observed": "the condition's observed value",
    "threshold": "the threshold it was compared with",
    "window": "the condition's window, e.g. 2026-10-25..2026-11-23",
    "detail": "the condition in words, e.g. 'latest seats.active / plan limit seats = 0.91'",
    "evidence": "every condition (and a composite's members) on its own line",
    "due": "the due date",
    "ruleset_version": "the ruleset version that fired",
}


class NarrativeTemplate(string.Template):
    idpattern = r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)?"


def _known_placeholders(text: str) -> str:
    template = NarrativeTemplate(text)
    if not template.is_valid():
        raise ValueError("a `$` must start a placeholder like $account.name, or be doubled: $$")
    unknown = [name for name in template.get_identifiers() if name not in PLACEHOLDERS]
    if unknown:
        raise ValueError(f"unknown placeholder ${unknown[0]}; known: {', '.join(sorted(PLACEHOLDERS))}")
    return text


Template = Annotated[str, StringConstraints(min_length=1, max_length=8000)]

DEFAULT_SUBJECT = "$play: $account.name ($trigger)"
DEFAULT_BODY = """$account.name ($account.segment, plan $plan.name): $detail.

Evidence (ruleset $ruleset_version, score $score):
$evidence
"""


class Message(_Strict):
    """The value narrative: current state, what is possible, the evidence, the risk of waiting."""

    subject: Template = DEFAULT_SUBJECT
    body: Template = DEFAULT_BODY

    @model_validator(mode="after")
    def _placeholders(self) -> Message:
        _known_placeholders(self.subject)
        _known_placeholders(self.body)
        if "\n" in self.subject:
            raise ValueError("the subject is one line")
        return self


class Tier(_Strict):
    """One escalation step: taken when the trigger's signal still holds `after` the first firing."""

    after: Wait = Field(description="0d for the first tier; 7d: a week later if the signal persists.")
    role: Label | None = Field(default=None, description="Default: the trigger's owner role.")
    channels: list[ChannelName] = Field(min_length=1)


# A Slack channel: its id (C0123ABCD; private channels G...) or its name (#csm-expansion).
SlackChannel = Annotated[str, StringConstraints(pattern=r"^(#[a-z0-9][a-z0-9._-]{0,79}|[CG][A-Z0-9]{6,20})$")]


class SlackTargets(_Strict):
    """Where a play's Slack message goes: the channel for the account's segment, else the one for
    the tier's role, else `default`; with none of them, a direct message to the owner, found by
    their e-mail address (an owner without one: the Slack delivery is skipped, visibly)."""

    channels: dict[Label, SlackChannel] = Field(
        default_factory=dict, description="Segment → channel; the key `default` serves every other account."
    )
    roles: dict[Label, SlackChannel] = Field(
        default_factory=dict, description="Owner role → channel, for accounts whose segment has none."
    )

    def channel_for(self, segment: str | None, role: str) -> str | None:
        """The channel to post in; None: a DM to the owner."""
        if segment and segment in self.channels:
            return self.channels[segment]
        return self.roles.get(role) or self.channels.get("default")


class AutoClose(_Strict):
    """Complete the play's open HubSpot task, with a note saying why, once the trigger's signal has
    not held for `after` (docs/rules.md, "Auto-closing stale tasks")."""

    after: Wait = Field(
        description="7d: the task is closed once the scheduler has found the signal not holding "
        "for 7 days without a break (1d to 365d)."
    )

    @model_validator(mode="after")
    def _sensible(self) -> AutoClose:
        if not 1 <= days(self.after) <= 365:
            raise ValueError(f"auto_close.after must be 1d to 365d, not {self.after}")
        return self


class Play(_Strict):
    description: str | None = None
    channels: list[ChannelName] = Field(
        default_factory=lambda: [Channel.HUBSPOT_TASK.value],
        min_length=1,
        description="Without escalation tiers.",
    )
    sla_business_days: int = Field(
        default=2, ge=0, le=60, description="The due date: this many business days after routing."
    )
    priority: Priority = Field(default_factory=Priority)
    fallback: Fallback | None = None
    message: Message = Field(default_factory=Message)
    escalation: list[Tier] = Field(default_factory=list, max_length=5)
    task_type: Literal["TODO", "CALL", "EMAIL"] = "TODO"
    auto_close: AutoClose | None = Field(
        default=None, description="Close the play's HubSpot tasks once the signal is gone; off when absent."
    )
    slack: SlackTargets = Field(
        default_factory=SlackTargets,
        description="For the slack channel: a channel per segment or role; without one, a DM to the owner.",
    )

    @model_validator(mode="after")
    def _tiers_in_order(self) -> Play:
        if self.escalation:
            waits = [days(tier.after) for tier in self.escalation]
            if waits[0] != 0:
                raise ValueError("the first escalation tier is the play itself: after: 0d")
            if any(later <= earlier for earlier, later in itertools.pairwise(waits)):
                raise ValueError("escalation tiers must come later and later (after: 0d, 7d, 14d...)")
        if self.auto_close and not any(Channel.HUBSPOT_TASK in tier.channels for tier in self.tiers()):
            raise ValueError("auto_close closes HubSpot tasks: the play has no hubspot_task channel")
        return self

    def channels_used(self) -> list[str]:
        """Every channel name the play's tiers use, each once, in order."""
        return list(dict.fromkeys(name for tier in self.tiers() for name in tier.channels))

    def tiers(self) -> list[Tier]:
        """The escalation tiers; a play without them is one tier, now, on its channels."""
        return list(self.escalation) or [Tier(after="0d", channels=list(self.channels))]


class Period(StrEnum):
    DAY = "day"
    WEEK = "week"  # ISO weeks, Monday to Sunday
    MONTH = "month"


class Budgets(_Strict):
    """Anti-fatigue budgets over calendar UTC periods. A play that would exceed one is deferred to
    the period's end, visible in the play ledger, and routed then: never dropped."""

    plays_per_account: int | None = Field(
        default=3, ge=1, le=1000, description="At most this many plays per account per period; null: none."
    )
    account_period: Period = Period.WEEK
    tasks_per_owner_per_day: int | None = Field(
        default=25, ge=1, le=10_000, description="At most this many new HubSpot tasks per owner per day."
    )
    plays_per_trigger_per_day: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="Flood control: at most this many new plays of any one trigger per UTC day, over all "
        "accounts (the rest wait for the next day); null: no cap.",
    )


# Signing secrets live in Secrets Manager under this prefix, so the webhook sender's role can read
# exactly these and nothing else (docs/operations.md, "Webhooks").
WEBHOOK_SECRET_PREFIX = "upswing/webhooks/"  # noqa: S105 (a name prefix, not a secret)
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def _destination_url(url: str) -> str:
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    hostname = host if host.startswith("[") else host.split(":", 1)[0]
    if scheme == "https" and hostname:
        return url
    if scheme == "http" and hostname in _LOOPBACK_HOSTS:
        return url  # the local stack's sink; never a deployed destination
    raise ValueError(
        f"a webhook URL is https://host/path (http only for 127.0.0.1 or localhost), not {url!r}"
    )


class WebhookDestination(_Strict):
    """Where `webhook:NAME` posts: the URL and the Secrets Manager name of the signing secret."""

    url: Annotated[str, StringConstraints(max_length=2000), AfterValidator(_destination_url)] = Field(
        description="https://... (http://127.0.0.1:... only on the local stack)."
    )
    secret: Annotated[
        str, StringConstraints(pattern=rf"^{WEBHOOK_SECRET_PREFIX}[A-Za-z0-9/_+=.@-]{{1,200}}$")
    ] = Field(
        description="The Secrets Manager secret holding the signing secret, named "
        f"{WEBHOOK_SECRET_PREFIX}...: a name, never the secret itself."
    )
    timeout_seconds: float = Field(default=10, ge=1, le=25, description="Per request, connect to last byte.")


class Destinations(_Strict):
    webhooks: dict[
        Annotated[str, StringConstraints(pattern=rf"^{DESTINATION_NAME}$")], WebhookDestination
    ] = Field(default_factory=dict, description="Name → destination, for the webhook:NAME channel.")


class PreExisting(StrEnum):
    """What going live does with the triggers that already held in the imported history."""

    FIRE = "fire"  # route them at go-live, like new firings (the budgets still apply)
    SPREAD = "spread"  # route them spread over `spread_days`, a share each day (the budgets still apply)
    SKIP = "skip"  # route none: only what starts holding after go-live fires


class GoLive(_Strict):
    """The end of a history import (docs/operations.md, "Going live"): each imported account is
    evaluated once with its whole history; what holds then held before go-live ("pre-existing")."""

    pre_existing: PreExisting = Field(
        default=PreExisting.SPREAD,
        description="fire: route pre-existing triggers at go-live; spread: over spread_days; "
        "skip: never (they re-arm when their signal clears).",
    )
    spread_days: int = Field(
        default=7, ge=1, le=90, description="With spread: the days the pre-existing plays are spread over."
    )
