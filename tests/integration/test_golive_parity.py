"""Backtest = import-then-evaluate (issue 15): on the same history, going live after an import fires
exactly what the backtest's own fold of that history says holds at that moment.

One simulated history (the reference ruleset's metrics, the last day yesterday) goes two ways:
- the backtest's way: each line judged as the backtest judges it (upswing/backtest/events.py),
  folded in memory (InMemoryAggregates), and the account evaluated once, with a fresh state, at the
  go-live moment;
- the import's way: POST /v1/events with `"backfill": true`, the aggregator's fold into DynamoDB,
  then the evaluator's go-live for each account (moto throughout).
With `go_live: fire`, the triggers the import marks pre-existing are the triggers the backtest's
evaluation fires, account by account.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from shared.accounts.models import AccountProfile
from shared.accounts.store import AccountStore
from shared.rules.aggregates import InMemoryAggregates
from shared.rules.engine import AccountState, evaluate_account, read_plan
from shared.rules.loading import parse_ruleset
from shared.rules.slicing import ruleset_slicing
from tests.conftest import Aws
from tests.integration.builders import TEST_WRITER
from tests.integration.test_evaluator import online_evaluator
from tests.integration.test_golive import BackfillPipeline
from upswing.backtest.events import Accepted, judge_line
from upswing.simulate import SimulationConfig, simulate

REFERENCE = Path(__file__).resolve().parents[2] / "rules" / "reference.yaml"
DAYS = 120


def test_given_one_history_when_imported_then_going_live_fires_what_the_backtest_says_holds(
    aws: Aws, tmp_path: Path
) -> None:
    # Given four simulated accounts whose history ends yesterday, and the reference rules set to fire
    # what already holds at go-live
    start = datetime.now(UTC).date() - timedelta(days=DAYS)
    simulate(SimulationConfig(accounts=4, days=DAYS, seed=5, start=start), tmp_path, ("jsonl",))
    lines = (tmp_path / "events.jsonl").read_bytes().splitlines()
    profiles = [json.loads(line) for line in (tmp_path / "accounts.jsonl").read_text().splitlines()]
    rules = parse_ruleset(REFERENCE.read_text() + "\ngo_live: {pre_existing: fire}\n", "reference-fire.yaml")
    at = datetime.combine(start + timedelta(days=DAYS - 1), time(23, 0), tzinfo=UTC)
    accounts = AccountStore(aws.dynamodb, aws.accounts_table)
    for row in profiles:
        accounts.put(row["account_id"], AccountProfile.model_validate(row["profile"]), TEST_WRITER)

    # When the backtest folds the lines and evaluates each account once at the go-live moment
    judged = [judge_line(1, number, line) for number, line in enumerate(lines, start=1)]
    assert all(isinstance(arrival, Accepted) for arrival in judged)
    memory = InMemoryAggregates(ruleset_slicing(rules))
    memory.apply(sorted((arrival.event for arrival in judged), key=lambda event: event.account_id))
    backtest = {
        row["account_id"]: {
            firing.trigger
            for firing in evaluate_account(
                rules,
                memory,
                row["account_id"],
                AccountProfile.model_validate(row["profile"]),
                AccountState(),
                at,
                read_plan(rules),
                explain=False,
            ).firings
        }
        for row in profiles
    }

    # and the same lines are imported, then each account goes live at that moment
    pipeline = BackfillPipeline(aws)
    events = [json.loads(line) for line in lines]
    for first in range(0, len(events), 500):
        pipeline.post_history(*events[first : first + 500])
    online = online_evaluator(aws, rules=rules)
    imported = {
        row["account_id"]: set(online.go_live(row["account_id"], at).pre_existing) for row in profiles
    }

    # Then going live fires, account by account, what the backtest's fold says holds
    assert imported == backtest
    assert sum(map(len, backtest.values())) >= 2  # not vacuous: something held at go-live
    assert date.fromisoformat(max(event["occurred_at"][:10] for event in events)) == at.date()
