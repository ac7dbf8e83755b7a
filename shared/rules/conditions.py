"""A trigger's conditions beside its signal: `unless` (none may apply) and `requires` (all must hold).

Both lists take the same kinds of check. A check reads the account's profile (flags, plan, renewal
date, created_at), the last contact, or — with `{signal: name}` — any signal of the ruleset, as the
trigger's own `when` is read: on the evaluation day, through the engine's view of the account's
counters. The engine (shared/rules/engine.py) compiles each distinct check of a ruleset once into a
test (negated for `requires`: a requirement not met excludes) and asks it at most once per
evaluation; the evidence of a firing lists every check with what was seen. Kept apart from the
engine so that the rules about the profile read in one place, pure like it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from shared.accounts.models import AccountProfile
from shared.rules.durations import days
from shared.rules.language import AccountAge, ContactedWithin, Flag, RenewalWithin, SignalHolds

ConditionSpec = Flag | RenewalWithin | ContactedWithin | SignalHolds | AccountAge


class AccountView(Protocol):
    """What an exclusion may read of the account being evaluated (the engine's `_Context`)."""

    @property
    def profile(self) -> AccountProfile | None: ...

    def held(self, name: str, day: int) -> bool: ...

    def observe_detail(self, name: str, day: int) -> str: ...


@dataclass(frozen=True)
class ExclusionCheck:
    exclusion: str
    applies: bool
    detail: str

    def as_evidence(self) -> dict[str, Any]:
        return {"exclusion": self.exclusion, "applies": self.applies, "detail": self.detail}


# (the account, its last contact, the evaluation time) → whether the check applies (unless) / holds
ConditionTest = Callable[[AccountView, datetime | None, datetime], bool]


def exclusion_test(condition: ConditionSpec, *, required: bool = False) -> ConditionTest:
    """Whether the check excludes the trigger: it applies (in `unless`), or it does not hold (in
    `requires`)."""
    test = condition_test(condition)
    if not required:
        return test
    return lambda account, last_contacted, at: not test(account, last_contacted, at)


def condition_test(condition: ConditionSpec) -> ConditionTest:
    """Whether the check holds, given the account, the last contact and the evaluation time."""
    if isinstance(condition, RenewalWithin):
        renewal_days = days(condition.renewal_within)

        def renewal_within(account: AccountView, last_contacted: datetime | None, at: datetime) -> bool:
            profile = account.profile
            renewal = profile.renewal_date if profile else None
            return renewal is not None and 0 <= (renewal - at.date()).days <= renewal_days

        return renewal_within
    if isinstance(condition, ContactedWithin):
        contact_window = timedelta(days=days(condition.contacted_within))

        def contacted_within(account: AccountView, last_contacted: datetime | None, at: datetime) -> bool:
            return last_contacted is not None and at - last_contacted < contact_window

        return contacted_within
    if isinstance(condition, SignalHolds):
        name = condition.signal
        return lambda account, last_contacted, at: account.held(name, at.toordinal())
    if isinstance(condition, AccountAge):
        bounds = condition.account_age
        shortest = days(bounds.at_least) if bounds.at_least else 0
        longest = days(bounds.at_most) if bounds.at_most else None

        def account_age(account: AccountView, last_contacted: datetime | None, at: datetime) -> bool:
            age = _age(account.profile, at)
            return age is not None and shortest <= age and (longest is None or age <= longest)

        return account_age
    if condition is Flag.TOP_TIER:
        return lambda account, last_contacted, at: bool(
            account.profile and account.profile.plan and account.profile.plan.top_tier
        )
    flag = condition.value
    return lambda account, last_contacted, at: bool(account.profile and getattr(account.profile.flags, flag))


def check_exclusion(
    condition: ConditionSpec,
    account: AccountView,
    last_contacted: datetime | None,
    at: datetime,
    *,
    required: bool = False,
) -> ExclusionCheck:
    """The check as the evidence shows it: whether it excludes the trigger, and what was seen. A
    requirement is named `requires …` and applies (excludes) when it does not hold."""
    holds = condition_test(condition)(account, last_contacted, at)
    name, seen = _described(condition, account, last_contacted, at, holds)
    if required:
        return ExclusionCheck(f"requires {name}", not holds, seen)
    return ExclusionCheck(name, holds, seen)


def _described(
    condition: ConditionSpec, account: AccountView, last_contacted: datetime | None, at: datetime, holds: bool
) -> tuple[str, str]:
    profile = account.profile
    if isinstance(condition, RenewalWithin):
        renewal = profile.renewal_date if profile else None
        seen = (
            "no renewal date on file"
            if renewal is None
            else f"renewal on {renewal} ({(renewal - at.date()).days} days)"
        )
        return f"renewal_within {condition.renewal_within}", seen
    if isinstance(condition, ContactedWithin):
        seen = (
            "no play sent yet"
            if last_contacted is None
            else f"last play {(at - last_contacted).days} days ago"
        )
        return f"contacted_within {condition.contacted_within}", seen
    if isinstance(condition, SignalHolds):
        seen = account.observe_detail(condition.signal, at.toordinal())
        return f"signal {condition.signal}", ("holds: " if holds else "not held: ") + seen
    if isinstance(condition, AccountAge):
        bounds = condition.account_age
        limits = (("at_least", bounds.at_least), ("at_most", bounds.at_most))
        name = " ".join(f"{key} {value}" for key, value in limits if value)
        age = _age(profile, at)
        created = profile.created_at if profile else None
        if created is None:
            seen = "no created_at on file"
        elif age is None:
            seen = f"created on {created}, after the evaluation day"
        else:
            seen = f"created on {created} ({age} days)"
        return f"account_age {name}", seen
    if condition is Flag.TOP_TIER:
        return condition.value, "on the top tier" if holds else "not on the top tier"
    return condition.value, "flag set" if holds else "flag not set"


def _age(profile: AccountProfile | None, at: datetime) -> int | None:
    """Whole days from created_at to the evaluation day (None: unknown, or not a customer yet)."""
    created = profile.created_at if profile else None
    if created is None:
        return None
    age = (at.date() - created).days
    return age if age >= 0 else None
