"""The HubSpot client: the exact task request, and how it rides out 429s, 5xx and timeouts.

HubSpot is an httpx.MockTransport answering from a script; time is a fake clock that only moves
when the client sleeps, so a 10 s rate-limit wait costs nothing and every wait can be asserted.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from shared.delivery.hubspot import (
    LOCAL_PACER,
    TASK_BODY_LIMIT,
    HubSpotAuthFailed,
    HubSpotClient,
    HubSpotRejected,
    HubSpotSettings,
    HubSpotThrottled,
    HubSpotUnavailable,
    search_request,
    task_request,
)
from shared.observability import logger as upswing_logger
from shared.routing.messages import PlayDelivery
from tests.unit.test_pacing import FakeClock

TOKEN = "pat-na1-11111111-2222-3333-4444-555555555555"
PLAY_ID = "0123456789abcdef01234567"
TASKS_URL = "https://api.hubapi.com/crm/v3/objects/tasks"
SEARCH_URL = f"{TASKS_URL}/search"
NOW = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
SUBJECT = "Expansion: Northwind is at 91% of its seats"
BODY = "Northwind uses 46 of 50 seats <Growth plan> & rising.\n\nEvidence:\n- seats 0.91\n  - members 3\n"

Answer = httpx.Response | Exception


def a_delivery(**overrides: Any) -> PlayDelivery:
    """A delivery with an owner and every HubSpot ref; any field can be overridden."""
    fields: dict[str, Any] = {
        "play_id": PLAY_ID,
        "channel": "hubspot_task",
        "firing_id": "firing-1",
        "account_id": "acct-northwind",
        "account_name": "Northwind Traders",
        "trigger": "seat_saturation",
        "play": "upgrade-proposal",
        "tier": 0,
        "ruleset_version": "2026-11-23.1",
        "subject": SUBJECT,
        "body": BODY,
        "due": date(2026, 11, 25),
        "priority": "HIGH",
        "task_type": "CALL",
        "owner": {"role": "ae", "name": "Lee Park", "hubspot_owner_id": "7713"},
        "hubspot": {"company_id": "9000123", "contact_id": "501", "deal_id": "77"},
        "routed_at": datetime(2026, 11, 20, 9, 0, tzinfo=UTC),
    }
    return PlayDelivery.model_validate({**fields, **overrides})


def hubspot_error(status: int, **fields: Any) -> httpx.Response:
    return httpx.Response(status, json={"status": "error", "correlationId": "c0ffee", **fields})


def rate_limited(policy: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"status": "error", "errorType": "RATE_LIMIT", "policyName": policy, "message": "limit reached"}
    return httpx.Response(429, json=body, headers=headers)


def created(task_id: str = "4242") -> httpx.Response:
    return httpx.Response(201, json={"id": task_id, "properties": {}, "archived": False})


def found(*task_ids: str) -> httpx.Response:
    return httpx.Response(200, json={"total": len(task_ids), "results": [{"id": i} for i in task_ids]})


@dataclass
class ScriptedHubSpot:
    """Answers task creations from `creations` in order and searches from `searches` (else nothing found)."""

    creations: list[Answer] = field(default_factory=list)
    searches: list[Answer] = field(default_factory=list)
    received: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.received.append(request)
        searching = request.url.path.endswith("/search")
        script = self.searches if searching else self.creations
        assert script or searching, f"no answer scripted for creation #{len(self.received)}"
        answer = script.pop(0) if script else found()
        if isinstance(answer, Exception):
            raise answer
        return answer

    @property
    def urls(self) -> list[str]:
        return [str(request.url) for request in self.received]

    def body(self, index: int) -> Any:
        return json.loads(self.received[index].content)


@dataclass
class Harness:
    hubspot: ScriptedHubSpot
    clock: FakeClock
    client: HubSpotClient

    def deadline(self, seconds: float = 60.0) -> float:
        return self.clock.now + seconds


@pytest.fixture
def make_harness() -> Iterator[Callable[..., Harness]]:
    clients: list[HubSpotClient] = []

    def make(
        *creations: Answer,
        searches: list[Answer] | None = None,
        jitter: float = 0.0,
        now: datetime = NOW,
        **settings: Any,
    ) -> Harness:
        hubspot = ScriptedHubSpot(list(creations), list(searches or []))
        clock = FakeClock()
        client = HubSpotClient(
            HubSpotSettings(**settings),
            token=lambda: TOKEN,
            http=httpx.Client(transport=httpx.MockTransport(hubspot)),
            sleep=clock.sleep,
            clock=clock,
            jitter=lambda: jitter,
            wall_clock=lambda: now,
        )
        clients.append(client)
        return Harness(hubspot, clock, client)

    yield make
    for client in clients:
        client.close()


def linked(record_id: str, type_id: int) -> dict[str, Any]:
    return {
        "to": {"id": record_id},
        "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}],
    }


# --- the request -------------------------------------------------------------------------------

EXPECTED_HTML_BODY = (
    "<p>Northwind uses 46 of 50 seats &lt;Growth plan&gt; &amp; rising.</p>"
    "<p>Evidence:<br>- seats 0.91<br>&nbsp;&nbsp;- members 3</p>"
    f"<p>Upswing play {PLAY_ID}</p>"
)


def test_given_an_owner_and_company_contact_deal_when_creating_then_hubspot_gets_exactly_this(make_harness):
    harness = make_harness(created("4242"))

    task_id = harness.client.create_task(a_delivery(), harness.deadline())

    assert task_id == "4242"
    assert harness.hubspot.urls == [TASKS_URL]
    assert harness.hubspot.body(0) == {
        "properties": {
            "hs_timestamp": "2026-11-25T17:00:00Z",
            "hs_task_subject": SUBJECT,
            "hs_task_body": EXPECTED_HTML_BODY,
            "hs_task_status": "NOT_STARTED",
            "hs_task_priority": "HIGH",
            "hs_task_type": "CALL",
            "hubspot_owner_id": "7713",
        },
        "associations": [linked("9000123", 192), linked("501", 204), linked("77", 216)],
    }
    assert harness.hubspot.received[0].headers["Authorization"] == f"Bearer {TOKEN}"


def test_given_no_owner_id_and_no_hubspot_refs_when_creating_then_no_owner_and_no_associations_are_sent():
    delivery = a_delivery(
        owner={"role": "csm", "name": "Dana Kim"}, hubspot={}, body="Short.", task_type="TODO"
    )

    request = task_request(delivery, HubSpotSettings())

    assert request == {
        "properties": {
            "hs_timestamp": "2026-11-25T17:00:00Z",
            "hs_task_subject": SUBJECT,
            "hs_task_body": f"<p>Short.</p><p>Upswing play {PLAY_ID}</p>",
            "hs_task_status": "NOT_STARTED",
            "hs_task_priority": "HIGH",
            "hs_task_type": "TODO",
        },
        "associations": [],
    }
    assert task_request(a_delivery(owner=None, hubspot={}), HubSpotSettings())["associations"] == []


def test_given_portal_specific_settings_when_creating_then_the_path_and_type_ids_follow_them(make_harness):
    harness = make_harness(
        created(),
        base_url="https://eu1.hubapi.example/",
        tasks_path="/crm/objects/2026-03/tasks",
        company_association_type=9001,
        due_hour=9,
    )

    harness.client.create_task(a_delivery(hubspot={"company_id": "1"}), harness.deadline())

    assert harness.hubspot.urls == ["https://eu1.hubapi.example/crm/objects/2026-03/tasks"]
    sent = harness.hubspot.body(0)
    assert sent["associations"][0]["types"][0]["associationTypeId"] == 9001
    assert sent["properties"]["hs_timestamp"] == "2026-11-25T09:00:00Z"


def test_given_a_created_task_when_searching_by_play_id_then_the_first_result_is_returned(make_harness):
    harness = make_harness(searches=[found("11", "12"), found()])

    assert harness.client.find_task(PLAY_ID, harness.deadline()) == "11"
    assert harness.client.find_task("ffffffffffffffffffffffff", harness.deadline()) is None
    assert harness.hubspot.urls == [SEARCH_URL, SEARCH_URL]
    assert harness.hubspot.body(0) == search_request(PLAY_ID)
    assert harness.hubspot.body(0)["filterGroups"] == [
        {"filters": [{"propertyName": "hs_task_body", "operator": "CONTAINS_TOKEN", "value": PLAY_ID}]}
    ]


# --- rate limits -------------------------------------------------------------------------------


def test_given_a_429_with_retry_after_when_creating_then_it_waits_exactly_that_and_succeeds(make_harness):
    harness = make_harness(rate_limited("TEN_SECONDLY_ROLLING", {"Retry-After": "3"}), created("7"))

    assert harness.client.create_task(a_delivery(), harness.deadline()) == "7"
    assert harness.clock.sleeps == [3.0]
    assert harness.hubspot.urls == [TASKS_URL, TASKS_URL]  # a 429 created nothing: no lookup needed


def test_given_ten_secondly_429s_without_retry_after_when_creating_then_each_waits_out_the_window(
    make_harness,
):
    harness = make_harness(*[rate_limited("TEN_SECONDLY_ROLLING")] * 2, created())

    harness.client.create_task(a_delivery(), harness.deadline())

    assert harness.clock.sleeps == [10.0, 10.0]  # one full window each time (jitter is 0 here)


def test_given_a_daily_429_when_creating_then_it_is_throttled_until_the_portals_midnight_at_once(
    make_harness,
):
    harness = make_harness(rate_limited("DAILY"), created())

    with pytest.raises(HubSpotThrottled) as raised:
        harness.client.create_task(a_delivery(), harness.deadline())

    assert raised.value.policy == "DAILY"
    assert raised.value.wait_seconds == 6 * 3600  # 18:00 UTC → midnight (a UTC portal, the default)
    assert harness.clock.sleeps == []
    assert len(harness.hubspot.received) == 1


@pytest.mark.parametrize(
    ("portal_timezone", "now", "hours"),
    [
        ("America/New_York", NOW, 11),  # 13:00 in New York (EST, UTC-5)
        ("Europe/Paris", NOW, 5),  # 19:00 in Paris (CET, UTC+1)
        ("Asia/Tokyo", NOW, 21),  # already 03:00 on the 21st in Tokyo: its next midnight
        # The night US summer time ends: 00:00 EDT on Nov 1 to 00:00 EST on Nov 2 is 25 hours.
        ("America/New_York", datetime(2026, 11, 1, 4, 0, tzinfo=UTC), 25),
    ],
)
def test_given_a_daily_429_when_the_portal_has_a_time_zone_then_it_waits_for_the_portals_midnight(
    make_harness, portal_timezone, now, hours
):
    harness = make_harness(rate_limited("DAILY"), now=now, portal_timezone=portal_timezone)

    with pytest.raises(HubSpotThrottled) as raised:
        harness.client.create_task(a_delivery(), harness.deadline())

    assert raised.value.wait_seconds == hours * 3600


def test_given_an_unknown_portal_time_zone_then_the_client_says_what_to_give() -> None:
    with pytest.raises(ValueError, match="IANA name"):
        HubSpotClient(HubSpotSettings(portal_timezone="Mars/Olympus"), lambda: TOKEN)


def test_given_a_429_whose_wait_passes_the_deadline_when_creating_then_it_is_throttled_without_sleeping(
    make_harness,
):
    harness = make_harness(rate_limited("TEN_SECONDLY_ROLLING"), created())

    with pytest.raises(HubSpotThrottled) as raised:
        harness.client.create_task(a_delivery(), harness.deadline(5.0))

    assert (raised.value.policy, raised.value.wait_seconds) == ("TEN_SECONDLY_ROLLING", 10.0)
    assert harness.clock.sleeps == []


def test_given_429s_on_every_attempt_when_creating_then_it_is_throttled_after_max_attempts(make_harness):
    harness = make_harness(*[rate_limited("TEN_SECONDLY_ROLLING")] * 3, max_attempts=3)

    with pytest.raises(HubSpotThrottled):
        harness.client.create_task(a_delivery(), harness.deadline(600))

    assert harness.clock.sleeps == [10.0, 10.0]
    assert len(harness.hubspot.received) == 3


# --- 5xx and transport errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        hubspot_error(502, message="Bad gateway"),
        hubspot_error(500),
        httpx.ReadTimeout("read timed out"),  # sent, then no answer
        httpx.RemoteProtocolError("server disconnected"),
    ],
)
def test_given_a_failure_after_which_the_task_may_exist_when_creating_then_it_is_not_sent_again(
    make_harness, failure
):
    # A lookup now could miss a task HubSpot just created (its search index lags): no retry, no
    # lookup here; the redelivery looks the task up once the index has caught up.
    harness = make_harness(failure, created("should-not-happen"))

    with pytest.raises(HubSpotUnavailable, match="may have created the task") as raised:
        harness.client.create_task(a_delivery(), harness.deadline())

    assert harness.hubspot.urls == [TASKS_URL]
    assert harness.clock.sleeps == []
    assert not isinstance(raised.value, HubSpotRejected | HubSpotThrottled)


@pytest.mark.parametrize(
    "failure", [httpx.ConnectTimeout("connect timed out"), httpx.ConnectError("connection refused")]
)
def test_given_a_request_that_never_left_when_creating_then_it_is_retried_at_once(make_harness, failure):
    harness = make_harness(failure, created("5"))

    assert harness.client.create_task(a_delivery(), harness.deadline()) == "5"
    assert harness.clock.sleeps == [0.2]
    assert harness.hubspot.urls == [TASKS_URL, TASKS_URL]


def test_given_a_429_then_a_5xx_when_creating_then_the_5xx_ends_the_call(make_harness):
    harness = make_harness(rate_limited("TEN_SECONDLY_ROLLING"), hubspot_error(503), created())

    with pytest.raises(HubSpotUnavailable):
        harness.client.create_task(a_delivery(), harness.deadline(60))

    assert harness.hubspot.urls == [TASKS_URL, TASKS_URL]


def test_given_5xx_on_every_attempt_when_searching_then_it_is_unavailable_after_max_attempts(make_harness):
    harness = make_harness(searches=[hubspot_error(503)] * 5)

    with pytest.raises(HubSpotUnavailable, match="after 5 attempt"):
        harness.client.find_task(PLAY_ID, harness.deadline())

    assert harness.clock.sleeps == [0.2, 0.4, 0.8, 1.6]  # exponential (jitter is 0 here)
    assert harness.hubspot.urls.count(SEARCH_URL) == 5


def test_given_5xx_and_a_near_deadline_when_searching_then_it_never_sleeps_past_the_deadline(make_harness):
    harness = make_harness(searches=[hubspot_error(500)] * 5)
    deadline = harness.deadline(0.5)

    with pytest.raises(HubSpotUnavailable):
        harness.client.find_task(PLAY_ID, deadline)

    assert harness.clock.sleeps == [0.2]  # the next wait, 0.4 s, would end at +0.6 s
    assert harness.clock.now <= deadline


def test_given_jitter_when_backing_off_then_waits_stretch_by_up_to_twice(make_harness):
    refused = httpx.ConnectError("refused")
    harness = make_harness(refused, refused, created(), jitter=0.5)

    harness.client.create_task(a_delivery(), harness.deadline())

    assert harness.clock.sleeps == [pytest.approx(0.3), pytest.approx(0.6)]


# --- permanent errors --------------------------------------------------------------------------


def test_given_a_400_when_creating_then_it_is_rejected_at_once_with_hubspots_message(make_harness):
    message = 'Property values were not valid: [{"name":"hs_task_priority","error":"INVALID_OPTION"}]'
    harness = make_harness(hubspot_error(400, category="VALIDATION_ERROR", message=message))

    with pytest.raises(HubSpotRejected) as raised:
        harness.client.create_task(a_delivery(), harness.deadline())

    rejected = raised.value
    assert (rejected.status, rejected.category, rejected.message) == (400, "VALIDATION_ERROR", message)
    assert rejected.correlation_id == "c0ffee"
    assert harness.clock.sleeps == []
    assert len(harness.hubspot.received) == 1


def test_given_a_non_json_404_when_creating_then_it_is_rejected_with_the_text(make_harness):
    harness = make_harness(httpx.Response(404, text="Not Found"))

    with pytest.raises(HubSpotRejected) as raised:
        harness.client.create_task(a_delivery(), harness.deadline())

    assert (raised.value.status, raised.value.category, raised.value.message) == (404, "UNKNOWN", "Not Found")


def test_given_a_2xx_without_an_id_when_creating_then_it_is_unavailable(make_harness):
    harness = make_harness(httpx.Response(201, json={"properties": {}}))

    with pytest.raises(HubSpotUnavailable, match="no object id"):
        harness.client.create_task(a_delivery(), harness.deadline())


# --- pacing ------------------------------------------------------------------------------------


def test_given_a_full_pacing_window_when_sending_then_the_client_waits_for_a_slot(make_harness):
    harness = make_harness(
        created("1"), created("2"), created("3"), requests_per_window=2, window_seconds=10.0
    )

    for _ in range(3):
        harness.client.create_task(a_delivery(), harness.deadline())

    assert sum(harness.clock.sleeps) == pytest.approx(10.0, abs=0.01)


def test_given_no_pacing_slot_before_the_deadline_when_sending_then_it_is_throttled_locally(make_harness):
    harness = make_harness(created("1"), created("2"), requests_per_window=1, window_seconds=10.0)
    harness.client.create_task(a_delivery(), harness.deadline())

    with pytest.raises(HubSpotThrottled) as raised:
        harness.client.create_task(a_delivery(), harness.deadline(3.0))

    assert raised.value.policy == LOCAL_PACER
    assert raised.value.wait_seconds == pytest.approx(10.0, abs=0.01)
    assert len(harness.hubspot.received) == 1


def test_given_searches_when_sending_then_they_keep_under_the_search_limit(make_harness):
    harness = make_harness(search_requests_per_window=4, search_window_seconds=1.0)

    for _ in range(5):
        harness.client.find_task(PLAY_ID, harness.deadline())

    assert sum(harness.clock.sleeps) == pytest.approx(1.0, abs=0.01)


# --- the token ---------------------------------------------------------------------------------


@pytest.fixture
def every_log_line(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], str]]:
    """Everything logged, as CloudWatch would get it (Powertools' JSON with extras) and as records."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(upswing_logger.registered_formatter)
    logging.getLogger(upswing_logger.name).addHandler(handler)
    caplog.set_level(logging.DEBUG)  # httpx and httpcore too
    yield lambda: stream.getvalue() + caplog.text + "".join(repr(vars(r)) for r in caplog.records)
    logging.getLogger(upswing_logger.name).removeHandler(handler)


def test_given_retries_and_a_rejection_when_logging_and_raising_then_the_token_never_shows(
    make_harness, every_log_line
):
    echo = f"Invalid token {TOKEN}: the private app was deleted"  # should HubSpot ever echo it
    harness = make_harness(
        httpx.ConnectError(f"refused for Bearer {TOKEN}"),
        httpx.ConnectTimeout(f"timed out for Bearer {TOKEN}"),
        rate_limited("TEN_SECONDLY_ROLLING"),
        hubspot_error(401, category="INVALID_AUTHENTICATION", message=echo),
    )

    with pytest.raises(HubSpotRejected) as raised:
        harness.client.create_task(a_delivery(), harness.deadline())

    logged = every_log_line()
    assert logged.count("HubSpot request failed; retrying") >= 3
    assert '"attempt":3' in logged.replace(" ", "")
    texts = [logged, str(raised.value), repr(raised.value), raised.value.message, repr(harness.client)]
    assert all(TOKEN not in text for text in texts)
    assert "[redacted]" in raised.value.message
    # Nor what the task says about the customer.
    assert SUBJECT not in logged
    assert "Northwind uses" not in logged


@pytest.mark.parametrize(
    "answers",
    [
        [httpx.ConnectError(f"refused, Authorization: Bearer {TOKEN}")] * 5,  # retried, then given up
        [httpx.ReadTimeout(f"timed out, Authorization: Bearer {TOKEN}")],  # sent: not sent again
    ],
)
def test_given_a_transport_error_that_names_the_token_when_giving_up_then_the_error_does_not(
    make_harness, answers
):
    harness = make_harness(*answers)

    with pytest.raises(HubSpotUnavailable) as raised:
        harness.client.create_task(a_delivery(), harness.deadline())

    assert TOKEN not in str(raised.value)
    assert raised.value.__cause__ is None  # no chained httpx error holding the request's headers


# --- HubSpot's other answers: 401 / 403, 423, 477 -----------------------------------------------


def test_given_a_401_when_the_secret_holds_a_new_token_then_it_is_read_again_and_used_once(make_harness):
    tokens = iter(["pat-old", "pat-new"])
    current = {"token": next(tokens)}
    forgotten: list[bool] = []

    def forget() -> None:
        forgotten.append(True)
        current["token"] = next(tokens)

    hubspot = ScriptedHubSpot([hubspot_error(401, category="INVALID_AUTHENTICATION"), created("9")])
    clock = FakeClock()
    with HubSpotClient(
        HubSpotSettings(),
        token=lambda: current["token"],
        forget_token=forget,
        http=httpx.Client(transport=httpx.MockTransport(hubspot)),
        sleep=clock.sleep,
        clock=clock,
    ) as client:
        assert client.create_task(a_delivery(), clock.now + 60) == "9"

    assert forgotten == [True]
    assert [request.headers["Authorization"] for request in hubspot.received] == [
        "Bearer pat-old",
        "Bearer pat-new",
    ]


@pytest.mark.parametrize(("status", "category"), [(401, "INVALID_AUTHENTICATION"), (403, "MISSING_SCOPES")])
def test_given_a_401_or_403_when_the_secret_holds_the_same_token_then_auth_failed_says_what_to_fix(
    make_harness, status, category
):
    harness = make_harness(
        hubspot_error(status, category=category, context={"requiredScopes": ["crm.objects.contacts.write"]})
    )

    with pytest.raises(HubSpotAuthFailed) as raised:
        harness.client.create_task(a_delivery(), harness.deadline())

    assert len(harness.hubspot.received) == 1  # the same token is not tried twice
    assert ("valid token" if status == 401 else "crm.objects.contacts.write") in raised.value.what_to_fix
    assert raised.value.correlation_id == "c0ffee"


def test_given_a_423_locked_when_creating_then_it_waits_two_seconds_and_tries_again(make_harness):
    harness = make_harness(hubspot_error(423, message="Locked"), created("8"))

    assert harness.client.create_task(a_delivery(), harness.deadline()) == "8"
    assert harness.clock.sleeps == [2.0]


def test_given_a_477_migration_outlasting_the_deadline_then_it_is_throttled_for_its_retry_after(
    make_harness,
):
    harness = make_harness(httpx.Response(477, json={"status": "error"}, headers={"Retry-After": "7200"}))

    with pytest.raises(HubSpotThrottled) as raised:
        harness.client.create_task(a_delivery(), harness.deadline())

    assert (raised.value.policy, raised.value.wait_seconds) == ("MIGRATION_IN_PROGRESS", 7200.0)
    assert harness.clock.sleeps == []


def test_given_a_rejection_then_the_error_keeps_correlation_id_category_context_and_errors(make_harness):
    errors = [{"message": "x", "code": "INVALID_OPTION", "context": {"propertyName": ["hs_task_priority"]}}]
    harness = make_harness(
        hubspot_error(
            400, category="VALIDATION_ERROR", message="bad", context={"properties": ["p"]}, errors=errors
        )
    )

    with pytest.raises(HubSpotRejected) as raised:
        harness.client.create_task(a_delivery(), harness.deadline())

    details = raised.value.details
    assert (details.correlation_id, details.context, details.errors) == (
        "c0ffee",
        {"properties": ["p"]},
        tuple(errors),
    )
    text = str(raised.value)
    assert '"correlationId":"c0ffee"' in text
    assert '"properties":["p"]' in text
    assert "INVALID_OPTION" in text


# --- rate-limit headers ------------------------------------------------------------------------


def test_given_the_rate_limit_headers_say_the_window_is_spent_then_the_next_request_waits_its_interval(
    make_harness,
):
    spent = {"X-HubSpot-RateLimit-Remaining": "1", "X-HubSpot-RateLimit-Interval-Milliseconds": "10000"}
    harness = make_harness(httpx.Response(201, json={"id": "1"}, headers=spent), created("2"))

    harness.client.create_task(a_delivery(), harness.deadline())
    harness.client.create_task(a_delivery(), harness.deadline())

    assert harness.clock.sleeps == [10.0]  # before the second request, not after a 429


def test_given_the_daily_remaining_header_is_zero_then_the_next_request_is_throttled_without_being_sent(
    make_harness,
):
    harness = make_harness(
        httpx.Response(201, json={"id": "1"}, headers={"X-HubSpot-RateLimit-Daily-Remaining": "0"})
    )

    harness.client.create_task(a_delivery(), harness.deadline())
    with pytest.raises(HubSpotThrottled) as raised:
        harness.client.create_task(a_delivery(), harness.deadline())

    assert (raised.value.policy, raised.value.wait_seconds) == ("DAILY", 6 * 3600)
    assert len(harness.hubspot.received) == 1


# --- due dates, body size, the play id property ------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "hour", "expected"),
    [
        ("Australia/Sydney", 17, "2026-11-27T06:00:00Z"),  # Friday 17:00 AEDT, still Friday in Sydney
        ("America/New_York", 17, "2026-11-27T22:00:00Z"),
        ("UTC", 17, "2026-11-27T17:00:00Z"),
        ("Europe/Paris", 9, "2026-11-27T08:00:00Z"),
    ],
)
def test_given_a_portal_time_zone_then_the_task_is_due_at_the_hour_there(zone, hour, expected):
    friday = a_delivery(due=date(2026, 11, 27))

    request = task_request(friday, HubSpotSettings(portal_timezone=zone, due_hour=hour))

    assert request["properties"]["hs_timestamp"] == expected
    due = datetime.fromisoformat(expected.replace("Z", "+00:00")).astimezone(ZoneInfo(zone))
    assert (due.weekday(), due.hour) == (4, hour)  # Friday, there


def test_given_a_due_hour_outside_the_day_then_the_settings_refuse_it():
    with pytest.raises(ValueError, match="0-23"):
        HubSpotSettings(due_hour=24)


def test_given_a_body_longer_than_hubspot_allows_then_it_is_cut_with_a_note_and_keeps_the_marker():
    huge = "<&> evidence line\n" * 10_000  # escaping makes the HTML longer than the text

    body = task_request(a_delivery(body=huge), HubSpotSettings())["properties"]["hs_task_body"]

    assert len(body) <= TASK_BODY_LIMIT
    assert len(body) > TASK_BODY_LIMIT - 200  # not cut more than needed
    assert body.endswith(f"<p>Upswing play {PLAY_ID}</p>")
    assert "Truncated" in body
    assert "&amp;" in body
    assert not re.search(r"&[a-z]*<", body)  # no entity cut in half


def test_given_the_play_id_property_then_the_task_carries_it_and_the_search_asks_eq_first(make_harness):
    harness = make_harness(created("3"), searches=[found("3")], play_id_property="upswing_play_id")

    harness.client.create_task(a_delivery(), harness.deadline())
    harness.client.find_task(PLAY_ID, harness.deadline())

    assert harness.hubspot.body(0)["properties"]["upswing_play_id"] == PLAY_ID
    groups = harness.hubspot.body(1)["filterGroups"]
    assert groups[0] == {"filters": [{"propertyName": "upswing_play_id", "operator": "EQ", "value": PLAY_ID}]}
    assert groups[1]["filters"][0]["operator"] == "CONTAINS_TOKEN"  # the body marker stays the fallback
