"""What a routed play says and when it is due: pure functions of the play, the firing and the account.

The firing is the `trigger.fired` evidence (docs/rules.md, "Evidence"); the play is the
ruleset's (shared/rules/plays.py). No I/O, no clock: the routing time is a parameter.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any, Literal

from shared.accounts.models import AccountProfile, Owner
from shared.rules.plays import NarrativeTemplate, Play, Priority

TaskPriority = Literal["LOW", "MEDIUM", "HIGH"]
_LEVELS: tuple[TaskPriority, ...] = ("LOW", "MEDIUM", "HIGH")
_SATURDAY = 5


def due_date(routed_at: datetime, business_days: int, zone: tzinfo = UTC) -> date:
    """`business_days` Monday-to-Friday days after the routing day (0: that day, or the next
    business day when routed on a weekend). Days are the business calendar's: `zone`'s dates."""
    day = routed_at.astimezone(zone).date()
    while day.weekday() >= _SATURDAY:
        day += timedelta(days=1)
    remaining = business_days
    while remaining:
        day += timedelta(days=1)
        if day.weekday() < _SATURDAY:
            remaining -= 1
    return day


def priority(score: float, arr: Decimal | None, rule: Priority) -> TaskPriority:
    level = 2 if score >= rule.high_at else 1 if score >= rule.medium_at else 0
    if rule.valuable_arr is not None and arr is not None and arr >= Decimal(str(rule.valuable_arr)):
        level = min(level + 1, 2)
    return _LEVELS[level]


def render(
    play: Play,
    firing: dict[str, Any],
    account_id: str,
    profile: AccountProfile | None,
    owner: Owner | None,
    due: date,
) -> tuple[str, str]:
    """The message's subject and body, placeholders filled from the firing and the account."""
    values = placeholders(firing, account_id, profile, owner, due)
    subject = NarrativeTemplate(play.message.subject).substitute(values)
    body = NarrativeTemplate(play.message.body).substitute(values)
    return " ".join(subject.split())[:250], body.strip() + "\n"


def placeholders(
    firing: dict[str, Any], account_id: str, profile: AccountProfile | None, owner: Owner | None, due: date
) -> dict[str, str]:
    condition = firing["condition"]
    window = condition["window"]
    return {
        "account.id": account_id,
        "account.name": profile.name if profile else account_id,
        "account.segment": (profile.segment if profile else None) or "unknown",
        "plan.name": profile.plan.name if profile and profile.plan else "unknown",
        "owner.name": (owner.name if owner else None) or "the account team",
        "trigger": firing["trigger"],
        "play": firing["play"],
        "score": f"{firing['score']['total']:g}",
        "observed": _number(condition["observed"]),
        "threshold": _number(condition["threshold"]),
        "window": f"{window['from']}..{window['to']}",
        "detail": condition["detail"],
        "evidence": "\n".join(evidence_lines(firing)),
        "due": due.isoformat(),
        "ruleset_version": firing["ruleset_version"],
    }


def evidence_lines(firing: dict[str, Any]) -> list[str]:
    """Each condition on a line (a composite's members indented), then the exclusions checked."""
    condition = firing["condition"]
    lines = [f"- {_condition_line(condition)}"]
    lines += [f"  - {_condition_line(member)}" for member in condition.get("members", [])]
    checked = [check["exclusion"] for check in firing.get("exclusions_checked", [])]
    if checked:
        lines.append(f"- checked, not applying: {', '.join(checked)}")
    return lines


def _condition_line(condition: dict[str, Any]) -> str:
    held = "held" if condition["held"] else "not held"
    window = condition["window"]
    comparison = (condition.get("comparison") or "").replace("_", " ")
    threshold = condition.get("threshold")
    bound = f", {comparison} {_number(threshold)}" if comparison and threshold is not None else ""
    return f"{condition['signal']}: {condition['detail']} ({held}{bound}, {window['from']}..{window['to']})"


def _number(value: float | None) -> str:
    return "none" if value is None else f"{value:g}"
