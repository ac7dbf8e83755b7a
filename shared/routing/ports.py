"""What the router needs from the world, as ports: the adapters (DynamoDB, SQS, EventBridge) satisfy
them in the functions; in-memory fakes satisfy them in the router's fast unit tests.

Each method states the contract the router relies on, which the DynamoDB adapters keep with
conditional writes and transactions (shared/routing/ledger.py, watches.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from shared.accounts.models import AccountProfile
from shared.routing.budgets import BudgetCharge
from shared.routing.messages import PlayDelivery
from shared.routing.models import PlayRecord


class Accounts(Protocol):
    def get(self, account_id: str) -> AccountProfile | None:
        """The account's profile (None: none stored)."""
        ...


class Plays(Protocol):
    def get(self, account_id: str, play_id: str) -> PlayRecord | None:
        """The play tier as stored (strongly consistent), its `stored_status` set."""
        ...

    def in_experiment(self, account_id: str, trigger: str, salt: str) -> bool:
        """Whether the account entered the trigger's experiment already (its trial is behind it)."""
        ...

    def schedule(self, record: PlayRecord) -> bool:
        """Write a waiting tier unless the play exists already; True when written."""
        ...

    def accept(self, record: PlayRecord, budgets: list[BudgetCharge]) -> None:
        """Accept the play and charge its budgets, all or nothing: OverBudget (naming the spent
        budgets) or AlreadyTaken (another router accepted or settled it first)."""
        ...

    def settle(self, record: PlayRecord) -> None:
        """Write a tier that waits again or ends without delivery; AlreadyTaken if another router
        moved it since it was read."""
        ...

    def due(self, at: datetime, limit: int = 100) -> list[PlayRecord]:
        """Waiting tiers whose time has come, and accepted ones whose hand-off never finished."""
        ...

    def mark_routed(self, record: PlayRecord) -> None:
        """The hand-off finished: the play is ROUTED and leaves the scheduler's index."""
        ...

    def counts(self, counters: list[str], period: str) -> dict[str, int]:
        """Budget counters' current values in a period (absent: 0)."""
        ...

    def next_turn(self, pool: str) -> int:
        """A pool's round-robin counter, incremented: 0, 1, 2..."""
        ...


class Watches(Protocol):
    check_every: timedelta

    def watch(self, record: PlayRecord, first_check: datetime) -> None:
        """Watch a routed tier's task for auto-close; a second call changes nothing."""
        ...


class Dispatcher(Protocol):
    def deliver(self, deliveries: list[PlayDelivery]) -> None:
        """Put each delivery on its channel's queue (raises when any could not be sent)."""
        ...

    def announce(self, record: PlayRecord) -> None:
        """Publish `play.routed` for a routed play."""
        ...
