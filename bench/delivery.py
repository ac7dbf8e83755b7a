"""Plays end to end on the local stack, and the HubSpot sender's throughput under its pacing.

1. Latency: 200 accounts, each with its own CSM and HubSpot company, each get one event that
   saturates their seats, posted at a steady 2 per second. For each, the time from the POST to the
   local HubSpot sink receiving the task: API → ledger → aggregator → counters → evaluator →
   fired queue → router → HubSpot queue → sender → sink. Target: p95 ≤ 3 s.
2. Throughput: 300 deliveries put on the HubSpot queue at once; the sender drains them through
   the sink at the default pacing (100 requests / 10 s). Reported: tasks per second and the most
   requests the sink saw in any 10 s window (must stay ≤ 100).

Everything runs on 127.0.0.1 in this process (the local stack), so the latency is this machine's
CPU time through every handler, with the local pumps' 50 ms polling in between.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from shared.resources import HUBSPOT_QUEUE
from shared.routing.messages import PlayDelivery
from shared.storage.dynamo import aws_client
from shared.timestamps import utc_stamp
from upswing.local.stack import QUIET_POWERTOOLS, LocalStack

FIRINGS = 200
POSTS_PER_SECOND = 2.0
THROUGHPUT_DELIVERIES = 300
TARGET_P95_SECONDS = 3.0


def run() -> dict[str, Any]:
    os.environ.update(QUIET_POWERTOOLS)  # the handlers' logs and metrics would drown the numbers
    with LocalStack(port=0) as stack:
        latency = _latency(stack)
        throughput = _throughput(stack)
    print("\nPlays end to end (local stack)")
    print(
        f"  POST → HubSpot sink: p50 {latency['p50_s']:.2f} s, p95 {latency['p95_s']:.2f} s, "
        f"max {latency['max_s']:.2f} s over {latency['firings']} firings "
        f"(target p95 ≤ {TARGET_P95_SECONDS:g} s; {latency['missing']} missing)"
    )
    print(
        f"  HubSpot sender: {throughput['tasks']} tasks in {throughput['seconds']:.1f} s = "
        f"{throughput['tasks_per_second']:.1f}/s; busiest 10 s window {throughput['busiest_10s']} requests "
        f"(limit 100)"
    )
    return {"latency": latency, "throughput": throughput}


def _latency(stack: LocalStack) -> dict[str, Any]:
    assert stack.hubspot_sink
    api = httpx.Client(base_url=stack.endpoint, headers={"Authorization": f"Bearer {stack.producer_key}"})
    companies = {f"bench-{n:04d}": str(700_000 + n) for n in range(FIRINGS)}
    for number, (account_id, company) in enumerate(companies.items()):
        profile = {
            "name": f"Bench {number}",
            "segment": "mid-market",
            "plan": {"name": "Team", "limits": {"seats": 50}},
            "owners": {
                "csm": {
                    "name": f"CSM {number}",
                    "email": f"csm-{number}@example.com",
                    "hubspot_owner_id": str(800_000 + number),
                }
            },
            "hubspot": {"company_id": company},
        }
        api.put(f"/v1/accounts/{account_id}", json=profile).raise_for_status()
        stack.register_in_hubspot([profile])

    posted: dict[str, float] = {}
    now = utc_stamp(datetime.now(UTC).replace(microsecond=0))

    def post_all() -> None:
        for account_id in companies:
            event = {
                "event_id": f"{account_id}-seats",
                "account_id": account_id,
                "name": "seats.active",
                "kind": "gauge",
                "value": 48,
                "occurred_at": now,
            }
            posted[account_id] = time.time()
            api.post("/v1/events", json={"events": [event]}).raise_for_status()
            time.sleep(1 / POSTS_PER_SECOND)

    poster = threading.Thread(target=post_all)
    poster.start()
    poster.join()
    deadline = time.monotonic() + 60
    while len(_tasks_by_company(stack)) < FIRINGS and time.monotonic() < deadline:
        time.sleep(0.1)
    api.close()

    received = _tasks_by_company(stack)
    latencies = sorted(
        received[company] - posted[account_id]
        for account_id, company in companies.items()
        if company in received
    )
    return {
        "firings": len(latencies),
        "missing": FIRINGS - len(latencies),
        "p50_s": statistics.median(latencies),
        "p95_s": latencies[int(0.95 * (len(latencies) - 1))],
        "max_s": latencies[-1],
        "posts_per_second": POSTS_PER_SECOND,
    }


def _tasks_by_company(stack: LocalStack) -> dict[str, float]:
    """Company id → when the sink received its task (the first creation request)."""
    assert stack.hubspot_sink
    found: dict[str, float] = {}
    for request in stack.hubspot_sink.requests():
        if (
            request["method"] != "POST"
            or request["path"] != "/crm/v3/objects/tasks"
            or request["status"] != 201
        ):
            continue
        for association in request["body"].get("associations", []):
            found.setdefault(association["to"]["id"], _epoch(request["time"]))
    return found


def _throughput(stack: LocalStack) -> dict[str, Any]:
    assert stack.resources
    assert stack.hubspot_sink
    sqs = aws_client("sqs")
    queue = stack.resources.queues[HUBSPOT_QUEUE.env_var]
    already = len(stack.hubspot_sink.requests())
    stack.hubspot_sink.register(
        owners=["900"], companies=[str(900_000 + n) for n in range(THROUGHPUT_DELIVERIES)]
    )
    started = time.time()
    for start in range(0, THROUGHPUT_DELIVERIES, 10):
        entries = [
            {"Id": str(n), "MessageBody": _delivery(start + n).model_dump_json()}
            for n in range(min(10, THROUGHPUT_DELIVERIES - start))
        ]
        sqs.send_message_batch(QueueUrl=queue, Entries=entries)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        created = [r for r in stack.hubspot_sink.requests()[already:] if r["status"] == 201]
        if len(created) >= THROUGHPUT_DELIVERIES:
            break
        time.sleep(0.2)
    times = sorted(_epoch(r["time"]) for r in stack.hubspot_sink.requests())
    busiest = max(
        (sum(1 for other in times[index:] if other - moment < 10.0) for index, moment in enumerate(times)),
        default=0,
    )
    seconds = max(_epoch(created[-1]["time"]) - started, 1e-9)
    return {
        "tasks": len(created),
        "seconds": seconds,
        "tasks_per_second": len(created) / seconds,
        "busiest_10s": busiest,
    }


def _delivery(number: int) -> PlayDelivery:
    return PlayDelivery.model_validate(
        {
            "play_id": f"{number:024x}",
            "channel": "hubspot_task",
            "firing_id": f"{number:024x}",
            "account_id": f"throughput-{number}",
            "account_name": f"Throughput {number}",
            "trigger": "seat-expansion",
            "play": "seat-expansion",
            "tier": 0,
            "ruleset_version": "bench",
            "subject": f"Seat expansion: Throughput {number}",
            "body": "Current state: 48 of 50 seats.",
            "due": "2026-11-27",
            "priority": "HIGH",
            "owner": {"role": "csm", "hubspot_owner_id": "900"},
            "hubspot": {"company_id": str(900_000 + number)},
            "routed_at": datetime.now(UTC).isoformat(),
        }
    )


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
