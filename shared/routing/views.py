"""Plays as people outside see them: on the bus (`play.routed`) and on GET .../signals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shared.horizon import DEFAULT_HORIZON_DAYS
from shared.routing.models import WAITING, PlayRecord, TaskStatus
from shared.rules.plays import Channel
from shared.timestamps import utc_stamp
from shared.trigger_metrics.counters import fired_at


def play_summary(record: PlayRecord) -> dict[str, Any]:
    """A play as `play.routed` and GET .../signals show it. No e-mail addresses or names:
    consumers that need them look the owner up by HubSpot id or role."""
    first = record.deliveries[0] if record.deliveries else None
    return {
        "play_id": record.play_id,
        "firing_id": record.firing_id,
        "account_id": record.account_id,
        "trigger": record.trigger,
        "play": record.play,
        "tier": record.tier,
        "ruleset_version": record.firing["ruleset_version"],
        "channels": [delivery.channel_name for delivery in record.deliveries],
        "skipped": record.skipped,
        "owner": (
            {
                "role": record.owner.role,
                "hubspot_owner_id": record.owner.hubspot_owner_id,
                "from_pool": record.owner.from_pool,
            }
            if record.owner
            else None
        ),
        "due": first.due.isoformat() if first else None,
        "priority": first.priority if first else None,
    }


def play_state(
    record: PlayRecord,
    *,
    now: datetime | None = None,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    firing_expanded: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A play with where it stands: routed, waiting (and until when), or ended without a delivery
    (and why), and its fate. What GET .../signals lists. `firing_expanded`: the expansion attributed
    to the play's firing (held by its tier 0), for the fate of its escalation tiers."""
    expanded = record.expanded or firing_expanded
    return {
        **play_summary(record),
        "status": record.status.value,
        "reason": record.reason,
        "release_at": stamp(record.due_at) if record.due_at and record.status in WAITING else None,
        "updated_at": stamp(record.updated_at),
        # A routed play whose delivery fell back (an owner HubSpot does not know, say) says so here.
        "delivery_problems": list(record.delivery_problems),
        # A person's verdict (the Slack message's "Not useful"): {"verdict", "by", "via", "at"}.
        "feedback": record.feedback,
        "hubspot_task": hubspot_task_state(record),
        "expanded": expanded,
        "fate": play_fate(record, now or datetime.now(UTC), horizon_days, expanded),
    }


def play_fate(
    record: PlayRecord, now: datetime, horizon_days: int, expanded: dict[str, str] | None = None
) -> dict[str, Any]:
    """What became of the play, computed now: `expanded` (the account expanded within the horizon
    after the firing), else `worked` (its task was completed), else `lapsed` (the horizon passed with
    neither), else `open`. `horizon_ends`: when an open play lapses."""
    horizon_ends = fired_at(record.firing) + timedelta(days=horizon_days)
    if expanded or record.expanded:
        state = "expanded"
    elif record.worked:
        state = "worked"
    elif now > horizon_ends:
        state = "lapsed"
    else:
        state = "open"
    return {"state": state, "horizon_ends": stamp(horizon_ends)}


def hubspot_task_state(record: PlayRecord) -> dict[str, Any] | None:
    """The play's HubSpot task and what became of it, for a play that has a HubSpot task delivery
    (None otherwise). `state`: `pending` (handed to the sender, no task yet), `created`, `failed`
    (HubSpot refused it for good: `failed.reason` is HubSpot's answer), `worked` (completed:
    `worked.at`, `worked.by` = the owner id), `closed` (completed by Upswing: its signal was gone,
    `closed` says when and why), `deleted` (deleted in HubSpot). `reassigned` and `due_moved` hold
    the last such change read back from HubSpot."""
    if not any(delivery.channel is Channel.HUBSPOT_TASK for delivery in record.deliveries):
        return None
    task = record.task
    if task is None:
        return {"state": "pending", "task_id": None}
    if task.status is TaskStatus.DELETED:
        state = "deleted"
    elif task.status is TaskStatus.COMPLETED:
        state = "closed" if record.auto_closed else "worked"
    elif task.task_id:
        state = "created"
    else:
        state = "failed" if task.failed else "pending"
    return {
        "state": state,
        "task_id": task.task_id,
        "owner_id": task.owner_id,
        "due": task.due,
        "worked": task.worked,
        "deleted": task.deleted,
        "reassigned": task.reassigned,
        "due_moved": task.due_moved,
        "failed": task.failed,
        "closed": auto_close_state(record),
    }


def auto_close_state(record: PlayRecord) -> dict[str, Any] | None:
    """The auto-close of the play's task (None: none decided). `result` is `closed` (Upswing completed
    it, at `at`), `already_completed` (a person had: left alone), `task_deleted`, `failed: <HubSpot's
    reason>`, or null while the HubSpot sender has not acted yet."""
    if not record.auto_close:
        return None
    result = record.auto_close_result or {}
    return {
        "by": "upswing",
        "reason": f"the trigger's signal has not held since {record.auto_close['not_holding_since']} "
        f"(auto_close after {record.auto_close['after']})",
        "not_holding_since": record.auto_close["not_holding_since"],
        "after": record.auto_close["after"],
        "decided_at": record.auto_close["decided_at"],
        "result": result.get("result"),
        "at": result.get("at"),
    }


def stamp(moment: datetime) -> str:
    """An instant as the API writes it: ISO 8601 in UTC, with Z."""
    return utc_stamp(moment)
