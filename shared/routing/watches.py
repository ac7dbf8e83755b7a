"""Which HubSpot tasks the scheduler watches for auto-closing, and when it checks each next.

One item per watched play tier, beside the play in the plays table (`autoclose#<play_id>` in the
account's partition). While watched, it carries the keys of the plays table's sparse `due` index
under its own shard (`autoclose`), sorted by the next check: the scheduler asks the index for the
watches whose check is due, a bounded page per run, never a scan. It also remembers
`not_holding_since`, the first check that found the trigger's signal not holding (cleared by a check
that finds it holding again). A watch ends (the index keys removed, `ended` says why) once its task is
closed, worked, deleted, or no longer to be closed; the item then expires with the retention period.
The router starts a watch when it routes a play tier with a HubSpot task whose play has `auto_close`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from shared.resources import PLAYS_DUE_INDEX
from shared.routing.models import PlayRecord
from shared.storage.dynamo import deserialize, is_conditional_failure, serialize

WATCH_PREFIX = "autoclose#"
WATCH_SHARD = "autoclose"  # beside the `due` shard of waiting plays, in the same index
# How often a watched task's signal is checked (each check is one rules evaluation of the account).
CHECK_EVERY = timedelta(hours=6)
AUTO_CLOSE_PER_RUN = 100  # watches checked per scheduler run, at most


@dataclass(frozen=True)
class Watch:
    account_id: str
    play_id: str
    trigger: str
    play: str
    tier: int
    check_at: datetime
    not_holding_since: datetime | None = None


class AutoCloseWatches:
    def __init__(
        self, client: Any, table: str, retention_days: int, check_every: timedelta = CHECK_EVERY
    ) -> None:
        self._client = client
        self._table = table
        self._retention = timedelta(days=retention_days)
        self.check_every = check_every

    def watch(self, record: PlayRecord, first_check: datetime) -> None:
        """Start watching a routed play tier's task; a second call (a redelivery) changes nothing."""
        item = {
            "pk": record.account_id,
            "sk": WATCH_PREFIX + record.play_id,
            "play_id": record.play_id,
            "trigger": record.trigger,
            "play": record.play,
            "tier": record.tier,
            "check_at": _stamp(first_check),
            PLAYS_DUE_INDEX.partition_key: WATCH_SHARD,
            PLAYS_DUE_INDEX.sort_key: _index_key(first_check, record.play_id),
            "expires_at": int((record.updated_at + self._retention).timestamp()),
        }
        try:
            self._client.put_item(
                TableName=self._table, Item=serialize(item), ConditionExpression="attribute_not_exists(pk)"
            )
        except ClientError as error:
            if not is_conditional_failure(error):
                raise

    def due(self, at: datetime, limit: int) -> list[Watch]:
        """Up to `limit` watches whose check is due, the most overdue first (eventually consistent:
        `get` the watch before acting on it)."""
        answer = self._client.query(
            TableName=self._table,
            IndexName=PLAYS_DUE_INDEX.name,
            KeyConditionExpression="#shard = :shard AND #due <= :at",
            ExpressionAttributeNames={
                "#shard": PLAYS_DUE_INDEX.partition_key,
                "#due": PLAYS_DUE_INDEX.sort_key,
            },
            ExpressionAttributeValues={":shard": {"S": WATCH_SHARD}, ":at": {"S": _stamp(at) + "~"}},
            Limit=limit,
        )
        return [_watch(deserialize(raw)) for raw in answer.get("Items", [])]

    def get(self, account_id: str, play_id: str) -> Watch | None:
        """The watch as it stands (a consistent read); None when there is none, or it ended."""
        item = self._client.get_item(
            TableName=self._table, Key=_key(account_id, play_id), ConsistentRead=True
        ).get("Item")
        if not item or PLAYS_DUE_INDEX.partition_key not in item:
            return None
        return _watch(deserialize(item))

    def reschedule(self, watch: Watch, check_at: datetime, not_holding_since: datetime | None) -> None:
        """The next check, and since when the signal has not held (None: it held at this check)."""
        values: dict[str, Any] = {
            ":check": _stamp(check_at),
            ":due": _index_key(check_at, watch.play_id),
        }
        expression = "SET check_at = :check, #due = :due"
        if not_holding_since is None:
            expression += " REMOVE not_holding_since"
        else:
            values[":since"] = _stamp(not_holding_since)
            expression = "SET check_at = :check, #due = :due, not_holding_since = :since"
        self._update(watch, expression, values, {"#due": PLAYS_DUE_INDEX.sort_key})

    def end(self, watch: Watch, why: str, at: datetime) -> None:
        """Stop watching: out of the index; `ended` says why."""
        self._update(
            watch,
            "SET ended = :why, ended_at = :at REMOVE #shard, #due",
            {":why": why, ":at": _stamp(at)},
            {"#shard": PLAYS_DUE_INDEX.partition_key, "#due": PLAYS_DUE_INDEX.sort_key},
        )

    def _update(self, watch: Watch, expression: str, values: dict[str, Any], names: dict[str, str]) -> None:
        """Conditional on the watch still running: an ended watch is never brought back."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key=_key(watch.account_id, watch.play_id),
                UpdateExpression=expression,
                ConditionExpression="attribute_exists(#shard)",
                ExpressionAttributeNames={**names, "#shard": PLAYS_DUE_INDEX.partition_key},
                ExpressionAttributeValues=serialize(values),
            )
        except ClientError as error:
            if not is_conditional_failure(error):
                raise


def _watch(item: dict[str, Any]) -> Watch:
    since = item.get("not_holding_since")
    return Watch(
        account_id=item["pk"],
        play_id=item["play_id"],
        trigger=item["trigger"],
        play=item["play"],
        tier=int(item["tier"]),
        check_at=datetime.fromisoformat(item["check_at"]),
        not_holding_since=datetime.fromisoformat(since) if since else None,
    )


def _key(account_id: str, play_id: str) -> dict[str, Any]:
    return {"pk": {"S": account_id}, "sk": {"S": WATCH_PREFIX + play_id}}


def _index_key(moment: datetime, play_id: str) -> str:
    return f"{_stamp(moment)}#{play_id}"


def _stamp(moment: datetime) -> str:
    """Whole seconds, UTC, `Z`: one width, so the index compares them as text (as the ledger's)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
