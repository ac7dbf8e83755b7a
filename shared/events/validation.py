"""Turning untrusted input into valid events, with errors a producer can act on.

Both channels (HTTPS and EventBridge) go through `validate_event`; the HTTPS request envelope
(content type, size, JSON, the `events` list) is checked by `parse_events_request`. Outcomes use
the same envelope (`parse_batch_request` with their own array) and the same error sentences.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from shared.events.contract import (
    FUTURE_TOLERANCE,
    MAX_ABS_VALUE,
    MAX_BODY_BYTES,
    MAX_EVENTS_PER_REQUEST,
)
from shared.events.models import UsageEvent
from shared.intake import Invalid
from shared.json_input import JsonInputError, decode_json
from shared.model_fields import did_you_mean, fields_at


class BadRequest(Exception):
    """The request as a whole cannot be processed; nothing was written. A domain error: what it
    means in HTTP (400, or the subclasses' 413 and 415) is the API's to say."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TooLarge(BadRequest):
    """More bytes or items than one request may carry: split it."""


class UnsupportedMediaType(BadRequest):
    """The body is not declared as JSON."""


# An invalid event (kept by this name for the backtest, which reports them).
InvalidEvent = Invalid
Model = TypeVar("Model", bound=BaseModel)


def parse_events_request(body: str | None, content_type: str | None, is_base64: bool = False) -> list[Any]:
    """Check the envelope of POST /v1/events and return the raw event objects, not yet validated."""
    return parse_batch_request(body, content_type, is_base64, array="events", noun="event")


def parse_batch_request(
    body: str | None, content_type: str | None, is_base64: bool, *, array: str, noun: str
) -> list[Any]:
    """Check the envelope of a batch POST ({"<array>": [...]}, 1 to 500 items) and return the raw
    items, not yet validated."""
    return parse_batch_envelope(body, content_type, is_base64, array=array, noun=noun)[0]


def parse_batch_envelope(
    body: str | None,
    content_type: str | None,
    is_base64: bool,
    *,
    array: str,
    noun: str,
    flags: tuple[str, ...] = (),
) -> tuple[list[Any], dict[str, bool]]:
    """`parse_batch_request`, plus the request-wide boolean `flags` the route allows beside the
    array (POST /v1/events: "backfill"); a flag not sent is False."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType(f"Content-Type must be application/json (got {content_type or 'none'!r}).")
    document = parse_json_body(body, is_base64, what=array)
    if not isinstance(document, dict) or array not in document:
        raise BadRequest(f'The body must be a JSON object with an "{array}" array: {{"{array}": [...]}}.')
    unknown = sorted(set(document) - {array, *flags})
    if unknown:
        allowed = ", ".join(f'"{name}"' for name in (array, *flags))
        raise BadRequest(f"Unknown top-level field(s) {', '.join(map(repr, unknown))}; only {allowed}.")
    chosen = {}
    for flag in flags:
        value = document.get(flag, False)
        if not isinstance(value, bool):
            raise BadRequest(f'"{flag}" must be true or false (got {json_type(value)}).')
        chosen[flag] = value
    items = document[array]
    if not isinstance(items, list):
        raise BadRequest(f'"{array}" must be an array of {noun} objects.')
    if not items:
        raise BadRequest(f'"{array}" is empty: send between 1 and {MAX_EVENTS_PER_REQUEST} {array}.')
    if len(items) > MAX_EVENTS_PER_REQUEST:
        raise TooLarge(
            f'"{array}" holds {len(items)} {array}; the limit is {MAX_EVENTS_PER_REQUEST} per request. '
            "Split the batch.",
        )
    return items, chosen


def parse_json_body(body: str | None, is_base64: bool, what: str) -> Any:
    """A request body's JSON document, within the size, nesting and number-literal limits."""
    raw = _body_bytes(body, is_base64)
    if len(raw) > MAX_BODY_BYTES:
        raise TooLarge(
            f"The body is {len(raw):,} bytes; the limit is {MAX_BODY_BYTES:,} bytes. "
            f"Split the {what} over several requests.",
        )
    try:
        return decode_json(raw)
    except JsonInputError as error:
        raise BadRequest(str(error)) from None


def validate_event(raw: Any, now: datetime, retention_days: int) -> UsageEvent | Invalid:
    """Validate one event against the contract and the acceptance window around `now`."""
    checked = check_event(raw)
    if isinstance(checked, Invalid):
        return checked
    problem = window_problem(checked.occurred_at, now, retention_days)
    return checked if problem is None else Invalid(checked.event_id, [problem])


def check_event(raw: Any) -> UsageEvent | Invalid:
    """The contract alone, whenever the event arrives (the backtest applies its own clock)."""
    return check_item(raw, UsageEvent, id_field="event_id", noun="event")


def check_item(raw: Any, model: type[Model], *, id_field: str, noun: str) -> Model | Invalid:
    """One item of a batch against its model, or why not (naming its id when it could be read)."""
    item_id = _peek_id(raw, id_field)
    if not isinstance(raw, dict):
        article = "an" if noun[0] in "aeiou" else "a"
        return Invalid(item_id, [f"{article} {noun} must be a JSON object, got {json_type(raw)}"])
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        return Invalid(item_id, describe_errors(error, model, noun))


def window_problem(
    occurred_at: datetime, now: datetime, retention_days: int, field: str = "occurred_at"
) -> str | None:
    """Why a fact (an event, an outcome) that occurred at `occurred_at` cannot be accepted at `now`.

    `field` names the time in the sender's own terms (a Segment call's is `timestamp`)."""
    if occurred_at > now + FUTURE_TOLERANCE:
        return (
            f"{field} {occurred_at.isoformat()} is in the future (more than "
            f"{int(FUTURE_TOLERANCE.total_seconds() // 60)} minutes ahead of {now.isoformat()}); "
            "check the producer's clock and timezone"
        )
    oldest = now - timedelta(days=retention_days)
    if occurred_at < oldest:
        return (
            f"{field} {occurred_at.isoformat()} is older than the {retention_days}-day "
            f"retention (oldest accepted: {oldest.isoformat()})"
        )
    return None


def describe_errors(error: ValidationError, model: type[BaseModel], noun: str) -> list[str]:
    """Pydantic's errors about a `model` document as sentences that name the field."""
    messages = []
    for item in error.errors(include_url=False):
        field = ".".join(str(part) for part in item["loc"]) or noun
        kind = item["type"]
        if kind == "extra_forbidden":
            messages.append(_unknown_field(field, item["loc"], model, noun))
        elif kind == "missing":
            messages.append(f"{field} is required")
        elif kind in ("float_type", "float_parsing") and field == "value":
            given = item["input"]
            if isinstance(given, int) and not isinstance(given, bool):  # too big even for a float
                messages.append(f"value must be between -{MAX_ABS_VALUE:g} and {MAX_ABS_VALUE:g}")
            else:
                messages.append(f"value must be a JSON number, got {json_type(given)}")
        else:
            message = item["msg"].removeprefix("Value error, ")
            messages.append(f"{field}: {message[0].lower()}{message[1:]}")
    return messages


def _unknown_field(field: str, location: tuple[str | int, ...], model: type[BaseModel], noun: str) -> str:
    """Name the fields valid at the stray key's place: an owner's, a plan's, or the document's own."""
    valid_here = fields_at(model, location[:-1])
    parent = ".".join(str(part) for part in location[:-1])
    where = f"{noun} fields are" if not parent else f"fields of {parent} are"
    hint = did_you_mean(str(location[-1]), valid_here)
    return f"unknown field {field!r}{hint} ({where}: {', '.join(valid_here)})"


def _body_bytes(body: str | None, is_base64: bool) -> bytes:
    if body is None:
        return b""
    if is_base64:
        try:
            return base64.b64decode(body, validate=True)
        except binascii.Error:
            raise BadRequest("The body could not be decoded.") from None
    return body.encode()


def _peek_id(raw: Any, id_field: str) -> str | None:
    if isinstance(raw, dict) and isinstance(raw.get(id_field), str):
        return raw[id_field][:128]
    return None


def json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
