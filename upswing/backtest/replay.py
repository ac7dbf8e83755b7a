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

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from shared.accounts.models import AccountProfile
from shared.counters.bucket import CountedEvent
from shared.events.validation import window_problem
from shared.rules.aggregates import InMemoryAggregates
from shared.rules.engine import AccountState, ReadPlan, evaluate_account
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
        for name in ("lines", "accepted", "duplicates", "rejected", "malformed", "late", "evaluations"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
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
    # The slices the rulesets filter or group by, folded as the aggregator folds them online.
    aggregates = InMemoryAggregates(ruleset_slicing(*(contender.ruleset for contender in contenders)))
    states = [AccountState() for _ in contenders]
    fired: list[FiredAt] = []
    seen: dict[str, Accepted] = {}  # by event id: the ledger's deduplication
    batch: list[Accepted] = []
    clock = ""  # the latest occurred_at seen (the ledger's fixed-width stamps order as strings)
    first = last = ""

    def evaluate() -> None:
        aggregates.apply(arrival.event for arrival in batch)
        batch.clear()
        stats.evaluations += 1
        at = datetime.fromisoformat(clock)
        for index, contender in enumerate(contenders):
            evaluation = evaluate_account(
                contender.ruleset,
                aggregates,
                account_id,
                profile,
                states[index],
                at,
                contender.plan,
                explain=False,
            )
            states[index] = evaluation.state
            for firing in evaluation.firings:
                fired.append(FiredAt(index, account_id, firing.trigger, at, firing.score))

    for arrival in arrivals:
        event = arrival.event
        earlier = seen.get(event.event_id)
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
        stamp, day = event.occurred_at, event.day
        if clock:
            if day > clock[:10]:
                evaluate()  # the clock moves to a new day: the batch so far closes
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
            clock = stamp
        seen[event.event_id] = arrival
        batch.append(arrival)
        stats.accepted += 1
        if not first or day < first:
            first = day
        if day > last:
            last = day
    if batch:
        evaluate()
    if first:
        stats.spans[account_id] = (
            date.fromisoformat(first).toordinal(),
            date.fromisoformat(last).toordinal(),
        )
    return fired


def _problem(event: CountedEvent, message: str) -> Problem:
    file, line = location(event)
    return Problem(file, line, message)
