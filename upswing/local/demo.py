"""The demo scenario: a few accounts use the product for two weeks; we send it and read it back."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from shared.resources import REJECTS_QUEUE, USAGE_EVENT_DETAIL_TYPE
from shared.routing.models import PlayRecord, PlayStatus
from shared.storage.dynamo import aws_client
from shared.timestamps import utc_stamp
from upswing.local.stack import LocalStack

DEMO_DAYS = 14
ACCOUNTS: dict[str, dict[str, Any]] = {
    "acme": {
        "name": "Acme Corp",
        "segment": "enterprise",
        "plan": {"name": "Business", "tier": 2, "limits": {"seats": 200, "api.calls": 2_000_000}},
        "arr": 120000,
        "renewal_date": "2027-03-31",
        "owners": {"csm": {"name": "Dana CSM", "email": "dana@example.com", "hubspot_owner_id": "1001"}},
        "hubspot": {"company_id": "5001"},
    },
    "globex": {
        "name": "Globex",
        "segment": "mid-market",
        "plan": {"name": "Team", "tier": 1, "limits": {"seats": 50, "api.calls": 250_000}},
        "arr": 24000,
        "owners": {"csm": {"name": "Lee CSM", "email": "lee@example.com", "hubspot_owner_id": "1002"}},
        "hubspot": {"company_id": "5002"},
    },
    # No CSM: its plays go to the smb desk (the fallback pool in rules/reference.yaml).
    "umbrella": {
        "name": "Umbrella Labs",
        "segment": "smb",
        "plan": {"name": "Starter", "tier": 0, "limits": {"seats": 10, "api.calls": 20_000}},
        "arr": 4800,
        "hubspot": {"company_id": "5004"},
    },
    "initech": {
        "name": "Initech",
        "segment": "smb",
        "plan": {"name": "Starter", "tier": 0, "limits": {"seats": 10, "api.calls": 20_000}},
        "arr": 3000,
        "hubspot": {"company_id": "5003"},
    },
}
# (teams, users, seats at start, daily seat growth, api calls per day) — acme and globex grow.
PROFILES = {
    "acme": (6, 60, 150, 3, 90_000),
    "globex": (4, 30, 38, 1, 14_000),
    "umbrella": (1, 8, 8, 0, 900),
    "initech": (1, 4, 5, 0, 300),
}


def run_demo(stack: LocalStack, out: Any) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    api = httpx.Client(
        base_url=stack.endpoint, headers={"Authorization": f"Bearer {stack.producer_key}"}, timeout=30
    )
    with api:
        for account_id, profile in ACCOUNTS.items():
            api.put(f"/v1/accounts/{account_id}", json=profile).raise_for_status()
        stack.register_in_hubspot(ACCOUNTS.values())  # the local sink, like HubSpot, knows only these
        events = list(demo_events(now))
        https_events, bus_events = events[:-40], events[-40:]
        print(f"Posting {len(https_events)} events over HTTPS in batches of 500 …", file=out)
        totals = {"accepted": 0, "duplicates": 0, "rejected": 0}
        for start in range(0, len(https_events), 500):
            _add(totals, _post(api, https_events[start : start + 500]))
        print(f"  {_summary(totals)}", file=out)

        print("Sending the first batch again (a producer retry) …", file=out)
        print(f"  {_summary(_add({}, _post(api, https_events[:500])))}", file=out)

        bad = [
            {**https_events[0], "event_id": "bad-1", "value": "12"},
            {**https_events[0], "event_id": "bad-2", "occurred_at": "2026-13-01T00:00:00Z"},
            {**https_events[0], "event_id": "bad-3", "colour": "blue"},
        ]
        answer = _post(api, bad)
        print("Posting 3 malformed events:", file=out)
        for rejection in answer["rejected"]:
            print(f"  rejected {rejection['event_id']}: {'; '.join(rejection['errors'])}", file=out)

        print(f"Putting {len(bus_events)} events on the EventBridge bus (twice: a redelivery) …", file=out)
        for _ in range(2):
            _put_on_bus(stack, bus_events)
        _put_on_bus(stack, [{**bus_events[0], "event_id": "bad-bus-1", "occurred_at": "yesterday"}])
        stack.settle()
        for reject in _rejects(stack):
            rejected = reject["event"]
            event_id = rejected.get("event_id") if isinstance(rejected, dict) else "(not an event)"
            print(
                f"  rejects queue: {event_id} from {reject['source']}: {'; '.join(reject['errors'])}",
                file=out,
            )

        print(f"\nCounters per account, last {DEMO_DAYS} days (UTC, by event time):", file=out)
        report: dict[str, Any] = {}
        for account_id in ACCOUNTS:
            counters = api.get(
                f"/v1/accounts/{account_id}/counters", params={"from": _day(now, DEMO_DAYS - 1)}
            )
            counters.raise_for_status()
            report[account_id] = summarize_counters(counters.json()["days"])
            print(render_account(account_id, report[account_id]), file=out)

        print("\nFirings, with their evidence (the rules in rules/reference.yaml):", file=out)
        for account_id in ACCOUNTS:
            signals = api.get(f"/v1/accounts/{account_id}/signals")
            signals.raise_for_status()
            firings = signals.json()["recent_firings"]
            report[account_id]["firings"] = firings
            print(
                f"  {account_id}: {len(firings) or 'no'} firing{'s' if len(firings) != 1 else ''}", file=out
            )
            for firing in reversed(firings):
                print(render_firing(firing), file=out)

        stack.settle()
        print("\nPlays routed (owner, channels, due date; the budgets in rules/reference.yaml):", file=out)
        for account_id in ACCOUNTS:
            plays = sorted(stack.plays(account_id), key=lambda play: (play.tier, play.updated_at, play.play))
            report[account_id]["plays"] = [play.status.value for play in plays]
            for play in plays:
                print(render_play(play), file=out)
        print(render_deliveries(stack), file=out)
        worked = complete_one_task(stack, out)
        if worked:
            report[worked.account_id]["worked"] = worked.play_id
        expanded = close_one_deal(stack, out)
        if expanded:
            report[expanded.account_id]["expanded"] = expanded.play_id
        report["_triggers"] = show_trigger_table(api, out)
    return report


DEMO_DEAL_AMOUNT = 24_000


def close_one_deal(stack: LocalStack, out: Any) -> PlayRecord | None:
    """A salesperson closes an expansion deal on the company of an account that got a play: the
    read-back turns it into an outcome (`source: hubspot`), the attributor marks the play's firing
    `expanded`, and the trigger's counters count it."""
    sink = stack.hubspot_sink
    if not sink:
        return None
    for account_id in ACCOUNTS:
        plays = [
            play for play in stack.plays(account_id) if play.tier == 0 and play.status is PlayStatus.ROUTED
        ]
        if plays:
            break
    else:
        return None
    company = ACCOUNTS[account_id]["hubspot"]["company_id"]
    deal = sink.create_deal(
        {
            "dealname": f"{ACCOUNTS[account_id]['name']}: more seats",
            "dealtype": "existingbusiness",
            "deal_currency_code": "USD",
            "pipeline": "default",
        },
        companies=[company],
    )
    sink.close_deal(deal["id"], amount=DEMO_DEAL_AMOUNT)
    polled = stack.poll_hubspot().get("deals", {})
    stack.settle()
    attributed = [play for play in stack.plays(account_id) if play.tier == 0 and play.expanded]
    if not attributed:
        print(f"\nHubSpot deal {deal['id']} closed-won, but no play was marked expanded: {polled}", file=out)
        return None
    grew = attributed[0].expanded or {}
    triggers = ", ".join(sorted({play.trigger for play in attributed}))
    print(
        f"\nHubSpot deal {deal['id']} closed-won on company {company} ({DEMO_DEAL_AMOUNT:,} USD) →\n"
        f"  outcome {grew.get('outcome_id')} ({grew.get('kind')}) for {account_id}, attributed to "
        f"{len(attributed)} firing(s) within the horizon: {triggers} "
        "(GET /v1/accounts/{id}/signals: fate = expanded)",
        file=out,
    )
    return attributed[0]


def show_trigger_table(api: httpx.Client, out: Any) -> list[dict[str, Any]]:
    """GET /v1/triggers as RevOps reads it: the last 30 firing days per trigger."""
    answer = api.get("/v1/triggers")
    answer.raise_for_status()
    rows = []
    for report in answer.json()["triggers"]:
        window = next(window for window in report["windows"] if window["days"] == 30)
        rows.append({"trigger": report["trigger"], **window})
    print("\nTriggers, last 30 firing days (GET /v1/triggers):", file=out)
    print(
        f"  {'trigger':<26} {'fired':>5} {'routed':>6} {'deferred':>8} {'worked':>6} {'expanded':>8}  amount",
        file=out,
    )
    for row in rows:
        if not row["firings"]:
            continue
        amount = ", ".join(f"{value} {currency}" for currency, value in row["expansion_amount"].items())
        print(
            f"  {row['trigger']:<26} {row['firings']:>5} {row['routed']:>6} {row['deferred']:>8} "
            f"{row['tasks_worked']:>6} {row['accounts_expanded']:>8}  {amount or '-'}",
            file=out,
        )
    quiet = [row["trigger"] for row in rows if not row["firings"]]
    if quiet:
        print(f"  (no firings: {', '.join(quiet)})", file=out)
    return rows


def complete_one_task(stack: LocalStack, out: Any) -> PlayRecord | None:
    """The CSM completes the first task in HubSpot (the sink); the read-back poller records it on the
    play, which GET .../signals then shows as worked (and its escalation tiers stop)."""
    sink = stack.hubspot_sink
    if not sink or not sink.tasks():
        return None
    task = sink.tasks()[0]
    sink.complete(task["id"])
    polled = stack.poll_hubspot()
    for account_id in ACCOUNTS:
        for play in stack.plays(account_id):
            if play.task and play.task.task_id == task["id"] and play.task.worked:
                worked = play.task.worked
                print(
                    f"\nHubSpot read-back ({polled.get('pages', 0)} search page(s), "
                    f"{polled.get('worked', 0)} task(s) worked): task {task['id']} completed in HubSpot →\n"
                    f"  {account_id}: {play.play} is worked, at {worked['at']} by owner {worked['by']} "
                    "(GET /v1/accounts/{id}/signals: hubspot_task.state = worked)",
                    file=out,
                )
                return play
    print(f"\nHubSpot read-back: task {task['id']} completed, but no play recorded it: {polled}", file=out)
    return None


def render_play(play: PlayRecord) -> str:
    tier = f" (escalation {play.tier})" if play.tier else ""
    head = f"  {play.account_id}: {play.play}{tier} ← {play.trigger}"
    if play.status is not PlayStatus.ROUTED:
        when = f" until {play.due_at:%Y-%m-%d %H:%M} UTC" if play.due_at else ""
        reason = play.reason or ("if the signal still holds then" if play.tier else "")
        return f"{head}\n      {play.status.value}{when}: {reason}"
    owner = play.owner
    who = "unassigned"
    if owner:
        pool = ", from the pool" if owner.from_pool else ""
        who = f"{owner.name or owner.hubspot_owner_id} ({owner.role}{pool})"
    lines = [f"{head} → {who}"]
    for delivery in play.deliveries:
        lines.append(
            f"      {delivery.channel.value}: due {delivery.due}, {delivery.priority} · {delivery.subject}"
        )
    lines += [f"      {channel} skipped: {reason}" for channel, reason in play.skipped.items()]
    return "\n".join(lines)


def render_deliveries(stack: LocalStack) -> str:
    emails = stack.sent_emails()
    lines = []
    if stack.hubspot_sink:
        sink = stack.hubspot_sink
        tasks = sink.tasks()
        lines.append(
            f"\nHubSpot (local sink {sink.endpoint}): {len(tasks)} tasks created; every request "
            f"is in {sink.log_path} and at {sink.endpoint}/__sink/requests"
        )
        for task in tasks:
            properties = task["properties"]
            lines.append(
                f"  task {task['id']}: owner {properties.get('hubspot_owner_id', '-')}, "
                f"{properties['hs_task_priority']}, due {properties['hs_timestamp'][:10]} · "
                f"{properties['hs_task_subject']}"
            )
    else:
        lines.append(f"\nHubSpot: tasks sent to {stack.hubspot_url}")
    lines.append(f"Emails (emulated SES): {len(emails)} sent")
    lines += [f"  to {', '.join(email['to'])}: {email['subject']}" for email in emails]
    if stack.slack_sink:
        messages = stack.slack_sink.messages()
        lines.append(f"Slack (local sink {stack.slack_sink.endpoint}): {len(messages)} messages")
        lines += [f"  to {message['channel']}: {message['text']}" for message in messages]
    return "\n".join(lines)


def render_firing(firing: dict[str, Any]) -> str:
    condition = firing["condition"]
    lines = [
        f"    {firing['trigger']} → {firing['owner_role']}, play {firing['play']} "
        f"({firing['category']}, score {firing['score']['total']:.0f})",
        f"      {condition['detail']} ({condition['comparison']} {condition['threshold']:g}, "
        f"{condition['window']['from']}..{condition['window']['to']})",
    ]
    lines += [
        f"      · {member['signal']}: {member['detail']}"
        for member in condition.get("members", [])
        if member["held"]
    ]
    checked = ", ".join(check["exclusion"] for check in firing["exclusions_checked"])
    if checked:
        lines.append(f"      checked, not applying: {checked}")
    return "\n".join(lines)


def demo_events(now: datetime) -> Iterator[dict[str, Any]]:
    """Two weeks of plausible usage, the same every run for the same `now`."""
    rng = random.Random(42)  # noqa: S311 - reproducible demo data, not a secret
    for account_id, (teams, users, seats, growth, api_calls) in PROFILES.items():
        for days_ago in range(DEMO_DAYS - 1, -1, -1):
            day = now - timedelta(days=days_ago)
            moment = min(day.replace(hour=9, minute=0, second=0), now)  # never in the future
            stamp = utc_stamp(moment)
            yield _event(
                account_id,
                f"seats-{days_ago}",
                "seats.active",
                stamp,
                seats + growth * (DEMO_DAYS - days_ago),
                "gauge",
            )
            yield _event(account_id, f"api-{days_ago}", "api.calls", stamp, api_calls)
            for use in range(users // 2):
                user = rng.randrange(users)
                dims = {"team": f"t-{user % teams}", "user": f"u-{user}"}
                yield _event(
                    account_id, f"an-{days_ago}-{use}", "feature.analytics.used", stamp, 1, dims=dims
                )
            if rng.random() < 0.3:
                yield _event(account_id, f"dash-{days_ago}", "dashboard.created", stamp, rng.randint(1, 3))
            if rng.random() < 0.2:
                yield _event(
                    account_id, f"tix-{days_ago}", "ticket.created", stamp, 1, dims={"tag": "integration"}
                )


def summarize_counters(days: list[dict[str, Any]]) -> dict[str, Any]:
    """Fold the daily view into per-metric totals (counts) and the latest level (gauges)."""
    summary: dict[str, Any] = {}
    for day in days:
        for name, metric in day["metrics"].items():
            entry = summary.setdefault(name, {"kind": metric["kind"], "total": 0, "events": 0, "days": 0})
            entry["total"] += metric["total"]
            entry["events"] += metric["events"]
            entry["days"] += 1
            if metric["kind"] == "gauge":
                entry["latest"] = metric["last"]
            for dimension, count in metric.get("distinct", {}).items():
                entry.setdefault("max_daily_distinct", {})
                entry["max_daily_distinct"][dimension] = max(
                    entry["max_daily_distinct"].get(dimension, 0), count
                )
    return summary


def render_account(account_id: str, summary: dict[str, Any]) -> str:
    lines = [f"  {account_id} ({ACCOUNTS[account_id]['segment']})"]
    for name, entry in sorted(summary.items()):
        if entry["kind"] == "gauge":
            shown = f"latest {_number(entry['latest'])}"
        else:
            shown = f"total {_number(entry['total'])} over {entry['events']} events"
        distinct = entry.get("max_daily_distinct")
        if distinct:
            shown += " · busiest day: " + ", ".join(
                f"{count} distinct {dim}" for dim, count in distinct.items()
            )
        lines.append(f"    {name:<24} {shown}")
    return "\n".join(lines)


def _event(
    account_id: str,
    suffix: str,
    name: str,
    stamp: str,
    value: float,
    kind: str = "count",
    dims: dict[str, str] | None = None,
) -> dict[str, Any]:
    event = {
        "event_id": f"{account_id}-{suffix}",
        "account_id": account_id,
        "name": name,
        "occurred_at": stamp,
        "value": value,
        "kind": kind,
    }
    if dims:
        event["dimensions"] = dims
    return event


def _post(api: httpx.Client, events: list[dict[str, Any]]) -> dict[str, Any]:
    answer = api.post("/v1/events", json={"events": events})
    answer.raise_for_status()
    return answer.json()


def _put_on_bus(stack: LocalStack, events: list[dict[str, Any]]) -> None:
    assert stack.resources
    bus = aws_client("events")
    for start in range(0, len(events), 10):
        entries = [
            {
                "Source": "demo.billing",
                "DetailType": USAGE_EVENT_DETAIL_TYPE,
                "Detail": json.dumps(event),
                "EventBusName": stack.resources.bus_name,
            }
            for event in events[start : start + 10]
        ]
        bus.put_events(Entries=entries)


def _rejects(stack: LocalStack) -> list[dict[str, Any]]:
    assert stack.resources
    queue_url = stack.resources.queues[REJECTS_QUEUE.env_var]
    messages = (
        aws_client("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    )
    return [json.loads(message["Body"]) for message in messages]


def _add(totals: dict[str, int], answer: dict[str, Any]) -> dict[str, int]:
    for key in ("accepted", "duplicates"):
        totals[key] = totals.get(key, 0) + answer[key]
    totals["rejected"] = totals.get("rejected", 0) + len(answer["rejected"])
    return totals


def _summary(totals: dict[str, int]) -> str:
    return f"accepted {totals['accepted']}, duplicates {totals['duplicates']}, rejected {totals['rejected']}"


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _day(now: datetime, days_ago: int) -> str:
    return (now - timedelta(days=days_ago)).date().isoformat()
