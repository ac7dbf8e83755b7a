"""`upswing local` (what `make demo` runs) tells the whole story: events → counters → firings →
plays → HubSpot tasks on the local sink and emails on the emulated SES."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from upswing.local.stack import SINK_LOG

pytestmark = pytest.mark.e2e
REPO_ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_routes_plays_to_hubspot_tasks_and_emails(tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}
    environment["PYTHONPATH"] = str(REPO_ROOT)
    # Run where the sink's JSONL can be read afterwards, away from the work tree.
    done = subprocess.run(
        [sys.executable, "-m", "upswing.cli", "local", "--port", "0"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout

    assert done.returncode == 0, done.stderr[-3000:]
    assert "Plays routed" in output
    # The account without a CSM is served by the smb desk pool, on both channels
    assert "umbrella: seat-expansion ← seat-expansion → SMB desk (Ana) (csm, from the pool)" in output
    assert "to smb-desk-ana@example.com: Seat expansion: Umbrella Labs is running out of seats" in output
    # The demo ends with a CSM completing a task in HubSpot and the read-back recording it
    assert "HubSpot read-back (" in output
    assert " is worked, at " in output
    # ... then a deal closing in HubSpot: an outcome attributed to the account's firings ...
    assert "closed-won on company" in output
    assert "(GET /v1/accounts/{id}/signals: fate = expanded)" in output
    # ... and the trigger table RevOps reads, with the worked task and the expansion counted.
    assert "Triggers, last 30 firing days (GET /v1/triggers):" in output
    table = output.split("Triggers, last 30 firing days (GET /v1/triggers):")[1].splitlines()[2:]
    rows = [line.split() for line in table if line.startswith("  ") and not line.startswith("  (")]
    assert sum(int(row[4]) for row in rows) >= 1  # tasks worked
    assert sum(int(row[5]) for row in rows) >= 1  # accounts expanded
    assert any("24000.00 USD" in line for line in table)
    # (Which of the other accounts' triggers fire first depends on how the stream batches their
    # events, and the first firing excludes the rest for 14 days: not asserted here.)

    requests = [json.loads(line) for line in (tmp_path / SINK_LOG).read_text().splitlines()]
    creations = [r for r in requests if r["method"] == "POST" and r["path"] == "/crm/v3/objects/tasks"]
    umbrella = [c for c in creations if c["body"]["associations"][0]["to"]["id"] == "5004"]
    assert len(umbrella) == 1  # once, although the demo sends its first batch twice
    properties = umbrella[0]["body"]["properties"]
    assert properties["hubspot_owner_id"] == "90000001"
    assert properties["hs_task_priority"] == "HIGH"
    assert "local-sink-token" not in (tmp_path / SINK_LOG).read_text()
    assert len({c["body"]["properties"]["hs_task_body"] for c in creations}) == len(creations)
