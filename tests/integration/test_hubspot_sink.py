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
    StaleReferences,
    search_request,
    stale_references,
    task_request,
    without_stale_references,
)
from tests.unit.test_hubspot_client import PLAY_ID, TOKEN, a_delivery
from tests.unit.test_pacing import FakeClock
from upswing import cli
from upswing.local.hubspot_sink import HubSpotSink

TASKS_PATH = "/crm/v3/objects/tasks"
OTHER_PLAY_ID = "fedcba9876543210fedcba98"
# What the sink's portal knows: the owner and the records a_delivery() names.
KNOWN: dict[str, Any] = {"owners": ["7713"], "companies": ["9000123"], "contacts": ["501"], "deals": ["77"]}


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[HubSpotSink]:
    with HubSpotSink(tmp_path / "hubspot" / "requests.jsonl", **KNOWN) as running:
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
    with HubSpotSink(
        tmp_path / "requests.jsonl", search_lag_seconds=5.0, clock=sink_clock, **KNOWN
    ) as lagging:
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
    with HubSpotSink(
        tmp_path / "requests.jsonl", search_lag_seconds=5.0, clock=sink_clock, **KNOWN
    ) as lagging:
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


# --- strict like HubSpot: unknown properties, owners, records; refused requests count -----------


def test_given_an_unknown_property_when_posted_then_the_sink_refuses_it_by_name(sink, http):
    body = task_request(a_delivery(), HubSpotSettings())
    body["properties"]["upswing_play_id"] = PLAY_ID  # not created in this portal

    answer = raw_post(http, sink, TASKS_PATH, body)

    assert (answer.status_code, answer.json()["category"]) == (400, "VALIDATION_ERROR")
    assert "PROPERTY_DOESNT_EXIST" in answer.json()["message"]
    assert "upswing_play_id" in answer.json()["message"]
    assert sink.tasks() == []


def test_given_an_owner_the_portal_does_not_know_then_the_client_can_fall_back_to_an_unassigned_task(
    sink, client, clock
):
    stale = a_delivery(owner={"role": "csm", "name": "Gone", "hubspot_owner_id": "666"})

    with pytest.raises(HubSpotRejected) as raised:
        client.create_task(stale, deadline(clock))
    found = stale_references(raised.value, stale)
    assert found is not None
    task_id = client.create_task(without_stale_references(stale, found), deadline(clock))

    assert "INVALID_OWNER_ID" in raised.value.message
    assert found.owner_id == "666"
    [task] = sink.tasks()
    assert task["id"] == task_id
    assert "hubspot_owner_id" not in task["properties"]
    assert "HubSpot owner 666" in task["properties"]["hs_task_body"]


def test_given_a_company_the_portal_does_not_know_then_hubspots_context_names_it(sink, client, clock):
    stale = a_delivery(hubspot={"company_id": "4040404", "contact_id": "501"})

    with pytest.raises(HubSpotRejected) as raised:
        client.create_task(stale, deadline(clock))

    details = raised.value.details
    assert details.context["INVALID_OBJECT_IDS"] == ["COMPANY=4040404 is not valid"]
    assert details.context["objectId"] == ["4040404"]
    assert stale_references(raised.value, stale) == StaleReferences(None, frozenset({"4040404"}))
    assert sink.tasks() == []


def test_given_records_registered_over_http_then_the_sink_accepts_them(tmp_path, http):
    with HubSpotSink(tmp_path / "requests.jsonl") as empty:
        before = raw_post(http, empty, TASKS_PATH, task_request(a_delivery(), HubSpotSettings()))
        http.post(f"{empty.endpoint}/__sink/records", json=KNOWN).raise_for_status()
        after = raw_post(http, empty, TASKS_PATH, task_request(a_delivery(), HubSpotSettings()))

    assert (before.status_code, after.status_code) == (400, 201)


def test_given_refused_requests_then_they_count_in_the_rate_window_like_hubspots(tmp_path, http):
    sink_clock = FakeClock()
    with HubSpotSink(tmp_path / "requests.jsonl", rate_limit=2, clock=sink_clock) as limited:

        def status_at(moment: float) -> int:
            sink_clock.now = 1000.0 + moment
            return raw_post(http, limited, f"{TASKS_PATH}/search", {}).status_code

        statuses = [status_at(0.0), status_at(0.0), status_at(9.0), status_at(10.1), status_at(10.2)]

    # The refused request at 9 s still fills the window at 10.2 s, when the first two have left it
    assert statuses == [200, 200, 429, 200, 429]


# --- the upswing_play_id property: created by the CLI, found by EQ --------------------------------


def test_given_the_property_created_by_the_cli_then_tasks_carry_it_and_eq_finds_them_whatever_the_body(
    sink, clock, http, monkeypatch, capsys
):
    monkeypatch.setenv("HUBSPOT_TOKEN", TOKEN)

    assert cli.main(["hubspot", "create-property", "--base-url", sink.endpoint]) == 0
    assert cli.main(["hubspot", "create-property", "--base-url", sink.endpoint]) == 0  # exists: fine
    printed = capsys.readouterr().out
    assert "created the task property 'upswing_play_id'" in printed
    assert "exists already" in printed
    assert "--context hubspot_play_id_property=upswing_play_id" in printed
    assert sink.properties() == ["upswing_play_id"]
    assert TOKEN not in json.dumps(sink.requests())

    settings = HubSpotSettings(
        base_url=sink.endpoint, timeout_seconds=5.0, play_id_property="upswing_play_id"
    )
    with HubSpotClient(settings, lambda: TOKEN, sleep=clock.sleep, clock=clock) as client:
        created = client.create_task(a_delivery(), deadline(clock))
        # A task whose body lost its marker (edited, or tokenized differently) is still found
        body = task_request(a_delivery(play_id=OTHER_PLAY_ID), settings)
        body["properties"]["hs_task_body"] = "<p>edited by a person</p>"
        other = raw_post(http, sink, TASKS_PATH, body).json()["id"]

        assert client.find_task(PLAY_ID, deadline(clock)) == created
        assert client.find_task(OTHER_PLAY_ID, deadline(clock)) == other
    [task, _] = sink.tasks()
    assert task["properties"]["upswing_play_id"] == PLAY_ID


def test_given_no_property_then_the_body_marker_still_finds_the_task_and_eq_on_it_is_refused(
    sink, client, clock, http
):
    created = client.create_task(a_delivery(), deadline(clock))

    assert client.find_task(PLAY_ID, deadline(clock)) == created  # CONTAINS_TOKEN on the body marker
    refused = raw_post(http, sink, f"{TASKS_PATH}/search", search_request(PLAY_ID, "upswing_play_id"))
    assert refused.status_code == 400  # like HubSpot: the property does not exist in this portal


def test_given_no_token_when_creating_the_property_then_the_cli_says_where_to_put_it(monkeypatch, capsys):
    monkeypatch.delenv("HUBSPOT_TOKEN", raising=False)

    assert cli.main(["hubspot", "create-property"]) == 2
    assert "$HUBSPOT_TOKEN" in capsys.readouterr().err


def test_given_owners_and_companies_registered_by_email_and_domain_then_the_client_finds_them(
    sink, client, clock, http
):
    # Given the portal's owners by e-mail (one archived) and companies by domain (two share one)
    raw_post(
        http,
        sink,
        "/__sink/records",
        {
            "owner_emails": [
                {"id": "7001", "email": "Dana@Northwind.example"},
                {"id": "7002", "email": "gone@northwind.example", "archived": True},
            ],
            "company_domains": [
                {"id": "9001", "domain": "northwind.example"},
                {"id": "9101", "domain": "twins.example"},
                {"id": "9102", "domain": "twins.example"},
            ],
        },
    ).raise_for_status()

    # Then the Owners API answers the active owners, or the archived ones, as HubSpot does
    assert client.owners_by_email("dana@northwind.example", deadline(clock), archived=False) == ["7001"]
    assert client.owners_by_email("dana@northwind.example", deadline(clock), archived=True) == []
    assert client.owners_by_email("gone@northwind.example", deadline(clock), archived=False) == []
    assert client.owners_by_email("gone@northwind.example", deadline(clock), archived=True) == ["7002"]
    # and the company search by domain, with HubSpot's total
    assert client.companies_by_domain("northwind.example", deadline(clock)) == (["9001"], 1)
    assert client.companies_by_domain("twins.example", deadline(clock)) == (["9101", "9102"], 2)
    assert client.companies_by_domain("nowhere.example", deadline(clock)) == ([], 0)
    # An archived owner cannot be given a task, as in HubSpot; the active one can
    owner = {"role": "csm", "hubspot_owner_id": "7002"}
    with pytest.raises(HubSpotRejected, match=r"INVALID_OWNER_ID|not a valid owner"):
        client.create_task(a_delivery(owner=owner), deadline(clock))
    assert client.create_task(a_delivery(owner=owner | {"hubspot_owner_id": "7001"}), deadline(clock))
