"""Replaying one account's events through the engine, as the online pipeline would have.

Online, an event is accepted by the ledger (a repeated event id is a duplicate, or rejected if its
content differs; an event older than the retention is rejected), folded into its day's bucket
whatever order it arrives in, and the account is evaluated after its counters change, with its
trigger state (cooldowns, arming, last contact) carried between evaluations. The replay does the
same with the same code: `InMemoryAggregates` folds events as the aggregator does, and
`evaluate_account` is the evaluator's engine.

The one thing a file cannot tell is when each event arrived. The replay's clock for an account is
the latest event time it has seen from that account: events are taken in file order, a batch
closes when the clock moves to a new day, and the account is evaluated once per batch, at the
clock. For a time-ordered file that is one evaluation per active day, at the time of the day's
last event; an event that arrives late (its day is before the clock's) is counted in its own
day's bucket, like online, and evaluated with the batch it arrived in.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from shared.accounts.models import AccountProfile
from shared.counters.bucket import CountedEvent
from shared.events.validation import window_problem
from shared.rules.aggregates import InMemoryAggregates
from shared.rules.engine import AccountState, ReadPlan, compiled_ruleset, evaluate_account
from shared.rules.language import Ruleset
from shared.rules.slicing import ruleset_slicing
from upswing.backtest.events import Accepted, Rejected, location

MAX_PROBLEMS_KEPT = 200  # the first ones, with file and line; every one is counted


@dataclass(frozen=True)
class Contender:
    """A ruleset being backtested (two with --compare, evaluated on the same replay)."""

    label: str
    ruleset: Ruleset
    plan: ReadPlan


@dataclass(frozen=True, slots=True)
class FiredAt:
    contender: int
    account_id: str
    trigger: str
    at: datetime
    score: float


@dataclass(frozen=True, slots=True)
class Problem:
    file: int
    line: int
    message: str


class StrictStop(Exception):
    """--strict: the first line that is not an acceptable event stops the backtest."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem)  # the args are what a worker process pickles back to the parent
        self.problem = problem

    def __str__(self) -> str:
        return self.problem.message


@dataclass
class ReplayStats:
    """Counts over the lines replayed (merged across partitions and workers)."""

    strict: bool = False  # a problem raises StrictStop instead of being counted
    lines: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    malformed: int = 0
    late: int = 0
    evaluations: int = 0
    # Accounts replayed by the columnar engine (upswing/columnar/) and by this one, with why.
    columnar_accounts: int = 0
    scalar_accounts: int = 0
    scalar_reasons: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    # Per account: the first and last day (ordinals) with an accepted event.
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)

    def reject(self, rejected: Rejected) -> None:
        if rejected.malformed:
            self.malformed += 1
        else:
            self.rejected += 1
        self.note(Problem(rejected.file, rejected.line, rejected.message))

    def note(self, problem: Problem) -> None:
        if self.strict:
            raise StrictStop(problem)
        if len(self.problems) < MAX_PROBLEMS_KEPT:
            self.problems.append(problem)

    def merge(self, other: ReplayStats) -> None:
        for name in (
            "lines",
            "accepted",
            "duplicates",
            "rejected",
            "malformed",
            "late",
            "evaluations",
            "columnar_accounts",
            "scalar_accounts",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for reason, count in other.scalar_reasons.items():
            self.scalar_reasons[reason] = self.scalar_reasons.get(reason, 0) + count
        room = MAX_PROBLEMS_KEPT - len(self.problems)
        self.problems.extend(other.problems[:room])
        self.spans.update(other.spans)


def replay_account(
    account_id: str,
    arrivals: Sequence[Accepted],
    profile: AccountProfile | None,
    contenders: Sequence[Contender],
    retention_days: int,
    stats: ReplayStats,
) -> list[FiredAt]:
    """Fold and evaluate one account's accepted events, in arrival order; its firings."""
    profiles = {account_id: profile} if profile is not None else {}
    return replay_family({account_id: arrivals}, profiles, contenders, retention_days, stats)


def replay_family(
    members: Mapping[str, Sequence[Accepted]],
    profiles: Mapping[str, AccountProfile],
    contenders: Sequence[Contender],
    retention_days: int,
    stats: ReplayStats,
) -> list[FiredAt]:
    """Replay a family (a parent and its children, or one account) together, in arrival order.

    Each member keeps its own ledger, clock and batches, exactly as `replay_account` describes; the
    counters are one `InMemoryAggregates`, which folds each family's days for family-scope rules.
    When a child's batch closes and a ruleset has family-scope rules, the parent is evaluated too,
    at the child's clock: online, the evaluator evaluates a changed child's parent with it.
    """
    rulesets = [contender.ruleset for contender in contenders]
    family_metrics = frozenset().union(*(compiled_ruleset(ruleset).family_metrics for ruleset in rulesets))
    parents = {
        account: profile.parent_account_id
        for account, profile in profiles.items()
        if profile.parent_account_id is not None
    }
    # The slices the rulesets filter or group by, folded as the aggregator folds them online.
    aggregates = InMemoryAggregates(
        ruleset_slicing(*rulesets), parents=parents, family_metrics=family_metrics
    )
    states: dict[str, list[AccountState]] = {}
    fired: list[FiredAt] = []
    seen: dict[str, dict[str, Accepted]] = {account: {} for account in members}  # the ledger's deduplication
    batches: dict[str, list[Accepted]] = {account: [] for account in members}
    clocks = dict.fromkeys(members, "")  # the latest occurred_at seen, per account
    spans: dict[str, list[str]] = {}

    def evaluate_at(account_id: str, at: datetime) -> None:
        stats.evaluations += 1
        profile = profiles.get(account_id)
        account_states = states.setdefault(account_id, [AccountState() for _ in contenders])
        for index, contender in enumerate(contenders):
            evaluation = evaluate_account(
                contender.ruleset,
                aggregates,
                account_id,
                profile,
                account_states[index],
                at,
                contender.plan,
                explain=False,
            )
            account_states[index] = evaluation.state
            for firing in evaluation.firings:
                fired.append(FiredAt(index, account_id, firing.trigger, at, firing.score))

    def evaluate(account_id: str) -> None:
        batch = batches[account_id]
        aggregates.apply(arrival.event for arrival in batch)
        batch.clear()
        at = datetime.fromisoformat(clocks[account_id])
        evaluate_at(account_id, at)
        parent = parents.get(account_id)
        if parent is not None and family_metrics:
            evaluate_at(parent, at)

    ordered = heapq.merge(*members.values(), key=lambda arrival: arrival.event.sequence)
    for arrival in ordered:
        event = arrival.event
        account_id = event.account_id
        earlier = seen[account_id].get(event.event_id)
        if earlier is not None:
            if earlier.content() == arrival.content():
                stats.duplicates += 1
            else:
                stats.rejected += 1
                stats.note(
                    _problem(
                        event,
                        f"event_id: already accepted (line {location(earlier.event)[1]}) with different "
                        "content; event ids must be unique per account",
                    )
                )
            continue
        stamp, day, clock = event.occurred_at, event.day, clocks[account_id]
        if clock:
            if day > clock[:10]:
                evaluate(account_id)  # the clock moves to a new day: the batch so far closes
            elif day < clock[:10]:
                too_old = window_problem(
                    datetime.fromisoformat(stamp), datetime.fromisoformat(clock), retention_days
                )
                if too_old:
                    stats.rejected += 1
                    stats.note(_problem(event, too_old))
                    continue
                stats.late += 1
        if stamp > clock:
            clocks[account_id] = stamp
        seen[account_id][event.event_id] = arrival
        batches[account_id].append(arrival)
        stats.accepted += 1
        span = spans.setdefault(account_id, [day, day])
        span[0], span[1] = min(span[0], day), max(span[1], day)
    for account_id in members:
        if batches[account_id]:
            evaluate(account_id)
    for account_id, (first, last) in spans.items():
        stats.spans[account_id] = (
            date.fromisoformat(first).toordinal(),
            date.fromisoformat(last).toordinal(),
        )
    return fired


def _problem(event: CountedEvent, message: str) -> Problem:
    file, line = location(event)
    return Problem(file, line, message)
