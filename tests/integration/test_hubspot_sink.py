"""The local HubSpot sink on 127.0.0.1, driven by the real client: what it keeps, finds and fakes.

Real HTTP to the sink; the client's waits go to a fake clock, so rate-limit answers cost nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.delivery.hubspot import (
    SEARCH_INDEX_LAG,
    HubSpotClient,
    HubSpotRejected,
    HubSpotSettings,
    HubSpotUnavailable,
    search_request,
    task_request,
)
from tests.unit.test_hubspot_client import PLAY_ID, TOKEN, a_delivery
from tests.unit.test_pacing import FakeClock
from upswing.local.hubspot_sink import HubSpotSink

TASKS_PATH = "/crm/v3/objects/tasks"
OTHER_PLAY_ID = "fedcba9876543210fedcba98"


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[HubSpotSink]:
    with HubSpotSink(tmp_path / "hubspot" / "requests.jsonl") as running:
        yield running


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client(sink: HubSpotSink, clock: FakeClock) -> Iterator[HubSpotClient]:
    settings = HubSpotSettings(base_url=sink.endpoint, timeout_seconds=5.0)
    with HubSpotClient(settings, lambda: TOKEN, sleep=clock.sleep, clock=clock, jitter=lambda: 0.0) as real:
        yield real


def deadline(clock: FakeClock) -> float:
    return clock.now + 60.0


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    """One client for the raw calls: a new httpx client costs ~0.1 s (it loads the CA bundle)."""
    with httpx.Client() as client:
        yield client


def raw_post(
    http: httpx.Client, sink: HubSpotSink, path: str, body: Any, token: str | None = TOKEN
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return http.post(f"{sink.endpoint}{path}", json=body, headers=headers)


def test_given_a_delivery_when_the_client_creates_it_then_the_sink_records_it_without_the_token(
    sink, client, clock
):
    task_id = client.create_task(a_delivery(), deadline(clock))

    [record] = sink.requests()
    assert (record["method"], record["path"], record["status"]) == ("POST", TASKS_PATH, 201)
    assert record["body"] == task_request(a_delivery(), HubSpotSettings())
    assert record["time"].endswith("Z")
    [task] = sink.tasks()
    assert task["id"] == task_id
    assert task["properties"]["hs_task_subject"] == a_delivery().subject
    log_text = sink.log_path.read_text()
    assert json.loads(log_text) == record  # one JSON line
    assert TOKEN not in log_text
    assert "authorization" not in log_text.lower()
    assert TOKEN not in json.dumps(sink.requests())


def test_given_recorded_requests_when_fetching_them_over_http_then_they_are_served_back(
    sink, client, clock, http
):
    client.create_task(a_delivery(), deadline(clock))
    client.find_task(PLAY_ID, deadline(clock))

    served = http.get(f"{sink.endpoint}/__sink/requests").json()

    assert served == sink.requests()
    assert [record["path"] for record in served] == [TASKS_PATH, f"{TASKS_PATH}/search"]


def test_given_created_tasks_when_finding_by_play_id_then_the_right_one_is_found(sink, client, clock):
    first = client.create_task(a_delivery(), deadline(clock))
    second = client.create_task(a_delivery(play_id=OTHER_PLAY_ID), deadline(clock))

    assert client.find_task(PLAY_ID, deadline(clock)) == first
    assert client.find_task(OTHER_PLAY_ID, deadline(clock)) == second
    assert client.find_task("0" * 24, deadline(clock)) is None
    assert int(second) > int(first)


def test_given_a_created_task_when_reading_it_by_id_then_the_sink_answers_like_hubspot(
    sink, client, clock, http
):
    task_id = client.create_task(a_delivery(), deadline(clock))
    headers = {"Authorization": f"Bearer {TOKEN}"}

    found = http.get(f"{sink.endpoint}{TASKS_PATH}/{task_id}", headers=headers)
    missing = http.get(f"{sink.endpoint}{TASKS_PATH}/999999", headers=headers)

    assert found.status_code == 200
    assert found.json()["properties"]["hs_object_id"] == task_id
    assert found.json()["archived"] is False
    assert (missing.status_code, missing.json()["category"]) == (404, "OBJECT_NOT_FOUND")


def test_given_a_planned_429_when_creating_then_the_client_waits_it_out_and_the_sink_saw_both(
    sink, client, clock
):
    sink.fail_next(429)

    client.create_task(a_delivery(), deadline(clock))

    assert [record["status"] for record in sink.requests()] == [429, 201]
    assert clock.sleeps == [10.0]  # TEN_SECONDLY_ROLLING, no Retry-After: one window
    assert len(sink.tasks()) == 1


def test_given_a_planned_5xx_when_creating_then_the_client_does_not_send_it_again(sink, client, clock):
    sink.fail_next(500, count=5)

    with pytest.raises(HubSpotUnavailable, match="may have created the task"):
        client.create_task(a_delivery(), deadline(clock))

    # A 5xx may hide a created task: the redelivery looks it up, later, before creating one
    assert [record["status"] for record in sink.requests()] == [500]
    assert sink.tasks() == []


def test_given_an_answer_lost_after_creation_when_searching_at_once_then_the_lag_hides_the_task(
    tmp_path, clock
):
    # Why create_task does not look the task up itself: HubSpot's search lags its creations.
    sink_clock = FakeClock()
    with HubSpotSink(tmp_path / "requests.jsonl", search_lag_seconds=5.0, clock=sink_clock) as lagging:
        settings = HubSpotSettings(base_url=lagging.endpoint, timeout_seconds=5.0)
        with HubSpotClient(settings, lambda: TOKEN, sleep=clock.sleep, clock=clock) as client:
            lagging.fail_next(502, after_create=True)
            with pytest.raises(HubSpotUnavailable):
                client.create_task(a_delivery(), deadline(clock))
            at_once = client.find_task(PLAY_ID, deadline(clock))
            sink_clock.now += SEARCH_INDEX_LAG.total_seconds()
            later = client.find_task(PLAY_ID, deadline(clock))
        tasks = lagging.tasks()

    assert at_once is None
    assert [task["id"] for task in tasks] == [later]


def test_given_a_planned_rejection_when_creating_then_the_client_carries_the_sinks_message(
    sink, client, clock
):
    body = {
        "status": "error",
        "message": "Missing scopes",
        "category": "MISSING_SCOPES",
        "correlationId": "x",
    }
    sink.fail_next(403, body=body, headers={"X-Trace": "1"})

    with pytest.raises(HubSpotRejected) as raised:
        client.create_task(a_delivery(), deadline(clock))

    rejected = raised.value
    assert (rejected.status, rejected.category, rejected.message) == (403, "MISSING_SCOPES", "Missing scopes")


def test_given_a_task_without_hs_timestamp_when_posted_then_the_sink_answers_a_validation_error(sink, http):
    body = task_request(a_delivery(), HubSpotSettings())
    del body["properties"]["hs_timestamp"]

    answer = raw_post(http, sink, TASKS_PATH, body)

    assert answer.status_code == 400
    assert answer.json()["status"] == "error"
    assert answer.json()["category"] == "VALIDATION_ERROR"
    assert "hs_timestamp" in answer.json()["message"]
    assert answer.json()["correlationId"]
    assert sink.tasks() == []


@pytest.mark.parametrize(
    ("change", "expected_in_message"),
    [
        ({"hs_task_priority": "URGENT"}, "hs_task_priority"),
        ({"hs_timestamp": "next tuesday"}, "hs_timestamp"),
    ],
)
def test_given_invalid_properties_when_posted_then_the_sink_names_them(
    sink, change, expected_in_message, http
):
    body = task_request(a_delivery(), HubSpotSettings())
    body["properties"].update(change)

    answer = raw_post(http, sink, TASKS_PATH, body)

    assert (answer.status_code, answer.json()["category"]) == (400, "VALIDATION_ERROR")
    assert expected_in_message in answer.json()["message"]


def test_given_no_bearer_token_when_calling_then_the_sink_answers_401_and_records_no_header(sink, http):
    answer = raw_post(http, sink, TASKS_PATH, task_request(a_delivery(), HubSpotSettings()), token=None)

    assert (answer.status_code, answer.json()["category"]) == (401, "INVALID_AUTHENTICATION")
    assert [record["status"] for record in sink.requests()] == [401]
    assert sink.tasks() == []


def test_given_a_rate_limit_when_exceeded_then_the_sink_answers_like_hubspots_ten_secondly_policy(
    tmp_path, http
):
    with HubSpotSink(tmp_path / "requests.jsonl", rate_limit=2) as limited:
        statuses = [raw_post(http, limited, f"{TASKS_PATH}/search", {}).status_code for _ in range(3)]
        answer = raw_post(http, limited, f"{TASKS_PATH}/search", {})

    assert statuses == [200, 200, 429]
    assert answer.json()["policyName"] == "TEN_SECONDLY_ROLLING"
    assert answer.json()["errorType"] == "RATE_LIMIT"


def test_given_a_search_lag_when_a_task_is_new_then_search_misses_it_until_the_lag_has_passed(tmp_path, http):
    sink_clock = FakeClock()
    with HubSpotSink(tmp_path / "requests.jsonl", search_lag_seconds=5.0, clock=sink_clock) as lagging:
        raw_post(http, lagging, TASKS_PATH, task_request(a_delivery(), HubSpotSettings()))
        query = search_request(PLAY_ID)
        before = raw_post(http, lagging, f"{TASKS_PATH}/search", query).json()
        sink_clock.now += 5.0
        after = raw_post(http, lagging, f"{TASKS_PATH}/search", query).json()

    assert before["total"] == 0
    assert after["total"] == 1


def test_given_several_tasks_when_searching_with_eq_and_paging_then_hubspots_semantics_hold(
    sink, client, clock, http
):
    for play_id in (PLAY_ID, OTHER_PLAY_ID, "a" * 24):
        client.create_task(a_delivery(play_id=play_id), deadline(clock))
    query: dict[str, Any] = {
        "filterGroups": [
            {"filters": [{"propertyName": "hs_task_priority", "operator": "EQ", "value": "high"}]},
        ],
        "sorts": [{"propertyName": "hs_object_id", "direction": "DESCENDING"}],
        "limit": 2,
    }

    first = raw_post(http, sink, f"{TASKS_PATH}/search", query).json()
    rest = raw_post(
        http, sink, f"{TASKS_PATH}/search", {**query, "after": first["paging"]["next"]["after"]}
    ).json()
    unsupported = raw_post(
        http,
        sink,
        f"{TASKS_PATH}/search",
        {"filterGroups": [{"filters": [{"propertyName": "x", "operator": "BETWEEN", "value": "1"}]}]},
    )

    assert first["total"] == 3
    assert [task["id"] for task in first["results"] + rest["results"]] == ["3", "2", "1"]
    assert "paging" not in rest
    assert unsupported.status_code == 400
