"""Going live after a history import: each imported account evaluated once, with its whole history.

Imported history (`"backfill": true` on POST /v1/events) is counted like live usage but never
evaluated batch by batch: judged at wall-clock time with half the history loaded, a 13-week signal
fires after a few readings, counts as contact and excludes the right play. When the import ends
(POST /v1/imports/finish, `upswing import`), each imported account is evaluated once, "as of now";
every trigger that holds then already held before go-live: it is *pre-existing*. The ruleset's
`go_live` setting decides what happens to those (shared/rules/plays.py, `GoLive`):

- fire: routed at go-live, like any firing (the budgets and the daily cap still apply);
- spread: routed over `spread_days`, each (account, trigger) on a day of its own hash, so the
  same account and trigger always land on the same day, whoever evaluates it and however often;
- skip: not routed and not recorded as firings; the trigger stays disarmed, so it fires only once
  its signal has cleared and holds again, after go-live.

In every case a pre-existing firing is not contact: the account's last contact stays what it was,
so a `contacted_within` exclusion of another trigger is not started by history. The account's
state records that it went live (when, which triggers were pre-existing, what was decided), once:
finishing the same import again changes nothing and answers the same.

Pure: no I/O and no clock (the caller passes the moment); shared/rules/online.py commits the result.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.rules.engine import AccountState, Evaluation, Firing, TriggerState
from shared.rules.plays import GoLive, PreExisting
from shared.timestamps import utc_stamp


@dataclass(frozen=True)
class WentLive:
    """What going live decided for one account (kept in its state item, shown in the summary)."""

    account_id: str
    at: str  # RFC 3339 UTC
    mode: PreExisting
    pre_existing: dict[str, str | None]  # trigger → when its play may be routed (None: skipped)

    def as_item(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "mode": self.mode.value,
            "pre_existing": {name: release or "" for name, release in self.pre_existing.items()},
        }

    @classmethod
    def from_item(cls, account_id: str, item: dict[str, Any]) -> WentLive:
        return cls(
            account_id=account_id,
            at=str(item["at"]),
            mode=PreExisting(item["mode"]),
            pre_existing={name: (str(v) or None) for name, v in dict(item.get("pre_existing", {})).items()},
        )

    def as_view(self) -> dict[str, Any]:
        """The account's line in the POST /v1/imports/finish answer."""
        return {
            "account_id": self.account_id,
            "went_live_at": self.at,
            "pre_existing": self.mode.value,
            "triggers": [
                {"trigger": name, "release_at": release}
                for name, release in sorted(self.pre_existing.items())
            ],
        }


@dataclass(frozen=True)
class GoLiveDecision:
    """The commit of a go-live evaluation: the new state, the firings to record, their marks."""

    state: AccountState
    firings: list[Firing]
    marks: dict[str, dict[str, Any]]  # trigger → the firing's `go_live` mark
    went_live: WentLive


def decide(evaluation: Evaluation, before: AccountState, policy: GoLive) -> GoLiveDecision:
    """Turn the go-live evaluation of an account into what to commit, per `policy`."""
    at = evaluation.evaluated_at
    triggers = dict(evaluation.state.triggers)
    firings = evaluation.firings
    marks: dict[str, dict[str, Any]] = {}
    releases: dict[str, str | None] = {}
    for firing in firings:
        release = release_at(firing.account_id, firing.trigger, at, policy)
        if release is None:
            known = before.triggers.get(firing.trigger)
            # Not fired: no cooldown starts; disarmed, it re-arms when its signal clears.
            triggers[firing.trigger] = TriggerState(known.last_fired_at if known else None, armed=False)
            releases[firing.trigger] = None
            continue
        releases[firing.trigger] = utc_stamp(release)
        marks[firing.trigger] = {
            "pre_existing": True,
            "mode": policy.pre_existing.value,
            "went_live_at": utc_stamp(at),
            "release_at": utc_stamp(release),
        }
    kept = [] if policy.pre_existing is PreExisting.SKIP else firings
    return GoLiveDecision(
        # History is not contact: the last contact stays what it was before go-live.
        state=AccountState(triggers, before.last_contacted_at),
        firings=kept,
        marks=marks,
        went_live=WentLive(evaluation.account_id, utc_stamp(at), policy.pre_existing, releases),
    )


def release_at(account_id: str, trigger: str, at: datetime, policy: GoLive) -> datetime | None:
    """When a pre-existing firing's play may be routed (None: never, it is skipped)."""
    if policy.pre_existing is PreExisting.SKIP:
        return None
    if policy.pre_existing is PreExisting.FIRE:
        return at
    digest = hashlib.sha256(f"{account_id}\n{trigger}".encode()).digest()
    return at + timedelta(days=int.from_bytes(digest[:8], "big") % policy.spread_days)


def go_live_mark(firing: dict[str, Any]) -> dict[str, Any] | None:
    """The `go_live` mark of a `trigger.fired` message's firing, if it is pre-existing."""
    mark = firing.get("go_live")
    return mark if isinstance(mark, dict) and mark.get("pre_existing") else None
