"""Producer keys: issued and revoked by the operator, stored only as SHA-256 hashes.

A key is `upk_` + 32 random bytes (base64url). Its id is the first 16 hex digits of its hash,
which is what the operator sees, lists and revokes; the key itself is shown once, at issue.
Keys are long random secrets, so a fast hash is enough (nothing to brute-force).

Each key carries scopes: what it may do (docs/api.md). A product service's key writes events and
nothing else, so it can neither read owners' e-mail addresses nor rewrite a profile's routing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from shared.storage.dynamo import deserialize
from shared.timestamps import utc_stamp

KEY_PREFIX = "upk_"
_PRODUCER_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


class Scope(StrEnum):
    EVENTS_WRITE = "events:write"  # POST /v1/events
    OUTCOMES_WRITE = "outcomes:write"  # POST /v1/outcomes
    ACCOUNTS_WRITE = "accounts:write"  # PUT /v1/accounts/{id}: profiles steer routing
    ACCOUNTS_READ = "accounts:read"  # profiles (owners' e-mail addresses), counters, signals, triggers


# A key issued without --scope: what a product service needs, nothing more.
DEFAULT_SCOPES = frozenset({Scope.EVENTS_WRITE})
# Keys issued before scopes existed have none stored; they keep posting events, and an operator
# grants what else they did (`upswing keys grant KEY_ID --scope accounts:write`).
LEGACY_SCOPES = DEFAULT_SCOPES


def parse_scopes(names: Iterable[str]) -> frozenset[Scope]:
    """Scopes by name, or ProducerKeyError naming the unknown one and the valid ones."""
    scopes = set()
    for name in names:
        try:
            scopes.add(Scope(name.strip()))
        except ValueError:
            valid = ", ".join(scope.value for scope in Scope)
            raise ProducerKeyError(f"unknown scope {name!r}; scopes are: {valid}") from None
    return frozenset(scopes)


def scopes_text(scopes: Iterable[Scope]) -> str:
    """Space-separated, sorted: how scopes travel in the authorizer's context (strings only)."""
    return " ".join(sorted(scope.value for scope in scopes))


class ProducerKeyError(ValueError):
    """An operator asked for something about keys that cannot be done; the message says why."""


@dataclass(frozen=True)
class Producer:
    producer_id: str
    key_id: str
    scopes: frozenset[Scope]


@dataclass(frozen=True)
class IssuedKey:
    key: str
    key_id: str
    producer_id: str
    scopes: frozenset[Scope]


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    producer_id: str
    created_at: str
    revoked_at: str | None
    scopes: frozenset[Scope]


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ProducerKeys:
    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def issue(
        self, producer_id: str, scopes: Iterable[Scope] = DEFAULT_SCOPES, now: datetime | None = None
    ) -> IssuedKey:
        scopes = frozenset(scopes)
        if not scopes:
            raise ProducerKeyError("a key needs at least one scope")
        if not _PRODUCER_NAME.match(producer_id):
            raise ProducerKeyError(
                f"producer name {producer_id!r} must be 1-64 of a-z 0-9 _ . - "
                "(starting with a letter or digit)"
            )
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        digest = key_hash(key)
        self._client.put_item(
            TableName=self._table,
            Item={
                "pk": {"S": _pk(digest[:16])},
                "hash": {"S": digest},
                "producer_id": {"S": producer_id},
                "created_at": {"S": _stamp(now)},
                "scopes": {"SS": sorted(scope.value for scope in scopes)},
            },
            ConditionExpression="attribute_not_exists(pk)",
        )
        return IssuedKey(key=key, key_id=digest[:16], producer_id=producer_id, scopes=scopes)

    def verify(self, key: str) -> Producer | None:
        """The producer a presented key belongs to, or None if unknown or revoked."""
        if not key.startswith(KEY_PREFIX) or len(key) > 128:
            return None
        digest = key_hash(key)
        item = self._client.get_item(TableName=self._table, Key={"pk": {"S": _pk(digest[:16])}}).get("Item")
        if not item or "revoked_at" in item:
            return None
        if not hmac.compare_digest(item["hash"]["S"], digest):
            return None
        return Producer(
            producer_id=item["producer_id"]["S"],
            key_id=digest[:16],
            scopes=_stored_scopes(item.get("scopes")),
        )

    def grant(self, key_id: str, scopes: frozenset[Scope] | set[Scope]) -> None:
        """Add scopes to an existing key (a legacy key, or one that takes on a new job)."""
        self._check_key_id(key_id)
        if not scopes:
            raise ProducerKeyError("name at least one scope to grant")
        item = self._client.get_item(TableName=self._table, Key={"pk": {"S": _pk(key_id)}}).get("Item")
        if not item:
            raise ProducerKeyError(f"no producer key with id {key_id}")
        # A legacy key has no scopes stored: it starts from the legacy default.
        scopes = _stored_scopes(item.get("scopes")) | set(scopes)
        self._client.update_item(
            TableName=self._table,
            Key={"pk": {"S": _pk(key_id)}},
            UpdateExpression="SET scopes = :scopes",
            ExpressionAttributeValues={":scopes": {"SS": sorted(scope.value for scope in scopes)}},
        )

    def revoke(self, key_id: str, now: datetime | None = None) -> None:
        self._check_key_id(key_id)
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": _pk(key_id)}},
                UpdateExpression="SET revoked_at = if_not_exists(revoked_at, :now)",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":now": {"S": _stamp(now)}},
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            raise ProducerKeyError(f"no producer key with id {key_id}") from None

    def list(self) -> list[KeyRecord]:
        records = []
        scan: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "begins_with(pk, :prefix)",
            "ExpressionAttributeValues": {":prefix": {"S": "key#"}},
        }
        while True:
            page = self._client.scan(**scan)
            for raw in page.get("Items", []):
                item = deserialize(raw)
                records.append(
                    KeyRecord(
                        key_id=item["pk"].removeprefix("key#"),
                        producer_id=item["producer_id"],
                        created_at=item["created_at"],
                        revoked_at=item.get("revoked_at"),
                        scopes=_stored_scopes(raw.get("scopes")),
                    )
                )
            if "LastEvaluatedKey" not in page:
                return sorted(records, key=lambda record: record.created_at)
            scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    @staticmethod
    def _check_key_id(key_id: str) -> None:
        if not re.fullmatch(r"[0-9a-f]{16}", key_id):
            raise ProducerKeyError(
                f"{key_id!r} is not a key id (16 hex digits, as `upswing keys list` shows)"
            )


def _stored_scopes(attribute: dict[str, Any] | None) -> frozenset[Scope]:
    if attribute is None:
        return LEGACY_SCOPES
    # A scope this version does not know (written by a newer one) grants nothing here.
    return frozenset(Scope(name) for name in attribute["SS"] if name in _SCOPE_NAMES)


_SCOPE_NAMES = frozenset(scope.value for scope in Scope)


def _pk(key_id: str) -> str:
    return f"key#{key_id}"


def _stamp(now: datetime | None) -> str:
    return utc_stamp(now or datetime.now(UTC), "seconds")
