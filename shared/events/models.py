"""The usage event as producers send it (contract v1), and what ingestion answers."""

from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from shared.events.contract import MAX_ABS_VALUE, MAX_DIMENSIONS, MAX_PROPERTIES_BYTES, MIN_ABS_VALUE


class EventKind(StrEnum):
    COUNT = "count"
    GAUGE = "gauge"


def _nfc(max_length: int) -> AfterValidator:
    """One identity per visible string: "é" typed precomposed (NFC) or decomposed (NFD) is one id.

    Ids are deduplication and partition keys, so two encodings of the same text would be two
    accounts and two events. Every id is normalized to NFC as it arrives (docs/api.md).
    """

    def normalize(value: str) -> str:
        if value.isascii():
            return value
        value = unicodedata.normalize("NFC", value)
        if len(value) > max_length:  # a few characters grow under NFC
            raise ValueError(f"must be at most {max_length} characters in Unicode NFC form")
        return value

    return AfterValidator(normalize)


def _printable(value: str) -> str:
    if any(not ch.isprintable() for ch in value):
        raise ValueError("must not contain control or non-printable characters")
    if value != value.strip():
        raise ValueError("must not start or end with whitespace")
    return value


# A date, then a time. Without this, pydantic would also read "1795000000" as Unix seconds.
_RFC3339_START = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _rfc3339_string(value: Any) -> Any:
    if not isinstance(value, str) or not _RFC3339_START.match(value):
        raise ValueError("must be an RFC 3339 timestamp string, e.g. 2026-11-23T10:15:00Z")
    return value


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00: past the last representable UTC time
        raise ValueError("is outside the range of representable times") from None


def _storable_value(value: float) -> float:
    if value != 0 and abs(value) < MIN_ABS_VALUE:
        raise ValueError(f"must be 0 or at least {MIN_ABS_VALUE:g} in magnitude (got {value!r})")
    return value


def _finite_json(value: Any) -> Any:
    """Properties are free-form, but must be JSON a consumer can read back: no NaN/Infinity."""

    def walk(node: Any) -> None:
        if isinstance(node, float) and not math.isfinite(node):
            raise ValueError("must not contain NaN or Infinity")
        if isinstance(node, dict):
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(value)
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_PROPERTIES_BYTES:
        raise ValueError(
            f"is {size:,} bytes of JSON; the limit is {MAX_PROPERTIES_BYTES:,} bytes "
            "(keep large payloads elsewhere and send a reference)"
        )
    return value


# JSON Schema's patterns cannot state Unicode's printable classes portably, so ids carry a named
# format that says it (the OpenAPI document; tests/e2e generates such ids for schemathesis).
PRINTABLE_ID_FORMAT = "printable-id"
Identifier = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128),
    _nfc(128),
    AfterValidator(_printable),
    Field(
        json_schema_extra={"format": PRINTABLE_ID_FORMAT},
        description="1-128 printable Unicode characters (no control, format or unassigned code points), "
        "no whitespace at either end; normalized to NFC.",
    ),
]


# Names are case-insensitive: folded to lower case wherever they arrive (events, rules, plan
# limits), so an event named API.Calls counts toward a rule on api.calls instead of missing it.
def _addressable(value: str) -> str:
    if value in (".", ".."):
        raise ValueError("cannot be '.' or '..': no URL path can name such an account")
    return value


# An account is also addressed by path (GET /v1/accounts/{account_id}), so ids that no path can
# name are refused wherever they arrive, not only in paths.
AccountId = Annotated[
    Identifier,
    AfterValidator(_addressable),
    Field(json_schema_extra={"format": PRINTABLE_ID_FORMAT, "not": {"enum": [".", ".."]}}),
]
MetricName = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$"),
    AfterValidator(str.lower),
    Field(
        description="Letters, digits and _ . : / -, starting with a letter or digit; at most 128. "
        "Case-insensitive: stored and matched in lower case."
    ),
]
DimensionKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
DimensionValue = Annotated[
    str, StringConstraints(min_length=1, max_length=256), _nfc(256), AfterValidator(_printable)
]
EventTime = Annotated[AwareDatetime, BeforeValidator(_rfc3339_string), AfterValidator(_to_utc)]


class UsageEvent(BaseModel):
    """One usage fact. Unknown fields are rejected so a misspelt field never silently vanishes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: Identifier = Field(description="Producer-unique id; the deduplication key within an account.")
    account_id: AccountId = Field(description="The customer account the usage belongs to.")
    name: MetricName = Field(description="What happened or what is measured, e.g. seats.active.")
    occurred_at: EventTime = Field(description="RFC 3339 event time with a timezone; decides the bucket.")
    value: Annotated[float, AfterValidator(_storable_value)] = Field(
        default=1.0,
        strict=True,
        allow_inf_nan=False,
        ge=-MAX_ABS_VALUE,
        le=MAX_ABS_VALUE,
        description=f"A finite number (JSON number, not a string): 0, or between {MIN_ABS_VALUE:g} and "
        f"{MAX_ABS_VALUE:g} in magnitude.",
    )
    kind: EventKind = Field(
        default=EventKind.COUNT,
        description="count: added up over time; gauge: a level, the latest value (by event time) wins.",
    )
    dimensions: dict[DimensionKey, DimensionValue] = Field(
        default_factory=dict,
        max_length=MAX_DIMENSIONS,
        description="Small string map used by rules for distinct counts, e.g. {team: t-42}.",
    )
    properties: Annotated[dict[str, Any], AfterValidator(_finite_json)] = Field(
        default_factory=dict, description="Free context kept with the event, not used by rules."
    )

    @property
    def item_id(self) -> str:
        return self.event_id

    def fingerprint(self) -> str:
        """A short digest of the event's content: tells a true resend from a reused event id."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]


class Rejection(BaseModel):
    index: int = Field(description="Position of the event in the request's events array.")
    event_id: str | None = Field(description="The event's id when it could be read.")
    errors: list[str] = Field(description="What is wrong, one plain sentence per problem.")


class IngestResponse(BaseModel):
    accepted: int = Field(description="Events stored and counted for the first time.")
    duplicates: int = Field(description="Events whose event_id was already accepted (not counted again).")
    rejected: list[Rejection] = Field(description="Events not stored, with the reasons.")


class EventBatch(BaseModel):
    """The request body of POST /v1/events (documentation model: events are validated one by one)."""

    model_config = ConfigDict(extra="forbid")

    events: list[UsageEvent] = Field(min_length=1, max_length=500)
    backfill: bool = Field(
        default=False,
        description="History being imported before go-live: stored and counted like any event, but "
        "not evaluated batch by batch; POST /v1/imports/finish evaluates each imported account once.",
    )
