"""End to end: `upswing local --serve` in its own process, driven over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import RunningStack
from upswing.local.aws import BUS_NAME, FAKE_AWS_ENVIRONMENT, LOCAL_PREFIX

pytestmark = pytest.mark.e2e


def test_given_events_posted_over_http_when_counted_then_counters_read_back_per_day(
    stack: RunningStack,
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    yesterday = now - timedelta(days=1)
    events = [
        _event("e2e-1", "acme-e2e", "api.calls", now, 100),
        _event("e2e-2", "acme-e2e", "api.calls", now, 50),
        _event("e2e-3", "acme-e2e", "api.calls", yesterday, 7),
        _event("e2e-4", "acme-e2e", "seats.active", yesterday, 30, kind="gauge"),
        _event("e2e-5", "acme-e2e", "seats.active", now, 32, kind="gauge"),
        _event("e2e-6", "acme-e2e", "feature.used", now, 1, dimensions={"team": "t-1"}),
        _event("e2e-7", "acme-e2e", "feature.used", now, 1, dimensions={"team": "t-2"}),
    ]
    with stack.client() as api:
        answer = api.post("/v1/events", json={"events": events})
        assert answer.status_code == 202
        assert answer.json() == {"accepted": 7, "duplicates": 0, "rejected": []}

        # Wait for every metric: the aggregator may fold the batch's days and names in any order.
        days = _wait_for_counters(
            api,
            "acme-e2e",
            lambda days: (
                (_total(days, "api.calls"), _total(days, "seats.active"), _total(days, "feature.used"))
                == (157, 62, 2)
            ),
        )

    by_day = {day["day"]: day["metrics"] for day in days}
    today, before = by_day[now.date().isoformat()], by_day[yesterday.date().isoformat()]
    assert today["api.calls"]["total"] == 150
    assert before["api.calls"]["total"] == 7
    assert today["seats.active"]["last"] == 32
    assert before["seats.active"]["last"] == 30
    assert today["feature.used"]["distinct"] == {"team": 2}


def test_given_the_same_batch_sent_three_times_then_counted_once(stack: RunningStack) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    events = [_event(f"dup-{n}", "dup-e2e", "api.calls", now, 10) for n in range(5)]
    with stack.client() as api:
        answers = [api.post("/v1/events", json={"events": events}).json() for _ in range(3)]
        assert [a["accepted"] for a in answers] == [5, 0, 0]
        assert [a["duplicates"] for a in answers] == [0, 5, 5]
        days = _wait_for_counters(api, "dup-e2e", lambda days: _total(days, "api.calls") >= 50)
        time.sleep(0.5)  # give a wrongly double-counted event time to show up
        days = api.get("/v1/accounts/dup-e2e/counters").json()["days"]
    assert _total(days, "api.calls") == 50


def test_given_events_on_the_bus_when_delivered_twice_then_counted_once(stack: RunningStack) -> None:
    from shared.storage.dynamo import aws_client

    os.environ.update({**FAKE_AWS_ENVIRONMENT, "AWS_ENDPOINT_URL": stack.aws})
    try:
        bus = aws_client("events")
        now = datetime.now(UTC).replace(microsecond=0)
        entries = [
            {
                "Source": "billing",
                "DetailType": "usage.event",
                "EventBusName": BUS_NAME,
                "Detail": json.dumps(_event(f"bus-{n}", "bus-e2e", "invoice.paid", now, 3)),
            }
            for n in range(4)
        ]
        for _ in range(2):
            assert bus.put_events(Entries=entries)["FailedEntryCount"] == 0
    finally:
        os.environ.pop("AWS_ENDPOINT_URL")
    with stack.client() as api:
        days = _wait_for_counters(api, "bus-e2e", lambda days: _total(days, "invoice.paid") >= 12)
        time.sleep(0.5)
        days = api.get("/v1/accounts/bus-e2e/counters").json()["days"]
    assert _total(days, "invoice.paid") == 12


def test_given_no_or_a_wrong_key_then_401_with_a_message(stack: RunningStack) -> None:
    body = {"events": [_event("k-1", "acme", "x", datetime.now(UTC), 1)]}
    without = httpx.post(f"{stack.api}/v1/events", json=body, timeout=10)
    wrong = httpx.post(
        f"{stack.api}/v1/events", json=body, headers={"Authorization": "Bearer upk_nope"}, timeout=10
    )
    for answer in (without, wrong):
        assert answer.status_code == 401
        assert "Authorization: Bearer" in answer.json()["message"]


def test_given_a_key_issued_by_the_cli_when_revoked_then_it_stops_working(stack: RunningStack) -> None:
    table = f"{LOCAL_PREFIX}-registry"
    issued = stack.cli("keys", "--registry-table", table, "issue", "e2e-producer")
    assert issued.returncode == 0, issued.stderr
    key = re.search(r"key\s+(upk_\S+)", issued.stdout).group(1)
    key_id = re.search(r"key id\s+([0-9a-f]{16})", issued.stdout).group(1)
    body = {"events": [_event("cli-1", "cli-e2e", "x", datetime.now(UTC), 1)]}
    with stack.client(key) as api:
        assert api.post("/v1/events", json=body).status_code == 202

        revoked = stack.cli("keys", "--registry-table", table, "revoke", key_id)
        assert revoked.returncode == 0, revoked.stderr
        assert api.post("/v1/events", json=body).status_code == 401
    listing = stack.cli("keys", "--registry-table", table, "list")
    assert re.search(rf"{key_id}\s+e2e-producer\s+.*revoked", listing.stdout)


def test_given_bad_requests_then_4xx_with_messages_and_nothing_written(stack: RunningStack) -> None:
    with stack.client() as api:
        not_json = api.post("/v1/events", content=b"{nope", headers={"Content-Type": "application/json"})
        wrong_type = api.post("/v1/events", content=b"{}", headers={"Content-Type": "text/plain"})
        too_big = api.post(
            "/v1/events",
            content=b'{"events": [' + b" " * (2 * 1024 * 1024) + b"]}",
            headers={"Content-Type": "application/json"},
        )
    assert (not_json.status_code, wrong_type.status_code, too_big.status_code) == (400, 415, 413)
    assert "not valid JSON" in not_json.json()["message"]
    assert "application/json" in wrong_type.json()["message"]
    assert "limit" in too_big.json()["message"]


def test_the_served_openapi_document_describes_the_events_route(stack: RunningStack) -> None:
    with stack.client() as api:
        document = api.get("/v1/openapi.json").json()
    assert "post" in document["paths"]["/v1/events"]


def _event(
    event_id: str, account: str, name: str, when: datetime, value: float, **extra: Any
) -> dict[str, Any]:
    stamp = when.isoformat().replace("+00:00", "Z")
    return {
        "event_id": event_id,
        "account_id": account,
        "name": name,
        "occurred_at": stamp,
        "value": value,
        **extra,
    }


def _total(days: list[dict[str, Any]], name: str) -> float:
    return sum(day["metrics"].get(name, {}).get("total", 0) for day in days)


def _wait_for_counters(
    api: httpx.Client, account: str, ready: Any, timeout: float = 20
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        days = api.get(f"/v1/accounts/{account}/counters").json()["days"]
        if ready(days) or time.monotonic() > deadline:
            return days
        time.sleep(0.1)


def test_given_a_unicode_account_id_in_the_path_then_it_round_trips(stack: RunningStack) -> None:
    with stack.client() as api:
        created = api.put("/v1/accounts/société-générale ☕", json={"name": "Société Générale"})
        read = api.get("/v1/accounts/société-générale ☕")
    assert created.status_code == 201
    assert read.json()["account_id"] == "société-générale ☕"


def test_given_outcomes_over_http_and_on_the_bus_then_each_is_stored_once_in_the_outcomes_table(
    stack: RunningStack,
) -> None:
    from shared.resources import OUTCOMES_TABLE
    from shared.storage.dynamo import aws_client

    now = datetime.now(UTC).replace(microsecond=0)
    over_http = _outcome("chg-http", now)
    on_the_bus = _outcome("chg-bus", now)
    with stack.client() as api:
        answer = api.post("/v1/outcomes", json={"outcomes": [over_http]})
    assert (answer.status_code, answer.json()) == (202, {"accepted": 1, "duplicates": 0, "rejected": []})

    os.environ.update({**FAKE_AWS_ENVIRONMENT, "AWS_ENDPOINT_URL": stack.aws})
    try:
        entries = [
            {"Source": "stripe", "DetailType": "outcome", "EventBusName": BUS_NAME, "Detail": json.dumps(o)}
            for o in (over_http, on_the_bus, on_the_bus)
        ]
        assert aws_client("events").put_events(Entries=entries)["FailedEntryCount"] == 0
        dynamodb = aws_client("dynamodb")
        table = OUTCOMES_TABLE.local_name(LOCAL_PREFIX)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            items = dynamodb.scan(TableName=table)["Items"]
            if any(
                item["sk"]["S"] == "outcome#chg-bus" for item in items if item["pk"]["S"] == "outcome-e2e"
            ):
                break
            time.sleep(0.2)
        time.sleep(0.5)
        items = [i for i in dynamodb.scan(TableName=table)["Items"] if i["pk"]["S"] == "outcome-e2e"]
    finally:
        os.environ.pop("AWS_ENDPOINT_URL")
    assert sorted((i["sk"]["S"], i["channel"]["S"]) for i in items) == [
        ("outcome#chg-bus", "eventbridge"),
        ("outcome#chg-http", "https"),
    ]


def _outcome(outcome_id: str, now: datetime) -> dict[str, Any]:
    return {
        "outcome_id": outcome_id,
        "account_id": "outcome-e2e",
        "kind": "plan_upgrade",
        "occurred_at": (now - timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
        "amount": "12000.00",
        "currency": "EUR",
        "source": "billing",
    }


def test_given_a_firings_play_when_an_expansion_is_posted_then_the_local_attributor_credits_its_trigger(
    stack: RunningStack,
) -> None:
    from shared.resources import PLAYS_TABLE
    from shared.routing.ledger import PlayLedger
    from shared.routing.models import PlayRecord, PlayStatus
    from shared.storage.dynamo import aws_client

    # Given a firing of seat-expansion yesterday, its play in the stack's ledger (suppressed: final)
    now = datetime.now(UTC).replace(microsecond=0)
    fired_at = now - timedelta(days=1)
    os.environ.update({**FAKE_AWS_ENVIRONMENT, "AWS_ENDPOINT_URL": stack.aws})
    try:
        PlayLedger(aws_client("dynamodb"), PLAYS_TABLE.local_name(LOCAL_PREFIX), 400).settle(
            PlayRecord(
                account_id="attribution-e2e",
                play_id="e2e0" * 6,
                firing_id="f2e0" * 6,
                tier=0,
                firing={
                    "trigger": "seat-expansion",
                    "play": "seat-expansion",
                    "ruleset_version": "e2e",
                    "evaluated_at": fired_at.isoformat().replace("+00:00", "Z"),
                },
                status=PlayStatus.SUPPRESSED,
                updated_at=fired_at,
                reason="do not contact",
            )
        )
    finally:
        os.environ.pop("AWS_ENDPOINT_URL")

    # When the account's expansion is posted
    outcome = {**_outcome("chg-attributed", now), "account_id": "attribution-e2e"}
    with stack.client() as api:
        assert api.post("/v1/outcomes", json={"outcomes": [outcome]}).status_code == 202

        # Then the outcomes stream reaches the attributor, and the trigger counts the expansion
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            answer = api.get("/v1/triggers/seat-expansion").json()
            week = next(w for w in answer["windows"] if w["days"] == 7)
            if week["accounts_expanded"]:
                break
            time.sleep(0.2)
        signals = api.get("/v1/accounts/attribution-e2e/signals").json()
    assert week["accounts_expanded"] == 1
    assert week["expansion_amount"] == {"EUR": "12000.00"}
    [play] = signals["recent_plays"]
    assert play["fate"]["state"] == "expanded"
    assert play["expanded"]["outcome_id"] == "chg-attributed"


def test_given_a_segment_batch_with_the_write_key_then_counted_once_however_often_delivered(
    stack: RunningStack,
) -> None:
    # As a Segment library sends it: HTTP Basic with the key as the write key, POST /v1/batch.
    at = (datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)).isoformat()
    batch = {
        "batch": [
            {
                "type": "track",
                "messageId": f"seg-{n}",
                "timestamp": at,
                "event": "API Calls Reported",
                "properties": {"count": 10},
                "userId": "u-1",
            }
            for n in range(3)
        ]
        + [{"type": "identify", "userId": "u-1", "traits": {"email": "dana@example.com"}}],
        "context": {"groupId": "segment-e2e"},
    }
    with httpx.Client(base_url=stack.api, auth=(stack.key, ""), timeout=30) as segment:
        answers = [segment.post("/v1/batch", json=batch) for _ in range(3)]
        refused_elsewhere = segment.post("/v1/events", json={"events": []})
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [(a.json()["accepted"], a.json()["duplicates"]) for a in answers] == [(3, 0), (0, 3), (0, 3)]
    assert refused_elsewhere.status_code == 403
    with stack.client() as api:
        days = _wait_for_counters(api, "segment-e2e", lambda days: _total(days, "api.calls") >= 30)
        time.sleep(0.5)  # give a wrongly double-counted call time to show up
        days = api.get("/v1/accounts/segment-e2e/counters").json()["days"]
    assert _total(days, "api.calls") == 30
