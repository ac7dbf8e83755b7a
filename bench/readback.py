"""The HubSpot read-back's cost: HubSpot requests per 1,000 open plays per poll, and DynamoDB units
per task status change (moto in-process, metered; HubSpot is the local sink on loopback).

1,000 plays each have an open task in the sink, registered as the sender registers them. After a
first poll has seen them all:
1. a poll in which nothing changed: its HubSpot requests (searches and the deletion sweep's batch
   reads, the sweep forced to read its whole slice) and DynamoDB units;
2. a poll after 100 of the tasks were completed in HubSpot: the extra requests and units over (1),
   per change.
The watermark's 2-minute overlap is left out of the measured polls (it re-reads the changes of the
last 2 minutes, one more search page per 200 of them, and writes nothing for them).

Deals (shared/readback/deals.py): 1,000 accounts whose profiles name a company, one deal each closed
won in the sink; a poll turns them into outcomes: its HubSpot requests (search pages, association
batch reads) and the DynamoDB units per outcome written (the company-index queries, the conditional
put, the watermark); then a poll that reads them all again (the overlap): what duplicates cost.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.dynamo_meter import Meter
from bench.environment import BENCH_TABLES, fake_aws
from shared.resources import DELIVERIES_TABLE, PLAYS_TABLE

OPEN_PLAYS = 1000
CLOSED_DEALS = 1000
COMPLETED = 100
SEARCH_LIMIT: dict[str, Any] = {"limit": 5, "window_seconds": 1.2}  # as the senders and the poller


def run() -> dict[str, Any]:
    with fake_aws(), tempfile.TemporaryDirectory() as scratch:
        from shared.delivery.hubspot import HubSpotClient, HubSpotSettings
        from shared.delivery.shared_pacer import SharedPacer
        from shared.readback.tasks import PollerStateStore, TaskEntry, TaskPoller, TaskRegistry
        from shared.routing.ledger import PlayLedger
        from shared.routing.models import PlayRecord, PlayStatus
        from shared.storage.dynamo import aws_client, dynamodb_client
        from upswing.local.hubspot_sink import HubSpotSink

        plays_table = BENCH_TABLES[PLAYS_TABLE.env_var]
        client = dynamodb_client()
        meter = Meter(count_updates=True)
        meter.attach(client, aws_client("dynamodb"))
        now = datetime.now(UTC)
        with HubSpotSink(Path(scratch) / "requests.jsonl", owners=["501"]) as sink:
            plays = PlayLedger(client, plays_table, 30)
            registry = TaskRegistry(client, plays_table, 30)
            http = httpx.Client(headers={"Authorization": "Bearer bench"})
            task_ids = []
            for number in range(OPEN_PLAYS):
                play_id = f"{number:024x}"
                plays.settle(_routed(PlayRecord, PlayStatus, play_id, now))
                due = "2026-12-01T17:00:00Z"
                properties = {"hs_timestamp": due, "hs_task_status": "NOT_STARTED", "hubspot_owner_id": "501"}
                task_id = http.post(
                    f"{sink.endpoint}/crm/v3/objects/tasks", json={"properties": properties}
                ).json()["id"]
                registry.register(TaskEntry(task_id, "bench", play_id, owner_id="501", due=due), now)
                plays.record_task_created("bench", play_id, task_id, "501", due, now)
                task_ids.append(task_id)
            hubspot = HubSpotClient(
                HubSpotSettings(base_url=sink.endpoint),
                token=lambda: "bench",
                search_pacer=SharedPacer(
                    client,
                    BENCH_TABLES[DELIVERIES_TABLE.env_var],
                    "hubspot-search#bench",
                    limit=5,
                    window_seconds=1.2,
                ),
            )
            poller = TaskPoller(
                client=hubspot,
                registry=registry,
                plays=plays,
                state=PollerStateStore(client, plays_table),
                unseen_after=timedelta(0),  # the sweep reads its whole slice: the worst case
            )
            poller.poll(time.monotonic() + 600, lambda: True)  # sees every task once
            poller.overlap = timedelta(0)
            quiet = _measure(poller, sink, meter)
            for task_id in task_ids[:COMPLETED]:
                sink.complete(task_id)
            busy = _measure(poller, sink, meter)
    per_change_wcu = (busy["wcu"] - quiet["wcu"]) / COMPLETED
    per_change_rcu = (busy["rcu"] - quiet["rcu"]) / COMPLETED
    print("\nHubSpot read-back (1,000 open plays, local sink, metered moto)")
    print(
        f"  a poll with no change: {quiet['requests']} HubSpot requests ({quiet['searches']} search, "
        f"{quiet['reads']} batch read of the sweep's 100), {quiet['wcu']:.0f} WCU, {quiet['rcu']:.1f} RCU; "
        f"a full deletion sweep takes {OPEN_PLAYS // 100} polls"
    )
    print(
        f"  after {COMPLETED} tasks were completed: {busy['requests']} HubSpot requests "
        f"({busy['searches']} searches); per task status change {per_change_wcu:.2f} WCU + "
        f"{per_change_rcu:.2f} RCU (the play's facts and the registry entry)"
    )
    return {
        "quiet_poll": quiet,
        "poll_after_completions": busy,
        "wcu_per_status_change": per_change_wcu,
        "rcu_per_status_change": per_change_rcu,
        "deals": run_deals(),
    }


def run_deals() -> dict[str, Any]:
    with fake_aws(), tempfile.TemporaryDirectory() as scratch:
        from shared.accounts.models import AccountProfile, Writer
        from shared.accounts.store import AccountStore
        from shared.delivery.hubspot import HubSpotClient, HubSpotSettings
        from shared.delivery.shared_pacer import SharedPacer
        from shared.outcomes.intake import outcome_intake_for
        from shared.readback.deals import DealPoller
        from shared.readback.watermark import DEALS_STATE_KEY, PollerStateStore
        from shared.resources import ACCOUNTS_TABLE, OUTCOMES_TABLE
        from shared.storage.dynamo import aws_client, dynamodb_client
        from upswing.local.hubspot_sink import HubSpotSink

        client = dynamodb_client()
        accounts = AccountStore(client, BENCH_TABLES[ACCOUNTS_TABLE.env_var])
        writer = Writer(producer_id="bench", key_id="bench")
        with HubSpotSink(Path(scratch) / "requests.jsonl") as sink:
            for number in range(CLOSED_DEALS):
                company = str(100_000 + number)
                accounts.put(
                    f"acct-{number}",
                    AccountProfile(name=f"a{number}", hubspot={"company_id": company}),
                    writer,
                )
                deal = sink.create_deal({"dealname": "Upgrade", "dealstage": "contractsent"}, [company])
                sink.close_deal(deal["id"], 1200 + number)
            meter = Meter(count_updates=True)
            meter.attach(client, aws_client("dynamodb"))
            poller = DealPoller(
                client=HubSpotClient(
                    HubSpotSettings(base_url=sink.endpoint),
                    token=lambda: "bench",
                    search_pacer=SharedPacer(
                        client, BENCH_TABLES[DELIVERIES_TABLE.env_var], "hubspot-search#bench", **SEARCH_LIMIT
                    ),
                ),
                accounts=accounts,
                outcomes=outcome_intake_for(client, BENCH_TABLES[OUTCOMES_TABLE.env_var], 400),
                state=PollerStateStore(client, BENCH_TABLES[PLAYS_TABLE.env_var], DEALS_STATE_KEY),
            )
            first = _measure_deals(poller, sink, meter)
            again = _measure_deals(poller, sink, meter)
    print(f"\nHubSpot deal read-back ({CLOSED_DEALS:,} deals closed won, local sink, metered moto)")
    for label, figures, count in (
        ("first poll", first, first["written"]),
        ("read again (overlap)", again, again["duplicates"]),
    ):
        print(
            f"  {label}: {figures['requests']} HubSpot requests ({figures['searches']} search pages, "
            f"{figures['associations']} association batch reads) for {count:,} deals; "
            f"per deal {figures['wcu'] / count:.2f} WCU + {figures['rcu'] / count:.2f} RCU "
            f"(written {figures['written']}, duplicates {figures['duplicates']})"
        )
    return {"first_poll": first, "read_again": again}


def _measure_deals(poller: Any, sink: Any, meter: Meter) -> dict[str, Any]:
    before = (len(sink.requests()), meter.write_units, meter.read_units)
    report = poller.poll(time.monotonic() + 600, lambda: True)
    requests = sink.requests()[before[0] :]
    return {
        "requests": len(requests),
        "searches": sum(r["path"].endswith("/search") for r in requests),
        "associations": sum("/associations/" in r["path"] for r in requests),
        "wcu": meter.write_units - before[1],
        "rcu": meter.read_units - before[2],
        "written": report.written,
        "duplicates": report.duplicates,
    }


def _measure(poller: Any, sink: Any, meter: Meter) -> dict[str, Any]:
    before = (len(sink.requests()), meter.write_units, meter.read_units)
    report = poller.poll(time.monotonic() + 600, lambda: True)
    requests = sink.requests()[before[0] :]
    return {
        "requests": len(requests),
        "searches": sum(r["path"].endswith("/search") for r in requests),
        "reads": sum("/batch/read" in r["path"] for r in requests),
        "wcu": meter.write_units - before[1],
        "rcu": meter.read_units - before[2],
        "worked": report.worked,
    }


def _routed(record: Any, status: Any, play_id: str, now: datetime) -> Any:
    return record(
        account_id="bench",
        play_id=play_id,
        firing_id="f" * 24,
        tier=0,
        firing={
            "trigger": "seats",
            "play": "seat-expansion",
            "ruleset_version": "bench",
            "evaluated_at": now.isoformat(),
        },
        status=status.ROUTED,
        updated_at=now,
    )
