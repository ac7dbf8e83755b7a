"""The live trigger metrics' cost: DynamoDB units per counted transition and per outcome
(attribution), and GET /v1/triggers latency on the local stack with 10,000 plays.

1. Metered moto in-process (units from item sizes, bench/dynamo_meter.py; a transactional write
   costs twice a plain one per item): 100 firings routed (firing + routed counted in the accept
   transaction, with the account's and the owner's budget counters), 100 tasks first worked (the
   read-back's transaction), 100 expansion outcomes attributed (one per account with one firing in
   range), and the same 100 outcomes delivered again.
2. The local stack (moto server on loopback, the real API handler behind the local gateway): 10,000
   plays of the reference ruleset's 11 triggers over the last 90 days and two ruleset versions
   (the ledger's play items and cohort counters, written without transactions: moto copies its
   tables on every transaction; 10 % of them expanded), then GET /v1/triggers and
   GET /v1/triggers/seat-expansion, 40 times each: p50, p95.
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from bench.dynamo_meter import Meter
from bench.environment import BENCH_TABLES, fake_aws
from shared.resources import ACCOUNTS_TABLE, PLAYS_TABLE
from shared.timestamps import utc_stamp

TRANSITIONS = 100
PLAYS_ON_THE_STACK = 10_000
REQUESTS = 40


def run() -> dict[str, Any]:
    units = _units()
    latency = _latency()
    print("\nTrigger metrics")
    print(
        f"  per firing routed (play + 2 budgets + its cohort counter, one transaction): "
        f"{units['wcu_per_routed_firing']:.2f} WCU, {units['rcu_per_routed_firing']:.2f} RCU "
        f"(the counter's share: 2 WCU)"
    )
    print(
        f"  per task first worked (read the play, transaction of its facts + counter): "
        f"{units['wcu_per_task_worked']:.2f} WCU, {units['rcu_per_task_worked']:.2f} RCU"
    )
    print(
        f"  per expansion outcome attributed to one firing (query the account's plays, transaction of "
        f"`expanded` + counter): {units['wcu_per_outcome']:.2f} WCU, {units['rcu_per_outcome']:.2f} RCU; "
        f"delivered again: {units['wcu_per_redelivered_outcome']:.2f} WCU, "
        f"{units['rcu_per_redelivered_outcome']:.2f} RCU"
    )
    print(
        f"  GET /v1/triggers (11 triggers, {latency['plays']:,} plays, {latency['cohort_items']} cohort "
        f"items), local stack: p50 {latency['all_p50_ms']:.0f} ms, p95 {latency['all_p95_ms']:.0f} ms; "
        f"GET /v1/triggers/seat-expansion: p50 {latency['one_p50_ms']:.0f} ms, "
        f"p95 {latency['one_p95_ms']:.0f} ms"
    )
    return {"units": units, "latency": latency}


def _units() -> dict[str, float]:
    with fake_aws():
        from shared.accounts.models import AccountProfile, Writer
        from shared.accounts.store import AccountStore
        from shared.outcomes.attribution import Attributor, StoredOutcomeFacts
        from shared.outcomes.models import OutcomeKind
        from shared.routing.ledger import PlayLedger
        from shared.routing.models import TaskFacts, TaskStatus
        from shared.routing.router import Router, play_id
        from shared.rules.online import active_ruleset
        from shared.storage.dynamo import aws_client, dynamodb_client

        client = dynamodb_client()
        meter = Meter(count_updates=True)
        meter.attach(client, aws_client("dynamodb"))
        ledger = PlayLedger(client, BENCH_TABLES[PLAYS_TABLE.env_var], 400)
        accounts = AccountStore(aws_client("dynamodb"), BENCH_TABLES[ACCOUNTS_TABLE.env_var])
        ruleset, _ = active_ruleset("rules/reference.yaml")
        router = Router(
            ruleset=ruleset,
            accounts=AccountStore(client, BENCH_TABLES[ACCOUNTS_TABLE.env_var]),
            ledger=ledger,
            dispatcher=_NoQueues(),
            signal_holds=lambda *_: True,
        )
        now = datetime.now(UTC).replace(microsecond=0)
        messages = []
        for number in range(TRANSITIONS):
            account = f"bench-{number:03d}"
            owner = {
                "name": "CSM",
                "email": f"csm{number}@example.com",
                "hubspot_owner_id": str(9000 + number),
            }
            accounts.put(
                account,
                AccountProfile.model_validate({"name": account, "owners": {"csm": owner}}),
                Writer(producer_id="bench", key_id="bench"),
            )
            messages.append(_fired(account, "seat-expansion", ruleset.version, now - timedelta(days=2)))

        before = (meter.write_units, meter.read_units)
        for message in messages:
            router.route_firing(message, now - timedelta(days=2))
        routed = _per(meter, before)

        before = (meter.write_units, meter.read_units)
        for number, message in enumerate(messages):
            ledger.record_task_change(
                message.firing.account_id,
                play_id(message.firing_id, 0),
                TaskFacts(
                    task_id=str(number),
                    status=TaskStatus.COMPLETED,
                    modified_ms=1,
                    worked={"at": (now - timedelta(days=1)).isoformat(), "by": "9000"},
                ),
            )
        worked = _per(meter, before)

        attributor = Attributor(plays=ledger, horizon_days=90)
        outcomes = [
            StoredOutcomeFacts(
                account_id=message.firing.account_id,
                outcome_id=f"chg-{number}",
                kind=OutcomeKind.SEAT_EXPANSION,
                occurred_at=now - timedelta(hours=1),
                amount=Decimal("4800"),
                currency="USD",
            )
            for number, message in enumerate(messages)
        ]
        before = (meter.write_units, meter.read_units)
        for outcome in outcomes:
            attributor.attribute(outcome)
        attributed = _per(meter, before)
        before = (meter.write_units, meter.read_units)
        for outcome in outcomes:
            attributor.attribute(outcome)
        again = _per(meter, before)
    return {
        "wcu_per_routed_firing": routed[0],
        "rcu_per_routed_firing": routed[1],
        "wcu_per_task_worked": worked[0],
        "rcu_per_task_worked": worked[1],
        "wcu_per_outcome": attributed[0],
        "rcu_per_outcome": attributed[1],
        "wcu_per_redelivered_outcome": again[0],
        "rcu_per_redelivered_outcome": again[1],
    }


def _latency() -> dict[str, Any]:
    from shared.routing.ledger import PlayLedger
    from shared.routing.models import PlayRecord, PlayStatus
    from shared.routing.router import play_id
    from shared.rules.online import active_ruleset
    from shared.storage.dynamo import dynamodb_client
    from shared.trigger_metrics.counters import Cohort, Count, Tally
    from upswing.local.stack import QUIET_POWERTOOLS, LocalStack

    os.environ.update(QUIET_POWERTOOLS)
    ruleset, _ = active_ruleset("rules/reference.yaml")
    triggers = list(ruleset.triggers)
    now = datetime.now(UTC).replace(microsecond=0)
    with LocalStack(port=0) as stack:
        assert stack.resources
        ledger = PlayLedger(dynamodb_client(), stack.resources.tables[PLAYS_TABLE.env_var], 400)

        client = dynamodb_client()
        table = stack.resources.tables[PLAYS_TABLE.env_var]

        def seed(number: int) -> None:
            # A suppressed play (final: no pump picks it up) and what its transitions count, written
            # as the ledger writes them but without transactions: moto copies every table on each
            # transaction, which makes 10,000 of them quadratic. Same items, same cohorts.
            trigger = triggers[number % len(triggers)]
            fired_at = now - timedelta(days=number % 90, minutes=number % 600)
            version = "bench-2" if number % 3 else "bench-1"
            message = _fired(f"acct-{number:05d}", trigger, version, fired_at)
            record = PlayRecord(
                account_id=message.firing.account_id,
                play_id=play_id(message.firing_id, 0),
                firing_id=message.firing_id,
                tier=0,
                firing=message.firing.model_dump(mode="json"),
                status=PlayStatus.SUPPRESSED,
                updated_at=fired_at,
                reason="do not contact",
            )
            ledger.schedule(record)
            counts = {Count.FIRINGS: 1, Count.SUPPRESSED: 1}
            amount = None
            if number % 10 == 0:
                counts[Count.EXPANDED] = 1
                amount = ("USD", Decimal(1200))
            tally = Tally(Cohort.of(record.firing), counts, amount=amount)
            client.update_item(**tally.update(table, int((now + timedelta(days=400)).timestamp()))["Update"])

        started = time.monotonic()
        for number in range(PLAYS_ON_THE_STACK):  # one at a time: moto's server is not thread-safe
            seed(number)
        seeding = time.monotonic() - started
        stack.settle()
        api = httpx.Client(
            base_url=stack.endpoint, headers={"Authorization": f"Bearer {stack.producer_key}"}, timeout=60
        )
        all_times = _timed(api, "/v1/triggers")
        one_times = _timed(api, "/v1/triggers/seat-expansion")
        answer = api.get("/v1/triggers").json()
        cohort_items = len(
            {
                (entry["trigger"], version["ruleset_version"])
                for entry in answer["triggers"]
                for window in entry["windows"]
                for version in window["by_ruleset_version"]
            }
        )
    return {
        "plays": PLAYS_ON_THE_STACK,
        "seeding_s": round(seeding, 1),
        "cohort_items": cohort_items * 90,  # (trigger, version) pairs x the 90 firing days seeded
        "all_p50_ms": statistics.median(all_times),
        "all_p95_ms": _p95(all_times),
        "one_p50_ms": statistics.median(one_times),
        "one_p95_ms": _p95(one_times),
    }


def _timed(api: httpx.Client, path: str) -> list[float]:
    api.get(path).raise_for_status()  # warm: the handler's first call loads the ruleset
    times = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        api.get(path).raise_for_status()
        times.append((time.perf_counter() - started) * 1000)
    return times


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def _per(meter: Meter, before: tuple[float, float]) -> tuple[float, float]:
    return (meter.write_units - before[0]) / TRANSITIONS, (meter.read_units - before[1]) / TRANSITIONS


def _fired(account_id: str, trigger: str, version: str, at: datetime) -> Any:
    import hashlib

    from shared.routing.router import FiredMessage

    firing = {
        "ruleset_version": version,
        "trigger": trigger,
        "account_id": account_id,
        "evaluated_at": utc_stamp(at),
        "category": "commercial",
        "owner_role": "csm",
        "play": "seat-expansion",
        "score": {"total": 75, "base": 0, "parts": []},
        "condition": {
            "signal": "seat_pressure",
            "detail": "latest seats.active / plan limit seats = 0.92",
            "held": True,
            "observed": 0.92,
            "threshold": 0.9,
            "comparison": "at_least",
            "window": {"from": at.date().isoformat(), "to": at.date().isoformat()},
        },
        "exclusions_checked": [],
    }
    firing_id = hashlib.sha256(f"{account_id}|{trigger}|{version}|{at}".encode()).hexdigest()[:24]
    return FiredMessage.model_validate({"type": "trigger.fired", "firing_id": firing_id, "firing": firing})


class _NoQueues:
    def deliver(self, deliveries: list[Any]) -> None:
        pass

    def announce(self, record: Any) -> None:
        pass
