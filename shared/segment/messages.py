"""The Segment Spec's calls as Upswing reads them, and what the Segment routes answer.

Only the fields Upswing uses are checked; every other field of the Spec (anonymousId, integrations,
sentAt, receivedAt, version, channel, _metadata, writeKey, ...) is allowed and left alone, because the
Spec is open and Segment's libraries add fields over time: refusing them would refuse real Segment
traffic. That is the one difference from POST /v1/events, which rejects unknown fields.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.events.contract import MAX_EVENTS_PER_REQUEST
from shared.events.models import AccountId, EventTime, Identifier


class _Call(BaseModel):
    model_config = ConfigDict(extra="allow")

    messageId: Identifier = Field(
        description="Segment's id of the call, set by every Segment library; becomes the event_id, the "
        "deduplication key: a redelivered call is a duplicate."
    )
    timestamp: EventTime = Field(
        description="RFC 3339 time of the call with a timezone (Segment's libraries set it); the event time."
    )
    userId: str | None = None
    anonymousId: str | None = None
    context: dict[str, Any] = Field(
        default_factory=dict, description="Segment's context; context.groupId names the account."
    )


class TrackCall(_Call):
    type: Literal["track"] = "track"
    event: Annotated[str, StringConstraints(min_length=1, max_length=256)] = Field(
        description="The event name, looked up in the mapping file (exact, case-sensitive)."
    )
    properties: dict[str, Any] = Field(
        default_factory=dict,
        description="Kept with the event (at most 8 KiB); the mapping reads values from it.",
    )


class GroupCall(_Call):
    type: Literal["group"] = "group"
    groupId: AccountId = Field(description="The account id.")
    traits: dict[str, Any] = Field(
        default_factory=dict, description="Group traits; the mapping file says which set which profile field."
    )


class IdentifyCall(BaseModel):
    """Accepted and ignored: Upswing keeps accounts, not people (docs/decisions.md)."""

    model_config = ConfigDict(extra="allow")

    type: Literal["identify"] = "identify"
    messageId: str | None = None
    userId: str | None = None
    traits: dict[str, Any] = Field(default_factory=dict)


class BatchCall(BaseModel):
    """POST /v1/batch (documentation model: the calls are checked one by one)."""

    model_config = ConfigDict(extra="allow")

    batch: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=MAX_EVENTS_PER_REQUEST,
        description="track, group, identify, page, screen and alias calls, each with its `type`.",
    )
    context: dict[str, Any] = Field(
        default_factory=dict, description="Merged into each call's context (the call's own keys win)."
    )


class Ignored(BaseModel):
    index: int = Field(description="Position of the call in the request (0 for a single call).")
    message_id: str | None
    reason: str = Field(description="Why nothing was done with the call, in plain words.")


class Refused(BaseModel):
    index: int = Field(description="Position of the call in the request (0 for a single call).")
    message_id: str | None
    errors: list[str] = Field(description="What is wrong, one plain sentence per problem.")


class SegmentResponse(BaseModel):
    accepted: int = Field(description="Calls stored or applied for the first time.")
    duplicates: int = Field(description="Calls already accepted (a redelivery): nothing changed.")
    ignored: list[Ignored] = Field(
        description="Calls Upswing does not use (identify, page, unmapped events...)."
    )
    rejected: list[Refused] = Field(description="Calls not taken, with the reasons.")
