"""Segment calls in: `track` → usage events through the one event write path, `group` → profile
fields, everything else acknowledged and ignored. Each call ends in exactly one result.

- track: the mapping names the metric, kind, value and dimensions; `messageId` becomes the event_id,
  so a call Segment delivers again is a duplicate, exactly as for POST /v1/events (the same
  `Ingestor`: validation, in-request repeats, conditional ledger puts, fingerprints).
- group: the mapped traits are applied to the stored profile (read, revise, conditional write:
  `AccountStore.revise`); the profile is validated whole before anything is written. The account
  item remembers the last group call applied (its messageId and timestamp): a redelivery is a
  duplicate and an older call arriving late is ignored, so retries never undo a newer change.
- identify, page, screen, alias: ignored and counted (Upswing keeps accounts, not people).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import TypeAdapter, ValidationError

from shared.accounts.models import AccountProfile, StoredAccount, Writer
from shared.accounts.store import AccountStore, ConcurrentProfileWrites, Revision, SourceMark
from shared.errors import StorageUnavailable
from shared.events.contract import FUTURE_TOLERANCE, MAX_EVENTS_PER_REQUEST
from shared.events.models import AccountId
from shared.events.validation import (
    BadRequest,
    TooLarge,
    UnsupportedMediaType,
    describe_errors,
    json_type,
    parse_json_body,
    window_problem,
)
from shared.intake import BatchIntake, Channel, ItemResult, Status
from shared.model_fields import did_you_mean
from shared.observability import logger
from shared.segment.mapping import GroupMapping, SegmentMapping, Unmapped, lookup, target_location
from shared.segment.messages import GroupCall, IdentifyCall, Ignored, Refused, SegmentResponse, TrackCall

SOURCE = "segment"
_ACCOUNT_ID = TypeAdapter(AccountId)
_PROFILE_FIELDS = set(AccountProfile.model_fields)
_IGNORED_TYPES = {
    "identify": "identify calls describe a person; Upswing keeps accounts: send group calls for account "
    "traits and track calls for usage",
    "page": "page calls are not usage Upswing counts; send a track call (mapped in segment/mapping.yaml)",
    "screen": "screen calls are not usage Upswing counts; send a track call (mapped in segment/mapping.yaml)",
    "alias": "alias calls link user ids; Upswing keeps accounts, not people",
}
_TAKEN_TYPES = ("track", "group", *_IGNORED_TYPES)


class Fate(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    REJECTED = "rejected"
    FAILED = "failed"  # storage failed: the request is answered 503 and retried whole


@dataclass
class CallResult:
    index: int
    message_id: str | None
    fate: Fate
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Caller:
    """Who sent the calls: the key's producer and id, and whether it may write profiles."""

    producer_id: str
    key_id: str
    may_write_accounts: bool


class InvalidTraits(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def parse_segment_request(
    body: str | None, content_type: str | None, is_base64: bool, *, batch: bool
) -> tuple[list[Any], dict[str, Any]]:
    """The calls of a request and the batch's shared context; a `BadRequest` when the envelope is wrong."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType(f"Content-Type must be application/json (got {content_type or 'none'!r}).")
    document = parse_json_body(body, is_base64, what="calls")
    if not isinstance(document, dict):
        shape = '{"batch": [...]}' if batch else "a Segment call"
        raise BadRequest(f"The body must be a JSON object: {shape}.")
    if not batch:
        return [document], {}
    calls, context = document.get("batch"), document.get("context", {})
    if not isinstance(calls, list):
        raise BadRequest('The body must hold a "batch" array of Segment calls: {"batch": [...]}.')
    if not calls:
        raise BadRequest(f'"batch" is empty: send between 1 and {MAX_EVENTS_PER_REQUEST} calls.')
    if len(calls) > MAX_EVENTS_PER_REQUEST:
        raise TooLarge(
            f'"batch" holds {len(calls)} calls; the limit is {MAX_EVENTS_PER_REQUEST} per request. '
            "Split the batch (Segment's libraries send far fewer by default).",
        )
    if not isinstance(context, dict):
        raise BadRequest('"context" must be an object: it is merged into each call\'s context.')
    return calls, context


class SegmentIntake:
    def __init__(
        self, mapping: SegmentMapping, events: BatchIntake, accounts: AccountStore, retention_days: int
    ) -> None:
        self._mapping = mapping
        self._events = events
        self._accounts = accounts
        self._retention_days = retention_days

    def take(
        self,
        calls: Sequence[Any],
        caller: Caller,
        now: datetime,
        *,
        route_type: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> list[CallResult]:
        """Every call's result, in order. `route_type`: the type a single-call route takes (track on
        /v1/track); None on /v1/batch, where each call names its type."""
        results: dict[int, CallResult] = {}
        tracks: list[tuple[int, str, dict[str, Any]]] = []
        for index, raw in enumerate(calls):
            message_id = _peek_message_id(raw)
            if not isinstance(raw, dict):
                results[index] = _rejected(
                    index, None, [f"a call must be a JSON object, got {json_type(raw)}"]
                )
                continue
            call = _with_context(raw, context or {})
            kind = call.get("type", route_type)
            if route_type is not None and kind != route_type:
                results[index] = _rejected(index, message_id, [_wrong_route(kind, route_type)])
            elif kind == "track":
                translated = self._event(index, call, now)
                if isinstance(translated, CallResult):
                    results[index] = translated
                else:
                    tracks.append((index, translated["event_id"], translated))
            elif kind == "group":
                results[index] = self._group(index, call, caller, now)
            elif kind == "identify" and (problems := _identify_problems(call)):
                results[index] = _rejected(index, message_id, problems)
            elif kind in _IGNORED_TYPES:
                results[index] = CallResult(index, message_id, Fate.IGNORED, [_IGNORED_TYPES[str(kind)]])
            else:
                results[index] = _rejected(
                    index, message_id, [f"type must be one of {', '.join(_TAKEN_TYPES)} (got {kind!r})"]
                )
        if tracks:
            stored = self._events.ingest(
                [event for _, _, event in tracks], f"{SOURCE}:{caller.producer_id}", Channel.HTTPS, now
            )
            for (index, message_id, _), result in zip(tracks, stored, strict=True):
                results[index] = _from_event_result(index, message_id, result)
        return [results[index] for index in range(len(calls))]

    def _event(self, index: int, call: dict[str, Any], now: datetime) -> dict[str, Any] | CallResult:
        """The usage event a track call stands for, or why there is none."""
        message_id = _peek_message_id(call)
        try:
            track = TrackCall.model_validate(call)
        except ValidationError as error:
            return _rejected(index, message_id, describe_errors(error, TrackCall, noun="track call"))
        problem = window_problem(track.timestamp, now, self._retention_days, field="timestamp")
        if problem:
            return _rejected(index, message_id, [problem])
        mapping = self._mapping.track
        rule = mapping.events.get(track.event)
        if rule is None:
            reason = (
                f"event {track.event!r} is not in the Segment mapping (segment/mapping.yaml, track.events)"
                + did_you_mean(track.event, mapping.events)
            )
            if mapping.unmapped is Unmapped.IGNORE:
                return CallResult(index, message_id, Fate.IGNORED, [reason])
            return _rejected(index, message_id, [reason])
        errors: list[str] = []
        account = self._account(call, errors)
        value: Any = 1
        if rule.value is not None:
            value = lookup(call, rule.value)
            if value is None:
                errors.append(
                    f"{rule.value} is required: the mapping of {track.event!r} reads its value there"
                )
            elif isinstance(value, bool) or not isinstance(value, int | float):
                errors.append(f"{rule.value} must be a JSON number, got {json_type(value)}")
        dimensions: dict[str, str] = {}
        for name, path in rule.dimensions.items():
            found = lookup(call, path)
            if found is None:
                continue
            if isinstance(found, str):
                dimensions[name] = found
            elif isinstance(found, int) and not isinstance(found, bool):
                dimensions[name] = str(found)
            else:
                errors.append(f"{path} (dimension {name}) must be a string or a whole number")
        if errors:
            return _rejected(index, message_id, errors)
        return {
            "event_id": track.messageId,
            "account_id": account,
            "name": rule.metric,
            "occurred_at": call["timestamp"],
            "value": value,
            "kind": rule.kind.value,
            "dimensions": dimensions,
            "properties": track.properties,
        }

    def _account(self, call: dict[str, Any], errors: list[str]) -> str | None:
        paths = self._mapping.track.account
        for path in paths:
            found = lookup(call, path)
            if found is None:
                continue
            try:
                return _ACCOUNT_ID.validate_python(found)
            except ValidationError:
                errors.append(f"{path} must be an account id: 1-128 printable characters, not '.' or '..'")
                return None
        errors.append(
            f"no account: the call has none of {', '.join(paths)}; send the account id as "
            "context.groupId (or configure track.account in segment/mapping.yaml)"
        )
        return None

    def _group(self, index: int, call: dict[str, Any], caller: Caller, now: datetime) -> CallResult:
        message_id = _peek_message_id(call)
        if not caller.may_write_accounts:
            return _rejected(
                index,
                message_id,
                [
                    "a group call sets profile fields: the key needs the scope 'accounts:write' "
                    "(upswing keys grant KEY_ID --scope accounts:write)"
                ],
            )
        try:
            group = GroupCall.model_validate(call)
        except ValidationError as error:
            return _rejected(index, message_id, describe_errors(error, GroupCall, noun="group call"))
        if group.timestamp > now + FUTURE_TOLERANCE:
            # A far-future call would outrank every later one and freeze the profile's traits. (No
            # lower bound: an old group call is still the newest word on the account if none came since.)
            problem = window_problem(group.timestamp, now, self._retention_days, field="timestamp")
            return _rejected(index, message_id, [problem or "timestamp is in the future"])
        mark = SourceMark(
            source=SOURCE, message_id=group.messageId, at=group.timestamp.isoformat(timespec="microseconds")
        )
        writer = Writer(producer_id=f"{SOURCE}:{caller.producer_id}", key_id=caller.key_id)
        try:
            revision, _ = self._accounts.revise(
                group.groupId,
                lambda previous: revised_profile(previous, group.traits, self._mapping.group, group.groupId),
                writer,
                mark,
                now,
            )
        except InvalidTraits as invalid:
            return _rejected(index, group.messageId, invalid.errors)
        except (StorageUnavailable, ConcurrentProfileWrites) as error:
            logger.error("profile write failed", extra={"error": type(error).__name__})
            return CallResult(index, group.messageId, Fate.FAILED, ["storage unavailable"])
        if revision is Revision.DUPLICATE:
            return CallResult(index, group.messageId, Fate.DUPLICATE)
        if revision is Revision.STALE:
            return CallResult(
                index,
                group.messageId,
                Fate.IGNORED,
                ["a newer group call of this account was applied already; this older one changes nothing"],
            )
        return CallResult(index, group.messageId, Fate.ACCEPTED)


def revised_profile(
    previous: StoredAccount | None, traits: dict[str, Any], mapping: GroupMapping, account_id: str
) -> AccountProfile:
    """The profile with the mapped traits applied: a trait sent sets its field, null clears it, a
    trait not sent leaves its field alone. InvalidTraits when the result is not a valid profile."""
    document: dict[str, Any] = (
        previous.model_dump(mode="json", include=_PROFILE_FIELDS) if previous is not None else {}
    )
    applied: dict[tuple[str, ...], str] = {}
    for trait, target in mapping.traits.items():
        if trait in traits:
            location = target_location(target)
            _set(document, location, _coerced(target, traits[trait]))
            applied[location] = trait
    try:
        return AccountProfile.model_validate(document)
    except ValidationError as error:
        raise InvalidTraits(
            [
                _trait_error(item, applied, previous is None, account_id)
                for item in error.errors(include_url=False)
            ]
        ) from None


def summarize_calls(results: Sequence[CallResult]) -> SegmentResponse:
    return SegmentResponse(
        accepted=sum(r.fate is Fate.ACCEPTED for r in results),
        duplicates=sum(r.fate is Fate.DUPLICATE for r in results),
        ignored=[
            Ignored(index=r.index, message_id=r.message_id, reason=r.reasons[0])
            for r in results
            if r.fate is Fate.IGNORED
        ],
        rejected=[
            Refused(index=r.index, message_id=r.message_id, errors=r.reasons)
            for r in results
            if r.fate is Fate.REJECTED
        ],
    )


def _from_event_result(index: int, message_id: str, result: ItemResult) -> CallResult:
    fate = {
        Status.ACCEPTED: Fate.ACCEPTED,
        Status.DUPLICATE: Fate.DUPLICATE,
        Status.REJECTED: Fate.REJECTED,
        Status.FAILED: Fate.FAILED,
    }[result.status]
    return CallResult(index, message_id, fate, result.errors)


def _trait_error(item: Any, applied: dict[tuple[str, ...], str], new: bool, account_id: str) -> str:
    location = tuple(str(part) for part in item["loc"])
    message = "is required" if item["type"] == "missing" else item["msg"].removeprefix("Value error, ")
    if location == ("name",) and item["type"] == "missing" and new:
        return (
            f"account {account_id!r} has no profile yet and a profile needs a name: send the trait mapped "
            "to name (segment/mapping.yaml, group.traits) or create the account with PUT /v1/accounts/{id}"
        )
    for length in range(len(location), 0, -1):
        trait = applied.get(location[:length])
        if trait is not None:
            return f"traits.{trait} (profile field {'.'.join(location)}): {message}"
    return (
        f"profile field {'.'.join(location)} {message}"
        if message == "is required"
        else (f"profile field {'.'.join(location)}: {message}")
    )


# Segment's Spec types `employees` as a string; numbers sent as digit strings are read as numbers
# where the profile wants a whole number. Labels (segment, industry) are lower case in a profile;
# Segment's examples write "Technology": such a trait is read as the label "technology".
_WHOLE_TARGETS = {"employees", "plan.tier"}
_LABEL_TARGETS = {"segment", "industry"}


def _coerced(target: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    whole = target in _WHOLE_TARGETS or target.startswith("plan.limits.")
    if whole and re.fullmatch(r"[0-9]{1,15}", value.strip()):
        return int(value.strip())
    if target in _LABEL_TARGETS:
        return re.sub(r"\s+", "-", value.strip().lower())
    return value


def _set(document: dict[str, Any], location: tuple[str, ...], value: Any) -> None:
    """Set (or, for None, remove) a leaf of the profile document, creating the objects on the way."""
    node = document
    for key in location[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            if value is None:
                return  # nothing there to clear
            child = node[key] = {}
        node = child
    if value is None:
        node.pop(location[-1], None)
    else:
        node[location[-1]] = value


def _identify_problems(call: dict[str, Any]) -> list[str]:
    """An identify call is ignored, but one that is not even an identify call is said to be wrong."""
    try:
        IdentifyCall.model_validate(call)
    except ValidationError as error:
        return describe_errors(error, IdentifyCall, noun="identify call")
    return []


def _with_context(call: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """A batch's context merged into a call's own (the call's keys win), as Segment's HTTP API does."""
    if not context:
        return call
    own = call.get("context")
    return {**call, "context": {**context, **own} if isinstance(own, dict) else context}


def _wrong_route(kind: Any, route_type: str) -> str:
    if kind in _TAKEN_TYPES:
        return f"this is a {kind} call; send it to /v1/{kind} or /v1/batch, not /v1/{route_type}"
    return f"type must be {route_type!r} on /v1/{route_type} (got {kind!r})"


def _rejected(index: int, message_id: str | None, errors: list[str]) -> CallResult:
    return CallResult(index, message_id, Fate.REJECTED, errors)


def _peek_message_id(raw: Any) -> str | None:
    if isinstance(raw, dict) and isinstance(raw.get("messageId"), str):
        return str(raw["messageId"])[:128]
    return None
