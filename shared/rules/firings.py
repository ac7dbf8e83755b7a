"""The firing ledger in DynamoDB: trigger state per account, and every firing with its evidence.

A firing is written once. The account's `state` item carries a version; an evaluation commits
its new state and its firings in one transaction conditional on the version it read, so of two
concurrent evaluations of the same account only one can fire (the other re-reads and finds the
trigger cooling down). Firings are handed off after the commit; until then their ids sit in the
state's `pending` set, and the next evaluation of the account sends them again (an outbox: a
failed send is retried, never lost; the router deduplicates by firing id).

The state also remembers when the account went live after a history import (`went_live`, written
once by shared/rules/golive.py and carried forward by every later commit), and a pre-existing
firing's message carries its `go_live` mark, stored with it so a resend carries it too.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from shared.rules.engine import AccountState, Firing, TriggerState
from shared.rules.ports import ConcurrentEvaluation, StoredState
from shared.storage.dynamo import deserialize, serialize
from shared.timestamps import utc_stamp

STATE_KEY = "state"
FIRING_PREFIX = "firing#"


def firing_id(firing: Firing) -> str:
    moment = firing.evaluated_at.isoformat()
    # A shadow ruleset may name a trigger as the live one does: its firings get their own ids.
    shadow = f"shadow\n{firing.ruleset_version}\n" if firing.shadow_ruleset else ""
    text = f"{shadow}{firing.account_id}\n{firing.trigger}\n{moment}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def fired_message(firing: Firing, go_live: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `trigger.fired` message (docs/rules.md, "Hand-off"); `go_live`: a pre-existing firing's
    mark (shared/rules/golive.py), in the firing's evidence."""
    evidence = firing.as_evidence()
    if go_live:
        evidence["go_live"] = go_live
    return {"type": "trigger.fired", "firing_id": firing_id(firing), "firing": evidence}


class FiringStore:
    def __init__(self, client: Any, table: str, retention_days: int) -> None:
        self._client = client
        self._table = table
        self._retention = timedelta(days=retention_days)

    def load(self, account_id: str) -> StoredState:
        item = self._client.get_item(
            TableName=self._table, Key=self._key(account_id, STATE_KEY), ConsistentRead=True
        ).get("Item")
        if not item:
            return StoredState(AccountState(), 0, frozenset())
        raw = deserialize(item)
        triggers = {
            name: TriggerState(
                last_fired_at=_moment(value.get("last_fired_at")), armed=bool(value.get("armed", True))
            )
            for name, value in raw.get("triggers", {}).items()
        }
        state = AccountState(triggers=triggers, last_contacted_at=_moment(raw.get("last_contacted_at")))
        return StoredState(
            state, int(raw.get("version", 0)), frozenset(raw.get("pending", ())), raw.get("went_live")
        )

    def commit(
        self,
        account_id: str,
        read: StoredState,
        state: AccountState,
        firings: list[Firing],
        handed_off: set[str] | frozenset[str] = frozenset(),
        shadow_firings: list[Firing] | tuple[Firing, ...] = (),
        *,
        went_live: dict[str, Any] | None = None,
        marks: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """Store the new state and the firings, unless the state changed since `read`.

        `handed_off`: ids of the read state's pending firings sent since; they leave the outbox.
        `shadow_firings`: the shadow rulesets' firings, stored alike but never pending (never sent).
        `went_live`: the go-live record to keep (once); `marks`: per trigger, a firing's go-live mark.
        """
        if state == read.state and not firings and not shadow_firings and not went_live:
            return
        went_live = went_live or read.went_live
        marks = marks or {}
        pending = (set(read.pending) - set(handed_off)) | {firing_id(firing) for firing in firings}
        state_item: dict[str, Any] = {
            **self._key_values(account_id, STATE_KEY),
            "version": read.version + 1,
            "triggers": {
                name: {"last_fired_at": _stamp(value.last_fired_at), "armed": value.armed}
                for name, value in state.triggers.items()
            },
            "last_contacted_at": _stamp(state.last_contacted_at),
        }
        if went_live:
            state_item["went_live"] = went_live
        if pending:
            state_item["pending"] = pending
        condition = (
            {
                "ConditionExpression": "version = :read",
                "ExpressionAttributeValues": {":read": {"N": str(read.version)}},
            }
            if read.version
            else {"ConditionExpression": "attribute_not_exists(pk)"}
        )
        writes: list[dict[str, Any]] = [
            {"Put": {"TableName": self._table, "Item": serialize(state_item), **condition}}
        ]
        marked = [(firing, marks.get(firing.trigger)) for firing in firings]
        for firing, mark in [*marked, *((firing, None) for firing in shadow_firings)]:
            writes.append(
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": serialize(self._firing_item(firing, mark)),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            )
        try:
            if len(writes) == 1:
                self._client.put_item(**writes[0]["Put"])
            else:
                self._client.transact_write_items(TransactItems=writes)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code in ("ConditionalCheckFailedException", "TransactionCanceledException"):
                raise ConcurrentEvaluation(account_id) from None
            raise

    def pending_firings(self, account_id: str, ids: frozenset[str]) -> list[dict[str, Any]]:
        """The `trigger.fired` messages of firings committed but not yet handed off."""
        if not ids:
            return []
        found = []
        query: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :account AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":account": {"S": account_id}, ":prefix": {"S": FIRING_PREFIX}},
            "ConsistentRead": True,
            "ScanIndexForward": False,
        }
        while True:
            page = self._client.query(**query)
            for raw in page.get("Items", []):
                item = deserialize(raw)
                if item["firing_id"] in ids:
                    found.append(json.loads(item["message"]))
            if len(found) == len(ids) or "LastEvaluatedKey" not in page:
                return found
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def mark_handed_off(self, account_id: str, ids: set[str]) -> None:
        if ids:
            self._client.update_item(
                TableName=self._table,
                Key=self._key(account_id, STATE_KEY),
                UpdateExpression="DELETE pending :ids",
                ExpressionAttributeValues={":ids": {"SS": sorted(ids)}},
            )

    def recent_firings(self, account_id: str, limit: int = 20) -> list[dict[str, Any]]:
        answer = self._client.query(
            TableName=self._table,
            KeyConditionExpression="pk = :account AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={":account": {"S": account_id}, ":prefix": {"S": FIRING_PREFIX}},
            ScanIndexForward=False,
            Limit=limit,
        )
        return [json.loads(deserialize(raw)["message"])["firing"] for raw in answer.get("Items", [])]

    def _firing_item(self, firing: Firing, go_live: dict[str, Any] | None = None) -> dict[str, Any]:
        moment = utc_stamp(firing.evaluated_at)
        shadow = f"#shadow#{firing.ruleset_version}" if firing.shadow_ruleset else ""
        return {
            **self._key_values(firing.account_id, f"{FIRING_PREFIX}{moment}#{firing.trigger}{shadow}"),
            "firing_id": firing_id(firing),
            "trigger": firing.trigger,
            "ruleset_version": firing.ruleset_version,
            "message": json.dumps(fired_message(firing, go_live), separators=(",", ":"), ensure_ascii=False),
            "expires_at": int((firing.evaluated_at + self._retention).timestamp()),
        }

    @staticmethod
    def _key_values(account_id: str, sort_key: str) -> dict[str, str]:
        return {"pk": account_id, "sk": sort_key}

    def _key(self, account_id: str, sort_key: str) -> dict[str, Any]:
        return serialize(self._key_values(account_id, sort_key))


def _stamp(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _moment(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None
