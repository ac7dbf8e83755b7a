"""The rules engine: account evaluations per second on one core, and read units per online evaluation.

Throughput: a seeded population (bench/population.py) folded into in-memory aggregates, then
every account evaluated at 23:00 on each of the last days of the year with its state carried
over. One process, one thread: one core. CPU time, so that whatever else runs on the machine
does not count.

The backtest's loop: the same accounts one at a time, each into its own fresh aggregates, day by
day — fold the day's events, evaluate once at the day's last event, carry the state to the next
day — timed apart: µs per folded event and µs per evaluation (every evaluation follows a change
to today's counters, so it is the engine's answers kept between evaluations that are put to test).

Read units: a sample of the same accounts stored in (moto) DynamoDB as the aggregator stores
them, then evaluated by the evaluator's own code path; units computed from item sizes by
DynamoDB's rules (bench/dynamo_meter.py).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any

from bench import population
from bench.dynamo_meter import Meter
from bench.environment import BENCH_TABLES, fake_aws
from shared.counters.bucket import CountedEvent
from shared.resources import ACCOUNTS_TABLE, COUNTERS_TABLE, FIRINGS_TABLE
from shared.rules.aggregates import InMemoryAggregates
from shared.rules.engine import AccountState, evaluate_account, read_plan
from shared.rules.loading import load_ruleset

ACCOUNTS = 600
HISTORY_DAYS = 365
EVALUATION_DAYS = 30
ONLINE_SAMPLE = 60
FIRST_DAY = date(2026, 1, 1)
REFERENCE = Path("rules/reference.yaml")
TARGET_EVALUATIONS_PER_SECOND = 25_000
# The backtest benchmark (10,000 accounts x 365 days, 10 M events in 60 s on 2 cores) needs about this.
TARGET_BACKTEST_EVALUATION_MICROSECONDS = 15
TARGET_BACKTEST_FOLD_MICROSECONDS = 3


def run(accounts: int = ACCOUNTS, *, online: bool = True) -> dict[str, Any]:
    """Every measurement, printed; `accounts` and `online=False` make a quicker run while tuning."""
    ruleset = load_ruleset(REFERENCE)
    people = population.accounts(accounts)
    batches = [list(population.events(account, FIRST_DAY, HISTORY_DAYS)) for account in people]
    events = sum(len(batch) for batch in batches)
    backtest = _backtest_loop(ruleset, people, batches)
    # Folding alone (the backtest's other loop), CPU time: generating the events is not counted.
    memory = InMemoryAggregates()
    gc.collect()
    started = time.process_time()
    for batch in batches:
        memory.apply(batch)
    folded = time.process_time() - started
    del batches

    last_day = FIRST_DAY + timedelta(days=HISTORY_DAYS - 1)
    moments = [
        datetime.combine(last_day - timedelta(days=back), clock(23), UTC)
        for back in range(EVALUATION_DAYS - 1, -1, -1)
    ]
    # The first pass over an account builds its prefix sums (part of folding, in effect): timed apart.
    warm_up = _throughput(ruleset, memory, people, moments[:1], explain=False)
    quiet = _throughput(ruleset, memory, people, moments, explain=False)
    explained = _throughput(ruleset, memory, people, moments[-1:], explain=True)
    online_units = (
        _online_read_units(ruleset, memory, people[:ONLINE_SAMPLE], moments[-1]) if online else None
    )
    result = {
        "population": {
            "accounts": accounts,
            "days": HISTORY_DAYS,
            "events": events,
            "events_per_account_day": round(events / accounts / HISTORY_DAYS, 2),
            "levels": dict(Counter(account.level for account in people)),
            "fold_seconds": round(folded, 2),
            "fold_events_per_second": round(events / folded),
            "first_pass_seconds (builds the prefix sums)": warm_up["cpu_seconds"],
        },
        "throughput (firings' evidence only, as the evaluator and backtest run)": quiet,
        "throughput (every condition explained, as GET /signals)": explained,
        "backtest loop (per account: fold a day, evaluate, next day)": backtest,
        "online evaluation (DynamoDB)": online_units,
        "target_evaluations_per_second": TARGET_EVALUATIONS_PER_SECOND,
    }
    _print(result)
    return result


def _throughput(
    ruleset: Any,
    memory: InMemoryAggregates,
    people: list[population.Account],
    moments: list[datetime],
    *,
    explain: bool,
) -> dict[str, Any]:
    states = {account.account_id: AccountState() for account in people}
    firings = 0
    by_level: defaultdict[str, float] = defaultdict(float)
    clock_now = time.perf_counter
    gc.collect()
    started_cpu, started = time.process_time(), time.perf_counter()
    for at in moments:
        for account in people:
            before = clock_now()
            evaluation = evaluate_account(
                ruleset,
                memory,
                account.account_id,
                account.profile,
                states[account.account_id],
                at,
                explain=explain,
            )
            by_level[account.level] += clock_now() - before
            states[account.account_id] = evaluation.state
            firings += len(evaluation.firings)
    cpu, wall = time.process_time() - started_cpu, time.perf_counter() - started
    evaluations = len(moments) * len(people)
    return {
        "evaluations": evaluations,
        "firings": firings,
        "cpu_seconds": round(cpu, 3),
        "evaluations_per_second": round(evaluations / cpu),
        "microseconds_per_evaluation": round(cpu / evaluations * 1e6, 1),
        "wall_seconds": round(wall, 3),
        "microseconds_per_evaluation_by_level": {
            level: round(
                spent / (len(moments) * sum(1 for account in people if account.level == level)) * 1e6, 1
            )
            for level, spent in by_level.items()
        },
    }


def _backtest_loop(
    ruleset: Any, people: list[population.Account], batches: list[list[CountedEvent]]
) -> dict[str, Any]:
    plan = read_plan(ruleset)
    days_by_account = [_days(batch) for batch in batches]  # grouping by day is the reader's work: not timed
    fold_time = evaluate_time = 0.0
    evaluations, folded_events, firings = 0, 0, 0
    by_level: defaultdict[str, float] = defaultdict(float)
    evaluations_by_level: Counter[str] = Counter()
    clock_now = time.perf_counter
    gc.collect()
    started_cpu = time.process_time()
    for account, days in zip(people, days_by_account, strict=True):
        memory, state = InMemoryAggregates(), AccountState()
        for events, at in days:
            before = clock_now()
            memory.apply(events)
            folded = clock_now()
            evaluation = evaluate_account(
                ruleset, memory, account.account_id, account.profile, state, at, plan, explain=False
            )
            done = clock_now()
            state = evaluation.state
            firings += len(evaluation.firings)
            fold_time += folded - before
            evaluate_time += done - folded
            by_level[account.level] += done - folded
            evaluations_by_level[account.level] += 1
            folded_events += len(events)
        evaluations += len(days)
    cpu = time.process_time() - started_cpu
    return {
        "evaluations": evaluations,
        "folded_events": folded_events,
        "firings": firings,
        "cpu_seconds": round(cpu, 3),
        "microseconds_per_folded_event": round(fold_time / folded_events * 1e6, 2),
        "microseconds_per_evaluation": round(evaluate_time / evaluations * 1e6, 1),
        "microseconds_per_evaluation_by_level": {
            level: round(spent / evaluations_by_level[level] * 1e6, 1) for level, spent in by_level.items()
        },
    }


def _days(events: list[CountedEvent]) -> list[tuple[list[CountedEvent], datetime]]:
    """An account's events by day, in day order, each day with the moment of its last event."""
    by_day: dict[str, list[CountedEvent]] = {}
    for event in events:
        by_day.setdefault(event.day, []).append(event)
    return [
        (day_events, datetime.fromisoformat(max(event.occurred_at for event in day_events)))
        for _, day_events in sorted(by_day.items())
    ]


def _online_read_units(
    ruleset: Any, memory: InMemoryAggregates, people: list[population.Account], at: datetime
) -> dict[str, Any]:
    with fake_aws():
        from shared.accounts.models import Writer
        from shared.accounts.store import AccountStore
        from shared.counters.store import CounterStore
        from shared.rules.dynamo_aggregates import DynamoAggregates
        from shared.rules.engine import read_plan
        from shared.rules.firings import FiringStore
        from shared.rules.online import OnlineEvaluator
        from shared.storage.dynamo import aws_client, dynamodb_client

        client = dynamodb_client()
        counters = CounterStore(client, BENCH_TABLES[COUNTERS_TABLE.env_var], 400)
        accounts = AccountStore(client, BENCH_TABLES[ACCOUNTS_TABLE.env_var])
        plan = read_plan(ruleset)
        for account in people:
            accounts.put(account.account_id, account.profile, Writer(producer_id="bench", key_id="direct"))
            for bucket in memory.buckets(account.account_id, plan.first_day(at), at.date()):
                counters.save(bucket, "")
            # The first_seen marker the aggregator keeps (data coverage), read by the same Query.
            first = memory.history(account.account_id, plan.first_day(at), at.date()).first_seen
            if first is not None:
                counters.note_first_seen(account.account_id, date.fromordinal(first).isoformat())
        metered = dynamodb_client()
        meter = Meter()
        meter.attach(metered, aws_client("dynamodb"))
        online = OnlineEvaluator(
            ruleset=ruleset,
            plan=plan,
            aggregates=DynamoAggregates(CounterStore(metered, BENCH_TABLES[COUNTERS_TABLE.env_var], 400)),
            accounts=AccountStore(metered, BENCH_TABLES[ACCOUNTS_TABLE.env_var]),
            firings=FiringStore(metered, BENCH_TABLES[FIRINGS_TABLE.env_var], 400),
            publish=lambda messages: {message["firing_id"] for message in messages},
        )
        units, firings = [], 0
        for account in people:
            before = meter.read_units
            firings += len(online.evaluate(account.account_id, at).firings)
            units.append(meter.read_units - before)
        return {
            "accounts": len(people),
            "days_read": plan.lookback_days,
            "read_units_mean": round(statistics.mean(units), 2),
            "read_units_max": round(max(units), 2),
            "requests": dict(meter.requests),
            "write_units_total": meter.write_units,
            "firings": firings,
        }


def _print(result: dict[str, Any]) -> None:
    people = result["population"]
    print(
        f"\nRules engine, reference ruleset: {people['accounts']} accounts x {people['days']} days, "
        f"{people['events']:,} events ({people['events_per_account_day']} per account-day), "
        f"levels {people['levels']}; folded in memory in {people['fold_seconds']} s CPU "
        f"({people['fold_events_per_second']:,} events/s)"
    )
    for label in (
        "throughput (firings' evidence only, as the evaluator and backtest run)",
        "throughput (every condition explained, as GET /signals)",
    ):
        row = result[label]
        print(
            f"  {label}: {row['evaluations_per_second']:,} evaluations/s "
            f"({row['microseconds_per_evaluation']} µs each, {row['evaluations']:,} evaluations, "
            f"{row['firings']:,} firings) — target ≥ {TARGET_EVALUATIONS_PER_SECOND:,}/s"
        )
        print(f"    µs per evaluation by activity level: {row['microseconds_per_evaluation_by_level']}")
    loop = result["backtest loop (per account: fold a day, evaluate, next day)"]
    print(
        f"  backtest loop (per account: fold a day, evaluate, next day): "
        f"{loop['microseconds_per_folded_event']} µs per folded event "
        f"(target ≤ {TARGET_BACKTEST_FOLD_MICROSECONDS}), "
        f"{loop['microseconds_per_evaluation']} µs per evaluation "
        f"(target ≤ {TARGET_BACKTEST_EVALUATION_MICROSECONDS}; {loop['evaluations']:,} evaluations, "
        f"{loop['folded_events']:,} events, {loop['firings']:,} firings, {loop['cpu_seconds']} s CPU)"
    )
    print(f"    µs per evaluation by activity level: {loop['microseconds_per_evaluation_by_level']}")
    online = result["online evaluation (DynamoDB)"]
    if online is None:
        return
    print(
        f"  online evaluation: {online['read_units_mean']} RCU per account evaluation on average "
        f"(max {online['read_units_max']}; {online['days_read']} days of counters, strongly consistent; "
        f"requests {online['requests']})"
    )
