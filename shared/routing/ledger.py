"""The play ledger in DynamoDB: every play tier of every firing, and the budget and pool counters.

A play item moves SCHEDULED (an escalation tier waiting for its day) or DEFERRED (over a budget)
→ ACCEPTED (budgets charged, deliveries decided) → ROUTED (handed to the channel queues), or ends
SUPPRESSED (do-not-contact) or LAPSED (the signal cleared before an escalation tier was due).
Accepting is one transaction: the play item, conditional on nobody having accepted it, and each
budget counter, conditional on staying within its limit. So redeliveries and concurrent routers
accept a play once, and no budget is ever overdrawn. SCHEDULED and DEFERRED items carry the
sparse `due` index keys until the scheduler releases them; ACCEPTED items keep them (due
HAND_OFF_GRACE after the accept) until they are marked ROUTED, so a hand-off that never finished
is found and finished by the scheduler.

The transitions the live trigger metrics count (shared/trigger_metrics/counters.py: a firing's
first record, routed, first deferred, suppressed, an escalation routed, a task first worked, an
expansion first attributed) carry their counter ADD in the same transaction, conditional on the
state the router read (`stored_status`), so each is counted exactly once.

A held-out firing (its account is in its trigger's experiment holdout, `arm: holdout` in its
evidence) ends HELD_OUT at once: recorded and counted like any firing, never routed. A firing that
is its account's first in its trigger's experiment is the account's *trial* (`experiment_trial`):
its first record also writes the account's enrolment item (`experiment#<trigger>#<salt>`,
conditional on not existing) and counts one account for its arm; an expansion attributed to it
counts for the arm too (shared/trigger_metrics/counters.py).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from shared.resources import PLAYS_DUE_INDEX
from shared.routing.budgets import BudgetCharge
from shared.routing.messages import DeliveryOwner, PlayDelivery
from shared.routing.models import (
    WAITING,
    AlreadyTaken,
    Expansion,
    OverBudget,
    PlayRecord,
    PlayStatus,
    TaskFacts,
    TaskStatus,
)
from shared.storage.dynamo import deserialize, is_conditional_failure, serialize
from shared.trigger_metrics import emf
from shared.trigger_metrics.counters import ArmCount, Cohort, Count, Tally, Trial

PLAY_PREFIX = "play#"
EXPERIMENT_PREFIX = "experiment#"
DUE_SHARD = "due"  # one partition: releases are few per minute, far below a partition's limits
# An accepted play whose hand-off has not finished this long after the accept is handed over by
# the scheduler: the hand-off failed, or the invocation died, and nothing else would retry it (a
# scheduler release has no message to come back). Longer than the router's and the scheduler's
# timeouts, so a hand-off still under way is not repeated.
HAND_OFF_GRACE = timedelta(minutes=5)
# A transaction cancelled only because another one held an item (a busy cohort counter) is tried
# again this many times, after a short random pause, before the caller's own retry takes over.
CONFLICT_RETRIES = 3


class PlayLedger:
    def __init__(self, client: Any, table: str, retention_days: int) -> None:
        self._client = client
        self._table = table
        self._retention = timedelta(days=retention_days)

    def get(self, account_id: str, play_id: str) -> PlayRecord | None:
        item = self._client.get_item(
            TableName=self._table, Key=_key(account_id, PLAY_PREFIX + play_id), ConsistentRead=True
        ).get("Item")
        return _record(deserialize(item)) if item else None

    def in_experiment(self, account_id: str, trigger: str, salt: str) -> bool:
        """Whether the account entered the trigger's experiment (salt) already: its enrolment item."""
        answer = self._client.get_item(
            TableName=self._table,
            Key=_key(account_id, _enrolment_sort_key(trigger, salt)),
            ConsistentRead=True,
            ProjectionExpression="pk",
        )
        return "Item" in answer

    def schedule(self, record: PlayRecord) -> bool:
        """Write a waiting play unless the play exists already; True when written."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item=self._item(record),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as error:
            if _code(error) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def accept(self, record: PlayRecord, budgets: list[BudgetCharge]) -> None:
        """Accept the play and charge its budgets, all or nothing.

        Raises OverBudget (naming the budgets that are spent) or AlreadyTaken.
        """
        tally = self._tally(record)
        writes: list[dict[str, Any]] = [{"Put": self._open_play_write(record, strict=bool(tally))}]
        for charge in budgets:
            writes.append(
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": _key(charge.counter, charge.period),
                        "UpdateExpression": "ADD n :one SET expires_at = :expires",
                        "ConditionExpression": "attribute_not_exists(n) OR n < :limit",
                        "ExpressionAttributeValues": {
                            ":one": {"N": "1"},
                            ":limit": {"N": str(charge.limit)},
                            ":expires": {"N": str(self._expiry(charge.resets_at))},
                        },
                    }
                }
            )
        if tally:
            writes += self._counted(record, tally)  # last: the reasons below index the play and budgets
        try:
            self._transact(writes)
        except ClientError as error:
            if _code(error) != "TransactionCanceledException":
                raise
            reasons = _reasons(error)
            if reasons and reasons[0] == "ConditionalCheckFailed":
                raise AlreadyTaken(record.play_id) from None
            exceeded = [
                charge
                for charge, reason in zip(budgets, reasons[1:], strict=False)
                if reason == "ConditionalCheckFailed"
            ]
            if not exceeded:
                raise  # a conflict or throttling: the message is retried
            raise OverBudget(exceeded) from None
        if tally:
            emf.publish(tally)

    def settle(self, record: PlayRecord) -> None:
        """Write a play that waits (again) or ends without delivery, unless another router took it."""
        tally = self._tally(record)
        if not tally:
            try:
                self._client.put_item(**self._open_play_write(record, strict=False))
            except ClientError as error:
                if _code(error) == "ConditionalCheckFailedException":
                    raise AlreadyTaken(record.play_id) from None
                raise
            return
        try:
            self._transact(
                [{"Put": self._open_play_write(record, strict=True)}, *self._counted(record, tally)]
            )
        except ClientError as error:
            if _code(error) == "TransactionCanceledException" and _reasons(error)[:1] == [
                "ConditionalCheckFailed"
            ]:
                raise AlreadyTaken(record.play_id) from None
            raise
        emf.publish(tally)

    def mark_routed(self, record: PlayRecord) -> None:
        self._client.update_item(
            TableName=self._table,
            Key=_key(record.account_id, PLAY_PREFIX + record.play_id),
            UpdateExpression="SET #status = :routed REMOVE #shard, #due",
            ExpressionAttributeNames={
                "#status": "status",
                "#shard": PLAYS_DUE_INDEX.partition_key,
                "#due": PLAYS_DUE_INDEX.sort_key,
            },
            ExpressionAttributeValues={":routed": {"S": PlayStatus.ROUTED.value}},
        )

    def record_delivery_problem(
        self, account_id: str, play_id: str, channel: str, problem: str, at: datetime
    ) -> None:
        """Add what went wrong delivering a routed play (a sender's note: the task was created
        without its owner, say). The only write a sender makes here; it touches nothing else."""
        entry = {"channel": {"S": channel}, "problem": {"S": problem[:1000]}, "at": {"S": _stamp(at)}}
        self._client.update_item(
            TableName=self._table,
            Key=_key(account_id, PLAY_PREFIX + play_id),
            UpdateExpression="SET #problems = list_append(if_not_exists(#problems, :none), :new)",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeNames={"#problems": "delivery_problems"},
            ExpressionAttributeValues={":none": {"L": []}, ":new": {"L": [{"M": entry}]}},
        )

    def record_feedback(self, account_id: str, play_id: str, feedback: dict[str, str]) -> bool:
        """A person's verdict on a routed play; the first one stays (a second click changes nothing).
        True when this call recorded it; False when the play had feedback already. A play that is not
        in the ledger raises KeyError."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key=_key(account_id, PLAY_PREFIX + play_id),
                UpdateExpression="SET feedback = :feedback",
                ConditionExpression="attribute_exists(pk) AND attribute_not_exists(feedback)",
                ExpressionAttributeValues=serialize({":feedback": feedback}),
            )
        except ClientError as error:
            if not is_conditional_failure(error):
                raise
            if self.get(account_id, play_id) is None:
                raise KeyError(play_id) from None
            return False
        return True

    def record_task_created(
        self, account_id: str, play_id: str, task_id: str, owner_id: str | None, due: str, at: datetime
    ) -> None:
        """The sender's word: the play's HubSpot task exists (its id, owner and due instant). Written
        once; a redelivery, or a read-back that got there first, leaves the item as it is."""
        values: dict[str, Any] = {
            ":id": task_id,
            ":open": TaskStatus.OPEN.value,
            ":due": due,
            ":at": _stamp(at),
        }
        expression = (
            "SET task_id = if_not_exists(task_id, :id), task_status = if_not_exists(task_status, :open), "
            "task_due = if_not_exists(task_due, :due), task_created_at = if_not_exists(task_created_at, :at)"
        )
        if owner_id:
            values[":owner"] = owner_id
            expression += ", task_owner_id = if_not_exists(task_owner_id, :owner)"
        self._client.update_item(
            TableName=self._table,
            Key=_key(account_id, PLAY_PREFIX + play_id),
            UpdateExpression=expression,
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues=serialize(values),
        )

    def record_task_failure(
        self, account_id: str, play_id: str, reason: str, correlation_id: str | None, at: datetime
    ) -> None:
        """The sender's word: HubSpot refused the play's task for good (it went to the DLQ)."""
        failure = {"reason": reason[:1000], "at": _stamp(at)}
        if correlation_id:
            failure["correlation_id"] = correlation_id
        self._client.update_item(
            TableName=self._table,
            Key=_key(account_id, PLAY_PREFIX + play_id),
            UpdateExpression="SET task_failed = :failed",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues=serialize({":failed": failure}),
        )

    def record_task_change(self, account_id: str, play_id: str, facts: TaskFacts) -> bool:
        """The poller's word: the task as HubSpot shows it at `facts.modified_ms`. Applied only when
        newer than what the play holds, so reading a change again (a retried page, the watermark's
        overlap) changes nothing; False then. `worked`, `deleted`, `reassigned`, `due_moved` are set
        when given, never cleared (a reopened task was still worked once). The first `worked` of a
        play counts toward its trigger's metrics (tasks worked, time to work), in the same
        transaction."""
        if facts.worked and self._record_first_work(account_id, play_id, facts):
            return True
        update = self._task_change_update(account_id, play_id, facts)
        try:
            self._client.update_item(**update)
        except ClientError as error:
            if _code(error) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _record_first_work(self, account_id: str, play_id: str, facts: TaskFacts) -> bool:
        """Record a change that first sets `worked`, with the count; False when the play is unknown
        or was worked before (then the plain change applies, uncounted)."""
        assert facts.worked
        record = self.get(account_id, play_id)
        if record is None or record.worked:
            return False
        update = self._task_change_update(account_id, play_id, facts)
        update["ConditionExpression"] += " AND attribute_not_exists(worked)"
        tally = Tally(
            Cohort.of(record.firing),
            {Count.WORKED: 1},
            hours_to_work=_hours_between(record.updated_at, facts.worked["at"]),
        )
        try:
            self._transact([{"Update": update}, self._count(tally)])
        except ClientError as error:
            if _code(error) == "TransactionCanceledException" and _reasons(error)[:1] == [
                "ConditionalCheckFailed"
            ]:
                return False  # worked meanwhile, or an older change: the plain path decides
            raise
        emf.publish(tally)
        return True

    def record_expansion(self, record: PlayRecord, expansion: Expansion) -> bool:
        """Attribute an expansion to a firing's play (tier 0), with its count and amount, once: a
        play already expanded keeps its first expansion (False then), so a redelivered outcome or a
        second expansion within the horizon changes nothing."""
        salt = record.experiment_salt
        tally = Tally(
            Cohort.of(record.firing),
            {Count.EXPANDED: 1},
            amount=(expansion.currency, expansion.amount),
            trial=Trial(salt, record.arm, ArmCount.EXPANDED) if record.trial and salt else None,
        )
        update = {
            "TableName": self._table,
            "Key": _key(record.account_id, PLAY_PREFIX + record.play_id),
            "UpdateExpression": "SET expanded = :expanded",
            "ConditionExpression": "attribute_exists(pk) AND attribute_not_exists(expanded)",
            "ExpressionAttributeValues": serialize({":expanded": expansion.as_fact()}),
        }
        try:
            self._transact([{"Update": update}, self._count(tally)])
        except ClientError as error:
            if _code(error) == "TransactionCanceledException" and _reasons(error)[:1] == [
                "ConditionalCheckFailed"
            ]:
                return False
            raise
        emf.publish(tally)
        return True

    def _task_change_update(self, account_id: str, play_id: str, facts: TaskFacts) -> dict[str, Any]:
        values: dict[str, Any] = {":modified": facts.modified_ms}
        sets = ["task_modified_ms = :modified"]
        for attribute, value in (
            ("task_id", facts.task_id),
            ("task_status", facts.status.value if facts.status else None),
            ("task_owner_id", facts.owner_id),
            ("task_due", facts.due),
            ("worked", facts.worked),
            ("task_deleted", facts.deleted),
            ("reassigned", facts.reassigned),
            ("due_moved", facts.due_moved),
        ):
            if value is not None:
                values[f":{attribute}"] = value
                sets.append(f"{attribute} = :{attribute}")
        return {
            "TableName": self._table,
            "Key": _key(account_id, PLAY_PREFIX + play_id),
            "UpdateExpression": "SET " + ", ".join(sets),
            "ConditionExpression": (
                "attribute_exists(pk) AND (attribute_not_exists(task_modified_ms) "
                "OR task_modified_ms < :modified)"
            ),
            "ExpressionAttributeValues": serialize(values),
        }

    def decide_auto_close(self, account_id: str, play_id: str, decision: dict[str, str]) -> bool:
        """The scheduler's decision to close the play's stale HubSpot task: written once, and only
        while the task is open and not worked (a person may have been quicker). False when not written."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key=_key(account_id, PLAY_PREFIX + play_id),
                UpdateExpression="SET auto_close = :decision",
                ConditionExpression=(
                    "attribute_exists(task_id) AND attribute_not_exists(auto_close) "
                    "AND task_status = :open AND attribute_not_exists(worked)"
                ),
                ExpressionAttributeValues=serialize({":decision": decision, ":open": TaskStatus.OPEN.value}),
            )
        except ClientError as error:
            if _code(error) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def record_auto_close_result(self, account_id: str, play_id: str, result: str, at: datetime) -> None:
        """The HubSpot sender's word on a close it was asked for: `closed`, `already_completed` (by a
        person: left alone) or `task_deleted`. The first word stays (a redelivery writes nothing new)."""
        self._client.update_item(
            TableName=self._table,
            Key=_key(account_id, PLAY_PREFIX + play_id),
            UpdateExpression="SET auto_close_result = if_not_exists(auto_close_result, :result)",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues=serialize({":result": {"result": result, "at": _stamp(at)}}),
        )

    def due(self, at: datetime, limit: int = 100) -> list[PlayRecord]:
        """Waiting plays whose time has come, the longest-waiting first."""
        answer = self._client.query(
            TableName=self._table,
            IndexName=PLAYS_DUE_INDEX.name,
            KeyConditionExpression="#shard = :shard AND #due <= :at",
            ExpressionAttributeNames={
                "#shard": PLAYS_DUE_INDEX.partition_key,
                "#due": PLAYS_DUE_INDEX.sort_key,
            },
            ExpressionAttributeValues={":shard": {"S": DUE_SHARD}, ":at": {"S": _stamp(at) + "~"}},
            Limit=limit,
        )
        return [_record(deserialize(raw)) for raw in answer.get("Items", [])]

    def plays(self, account_id: str, limit: int | None = None) -> list[PlayRecord]:
        """The account's plays, most recently updated first (the newest `limit` of them).

        Play ids are hashes, so the table cannot hand them over in time order: every play of the
        account is read. They are few (each trigger fires at most once per cooldown, and the
        items expire with the retention period).
        """
        records: list[PlayRecord] = []
        query: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :account AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":account": {"S": account_id}, ":prefix": {"S": PLAY_PREFIX}},
        }
        while True:
            answer = self._client.query(**query)
            records += [_record(deserialize(raw)) for raw in answer.get("Items", [])]
            if "LastEvaluatedKey" not in answer:
                break
            query["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        records.sort(key=lambda record: (record.tier, record.play_id))  # a firing's tiers in order...
        records.sort(key=lambda record: record.updated_at, reverse=True)  # ...within the newest first
        return records if limit is None else records[:limit]

    def firings_of(self, trigger: str) -> Iterator[PlayRecord]:
        """Every kept firing's play (tier 0) of a trigger: a **scan** of the table, for an operator's
        export (upswing experiment export), never for a request path."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "begins_with(sk, :prefix) AND tier = :zero AND #trigger = :trigger",
            "ExpressionAttributeNames": {"#trigger": "trigger"},
            "ExpressionAttributeValues": {
                ":prefix": {"S": PLAY_PREFIX},
                ":zero": {"N": "0"},
                ":trigger": {"S": trigger},
            },
        }
        while True:
            page = self._client.scan(**request)
            yield from (_record(deserialize(raw)) for raw in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def counts(self, counters: list[str], period: str) -> dict[str, int]:
        """The current value of budget counters in one period (absent counters are 0)."""
        found = dict.fromkeys(counters, 0)
        keys = [_key(counter, period) for counter in dict.fromkeys(counters)]
        for start in range(0, len(keys), 100):
            request = {self._table: {"Keys": keys[start : start + 100], "ConsistentRead": True}}
            while request:
                answer = self._client.batch_get_item(RequestItems=request)
                for raw in answer.get("Responses", {}).get(self._table, []):
                    item = deserialize(raw)
                    found[item["pk"]] = int(item.get("n", 0))
                request = answer.get("UnprocessedKeys") or {}
        return found

    def next_turn(self, pool: str) -> int:
        """A pool's round-robin counter, incremented: 0, 1, 2..."""
        answer = self._client.update_item(
            TableName=self._table,
            Key=_key(pool, "turn"),
            UpdateExpression="ADD n :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="UPDATED_NEW",
        )
        return int(answer["Attributes"]["n"]["N"]) - 1

    # ── items ──────────────────────────────────────────────────────────────────────────────────

    def _open_play_write(self, record: PlayRecord, *, strict: bool) -> dict[str, Any]:
        """A put that only succeeds while the play is new or waiting — `strict`: only while it is
        exactly as this record was read (new, or in `stored_status`), for a transition that counts.
        Either way the put cannot undo an expansion attributed since the record was read."""
        values = {
            ":scheduled": {"S": PlayStatus.SCHEDULED.value},
            ":deferred": {"S": PlayStatus.DEFERRED.value},
        }
        condition = "(attribute_not_exists(pk) OR #status IN (:scheduled, :deferred))"
        if strict and record.stored_status is None:
            condition += " AND attribute_not_exists(pk)"
        elif strict and record.stored_status is not None:
            condition += " AND #status = :stored"
            values[":stored"] = {"S": record.stored_status.value}
        if record.expanded is None:
            condition += " AND attribute_not_exists(expanded)"
        return {
            "TableName": self._table,
            "Item": self._item(record),
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": values,
        }

    def _tally(self, record: PlayRecord) -> Tally:
        """What writing this record counts for its trigger: the firing's first record, and what
        became of its play (tier 0), or an escalation tier routed. Empty when nothing counts."""
        counts: dict[Count, int] = {}
        if record.tier > 0:
            if record.status is PlayStatus.ACCEPTED:
                counts[Count.ESCALATED] = 1
        else:
            if record.stored_status is None:
                counts[Count.FIRINGS] = 1
            if record.status is PlayStatus.ACCEPTED:
                counts[Count.ROUTED] = 1
            elif record.status is PlayStatus.DEFERRED and record.stored_status is not PlayStatus.DEFERRED:
                counts[Count.DEFERRED] = 1
            elif record.status is PlayStatus.SUPPRESSED:
                counts[Count.SUPPRESSED] = 1
            elif record.status is PlayStatus.HELD_OUT:
                counts[Count.HELD_OUT] = 1
            elif record.status is PlayStatus.SHADOW:
                counts[Count.SHADOW] = 1
        salt = record.experiment_salt
        enrols = record.tier == 0 and record.stored_status is None and record.trial and salt
        trial = Trial(salt, record.arm, ArmCount.ACCOUNTS) if enrols and salt else None
        return Tally(Cohort.of(record.firing), counts, trial=trial)

    def _counted(self, record: PlayRecord, tally: Tally) -> list[dict[str, Any]]:
        """The transaction elements of a counted transition: the cohort ADD, and for an account
        entering its trigger's experiment, its enrolment item (conditional on not existing: an
        account is one trial per experiment, whichever of its firings raced to enter it)."""
        writes = [self._count(tally)]
        if tally.trial is not None and tally.trial.count is ArmCount.ACCOUNTS:
            enrolment = {
                "pk": record.account_id,
                "sk": _enrolment_sort_key(record.trigger, tally.trial.salt),
                "trigger": record.trigger,
                "salt": tally.trial.salt,
                "arm": tally.trial.arm,
                "firing_id": record.firing_id,
                "fired_at": str(record.firing["evaluated_at"]),
                "expires_at": self._expiry(record.updated_at),
            }
            writes.append(
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": serialize(enrolment),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            )
        return writes

    def _count(self, tally: Tally) -> dict[str, Any]:
        expires = datetime.combine(tally.cohort.day, datetime.min.time(), UTC) + timedelta(days=1)
        return tally.update(self._table, self._expiry(expires))

    def _transact(self, writes: list[dict[str, Any]]) -> None:
        """One transaction; tried again when it lost only a conflict (another transaction held one
        of its items, a busy cohort counter say) — conditions that failed are the caller's."""
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                self._client.transact_write_items(TransactItems=writes)
                return
            except ClientError as error:
                reasons = _reasons(error) if _code(error) == "TransactionCanceledException" else []
                conflict = "TransactionConflict" in reasons and "ConditionalCheckFailed" not in reasons
                if not conflict or attempt == CONFLICT_RETRIES:
                    raise
                time.sleep(random.uniform(0.01, 0.05) * 2**attempt)  # noqa: S311 (jitter, not a secret)

    def _item(self, record: PlayRecord) -> dict[str, Any]:
        item: dict[str, Any] = {
            "pk": record.account_id,
            "sk": PLAY_PREFIX + record.play_id,
            "play_id": record.play_id,
            "firing_id": record.firing_id,
            "tier": record.tier,
            "trigger": record.trigger,
            "play": record.play,
            "status": record.status.value,
            "updated_at": _stamp(record.updated_at),
            "firing": json.dumps(record.firing, separators=(",", ":"), ensure_ascii=False),
            "expires_at": self._expiry(record.updated_at),
        }
        if record.status in WAITING:
            assert record.due_at, "a waiting play has a release time"
            item[PLAYS_DUE_INDEX.partition_key] = DUE_SHARD
            item[PLAYS_DUE_INDEX.sort_key] = f"{_stamp(record.due_at)}#{record.play_id}"
        elif record.status is PlayStatus.ACCEPTED:
            item[PLAYS_DUE_INDEX.partition_key] = DUE_SHARD
            item[PLAYS_DUE_INDEX.sort_key] = f"{_stamp(hand_off_overdue_at(record))}#{record.play_id}"
        if record.due_at:
            item["release_at"] = _stamp(record.due_at)
        if record.reason:
            item["reason"] = record.reason
        if record.owner:
            item["owner"] = record.owner.model_dump_json(exclude_none=True)
        if record.deliveries:
            item["deliveries"] = [delivery.model_dump_json() for delivery in record.deliveries]
        if record.skipped:
            item["skipped"] = record.skipped
        if record.expanded:
            item["expanded"] = record.expanded
        if record.trial:
            item["experiment_trial"] = True
        return serialize(item)

    def _expiry(self, moment: datetime) -> int:
        return int((moment + self._retention).timestamp())


def hand_off_overdue_at(record: PlayRecord) -> datetime:
    """When the scheduler takes over an accepted play's unfinished hand-off."""
    return record.updated_at + HAND_OFF_GRACE


def _record(item: dict[str, Any]) -> PlayRecord:
    return PlayRecord(
        account_id=item["pk"],
        play_id=item["play_id"],
        firing_id=item["firing_id"],
        tier=int(item["tier"]),
        firing=json.loads(item["firing"]),
        status=PlayStatus(item["status"]),
        updated_at=datetime.fromisoformat(item["updated_at"]),
        due_at=datetime.fromisoformat(item["release_at"]) if item.get("release_at") else None,
        reason=item.get("reason"),
        owner=DeliveryOwner.model_validate_json(item["owner"]) if item.get("owner") else None,
        deliveries=tuple(PlayDelivery.model_validate_json(raw) for raw in item.get("deliveries", [])),
        skipped=dict(item.get("skipped", {})),
        delivery_problems=tuple(
            {str(key): str(value) for key, value in problem.items()}
            for problem in item.get("delivery_problems", [])
        ),
        task=_task_facts(item),
        auto_close=_strings(item.get("auto_close")),
        auto_close_result=_strings(item.get("auto_close_result")),
        feedback=_strings(item.get("feedback")),
        expanded={str(k): str(v) for k, v in item["expanded"].items()} if item.get("expanded") else None,
        trial=bool(item.get("experiment_trial")),
        stored_status=PlayStatus(item["status"]),
    )


def _strings(value: dict[str, Any] | None) -> dict[str, str] | None:
    return {str(key): str(part) for key, part in value.items()} if value else None


def _task_facts(item: dict[str, Any]) -> TaskFacts | None:
    if not any(name in item for name in ("task_id", "task_failed")):
        return None

    def fact(name: str) -> dict[str, str] | None:
        value = item.get(name)
        return {str(key): str(part) for key, part in value.items()} if value else None

    return TaskFacts(
        task_id=item.get("task_id"),
        status=TaskStatus(item["task_status"]) if item.get("task_status") else None,
        owner_id=item.get("task_owner_id"),
        due=item.get("task_due"),
        modified_ms=int(item.get("task_modified_ms", 0)),
        worked=fact("worked"),
        deleted=fact("task_deleted"),
        reassigned=fact("reassigned"),
        due_moved=fact("due_moved"),
        failed=fact("task_failed"),
    )


def _enrolment_sort_key(trigger: str, salt: str) -> str:
    return f"{EXPERIMENT_PREFIX}{trigger}#{salt}"


def _key(partition: str, sort: str) -> dict[str, Any]:
    return {"pk": {"S": partition}, "sk": {"S": sort}}


def _stamp(moment: datetime) -> str:
    """Whole seconds, UTC, `Z`: stamps of one width, so the index compares them as text."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hours_between(routed_at: datetime, worked_at: str) -> float | None:
    """Time to work in hours: the play routed (accepted) → its task completed (None: no instant)."""
    try:
        worked = datetime.fromisoformat(worked_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    worked = worked if worked.tzinfo else worked.replace(tzinfo=UTC)
    return (worked - routed_at).total_seconds() / 3600


def _reasons(error: ClientError) -> list[str | None]:
    """A cancelled transaction's reason per item, in the order of its items ("None" when fine)."""
    return [reason.get("Code") for reason in error.response.get("CancellationReasons", [])]


def _code(error: ClientError) -> str | None:
    return error.response.get("Error", {}).get("Code")
