"""What the online evaluator needs from the world, as ports: the DynamoDB adapters (AccountStore,
FiringStore) satisfy them in the functions; the engine itself reads counters through `Aggregates`
(shared/rules/aggregates.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from shared.accounts.models import AccountProfile
from shared.rules.engine import AccountState, Firing


class ConcurrentEvaluation(Exception):
    """Another evaluation of the account committed first; evaluate again from its state."""


@dataclass(frozen=True)
class StoredState:
    state: AccountState
    version: int
    pending: frozenset[str]
    went_live: dict[str, Any] | None = None  # shared/rules/golive.py: WentLive.as_item()


class Profiles(Protocol):
    def get(self, account_id: str) -> AccountProfile | None:
        """The account's profile (None: none stored; the rules still run, with defaults)."""
        ...


class FiringLedger(Protocol):
    def load(self, account_id: str) -> StoredState:
        """The account's arming and cooldown state, its version, and its firings not yet handed off."""
        ...

    def commit(
        self,
        account_id: str,
        read: StoredState,
        state: AccountState,
        firings: list[Firing],
        handed_off: set[str] | frozenset[str] = frozenset(),
        shadow_firings: list[Firing] | tuple[Firing, ...] = (),
        *,
        went_live: dict[str, Any] | None = None,
        marks: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """Store the state and firings (a shadow ruleset's too, never handed off) unless the state
        changed since `read` (ConcurrentEvaluation); `went_live`: the account's go-live record, kept
        from then on; `marks`: per trigger, a pre-existing firing's go-live mark (shared/rules/golive.py)."""
        ...

    def pending_firings(self, account_id: str, ids: frozenset[str]) -> list[dict[str, Any]]:
        """The `trigger.fired` messages of committed firings not handed off yet."""
        ...

    def mark_handed_off(self, account_id: str, ids: set[str]) -> None:
        """These firings were sent: they leave the outbox."""
        ...

    def recent_firings(self, account_id: str, limit: int = 20) -> list[dict[str, Any]]:
        """The account's latest firings, newest first (GET .../signals)."""
        ...
