"""Completing a stale HubSpot task for the auto-close: the HubSpot sender's half (the scheduler
decides, shared/routing/autoclose.py).

The task is read first (GET, with its body): a task HubSpot no longer has (404: deleted) or that a
person already completed is left alone, and the answer says so. Otherwise one PATCH sets
`hs_task_status` to COMPLETED and appends a note to `hs_task_body` saying why (the trigger, since when
it no longer holds, the play's `auto_close.after`, by Upswing), ending with the marker
`Upswing auto-close <play_id>`. The marker makes the close recognisable: an attempt that read the task
after an earlier attempt's PATCH went through (its answer lost, its Lambda timed out) finds the marker
and does not complete or annotate the task again. So a close can be repeated safely at any point,
and the sender's deliveries ledger (channel `hubspot_close`) makes it happen once per play.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from shared.delivery.hubspot import TASK_BODY_LIMIT, HubSpotAuthFailed, HubSpotClient, HubSpotRejected
from shared.readback.tasks import COMPLETED, epoch_ms
from shared.routing.messages import TaskClose

CLOSE_CHANNEL = "hubspot_close"  # the deliveries ledger's channel: one close per play id
CLOSE_MARKER = "Upswing auto-close"  # "Upswing auto-close <play_id>": the note's last words
READ_PROPERTIES = (
    "hs_task_status",
    "hs_task_body",
    "hubspot_owner_id",
    "hs_task_completion_date",
    "hs_lastmodifieddate",
)
_CUT_NOTE = "<p>[Cut by Upswing to make room for the note below: HubSpot keeps 65,536 characters.]</p>"


class CloseResult(StrEnum):
    CLOSED = "closed"  # Upswing completed it, with the note
    ALREADY_COMPLETED = "already_completed"  # a person had: left alone (the read-back records it worked)
    TASK_DELETED = "task_deleted"  # HubSpot no longer has it: nothing to close


@dataclass(frozen=True)
class Closed:
    result: CloseResult
    modified_ms: int = 0  # CLOSED: HubSpot's hs_lastmodifieddate of the completion

    def ledger_id(self) -> str:
        """As the deliveries ledger keeps it (its `external_id`)."""
        return f"{self.result.value}@{self.modified_ms}"

    @classmethod
    def from_ledger(cls, text: str) -> Closed:
        result, _, modified = text.partition("@")
        return cls(CloseResult(result), int(modified or 0))


def close_task(client: HubSpotClient, message: TaskClose, deadline: float) -> Closed:
    """Complete the task with the note, unless it is gone, a person completed it, or it is done."""
    task = client.read_task(message.task_id, READ_PROPERTIES, deadline)
    if task is None:
        return Closed(CloseResult.TASK_DELETED)
    properties = task.get("properties") or {}
    body = str(properties.get("hs_task_body") or "")
    if marker(message.play_id) in body:  # an earlier attempt's PATCH went through
        return Closed(CloseResult.CLOSED, _modified_ms(task))
    if properties.get("hs_task_status") == COMPLETED:
        return Closed(CloseResult.ALREADY_COMPLETED)
    update = {"hs_task_status": COMPLETED, "hs_task_body": with_note(body, note_html(message))}
    try:
        answer = client.update_task(message.task_id, update, deadline)
    except HubSpotRejected as rejected:
        if rejected.status == 404 and not isinstance(rejected, HubSpotAuthFailed):  # deleted since the read
            return Closed(CloseResult.TASK_DELETED)
        raise
    return Closed(CloseResult.CLOSED, _modified_ms(answer))


def marker(play_id: str) -> str:
    return f"{CLOSE_MARKER} {play_id}"


def note_html(message: TaskClose) -> str:
    """Why the task was closed, for the person who opens it (HubSpot shows simple HTML)."""
    trigger, play = html.escape(message.trigger), html.escape(message.play)
    return (
        f"<p><strong>Closed by Upswing</strong> on {_when(message.decided_at)}: the trigger "
        f"<em>{trigger}</em> (play {play}) no longer holds for this account, not since "
        f"{_when(message.not_holding_since)}, and this play closes its tasks after "
        f"{html.escape(message.after)} without the signal. Nothing is lost: if the opportunity is still "
        f"real, reopen this task.<br>{marker(message.play_id)}</p>"
    )


def with_note(body: str, note: str) -> str:
    """The body with the note appended, within HubSpot's limit (the body's end is cut if need be, at a
    tag, with a line saying so: the note, and its marker, always stay)."""
    if len(body) + len(note) <= TASK_BODY_LIMIT:
        return body + note
    room = TASK_BODY_LIMIT - len(note) - len(_CUT_NOTE)
    kept = body[:room]
    tag = kept.rfind("<")
    return (kept[:tag] if tag > 0 else kept) + _CUT_NOTE + note


def _modified_ms(task: dict[str, Any]) -> int:
    modified = (task.get("properties") or {}).get("hs_lastmodifieddate") or task.get("updatedAt")
    return epoch_ms(modified) if modified else 0


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
