"""In-memory adapters for the router's ports (shared/routing/ports.py), keeping the same contracts
as the DynamoDB ledger: a play is accepted or settled once, budgets all or nothing, never overdrawn.

They let the router's decisions be tested in milliseconds; tests/integration/test_router.py holds
the DynamoDB adapters to the same behaviour on moto.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from shared.accounts.models import AccountProfile
from shared.routing.budgets import BudgetCharge
from shared.routing.ledger import hand_off_overdue_at
from shared.routing.messages import PlayDelivery
from shared.routing.models import WAITING, AlreadyTaken, OverBudget, PlayRecord, PlayStatus


class MemoryAccounts:
    def __init__(self, profiles: dict[str, AccountProfile] | None = None) -> None:
        self.profiles = dict(profiles or {})

    def get(self, account_id: str) -> AccountProfile | None:
        return self.profiles.get(account_id)


class MemoryPlays:
    def __init__(self) -> None:
        self.records: dict[tuple[str, str], PlayRecord] = {}
        self.counters: dict[tuple[str, str], int] = {}
        self.turns: dict[str, int] = {}
        self.enrolled: set[tuple[str, str, str]] = set()

    def get(self, account_id: str, play_id: str) -> PlayRecord | None:
        record = self.records.get((account_id, play_id))
        return replace(record, stored_status=record.status) if record else None

    def in_experiment(self, account_id: str, trigger: str, salt: str) -> bool:
        return (account_id, trigger, salt) in self.enrolled

    def schedule(self, record: PlayRecord) -> bool:
        if (record.account_id, record.play_id) in self.records:
            return False
        self.records[(record.account_id, record.play_id)] = record
        return True

    def accept(self, record: PlayRecord, budgets: list[BudgetCharge]) -> None:
        self._check_open(record)
        exceeded = [charge for charge in budgets if self._count(charge) >= charge.limit]
        if exceeded:
            raise OverBudget(exceeded)
        for charge in budgets:
            self.counters[(charge.counter, charge.period)] = self._count(charge) + 1
        self._write(record)

    def settle(self, record: PlayRecord) -> None:
        self._check_open(record)
        self._write(record)

    def mark_routed(self, record: PlayRecord) -> None:
        key = (record.account_id, record.play_id)
        self.records[key] = replace(self.records[key], status=PlayStatus.ROUTED)

    def due(self, at: datetime, limit: int = 100) -> list[PlayRecord]:
        due = [
            replace(record, stored_status=record.status)
            for record in self.records.values()
            if (record.status in WAITING and record.due_at and record.due_at <= at)
            or (record.status is PlayStatus.ACCEPTED and hand_off_overdue_at(record) <= at)
        ]
        return sorted(due, key=lambda record: record.due_at or record.updated_at)[:limit]

    def counts(self, counters: list[str], period: str) -> dict[str, int]:
        return {counter: self.counters.get((counter, period), 0) for counter in counters}

    def next_turn(self, pool: str) -> int:
        self.turns[pool] = self.turns.get(pool, -1) + 1
        return self.turns[pool]

    def _check_open(self, record: PlayRecord) -> None:
        """As the ledger's conditional put: new or waiting, and exactly as the router read it."""
        stored = self.records.get((record.account_id, record.play_id))
        if stored is not None and (stored.status not in WAITING or stored.status != record.stored_status):
            raise AlreadyTaken(record.play_id)

    def _write(self, record: PlayRecord) -> None:
        self.records[(record.account_id, record.play_id)] = record
        if record.trial and record.experiment_salt:
            self.enrolled.add((record.account_id, record.trigger, record.experiment_salt))

    def _count(self, charge: BudgetCharge) -> int:
        return self.counters.get((charge.counter, charge.period), 0)


class RecordingDispatcher:
    def __init__(self) -> None:
        self.delivered: list[PlayDelivery] = []
        self.announced: list[PlayRecord] = []

    def deliver(self, deliveries: list[PlayDelivery]) -> None:
        self.delivered.extend(deliveries)

    def announce(self, record: PlayRecord) -> None:
        self.announced.append(record)


class MemoryWatches:
    def __init__(self, check_every: timedelta = timedelta(hours=6)) -> None:
        self.check_every = check_every
        self.watched: dict[str, datetime] = {}

    def watch(self, record: PlayRecord, first_check: datetime) -> None:
        self.watched.setdefault(record.play_id, first_check)
