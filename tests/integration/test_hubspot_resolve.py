"""HubSpot ids resolved, not typed: owners by e-mail, companies by domain, before the first task.

The sender runs on moto (deliveries ledger = the cache, plays ledger) against the local HubSpot sink
over loopback (Owners API, company search, tasks), or a scripted HubSpot (httpx MockTransport) where
HubSpot has to misbehave (429, 5xx).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from functions.hubspot_sender.handler import HubSpotSender, send_tasks
from shared.accounts.models import AccountProfile
from shared.accounts.store import AccountStore
from shared.delivery.hubspot import HubSpotClient, HubSpotSettings
from shared.delivery.hubspot_resolve import (
    FOUND_TTL,
    MISS_TTL,
    Answer,
    HubSpotResolver,
    Outcome,
    ResolutionCache,
    owner_key,
)
from shared.delivery.ledger import DeliveryLedger, DeliveryStatus
from shared.observability import metrics
from shared.resources import DELIVERIES_TABLE, HUBSPOT_QUEUE
from shared.routing.ledger import PlayLedger
from shared.routing.messages import PlayDelivery
from shared.routing.views import play_state
from tests.conftest import TEST_RETENTION_DAYS, Aws
from tests.integration.builders import TEST_WRITER, hubspot_queue, sqs_event
from tests.integration.test_hubspot_sender import (  # noqa: F401 (routed_play is a fixture)
    TOKEN,
    delivery,
    queued_event,
    routed_play,
)
from upswing.local.hubspot_sink import HubSpotSink

EMAIL = "dana.csm@northwind.example"
PLAY = "a" * 24
NOON = datetime(2026, 11, 24, 12, tzinfo=UTC)


def by_email_and_domain(email: str = EMAIL, domain: str | None = "northwind.example") -> PlayDelivery:
    """A delivery for an account whose profile names its CSM by e-mail and its company by domain only."""
    return delivery(
        owner={"role": "csm", "name": "Dana", "email": email},
        hubspot={"domain": domain} if domain else {},
    )


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[HubSpotSink]:
    with HubSpotSink(tmp_path / "requests.jsonl") as running:
        running.register_owner("7001", EMAIL)
        running.register_owner("7002", "gone@northwind.example", archived=True)
        running.register_company("9001", "northwind.example")
        running.register_company("9101", "twins.example")
        running.register_company("9102", "twins.example")
        yield running


def make_sender(
    aws: Aws, http: httpx.Client, base_url: str, plays: PlayLedger | None = None
) -> HubSpotSender:
    client = HubSpotClient(
        HubSpotSettings(base_url=base_url, timeout_seconds=5.0),
        token=lambda: TOKEN,
        http=http,
        sleep=lambda seconds: None,
        jitter=lambda: 0.0,
        wall_clock=lambda: NOON,
    )
    table = aws.tables[DELIVERIES_TABLE.env_var]
    return HubSpotSender(
        client=client,
        ledger=DeliveryLedger(aws.dynamodb, table, TEST_RETENTION_DAYS),
        queue=hubspot_queue(
            aws.sqs,
            aws.queues[HUBSPOT_QUEUE.env_var],
            aws.sqs.create_queue(QueueName="hubspot-dlq")["QueueUrl"],
        ),
        plays=plays,
        resolver=HubSpotResolver(client, ResolutionCache(aws.dynamodb, table)),
        accounts=AccountStore(aws.dynamodb, aws.accounts_table),
    )


@pytest.fixture
def sender(aws: Aws, sink: HubSpotSink, routed_play: PlayLedger) -> Iterator[HubSpotSender]:  # noqa: F811
    with httpx.Client() as http:
        yield make_sender(aws, http, sink.endpoint, routed_play)


def deadline() -> float:
    return time.monotonic() + 60


def lookups(sink: HubSpotSink) -> list[str]:
    return [
        request["path"].split("?")[0]
        for request in sink.requests()
        if not request["path"].startswith("/crm/v3/objects/tasks")
    ]


def created(sink: HubSpotSink) -> list[dict[str, Any]]:
    """The bodies of the task creations the sink took (what HubSpot would have stored)."""
    return [
        request["body"]
        for request in sink.requests()
        if request["path"] == "/crm/v3/objects/tasks" and request["status"] == 201
    ]


def problems(plays: PlayLedger) -> list[str]:
    record = plays.get("acct-1", PLAY)
    assert record is not None
    return [problem["problem"] for problem in play_state(record)["delivery_problems"]]


def test_given_an_owner_by_email_and_a_company_by_domain_then_the_task_carries_their_ids(
    sender: HubSpotSender,
    sink: HubSpotSink,
    routed_play: PlayLedger,  # noqa: F811
) -> None:
    metrics.clear_metrics()

    answer = send_tasks(sqs_event([by_email_and_domain().model_dump_json()]), sender, deadline())

    # Then the task is the owner's and associated with the company, and the play says nothing went wrong
    assert answer == {"batchItemFailures": []}
    [task] = created(sink)
    assert task["properties"]["hubspot_owner_id"] == "7001"
    assert [association["to"] for association in task["associations"]] == [{"id": "9001"}]
    assert problems(routed_play) == []
    record = routed_play.get("acct-1", PLAY)
    assert record is not None
    assert record.task is not None
    assert record.task.owner_id == "7001"  # the resolved owner is the task's owner on the play too
    assert lookups(sink) == ["/crm/v3/owners", "/crm/v3/objects/companies/search"]
    assert metrics.metric_set["HubSpotLookups"]["Value"] == [2]


def test_given_a_company_found_by_domain_then_the_deal_read_back_finds_the_account_by_its_id(
    aws: Aws, sender: HubSpotSender, sink: HubSpotSink
) -> None:
    # Given the account's profile names its company by domain only
    accounts = AccountStore(aws.dynamodb, aws.accounts_table)
    profile = AccountProfile(name="Northwind", hubspot={"domain": "northwind.example"})
    accounts.put("acct-1", profile, TEST_WRITER)
    assert accounts.accounts_of_company("9001") == []

    send_tasks(sqs_event([by_email_and_domain().model_dump_json()]), sender, deadline())

    # Then the company index answers the id found (as the deal read-back asks), and a later put of
    # the same domain keeps it, while a put of another domain drops it
    assert accounts.accounts_of_company("9001") == ["acct-1"]
    accounts.put("acct-1", profile.model_copy(update={"segment": "smb"}), TEST_WRITER)
    assert accounts.accounts_of_company("9001") == ["acct-1"]
    moved = AccountProfile(name="Northwind", hubspot={"domain": "northwind-group.example"})
    accounts.put("acct-1", moved, TEST_WRITER)
    assert accounts.accounts_of_company("9001") == []
    # An answer for a domain the profile no longer names is not written
    assert accounts.record_resolved_company("acct-1", "northwind.example", "9001") is False
    assert accounts.accounts_of_company("9001") == []


def test_given_ids_in_the_profile_then_nothing_is_looked_up(sender: HubSpotSender, sink: HubSpotSink) -> None:
    sink.register(owners=["501"], companies=["77"])
    both = delivery(
        owner={"role": "csm", "email": EMAIL, "hubspot_owner_id": "501"},
        hubspot={"company_id": "77", "domain": "northwind.example"},
    )

    send_tasks(sqs_event([both.model_dump_json()]), sender, deadline())

    [task] = created(sink)
    assert task["properties"]["hubspot_owner_id"] == "501"
    assert [association["to"] for association in task["associations"]] == [{"id": "77"}]
    assert lookups(sink) == []


@pytest.mark.parametrize(
    ("email", "said"),
    [
        ("gone@northwind.example", "is HubSpot owner 7002's, who is archived"),
        ("nobody@northwind.example", "no HubSpot owner has the csm owner's e-mail address"),
    ],
    ids=["archived", "unknown"],
)
def test_given_an_archived_or_unknown_owner_email_then_the_task_is_unassigned_and_the_play_says_why(
    sender: HubSpotSender,
    sink: HubSpotSink,
    routed_play: PlayLedger,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    email: str,
    said: str,
) -> None:
    metrics.clear_metrics()

    answer = send_tasks(sqs_event([by_email_and_domain(email).model_dump_json()]), sender, deadline())

    assert answer == {"batchItemFailures": []}
    [task] = created(sink)
    assert "hubspot_owner_id" not in task["properties"]  # never the archived owner
    assert [association["to"] for association in task["associations"]] == [{"id": "9001"}]
    assert said in task["properties"]["hs_task_body"]  # whoever picks the task up sees why
    [problem] = problems(routed_play)
    assert said in problem
    assert "the task is unassigned" in problem
    assert metrics.metric_set["HubSpotUnresolved"]["Value"] == [1]
    # The archived owner was asked for only after the active ones
    assert [r["path"] for r in sink.requests() if r["path"].startswith("/crm/v3/owners")] == [
        f"/crm/v3/owners?email={email.replace('@', '%40')}&archived=false&limit=10",
        f"/crm/v3/owners?email={email.replace('@', '%40')}&archived=true&limit=10",
    ]
    assert email not in capsys.readouterr().out  # no address in any log line


@pytest.mark.parametrize(
    ("domain", "said"),
    [
        ("twins.example", "2 HubSpot companies have the domain twins.example, and none was guessed"),
        ("nowhere.example", "no HubSpot company has the domain nowhere.example"),
    ],
    ids=["several", "none"],
)
def test_given_a_domain_of_several_companies_or_none_then_the_task_is_not_associated_and_the_play_says_why(
    sender: HubSpotSender,
    sink: HubSpotSink,
    routed_play: PlayLedger,  # noqa: F811
    domain: str,
    said: str,
) -> None:
    send_tasks(sqs_event([by_email_and_domain(domain=domain).model_dump_json()]), sender, deadline())

    [task] = created(sink)
    assert task["associations"] == []
    assert task["properties"]["hubspot_owner_id"] == "7001"
    assert said in task["properties"]["hs_task_body"]
    [problem] = problems(routed_play)
    assert said in problem
    assert "not associated with a company" in problem


def test_given_a_cached_answer_then_it_serves_within_its_expiry_and_is_asked_again_after(
    aws: Aws, sink: HubSpotSink
) -> None:
    table = aws.tables[DELIVERIES_TABLE.env_var]
    cache = ResolutionCache(aws.dynamodb, table)
    with HubSpotClient(HubSpotSettings(base_url=sink.endpoint), lambda: TOKEN) as client:
        resolver = HubSpotResolver(client, cache)
        first = resolver.resolve(by_email_and_domain(), deadline(), NOON)
        # Within the expiry: the same answers, HubSpot not asked again
        again = resolver.resolve(by_email_and_domain(), deadline(), NOON + FOUND_TTL - timedelta(seconds=1))
        assert (first.looked_up, first.cached, again.looked_up, again.cached) == (2, 0, 0, 2)
        assert len(lookups(sink)) == 2
        # The CSM left; another owner has the address now. After the expiry HubSpot is asked again
        sink.register_owner("7009", EMAIL)
        later = resolver.resolve(by_email_and_domain(), deadline(), NOON + FOUND_TTL)

    assert later.looked_up == 2
    assert later.delivery.owner is not None
    assert later.delivery.owner.hubspot_owner_id == "7009"
    assert later.delivery.hubspot.company_id == "9001"
    # The cache holds no address, only its hash, and an expiry DynamoDB's TTL deletes it by
    items = [item for item in aws.scan(table) if item["pk"].startswith("resolve#")]
    assert sorted(item["pk"] for item in items) == sorted(
        ["resolve#" + owner_key(EMAIL), "resolve#company#northwind.example"]
    )
    assert EMAIL not in json.dumps(items, default=str)
    assert {int(item["expires_at"]) for item in items} == {int((NOON + 2 * FOUND_TTL).timestamp())}


def test_given_a_miss_then_it_is_cached_for_the_shorter_expiry(aws: Aws, sink: HubSpotSink) -> None:
    cache = ResolutionCache(aws.dynamodb, aws.tables[DELIVERIES_TABLE.env_var])
    with HubSpotClient(HubSpotSettings(base_url=sink.endpoint), lambda: TOKEN) as client:
        resolver = HubSpotResolver(client, cache)
        resolver.resolve(by_email_and_domain("new.csm@northwind.example", None), deadline(), NOON)
        # The CSM gets a HubSpot seat; within the hour the miss still answers, after it the owner is found
        sink.register_owner("7010", "new.csm@northwind.example")
        within = resolver.resolve(by_email_and_domain("new.csm@northwind.example", None), deadline(), NOON)
        after = resolver.resolve(
            by_email_and_domain("new.csm@northwind.example", None), deadline(), NOON + MISS_TTL
        )

    assert within.problems
    assert within.cached == 1
    assert after.problems == []
    assert after.delivery.owner is not None
    assert after.delivery.owner.hubspot_owner_id == "7010"
    cached = cache.get(owner_key("new.csm@northwind.example"), NOON + MISS_TTL)
    assert cached is not None
    assert cached.outcome is Outcome.FOUND


class ScriptedHubSpot:
    """Lookups answered from a script first, then like a portal that knows one owner and one company."""

    def __init__(self) -> None:
        self.script: list[httpx.Response] = []
        self.paths: list[str] = []
        self.created: list[dict[str, Any]] = []
        self.task_refusals: list[httpx.Response] = []  # answers to the next task creations

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if request.url.path == "/crm/v3/objects/tasks":
            if self.task_refusals:
                return self.task_refusals.pop(0)
            self.created.append(json.loads(request.content))
            return httpx.Response(201, json={"id": str(4000 + len(self.created))})
        if self.script:
            return self.script.pop(0)
        if request.url.path == "/crm/v3/owners":
            active = request.url.params["archived"] == "false"
            return httpx.Response(200, json={"results": [{"id": "7001", "email": EMAIL}] if active else []})
        return httpx.Response(200, json={"total": 1, "results": [{"id": "9001"}]})


TEN_SECONDLY = {"status": "error", "errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"}
DAILY = {"status": "error", "errorType": "RATE_LIMIT", "policyName": "DAILY"}


def test_given_a_429_on_a_lookup_then_it_is_waited_out_and_retried_under_the_pacing(aws: Aws) -> None:
    hubspot = ScriptedHubSpot()
    hubspot.script.append(httpx.Response(429, json=TEN_SECONDLY))
    waits: list[float] = []
    with httpx.Client(transport=httpx.MockTransport(hubspot)) as http:
        sender = make_sender(aws, http, "https://api.hubapi.com")
        sender.client._sleep = waits.append  # the client's own wait, as the pacing decides it

        answer = send_tasks(sqs_event([by_email_and_domain().model_dump_json()]), sender, deadline())

    assert answer == {"batchItemFailures": []}
    assert hubspot.paths.count("/crm/v3/owners") == 2  # refused, then answered
    assert max(waits) >= 10.0  # the ten-secondly window waited out
    [created] = hubspot.created
    assert created["properties"]["hubspot_owner_id"] == "7001"


@pytest.mark.parametrize(
    ("refusal", "raised"),
    [
        (httpx.Response(429, json=DAILY), "HubSpotThrottled"),
        (httpx.Response(503, text="down"), "ResolutionUnavailable"),
    ],
    ids=["daily-limit", "5xx"],
)
def test_given_a_lookup_hubspot_cannot_answer_now_then_no_task_is_created_and_the_message_comes_back(
    aws: Aws, refusal: httpx.Response, raised: str
) -> None:
    hubspot = ScriptedHubSpot()
    hubspot.script.extend([refusal] * 5)  # every attempt the client makes
    body = by_email_and_domain().model_dump_json()
    with httpx.Client(transport=httpx.MockTransport(hubspot)) as http:
        sender = make_sender(aws, http, "https://api.hubapi.com")

        with pytest.raises(BatchProcessingError) as failed:
            send_tasks(queued_event(aws, [body]), sender, deadline())

        assert raised in str(failed.value.child_exceptions)
        assert hubspot.created == []
        # Nothing cached, and the claim released: the redelivery (a later invocation, once HubSpot
        # answers again) resolves and creates the task
        cache = ResolutionCache(aws.dynamodb, aws.tables[DELIVERIES_TABLE.env_var])
        assert cache.get(owner_key(EMAIL), NOON) is None
        hubspot.script.clear()
        sender = make_sender(aws, http, "https://api.hubapi.com")
        answer = send_tasks(sqs_event([body]), sender, deadline())

    assert answer == {"batchItemFailures": []}
    [created] = hubspot.created
    assert created["properties"]["hubspot_owner_id"] == "7001"
    claim = sender.ledger.claim("hubspot_task", PLAY, NOON)
    assert claim.status is DeliveryStatus.DELIVERED


def test_given_a_cached_owner_hubspot_no_longer_takes_then_the_task_falls_back_and_the_answer_is_dropped(
    aws: Aws,
) -> None:
    hubspot = ScriptedHubSpot()
    cache = ResolutionCache(aws.dynamodb, aws.tables[DELIVERIES_TABLE.env_var])
    invalid_owner = {
        "status": "error",
        "message": "Property values were not valid",
        "category": "VALIDATION_ERROR",
        "errors": [{"error": "INVALID_OWNER_ID", "name": "hubspot_owner_id", "message": "7001 is not valid"}],
    }
    # Given the owner found by e-mail yesterday is cached, and HubSpot archived that owner since
    cache.put(owner_key(EMAIL), Answer(Outcome.FOUND, "7001"), datetime.now(UTC) - timedelta(hours=1))
    hubspot.task_refusals.append(httpx.Response(400, json=invalid_owner))
    with httpx.Client(transport=httpx.MockTransport(hubspot)) as http:
        sender = make_sender(aws, http, "https://api.hubapi.com")
        send_tasks(sqs_event([by_email_and_domain().model_dump_json()]), sender, deadline())

    assert "/crm/v3/owners" not in hubspot.paths  # the cached answer was used
    [created] = hubspot.created
    assert "hubspot_owner_id" not in created["properties"]
    assert cache.get(owner_key(EMAIL), NOON) is None  # the next task asks HubSpot again
