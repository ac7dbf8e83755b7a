"""A trigger's exclusions (`unless`): whether each applies to an account now, and what was seen.

An exclusion reads the account's profile (flags, plan, renewal date), the last contact, or — with
`{signal: name}` — any signal of the ruleset, as the trigger's own `when` is read: on the
evaluation day, through the engine's view of the account's counters. The engine
(shared/rules/engine.py) compiles each distinct exclusion of a ruleset once into a test and asks
it at most once per evaluation; the evidence of a firing shows every exclusion with what was seen.
Kept apart from the engine so that the rules about the profile read in one place, pure like it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from shared.accounts.models import AccountProfile
from shared.rules.durations import days
from shared.rules.language import ContactedWithin, Flag, RenewalWithin, SignalHolds

ExclusionSpec = Flag | RenewalWithin | ContactedWithin | SignalHolds


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


# (the account, its last contact, the evaluation time) → whether the exclusion applies
ExclusionTest = Callable[[AccountView, datetime | None, datetime], bool]


def exclusion_test(exclusion: ExclusionSpec) -> ExclusionTest:
    """Whether the exclusion applies, given the account, the last contact and the evaluation time."""
    if isinstance(exclusion, RenewalWithin):
        renewal_days = days(exclusion.renewal_within)

        def renewal_within(account: AccountView, last_contacted: datetime | None, at: datetime) -> bool:
            profile = account.profile
            renewal = profile.renewal_date if profile else None
            return renewal is not None and 0 <= (renewal - at.date()).days <= renewal_days

        return renewal_within
    if isinstance(exclusion, ContactedWithin):
        contact_window = timedelta(days=days(exclusion.contacted_within))

        def contacted_within(account: AccountView, last_contacted: datetime | None, at: datetime) -> bool:
            return last_contacted is not None and at - last_contacted < contact_window

        return contacted_within
    if isinstance(exclusion, SignalHolds):
        name = exclusion.signal
        return lambda account, last_contacted, at: account.held(name, at.toordinal())
    if exclusion is Flag.TOP_TIER:
        return lambda account, last_contacted, at: bool(
            account.profile and account.profile.plan and account.profile.plan.top_tier
        )
    flag = exclusion.value
    return lambda account, last_contacted, at: bool(account.profile and getattr(account.profile.flags, flag))


def check_exclusion(
    exclusion: ExclusionSpec, account: AccountView, last_contacted: datetime | None, at: datetime
) -> ExclusionCheck:
    """The exclusion as the evidence shows it: whether it applies, and what was seen."""
    applies = exclusion_test(exclusion)(account, last_contacted, at)
    profile = account.profile
    if isinstance(exclusion, RenewalWithin):
        renewal = profile.renewal_date if profile else None
        seen = (
            "no renewal date on file"
            if renewal is None
            else f"renewal on {renewal} ({(renewal - at.date()).days} days)"
        )
        return ExclusionCheck(f"renewal_within {exclusion.renewal_within}", applies, seen)
    if isinstance(exclusion, ContactedWithin):
        seen = (
            "no play sent yet"
            if last_contacted is None
            else f"last play {(at - last_contacted).days} days ago"
        )
        return ExclusionCheck(f"contacted_within {exclusion.contacted_within}", applies, seen)
    if isinstance(exclusion, SignalHolds):
        seen = account.observe_detail(exclusion.signal, at.toordinal())
        held = "holds: " if applies else "not held: "
        return ExclusionCheck(f"signal {exclusion.signal}", applies, held + seen)
    if exclusion is Flag.TOP_TIER:
        return ExclusionCheck(
            exclusion.value, applies, "on the top tier" if applies else "not on the top tier"
        )
    return ExclusionCheck(exclusion.value, applies, "flag set" if applies else "flag not set")
