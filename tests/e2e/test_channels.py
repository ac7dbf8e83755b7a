"""The demo path of issue 18: a Segment batch (group + track) over HTTP → counters → a firing → the
play's Slack message, in the local Slack sink, carrying the evidence in plain words (the stack runs
tests/fixtures/rulesets/channels-e2e.yaml, whose play's channel is Slack)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import RunningStack, running_stack

pytestmark = pytest.mark.e2e
ACCOUNT = "slack-e2e"
RULESET = "tests/fixtures/rulesets/channels-e2e.yaml"


@pytest.fixture(scope="module")
def stack() -> Iterator[RunningStack]:
    with running_stack({"RULESET_PATH": RULESET}) as running:
        yield running


def test_a_segment_track_batch_fires_a_play_whose_slack_dm_carries_the_evidence(stack: RunningStack) -> None:
    # Given an SMB account with a seat limit and a CSM known by e-mail, told by a Segment `group` call,
    # and its seats in use reported by a Segment `track` call, in one batch with the write key
    at = (datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)).isoformat()
    batch = {
        "batch": [
            {
                "type": "group",
                "messageId": "slack-e2e-group",
                "timestamp": at,
                "groupId": ACCOUNT,
                "traits": {
                    "name": "Slack E2E Co",
                    "segment": "smb",
                    "plan": "Team",
                    "seats": 20,
                    "csm_email": "casey.e2e@example.com",
                },
            },
            {
                "type": "track",
                "messageId": "slack-e2e-seats",
                "timestamp": at,
                "event": "Seats Updated",
                "properties": {"seats": 19},
                "userId": "u-1",
                "context": {"groupId": ACCOUNT},
            },
        ]
    }
    with httpx.Client(base_url=stack.api, auth=(stack.key, ""), timeout=30) as segment:
        answer = segment.post("/v1/batch", json=batch)
    assert answer.status_code == 200, answer.text

    # When the stack counts it, the rules fire seat-expansion and the router sends its channels
    message = _wait_for_slack_message(stack, lambda m: "Slack E2E Co" in m["text"])

    # Then the CSM got a DM (a user id the sink gave for the address) with the evidence in words
    assert message["channel"].startswith("U")
    assert message["text"].startswith("Seat expansion: Slack E2E Co is running out of seats (due ")
    narrative = message["blocks"][2]["text"]["text"]
    assert "latest seats.active / plan limit seats" in narrative
    assert "0.95" in narrative  # 19 of 20 seats
    assert "Evidence (ruleset" in narrative
    buttons = [button["text"]["text"] for button in message["blocks"][-1]["elements"]]
    assert buttons[-1] == "Not useful"
    # And the play says where it went
    with stack.client() as api:
        plays = api.get(f"/v1/accounts/{ACCOUNT}/signals").json()["recent_plays"]
    assert any("slack" in play["channels"] for play in plays)


def _wait_for_slack_message(stack: RunningStack, wanted: Any, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        requests = httpx.get(f"{stack.slack}/__sink/requests", timeout=10).json()["requests"]
        for request in requests:
            if (
                request["path"] == "/api/chat.postMessage"
                and request["status"] == 200
                and wanted(request["body"])
            ):
                return dict(request["body"])
        time.sleep(0.5)
    raise AssertionError(f"no such Slack message within {timeout} s; the sink got: {requests}")
