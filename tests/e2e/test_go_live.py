"""The go-live story of issue 15, end to end on the local stack (its own process, real HTTP).

A customer goes live with six months of history for a few accounts: seats in use climbing from half
the seat limit to 90 % of it. Posted as live events, the history would be judged batch by batch with
part of it loaded, and whatever fired first would count as contact and exclude the right play. With
`upswing import` the history is counted but not evaluated; going live evaluates each account once,
so the first play of every account is the CSM's seat-expansion play, and the ruleset's daily cap
keeps go-live from flooding: over it, a play waits for the next day.

The stack runs the reference ruleset with two go-live settings: pre-existing triggers fire at go-live
(`go_live.pre_existing: fire`, so the test need not wait days for a spread) and at most 3 new plays
of any one trigger a day (`budgets.plays_per_trigger_per_day: 3`) for 4 accounts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import RunningStack, running_stack

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ACCOUNTS = [f"acct-golive-{n}" for n in range(4)]
WEEKS = 26
SEAT_LIMIT = 100
CAP = 3


@pytest.fixture(scope="module")
def go_live_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    reference = (ROOT / "rules" / "reference.yaml").read_text()
    assert "  tasks_per_owner_per_day: 25\n" in reference
    rules = tmp_path_factory.mktemp("rules") / "go-live.yaml"
    rules.write_text(
        reference.replace(
            "  tasks_per_owner_per_day: 25\n",
            f"  tasks_per_owner_per_day: 25\n  plays_per_trigger_per_day: {CAP}\n",
        )
        + "\ngo_live:\n  pre_existing: fire\n"
    )
    with running_stack({"RULESET_PATH": str(rules)}) as running:
        yield running


def history(now: datetime) -> list[dict[str, Any]]:
    """Six months per account: a weekly seats reading climbing from 50 to 90 (the last 10 days ago)
    and a session every day."""
    events = []
    for account in ACCOUNTS:
        for week in range(WEEKS):
            when = now - timedelta(days=10 + 7 * (WEEKS - 1 - week))
            seats = 50 + round(40 * week / (WEEKS - 1))
            events.append(
                event(f"{account}-seats-{week}", account, "seats.active", when, seats, kind="gauge")
            )
        for day in range(7 * WEEKS):
            when = now - timedelta(days=7 * WEEKS - day, hours=3)
            events.append(event(f"{account}-session-{day}", account, "app.session", when, 1))
    return events


def event(
    event_id: str, account: str, name: str, when: datetime, value: float, **extra: Any
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "account_id": account,
        "name": name,
        "occurred_at": when.isoformat().replace("+00:00", "Z"),
        "value": value,
        "dimensions": {"user": "u-1"},
        **extra,
    }


def profile(account: str) -> dict[str, Any]:
    return {
        "name": account.title(),
        "segment": "mid-market",
        "plan": {"name": "Business", "tier": 2, "limits": {"seats": SEAT_LIMIT}},
        "owners": {
            "csm": {"name": "Casey CSM", "email": "casey@example.com", "hubspot_owner_id": "1001"},
            "ae": {"name": "Alex AE", "email": "alex@example.com", "hubspot_owner_id": "1002"},
        },
    }


def upswing_import(stack: RunningStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "upswing.cli", "import", *args, "--endpoint", stack.api],
        env={**os.environ, "UPSWING_API_KEY": stack.key},
        capture_output=True,
        text=True,
        timeout=600,
    )


def counted_events(api: httpx.Client, account: str, now: datetime) -> int:
    first = (now - timedelta(days=200)).date().isoformat()
    days = api.get(f"/v1/accounts/{account}/counters", params={"from": first}).json()["days"]
    return sum(metric["events"] for day in days for metric in day["metrics"].values())


def test_given_six_months_of_history_when_imported_and_gone_live_then_the_csm_play_comes_first_and_no_flood(
    go_live_stack: RunningStack, tmp_path: Path
) -> None:
    stack = go_live_stack
    now = datetime.now(UTC)
    events = history(now)
    files = tmp_path / "history.jsonl"
    files.write_text("".join(json.dumps(item) + "\n" for item in events))
    progress = str(tmp_path / "progress.json")
    with stack.client() as api:
        for account in ACCOUNTS:
            api.put(f"/v1/accounts/{account}", json=profile(account)).raise_for_status()

        # When the history is imported (not yet finished) and the stack has counted all of it
        imported = upswing_import(stack, str(files), "--progress-file", progress, "--no-finish")
        assert imported.returncode == 0, imported.stderr
        per_account = len(events) // len(ACCOUNTS)
        deadline = time.monotonic() + 120
        while any(counted_events(api, account, now) < per_account for account in ACCOUNTS):
            assert time.monotonic() < deadline, "the local stack did not count the imported history"
            time.sleep(0.5)
        time.sleep(2)  # the evaluator's pump had its chance at every counter write

        # Then every event counted once and nothing was evaluated per batch: no firing, no play
        assert f"{len(events):,} accepted" in imported.stdout
        assert "Not finished" in imported.stdout
        before = {account: api.get(f"/v1/accounts/{account}/signals").json() for account in ACCOUNTS}
        assert all(view["recent_firings"] == [] and view["recent_plays"] == [] for view in before.values())

        # When the import is finished (the same command, resumed: nothing is sent twice)
        finished = upswing_import(stack, str(files), "--progress-file", progress)
        assert finished.returncode == 0, finished.stderr
        assert "seat-expansion" in finished.stdout
        assert f"Accounts: {len(ACCOUNTS)} imported, {len(ACCOUNTS)} live" in finished.stdout
        plays = wait_for_plays(api, min_plays=1)
        firings = {
            account: api.get(f"/v1/accounts/{account}/signals").json()["recent_firings"]
            for account in ACCOUNTS
        }

    # Then each account's first (and only) play is the CSM's seat-expansion play, from a firing
    # marked pre-existing; the AE's sustained-seat-pressure did not fire ahead of it
    for account_plays in plays.values():
        (first,) = account_plays
        assert (first["trigger"], first["tier"]) == ("seat-expansion", 0), account_plays
        if first["status"] == "routed":
            assert first["owner"]["role"] == "csm"
    for account_firings in firings.values():
        (firing,) = account_firings
        assert firing["trigger"] == "seat-expansion"
        assert firing["go_live"]["pre_existing"] is True
    # ...and no flood: at most CAP of them go out today, the rest wait for tomorrow with the reason
    statuses = sorted(account_plays[0]["status"] for account_plays in plays.values())
    assert statuses.count("deferred") == len(ACCOUNTS) - CAP, plays
    deferred = [p[0] for p in plays.values() if p[0]["status"] == "deferred"]
    assert all(f"at most {CAP} plays of trigger seat-expansion per day" in p["reason"] for p in deferred)


def wait_for_plays(api: httpx.Client, min_plays: int, timeout: float = 60) -> dict[str, list[dict[str, Any]]]:
    deadline = time.monotonic() + timeout
    while True:
        plays = {
            account: api.get(f"/v1/accounts/{account}/signals").json()["recent_plays"] for account in ACCOUNTS
        }
        settled = all(p and p[0]["status"] in ("routed", "deferred") for p in plays.values())
        if (settled and all(len(p) >= min_plays for p in plays.values())) or time.monotonic() > deadline:
            return plays
        time.sleep(0.5)
