"""Fatigue budgets: which counters a play draws on, and when each one starts again.

Budgets count over calendar UTC periods (a day, an ISO week, a month), so "3 plays per account
per week" means Monday to Sunday, and a deferred play is released when the period ends. The
play ledger (shared/routing/ledger.py) charges them in the same transaction that accepts the play.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.routing.messages import DeliveryOwner
from shared.rules.plays import Budgets, Period


@dataclass(frozen=True)
class BudgetCharge:
    counter: str  # the ledger item's partition key
    period: str  # its sort key: the period it counts
    limit: int
    resets_at: datetime
    rule: str  # in words, for the deferral's reason


def charges(
    budgets: Budgets,
    account_id: str,
    owner: DeliveryOwner | None,
    creates_task: bool,
    at: datetime,
    trigger: str | None = None,
) -> list[BudgetCharge]:
    """The budgets a play routed at `at` draws on: the account's, its owner's when it makes a task,
    and — for a firing's first play (`trigger` given; escalation tiers pass None) — its trigger's
    daily cap, the flood control of a whole ruleset (say, 91 days after go-live)."""
    found = []
    if trigger is not None and budgets.plays_per_trigger_per_day is not None:
        period, ends = period_of(Period.DAY, at)
        found.append(
            BudgetCharge(
                counter=f"budget#trigger#{trigger}",
                period=period,
                limit=budgets.plays_per_trigger_per_day,
                resets_at=ends,
                rule=f"at most {budgets.plays_per_trigger_per_day} plays of trigger {trigger} per day",
            )
        )
    if budgets.plays_per_account is not None:
        period, ends = period_of(budgets.account_period, at)
        found.append(
            BudgetCharge(
                counter=f"budget#account#{account_id}",
                period=period,
                limit=budgets.plays_per_account,
                resets_at=ends,
                rule=f"at most {budgets.plays_per_account} plays per account per {budgets.account_period}",
            )
        )
    if creates_task and owner is not None and budgets.tasks_per_owner_per_day is not None:
        period, ends = period_of(Period.DAY, at)
        found.append(
            BudgetCharge(
                counter=owner_counter(owner),
                period=period,
                limit=budgets.tasks_per_owner_per_day,
                resets_at=ends,
                rule=f"at most {budgets.tasks_per_owner_per_day} new tasks per owner per day",
            )
        )
    return found


def owner_counter(owner: DeliveryOwner) -> str:
    """The owner's budget counter; hashed, so no e-mail address ends up in a key."""
    identity = owner.hubspot_owner_id or owner.email or owner.name or owner.role
    return "budget#owner#" + hashlib.sha256(identity.encode()).hexdigest()[:20]


def period_of(period: Period, at: datetime) -> tuple[str, datetime]:
    """The period containing `at` (its key) and the moment it ends."""
    day = at.astimezone(UTC).date()
    if period is Period.DAY:
        key, ends = f"day#{day.isoformat()}", day + timedelta(days=1)
    elif period is Period.WEEK:
        year, week, weekday = day.isocalendar()
        key, ends = f"week#{year}-W{week:02d}", day + timedelta(days=8 - weekday)
    else:
        key = f"month#{day:%Y-%m}"
        ends = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    return key, datetime(ends.year, ends.month, ends.day, tzinfo=UTC)
