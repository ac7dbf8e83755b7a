"""Parity: the backtest and the online pipeline fire the same triggers on the same history.

One seeded history — simulated accounts, plus the irregularities real feeds have (a resend, a
reused event id, late events, an event older than the retention, a malformed line, an invalid
event, an account without a profile) — goes through both:

- the backtest (upswing/backtest), with one worker and with two;
- the online pipeline on moto, driven in the backtest's arrival model (upswing/backtest/replay.py):
  per account, lines in file order, each ingested by the `Ingestor` when the account's clock
  (the latest accepted event time) says it arrives; when an accepted event moves the clock to a
  new UTC day, the batch before it closes: its ledger stream records are folded by the
  aggregator's handler and the evaluator evaluates the account at the clock, its cooldowns and
  arming kept in the DynamoDB firing ledger.

The firings (account, trigger, evaluation time, score) must be identical, and so must the counts
of what the inputs came to: events accepted, duplicates, rejected, late, malformed, evaluations.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from functions.aggregator.handler import process_stream_batch
from shared.accounts.models import AccountProfile
from shared.accounts.store import AccountStore
from shared.counters.store import CounterStore
from shared.events.ingest import Ingestor, Status
from shared.events.ledger import Channel, EventLedger
from shared.events.metric_kinds import MetricKinds
from shared.events.models import UsageEvent
from shared.events.validation import BadRequest, check_event, parse_events_request
from shared.resources import FIRINGS_TABLE
from shared.rules.dynamo_aggregates import DynamoAggregates
from shared.rules.engine import read_plan
from shared.rules.firings import FiringStore
from shared.rules.loading import load_ruleset
from shared.rules.online import OnlineEvaluator, sqs_publisher
from tests.conftest import TEST_RETENTION_DAYS, Aws, StreamReader
from tests.integration.builders import PRODUCER, TEST_WRITER, stream_event
from upswing.backtest import BacktestConfig, BacktestRun, backtest
from upswing.simulate import SimulationConfig, simulate

REFERENCE_RULES = Path(__file__).resolve().parents[2] / "rules" / "reference.yaml"
SIMULATION = SimulationConfig(accounts=5, days=30, seed=7, start=date(2025, 1, 1))
UNPROFILED = "acct-000004"  # its profile is left out of the accounts file (and of the accounts table)

ANY_TIME = datetime(2025, 1, 1, tzinfo=UTC)

# Firing = (account, trigger, evaluated at, score)
Firing = tuple[str, str, str, float]


# ── the history ────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class History:
    events: Path
    accounts: Path
    outcomes: Path
    expected: dict[str, int]  # what the irregularities must come to, as the backtest counts them


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    """The simulated history with the irregularities spliced in, and the profiles but one."""
    folder = tmp_path_factory.mktemp("parity")
    simulate(SIMULATION, folder, ("jsonl",))
    lines = (folder / "events.jsonl").read_text().splitlines()
    irregular, expected = with_irregularities(lines)
    events = folder / "history.jsonl"
    events.write_text("\n".join(irregular) + "\n")
    accounts = folder / "profiles.jsonl"
    accounts.write_text(
        "".join(
            line + "\n"
            for line in (folder / "accounts.jsonl").read_text().splitlines()
            if json.loads(line)["account_id"] != UNPROFILED
        )
    )
    return History(events, accounts, folder / "outcomes.csv", expected)


def with_irregularities(lines: list[str]) -> tuple[list[str], dict[str, int]]:
    """The lines with resends, a reused id, late, too old, invalid and malformed lines inserted.

    Each insertion is placed relative to one account's own events, so that it lands where intended
    (the same batch, a later day, before the account's clock) whatever the other accounts do.
    """
    events = [json.loads(line) for line in lines]
    inserts: list[tuple[int, str]] = []  # (insert before this line index, the new line)

    def at_share(account: str, share: float) -> int:
        """The index of the account's event that far through its history (0.5: halfway)."""
        own = [index for index, event in enumerate(events) if event["account_id"] == account]
        return own[int(share * len(own))]

    def clock_before(index: int, account: str) -> datetime:
        return max(moment(event) for event in events[:index] if event["account_id"] == account)

    # An exact resend, in the same batch: a duplicate.
    resent = at_share("acct-000001", 0.3)
    inserts.append((resent + 3, lines[resent]))
    # A resend days later, written differently (keys reordered, the same instant with an offset):
    # still the same event, so a duplicate too, not a late event.
    original = events[at_share("acct-000004", 0.4)]
    later = at_share("acct-000004", 0.8)
    rewritten = dict(reversed(list(original.items())))
    rewritten["occurred_at"] = (moment(original) + timedelta(hours=2)).replace(tzinfo=None).isoformat()
    rewritten["occurred_at"] += "+02:00"
    inserts.append((later, json.dumps(rewritten)))
    # A reused event id with different content: rejected.
    reused = events[at_share("acct-000003", 0.5)]
    inserts.append((at_share("acct-000003", 0.65), json.dumps({**reused, "value": reused["value"] + 5})))
    # Two late events (a count and an old gauge reading), days before the account's clock.
    where = at_share("acct-000000", 0.8)
    clock = clock_before(where, "acct-000000")
    for number, (name, kind, value) in enumerate(
        [("dashboard.created", "count", 3), ("seats.active", "gauge", 2)]
    ):
        late = _event(f"late-{number}", "acct-000000", name, kind, value, clock - timedelta(days=3 + number))
        inserts.append((where, late))
    # Older than the retention at the account's clock: rejected.
    inserts.append(
        (
            where,
            _event("too-old", "acct-000000", "dashboard.created", "count", 1, clock - timedelta(days=450)),
        )
    )
    # Against the contract (a metric name with spaces): rejected.
    inserts.append((where, _event("bad-name", "acct-000000", "not a name", "count", 1, clock)))
    # Not JSON at all: malformed.
    inserts.append((at_share("acct-000002", 0.2), '{"event_id": "cut-off", "account_id": "acct-000002", "na'))

    result = list(lines)
    for index, line in sorted(inserts, key=lambda insert: insert[0], reverse=True):
        result.insert(index, line)
    return result, {"duplicates": 2, "rejected": 3, "late": 2, "malformed": 1}


def _event(event_id: str, account: str, name: str, kind: str, value: float, at: datetime) -> str:
    occurred_at = at.isoformat().replace("+00:00", "Z")
    return json.dumps(
        {"event_id": event_id, "account_id": account, "name": name, "occurred_at": occurred_at}
        | {"value": value, "kind": kind}
    )


def moment(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["occurred_at"]).astimezone(UTC)


# ── the tests ──────────────────────────────────────────────────────────────────────────────────


@pytest.fixture(scope="module")
def backtested(history: History) -> tuple[BacktestRun, BacktestRun]:
    """The backtest with one worker on the scalar engine, and with two routing accounts to the
    columnar engine where it can (run before moto starts, as it forks)."""
    return backtest(config(history, workers=1, engine="scalar")), backtest(config(history, workers=2))


def test_given_one_history_when_backtested_and_run_online_then_the_firings_are_identical(
    aws: Aws, history: History, backtested: tuple[BacktestRun, BacktestRun]
) -> None:
    # Given the backtest's firings and counts (the same with two workers as with one, and with the
    # clean accounts on the columnar engine, the irregular ones on the scalar one)
    run, parallel = backtested
    assert parallel.firings == run.firings
    counted = run.result["input"]
    assert {name: counted[name] for name in history.expected} == history.expected
    assert {name: parallel.result["input"][name] for name in history.expected} == history.expected
    assert parallel.result["rulesets"][0]["evaluations"] == run.result["rulesets"][0]["evaluations"]
    routed = parallel.result["input"]["engine"]
    assert routed["used"] == "columnar"
    assert routed["columnar_accounts"] >= 1
    assert routed["scalar_accounts"] >= 1
    assert set(routed["scalar_reasons"]) <= {"duplicate event ids", "late events"}
    assert run.result["input"]["engine"]["columnar_accounts"] == 0
    assert counted["accounts_without_profile"] == 1
    offline = firings_of(run)
    # Not vacuous: several triggers fired, for most accounts, the unprofiled one among them.
    assert len(offline) >= 12
    assert len({trigger for _, trigger, _, _ in offline}) >= 6
    assert len({account for account, _, _, _ in offline}) >= 4
    assert any(account == UNPROFILED for account, _, _, _ in offline)

    # When the same lines arrive online, as the backtest assumes they arrived
    online = OnlineReplay.on(aws)
    online.put_profiles(history.accounts)
    online.replay(history.events.read_text().splitlines())

    # Then the same firings, each handed off once, from the same counts of what arrived
    assert online.firings() == offline
    assert online.handed_off() == len(offline)
    assert online.tally == tally_of(run)


def test_given_an_event_of_the_wrong_kind_when_backtested_and_run_online_then_both_ignore_it(
    aws: Aws, tmp_path: Path
) -> None:
    # Given seats well under the limit, and one `seats.active` event sent as a count
    history = wrong_kind_history(tmp_path)

    # When backtested, and replayed online
    run = backtest(config(history, workers=1))
    online = OnlineReplay.on(aws)
    online.put_profiles(history.accounts)
    online.replay(history.events.read_text().splitlines())

    # Then both counted the same events and fired the same
    assert (online.tally, online.firings()) == (tally_of(run), firings_of(run))


def wrong_kind_history(folder: Path) -> History:
    """Five days of a gauge at 5 of 12 seats; on the third, a reading of 11 sent as a count."""
    readings = [
        _event(
            f"seats-{day}", "acct-kinds", "seats.active", "gauge", 5, datetime(2025, 1, day, 10, tzinfo=UTC)
        )
        for day in range(1, 6)
    ]
    wrong = _event(
        "seats-as-count", "acct-kinds", "seats.active", "count", 11, datetime(2025, 1, 3, 12, tzinfo=UTC)
    )
    events = folder / "events.jsonl"
    events.write_text("\n".join([*readings[:3], wrong, *readings[3:]]) + "\n")
    accounts = folder / "accounts.jsonl"
    profile = {
        "name": "Kinds",
        "segment": "smb",
        "plan": {"name": "Team", "tier": 1, "limits": {"seats": 12}},
    }
    accounts.write_text(json.dumps({"account_id": "acct-kinds", "profile": profile}) + "\n")
    outcomes = folder / "outcomes.csv"
    outcomes.write_text("account_id,expansion_date\n")
    return History(events, accounts, outcomes, {})


def firings_of(run: BacktestRun) -> list[Firing]:
    return sorted((account, trigger, at, score) for _, trigger, account, at, score in run.firings)


def tally_of(run: BacktestRun) -> Counter[str]:
    """What the backtest counted, under the names the online replay counts them."""
    counted = run.result["input"]
    return Counter(
        accepted=counted["events"],
        duplicates=counted["duplicates"],
        rejected=counted["rejected"],
        late=counted["late"],
        malformed=counted["malformed"],
        evaluations=run.result["rulesets"][0]["evaluations"],
    )


def config(history: History, workers: int, engine: str = "auto") -> BacktestConfig:
    return BacktestConfig(
        events=(history.events,),
        outcomes=history.outcomes,
        accounts=history.accounts,
        rules=REFERENCE_RULES,
        workers=workers,
        partitions=4,
        retention_days=TEST_RETENTION_DAYS,
        engine=engine,
    )


# ── the online pipeline, driven in the backtest's arrival model ────────────────────────────────


@dataclass
class OnlineReplay:
    aws: Aws
    ingestor: Ingestor
    counters: CounterStore
    evaluator: OnlineEvaluator
    ledger_stream: StreamReader
    tally: Counter[str] = field(default_factory=Counter)
    _held: list[dict[str, Any]] = field(default_factory=list)  # records of the next batch, read early

    @classmethod
    def on(cls, aws: Aws) -> OnlineReplay:
        ruleset = load_ruleset(REFERENCE_RULES)
        counters = CounterStore(aws.dynamodb, aws.counters_table, TEST_RETENTION_DAYS)
        return cls(
            aws=aws,
            ingestor=Ingestor(
                EventLedger(aws.dynamodb, aws.events_table),
                MetricKinds(aws.dynamodb, aws.registry_table),
                TEST_RETENTION_DAYS,
            ),
            counters=counters,
            evaluator=OnlineEvaluator(
                ruleset=ruleset,
                plan=read_plan(ruleset),
                aggregates=DynamoAggregates(counters),
                accounts=AccountStore(aws.dynamodb, aws.accounts_table),
                firings=FiringStore(aws.dynamodb, aws.tables[FIRINGS_TABLE.env_var], TEST_RETENTION_DAYS),
                publish=sqs_publisher(aws.sqs, aws.fired_queue_url),
            ),
            ledger_stream=aws.events_stream(),
        )

    def put_profiles(self, path: Path) -> None:
        """Each profile as PUT /v1/accounts/{account_id} stores it."""
        store = AccountStore(self.aws.dynamodb, self.aws.accounts_table)
        for line in path.read_text().splitlines():
            document = json.loads(line)
            store.put(document["account_id"], AccountProfile.model_validate(document["profile"]), TEST_WRITER)

    def replay(self, lines: list[str]) -> None:
        """Per account (they are independent), its lines in file order."""
        by_account: dict[str | None, list[Any]] = {}
        for line in lines:
            try:
                raw = json.loads(line)
            except json.JSONDecodeError:
                # The API refuses the whole request: nothing of it is stored.
                with pytest.raises(BadRequest):
                    parse_events_request(f'{{"events": [{line}]}}', "application/json")
                self.tally["malformed"] += 1
                continue
            account = raw.get("account_id") if isinstance(raw, dict) else None
            by_account.setdefault(account if isinstance(account, str) else None, []).append(raw)
        for account, events in by_account.items():
            self._replay_account(account, events)

    def _replay_account(self, account_id: str | None, events: list[Any]) -> None:
        clock: datetime | None = None  # the latest time of an accepted event
        for raw in events:
            occurred = _occurred_at(raw)
            # The event arrives at the account's clock, or at its own time when that is later (an
            # event the contract rejects is rejected whenever it arrives).
            now = max(filter(None, (clock, occurred)), default=ANY_TIME)
            (outcome,) = self.ingestor.ingest([raw], PRODUCER, Channel.HTTPS, now)
            assert outcome.status is not Status.FAILED, outcome.errors
            if outcome.status is Status.DUPLICATE:
                self.tally["duplicates"] += 1
                continue
            if outcome.status is Status.REJECTED:
                self.tally["rejected"] += 1
                continue
            assert occurred is not None
            self.tally["accepted"] += 1
            if clock is not None and occurred.date() > clock.date():
                # The clock moves to a new day: the batch before this event closes.
                self._fold_and_evaluate(str(account_id), clock, hold_back=outcome.item_id)
            elif clock is not None and occurred.date() < clock.date():
                self.tally["late"] += 1
            clock = occurred if clock is None else max(clock, occurred)
        if clock is not None:
            self._fold_and_evaluate(str(account_id), clock)

    def _fold_and_evaluate(self, account_id: str, at: datetime, hold_back: str | None = None) -> None:
        """Fold the batch's ledger records (not the record of `hold_back`, which opens the next
        batch), as the aggregator's handler does; then evaluate the account at `at`."""
        records = self._held + self.ledger_stream.new_records()
        self._held = [record for record in records if _event_id(record) == hold_back]
        assert len(self._held) == (hold_back is not None)
        batch = [record for record in records if _event_id(record) != hold_back]
        assert process_stream_batch(stream_event(batch), self.counters) == {"batchItemFailures": []}
        self.evaluator.evaluate(account_id, at)
        self.tally["evaluations"] += 1

    def firings(self) -> list[Firing]:
        """Every firing in the firing ledger, as (account, trigger, evaluated at, score)."""
        found = []
        for item in self.aws.scan(self.aws.tables[FIRINGS_TABLE.env_var]):
            if item["sk"].startswith("firing#"):
                firing = json.loads(item["message"])["firing"]
                found.append(
                    (
                        firing["account_id"],
                        firing["trigger"],
                        firing["evaluated_at"],
                        firing["score"]["total"],
                    )
                )
        return sorted(found)

    def handed_off(self) -> int:
        """How many distinct firings reached the fired queue (checking none was sent twice)."""
        ids = [
            json.loads(message["Body"])["firing_id"]
            for message in self.aws.queue_messages(self.aws.fired_queue_url)
        ]
        assert len(ids) == len(set(ids))
        return len(ids)


def _occurred_at(raw: Any) -> datetime | None:
    """The event's time as the contract reads it (None when the event breaks the contract)."""
    checked = check_event(raw)
    return checked.occurred_at if isinstance(checked, UsageEvent) else None


def _event_id(record: dict[str, Any]) -> str:
    return str(record["dynamodb"]["NewImage"]["sk"]["S"])
