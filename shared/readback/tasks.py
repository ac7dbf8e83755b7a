"""Reading Upswing's HubSpot tasks back: completed, deleted, reassigned, due date moved.

The HubSpot sender registers every task it creates (`TaskRegistry.register`: one small item per
task in the plays table, under the `hubspot#tasks` partition: task id → account, play, and what the
task looked like when last seen). The poller (functions/hubspot_poller) then:

1. *Changes.* Searches the tasks modified since the watermark (HubSpot's own hs_lastmodifieddate,
   epoch ms, GTE, oldest first, 200 a page, paged with `after`: shared/readback/watermark.py, shared
   with the deal read-back). Each result is looked up in the registry (a batch get per page): a task
   that is not there is not Upswing's and is ignored. For one that is, the differences from what was
   last seen become facts on the play (`worked`, `task_deleted`, `reassigned`, `due_moved`), written
   only when newer than what the play holds, then the registry entry is brought up to date. Only
   once a whole page is recorded does the watermark move (to the page's last modification): a page
   that fails mid-way leaves it where it was, and the next run reads the page again — harmlessly,
   since recorded changes are skipped.
2. *Overlap.* Each run searches from the watermark minus `OVERLAP` (2 minutes): a task modified
   just before the watermark but indexed by HubSpot's search a few seconds late is still found. The
   watermark is HubSpot's clock, not ours, so our clock's skew never moves it; what is read twice
   is skipped as above.
3. *Deletions.* A deleted task is archived and vanishes from search, so no search can report it.
   Each run also sweeps a slice of the registry (`SWEEP_SLICE` entries, continuing where the last
   run stopped): open tasks with no change recorded for `unseen_after` are batch-read from HubSpot
   (100 a request; an unchanged one costs no write, and is read again on the next sweep cycle);
   those HubSpot no longer has are read once more with `archived=true` (for `archivedAt`) and
   recorded as deleted. With 1,000 open tasks, a deletion is noticed within ten runs.
4. *Auto-closes.* When the HubSpot sender completes a task for the auto-close
   (shared/delivery/task_close.py) it marks the registry entry `closing_at` first, and afterwards
   records the completion itself (the entry COMPLETED at HubSpot's modification time, so the poller
   never sees it as new). A completion read while such a close is in flight is left unrecorded (the
   sender settles it; the sweep reads it again if it was a person's), so an auto-closed task is never
   counted as `worked`. A mark older than CLOSING_GRACE (a close that never finished) is ignored.
5. *Bounds.* Searches share the HubSpot account's search budget with the senders (SharedPacer, 5 per
   1.2 s); one query pages through at most 10,000 results, so the poller then starts a new query
   from the watermark it has reached. It stops starting requests before its deadline; the next run
   continues from the stored watermark and sweep position.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from shared.delivery.hubspot import BATCH_READ_LIMIT, HubSpotClient
from shared.observability import logger
from shared.readback.watermark import (
    OVERLAP,
    PollerState,
    PollerStateStore,
    epoch_ms,
    modified_ms,
    read_changes,
)
from shared.readback.watermark import TASKS_STATE_KEY as POLLER_STATE_KEY
from shared.readback.watermark import iso_ms as _iso_ms
from shared.readback.watermark import stamp as _stamp
from shared.routing.ledger import PlayLedger
from shared.routing.models import TaskFacts, TaskStatus
from shared.storage.dynamo import deserialize, is_conditional_failure, serialize

__all__ = ["POLLER_STATE_KEY", "PollerStateStore", "TaskEntry", "TaskPoller", "TaskRegistry", "epoch_ms"]

TASKS_PARTITION = "hubspot#tasks"
TASK_PREFIX = "task#"
SWEEP_SLICE = 100  # registry entries looked at per run for deletions (one batch read at most)
COMPLETED = "COMPLETED"
# A close in flight for longer than this never finished (its message went to the DLQ): ignore it.
CLOSING_GRACE = timedelta(days=1)


@dataclass(frozen=True)
class TaskEntry:
    """A task Upswing created, as the registry holds it."""

    task_id: str
    account_id: str
    play_id: str
    status: TaskStatus = TaskStatus.OPEN
    owner_id: str | None = None
    due: str | None = None
    modified_ms: int = 0
    seen_at: datetime | None = None
    closing_at: datetime | None = None  # the HubSpot sender is completing it (auto-close)

    def completion_may_be_upswings(self, seen: TaskSnapshot, now: datetime) -> bool:
        """Whether a completion read now may be the auto-close in flight (then it is not recorded)."""
        return (
            seen.status == COMPLETED
            and self.status is not TaskStatus.COMPLETED
            and self.closing_at is not None
            and now - self.closing_at < CLOSING_GRACE
        )


@dataclass(frozen=True)
class TaskSnapshot:
    """A task as HubSpot answered it (search or batch read)."""

    task_id: str
    status: str
    owner_id: str | None
    due: str | None
    completed_at: str | None
    modified_ms: int

    @classmethod
    def from_hubspot(cls, result: dict[str, Any]) -> TaskSnapshot:
        properties = result.get("properties") or {}
        return cls(
            task_id=str(result["id"]),
            status=str(properties.get("hs_task_status") or ""),
            owner_id=properties.get("hubspot_owner_id") or None,
            due=_iso(properties.get("hs_timestamp")),
            completed_at=_iso(properties.get("hs_task_completion_date")),
            modified_ms=modified_ms(result),
        )


def task_facts(entry: TaskEntry, seen: TaskSnapshot) -> TaskFacts:
    """What changed between the registry's entry and HubSpot's answer, as facts for the play."""
    at = _iso_ms(seen.modified_ms)
    completed = seen.status == COMPLETED
    return TaskFacts(
        task_id=entry.task_id,
        status=TaskStatus.COMPLETED if completed else TaskStatus.OPEN,
        owner_id=seen.owner_id,
        due=seen.due,
        modified_ms=seen.modified_ms,
        worked=(
            {"at": seen.completed_at or at, "by": seen.owner_id or ""}
            if completed and entry.status is not TaskStatus.COMPLETED
            else None
        ),
        reassigned=(
            {"from": entry.owner_id or "", "to": seen.owner_id or "", "at": at}
            if seen.owner_id != entry.owner_id
            else None
        ),
        due_moved=(
            {"from": entry.due or "", "to": seen.due or "", "at": at}
            if seen.due and entry.due and epoch_ms(seen.due) != epoch_ms(entry.due)
            else None
        ),
    )


class TaskRegistry:
    """Task id → play, in the plays table (one partition: a task a minute is far below its limits)."""

    def __init__(self, client: Any, table: str, retention_days: int) -> None:
        self._client = client
        self._table = table
        self._retention = timedelta(days=retention_days)

    def register(self, entry: TaskEntry, at: datetime) -> None:
        """The sender's record of a task it created; a second registration changes nothing."""
        item = {
            "pk": TASKS_PARTITION,
            "sk": TASK_PREFIX + entry.task_id,
            "task_id": entry.task_id,
            "account_id": entry.account_id,
            "play_id": entry.play_id,
            "status": entry.status.value,
            "due": entry.due,
            "modified_ms": entry.modified_ms,
            "seen_at": _stamp(at),
            "expires_at": int((at + self._retention).timestamp()),
        }
        if entry.owner_id:
            item["owner_id"] = entry.owner_id
        try:
            self._client.put_item(
                TableName=self._table,
                Item=serialize({key: value for key, value in item.items() if value is not None}),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as error:
            if not is_conditional_failure(error):
                raise

    def entries(self, task_ids: Iterable[str]) -> dict[str, TaskEntry]:
        """The registry's entries for these task ids (the others are not Upswing's tasks)."""
        found: dict[str, TaskEntry] = {}
        keys = [{"pk": {"S": TASKS_PARTITION}, "sk": {"S": TASK_PREFIX + i}} for i in dict.fromkeys(task_ids)]
        for start in range(0, len(keys), 100):
            request: dict[str, Any] = {self._table: {"Keys": keys[start : start + 100]}}
            while request:
                answer = self._client.batch_get_item(RequestItems=request)
                for raw in answer.get("Responses", {}).get(self._table, []):
                    entry = _entry(deserialize(raw))
                    found[entry.task_id] = entry
                request = answer.get("UnprocessedKeys") or {}
        return found

    def update(self, entry: TaskEntry, at: datetime) -> None:
        """Bring an entry up to date (conditional on being newer: a late writer changes nothing)."""
        values: dict[str, Any] = {
            ":status": entry.status.value,
            ":modified": entry.modified_ms,
            ":seen": _stamp(at),
        }
        sets = ["#status = :status", "modified_ms = :modified", "seen_at = :seen"]
        for name, value in (("owner_id", entry.owner_id), ("due", entry.due)):
            if value is not None:
                values[f":{name}"] = value
                sets.append(f"{name} = :{name}")
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": TASKS_PARTITION}, "sk": {"S": TASK_PREFIX + entry.task_id}},
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression="attribute_exists(pk) AND modified_ms <= :modified",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=serialize(values),
            )
        except ClientError as error:
            if not is_conditional_failure(error):
                raise

    def mark_closing(self, task_id: str, at: datetime) -> None:
        """The HubSpot sender is about to complete the task (auto-close): the poller must not take
        that completion for a person's. Kept if already set; a task not in the registry is left."""
        self._closing_update(
            task_id,
            "SET closing_at = if_not_exists(closing_at, :at)",
            {":at": _stamp(at)},
            "attribute_exists(pk)",
        )

    def closed_by_upswing(self, task_id: str, modified_ms: int, at: datetime) -> None:
        """The sender completed the task at HubSpot's `modified_ms`: the entry says so (COMPLETED, so
        the poller never records that completion as worked) and the close is no longer in flight."""
        values = {":done": TaskStatus.COMPLETED.value, ":modified": modified_ms, ":seen": _stamp(at)}
        if not self._closing_update(
            task_id,
            "SET #status = :done, modified_ms = :modified, seen_at = :seen, closed_by = :upswing "
            "REMOVE closing_at",
            {**values, ":upswing": "upswing"},
            "attribute_exists(pk) AND modified_ms <= :modified",
        ):
            self.settle_closing(task_id)  # a newer change was recorded since: only end the close

    def settle_closing(self, task_id: str) -> None:
        """The close is over without Upswing completing the task (a person had, or it was deleted):
        the poller records what it reads of the task again."""
        self._closing_update(task_id, "REMOVE closing_at", {}, "attribute_exists(pk)")

    def _closing_update(self, task_id: str, expression: str, values: dict[str, Any], condition: str) -> bool:
        request: dict[str, Any] = {
            "TableName": self._table,
            "Key": {"pk": {"S": TASKS_PARTITION}, "sk": {"S": TASK_PREFIX + task_id}},
            "UpdateExpression": expression,
            "ConditionExpression": condition,
        }
        if "#status" in expression:
            request["ExpressionAttributeNames"] = {"#status": "status"}
        if values:
            request["ExpressionAttributeValues"] = serialize(values)
        try:
            self._client.update_item(**request)
        except ClientError as error:
            if not is_conditional_failure(error):
                raise
            return False
        return True

    def sweep(self, after: str | None, limit: int = SWEEP_SLICE) -> tuple[list[TaskEntry], str | None]:
        """Up to `limit` open entries after the cursor (a task id), and the next cursor (None: the
        end was reached, start again)."""
        query: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND sk > :after",
            "FilterExpression": "#status = :open",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {
                ":pk": {"S": TASKS_PARTITION},
                ":after": {"S": TASK_PREFIX + (after or "")},
                ":open": {"S": TaskStatus.OPEN.value},
            },
            "Limit": limit,
        }
        answer = self._client.query(**query)
        entries = [_entry(deserialize(raw)) for raw in answer.get("Items", [])]
        last = answer.get("LastEvaluatedKey")
        return entries, (last["sk"]["S"].removeprefix(TASK_PREFIX) if last else None)


@dataclass
class PollReport:
    pages: int = 0
    seen: int = 0  # tasks in the search results
    ignored: int = 0  # not Upswing's
    changed: int = 0  # changes recorded on plays
    worked: int = 0
    reassigned: int = 0
    due_moved: int = 0
    deleted: int = 0
    checked: int = 0  # open tasks batch-read by the deletion sweep
    closing: int = 0  # completions left to the HubSpot sender's auto-close in flight
    watermark_ms: int = 0
    stopped_early: bool = False  # the deadline came first: the next run continues

    def counts(self) -> dict[str, int]:
        return {name: int(value) for name, value in vars(self).items()}


@dataclass
class TaskPoller:
    client: HubSpotClient
    registry: TaskRegistry
    plays: PlayLedger
    state: PollerStateStore
    wall_clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    unseen_after: timedelta = timedelta(hours=6)  # an open task unchanged this long is checked
    overlap: timedelta = OVERLAP

    def poll(self, deadline: float, time_left: Callable[[], bool]) -> PollReport:
        """Record every change since the watermark, then sweep for deletions; stop when time runs
        short (the next run continues). HubSpot errors propagate (HubSpotThrottled, ...): what was
        recorded page by page stays recorded."""
        report = PollReport()
        state = self.state.load(self.wall_clock())
        report.watermark_ms = state.watermark_ms
        self._read_changes(state, report, deadline, time_left)
        if time_left():
            self._sweep(state, report, deadline)
        else:
            report.stopped_early = True
        return report

    def _read_changes(
        self, state: PollerState, report: PollReport, deadline: float, time_left: Callable[[], bool]
    ) -> None:
        read = read_changes(
            state,
            search=lambda since, after: self.client.search_modified_tasks(since, after, deadline),
            record=lambda results: self._record_page(results, report),
            save=lambda moved: self.state.save(moved, self.wall_clock()),
            overlap=self.overlap,
            time_left=time_left,
        )
        report.pages += read.pages
        report.watermark_ms = read.watermark_ms
        report.stopped_early = report.stopped_early or read.stopped_early

    def _record_page(self, results: Iterable[dict[str, Any]], report: PollReport) -> None:
        snapshots = [TaskSnapshot.from_hubspot(result) for result in results]
        report.seen += len(snapshots)
        entries = self.registry.entries(snapshot.task_id for snapshot in snapshots)
        now = self.wall_clock()
        for snapshot in snapshots:
            entry = entries.get(snapshot.task_id)
            if entry is None:
                report.ignored += 1
                continue
            if snapshot.modified_ms <= entry.modified_ms:
                continue  # recorded already (the overlap, or a page read again)
            if entry.completion_may_be_upswings(snapshot, now):
                report.closing += 1  # the sender records it (or the sweep reads it again)
                continue
            self._record(entry, task_facts(entry, snapshot), report, now)

    def _record(self, entry: TaskEntry, facts: TaskFacts, report: PollReport, now: datetime) -> None:
        """The play first, then the registry: should the second write fail, the next read finds the
        change again and the play's condition (newer only) makes its second recording a no-op. A
        modification that changes nothing the play shows (the body edited, the task first seen after
        its creation) only moves the registry's entry on."""
        shown = facts.worked or facts.deleted or facts.reassigned or facts.due_moved
        if (shown or facts.status is not entry.status) and self.plays.record_task_change(
            entry.account_id, entry.play_id, facts
        ):
            report.changed += 1
            report.worked += facts.worked is not None
            report.reassigned += facts.reassigned is not None
            report.due_moved += facts.due_moved is not None
            report.deleted += facts.deleted is not None
            logger.info(
                "task change recorded",
                extra={
                    "play_id": entry.play_id,
                    "task_id": entry.task_id,
                    "status": facts.status.value if facts.status else None,
                },
            )
        updated = replace(
            entry,
            status=facts.status or entry.status,
            owner_id=facts.owner_id if facts.owner_id is not None else entry.owner_id,
            due=facts.due or entry.due,
            modified_ms=facts.modified_ms,
        )
        self.registry.update(updated, now)

    def _sweep(self, state: PollerState, report: PollReport, deadline: float) -> None:
        """Look at the next slice of open tasks; batch-read those unseen for long; record the ones
        HubSpot no longer has as deleted."""
        now = self.wall_clock()
        entries, state.sweep_after = self.registry.sweep(state.sweep_after)
        stale = [e for e in entries if e.seen_at is None or now - e.seen_at >= self.unseen_after]
        for start in range(0, len(stale), BATCH_READ_LIMIT):
            batch = stale[start : start + BATCH_READ_LIMIT]
            live = self.client.read_tasks([entry.task_id for entry in batch], deadline)
            report.checked += len(batch)
            missing = [entry for entry in batch if entry.task_id not in live]
            archived = (
                self.client.read_tasks([e.task_id for e in missing], deadline, archived=True)
                if missing
                else {}
            )
            for entry in batch:
                if entry.task_id in live:
                    snapshot = TaskSnapshot.from_hubspot(live[entry.task_id])
                    if entry.completion_may_be_upswings(snapshot, now):
                        report.closing += 1
                    elif snapshot.modified_ms > entry.modified_ms:  # a change the search has not shown yet
                        self._record(entry, task_facts(entry, snapshot), report, now)
                    continue  # unchanged: nothing written (it is read again on the next sweep cycle)
                self._record(entry, _deleted(entry, archived.get(entry.task_id), now), report, now)
        self.state.save(state, now)


def _deleted(entry: TaskEntry, archived: dict[str, Any] | None, now: datetime) -> TaskFacts:
    """A task HubSpot no longer has: archived (deleted, `archivedAt` says when), or gone for good."""
    at = str((archived or {}).get("archivedAt") or _stamp(now))
    return TaskFacts(
        task_id=entry.task_id,
        status=TaskStatus.DELETED,
        # Later than anything the task was modified at, so the change is recorded exactly once.
        modified_ms=max(entry.modified_ms + 1, epoch_ms(at)),
        deleted={"at": at},
    )


def _entry(item: dict[str, Any]) -> TaskEntry:
    return TaskEntry(
        task_id=item["task_id"],
        account_id=item["account_id"],
        play_id=item["play_id"],
        status=TaskStatus(item.get("status", TaskStatus.OPEN.value)),
        owner_id=item.get("owner_id"),
        due=item.get("due"),
        modified_ms=int(item.get("modified_ms", 0)),
        seen_at=datetime.fromisoformat(item["seen_at"]) if item.get("seen_at") else None,
        closing_at=datetime.fromisoformat(item["closing_at"]) if item.get("closing_at") else None,
    )


def _iso(value: Any) -> str | None:
    """An instant as ISO 8601 UTC with milliseconds (HubSpot may answer epoch ms for a date)."""
    if value in (None, ""):
        return None
    return _iso_ms(epoch_ms(value))
