"""What the router decides about a play, in its own terms: the play record, its statuses, its task.

The ledger stores these (shared/routing/ledger.py, DynamoDB); the router, the scheduler, the
senders and the API read and move them. Nothing here knows where they are stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from shared.routing.budgets import BudgetCharge
from shared.routing.messages import DeliveryOwner, PlayDelivery


class PlayStatus(StrEnum):
    SCHEDULED = "scheduled"
    DEFERRED = "deferred"
    ACCEPTED = "accepted"
    ROUTED = "routed"
    SUPPRESSED = "suppressed"
    LAPSED = "lapsed"
    # An escalation tier not routed because the play already did its work: an earlier tier's task
    # was completed, or the account has an open expansion opportunity (`reason` says which).
    STOPPED = "stopped"
    # The firing's account is in its trigger's experiment holdout: recorded, never routed.
    HELD_OUT = "held_out"
    # The account is outside the trigger's rollout: evaluated and recorded in shadow, never routed.
    SHADOW = "shadow"


# auto_close_result.result when the HubSpot sender completed the task (the other results leave it).
AUTO_CLOSED = "closed"

WAITING = (PlayStatus.SCHEDULED, PlayStatus.DEFERRED)
FINAL = (
    PlayStatus.ROUTED,
    PlayStatus.SUPPRESSED,
    PlayStatus.LAPSED,
    PlayStatus.STOPPED,
    PlayStatus.HELD_OUT,
    PlayStatus.SHADOW,
)


class TaskStatus(StrEnum):
    """Where a play's HubSpot task stands, as the read-back last saw it."""

    OPEN = "open"
    COMPLETED = "completed"
    DELETED = "deleted"


@dataclass(frozen=True)
class TaskFacts:
    """What Upswing knows of a play's HubSpot task: its id (from the sender), and what the poller
    (functions/hubspot_poller) read back since. Dates are ISO 8601 strings as HubSpot gave them."""

    task_id: str | None = None
    status: TaskStatus | None = None
    owner_id: str | None = None
    due: str | None = None
    modified_ms: int = 0  # HubSpot's hs_lastmodifieddate of the last change recorded
    worked: dict[str, str] | None = None  # {"at", "by"}: completed, when and by whom (owner id)
    deleted: dict[str, str] | None = None  # {"at"}: deleted (archived) in HubSpot
    reassigned: dict[str, str] | None = None  # the last owner change: {"from", "to", "at"}
    due_moved: dict[str, str] | None = None  # the last due-date change: {"from", "to", "at"}
    failed: dict[str, str] | None = None  # {"reason", "at", "correlation_id"}: HubSpot refused it


@dataclass(frozen=True)
class PlayRecord:
    account_id: str
    play_id: str
    firing_id: str
    tier: int
    firing: dict[str, Any]  # the `trigger.fired` evidence
    status: PlayStatus
    updated_at: datetime
    due_at: datetime | None = None  # when a waiting play is released
    reason: str | None = None  # why it waits, or why it ended without a delivery
    owner: DeliveryOwner | None = None
    deliveries: tuple[PlayDelivery, ...] = ()
    skipped: dict[str, str] = field(default_factory=dict)  # channel → why it was not used
    # What went wrong delivering it, as the senders recorded it: {"channel", "problem", "at"}.
    delivery_problems: tuple[dict[str, str], ...] = ()
    task: TaskFacts | None = None  # the HubSpot task, once a sender created it (or failed to)
    # The scheduler's decision to close the stale task (shared/routing/autoclose.py):
    # {"decided_at", "not_holding_since", "after"}; written once.
    auto_close: dict[str, str] | None = None
    # What the HubSpot sender did about it: {"result": closed | already_completed | task_deleted, "at"}.
    auto_close_result: dict[str, str] | None = None
    # A person's word on the play (the Slack message's "Not useful"): {"verdict", "by", "via", "at"};
    # the first one stays.
    feedback: dict[str, str] | None = None

    @property
    def auto_closed(self) -> bool:
        """Whether Upswing completed the play's HubSpot task itself (its signal was gone)."""
        return bool(self.auto_close_result and self.auto_close_result.get("result") == AUTO_CLOSED)

    # The expansion attributed to the firing (tier 0 only): {outcome_id, at, kind, amount, currency}.
    expanded: dict[str, str] | None = None
    # Whether this firing is its account's first in its trigger's experiment (tier 0 only): the
    # account's one trial, counted per arm (its enrolment, then its expansion).
    trial: bool = False
    # The status the ledger held when this record was read (None: not in the ledger yet). Counted
    # transitions are written on condition that it still holds.
    stored_status: PlayStatus | None = None

    @property
    def worked(self) -> bool:
        """Whether the play's HubSpot task was completed (`task.worked` says when and by whom)."""
        return bool(self.task and self.task.worked)

    @property
    def trigger(self) -> str:
        return str(self.firing["trigger"])

    @property
    def play(self) -> str:
        return str(self.firing["play"])

    @property
    def experiment_salt(self) -> str | None:
        """The salt of the treated-vs-held-out comparison the firing is part of (None: none — no
        holdout on its trigger, or the account is in shadow, outside the rollout)."""
        experiment = self.firing.get("experiment")
        if not isinstance(experiment, dict) or self.arm == "shadow":
            return None
        return str(experiment["salt"]) if experiment.get("holdout_percent") else None

    @property
    def arm(self) -> str:
        return str(self.firing.get("arm", "treated"))

    def moved(self, status: PlayStatus, at: datetime, **changes: Any) -> PlayRecord:
        return replace(self, status=status, updated_at=at, **changes)


@dataclass(frozen=True)
class Expansion:
    """An expansion outcome, as attributed to a firing's play."""

    outcome_id: str
    at: str  # the outcome's occurred_at, ISO 8601
    kind: str
    amount: Decimal
    currency: str

    def as_fact(self) -> dict[str, str]:
        return {
            "outcome_id": self.outcome_id,
            "at": self.at,
            "kind": self.kind,
            "amount": f"{self.amount:.2f}",
            "currency": self.currency,
        }


class AlreadyTaken(Exception):
    """Another router accepted or settled this play first."""


class OverBudget(Exception):
    def __init__(self, exceeded: list[BudgetCharge]) -> None:
        super().__init__(", ".join(charge.rule for charge in exceeded))
        self.exceeded = exceeded

    @property
    def until(self) -> datetime:
        return max(charge.resets_at for charge in self.exceeded)
