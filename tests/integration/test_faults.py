"""Faults (issue 16): failures injected into the real handlers on moto. Every play is delivered once,
nothing is counted twice, and the rest of the batch goes on.

- the router's accept: DynamoDB throttling and `TransactionCanceled` (after the SDK's retries),
  and an accept that committed but whose answer was lost;
- the evaluator's hand-off: SQS refusing the call, refusing some entries, or losing the answer;
- a Lambda timeout at every AWS call of a batch, in the aggregator, the evaluator and the router;
  Lambda then delivers the whole batch again;
- HubSpot answering 500 (searches included) for a minute, then recovering, with the HubSpot queue's
  visibility timeout and redrive policy played on a fake clock.

Each test ends by counting what reached the end of the line (HubSpot tasks through the real sender,
counters, firings) and records its figures, printed at the end of the run.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from functions.aggregator.handler import process_stream_batch
from functions.evaluator.handler import evaluate_changed_accounts
from functions.hubspot_sender.handler import FUNCTION_TIMEOUT, HubSpotSender, send_tasks
from functions.router.handler import route_fired
from functions.router.scheduler import release_due
from shared.accounts.models import AccountProfile
from shared.accounts.store import AccountStore
from shared.counters.store import CounterStore
from shared.counters.view import bucket_view
from shared.delivery.hubspot import HubSpotClient, HubSpotSettings
from shared.delivery.ledger import DeliveryLedger
from shared.resources import (
    COUNTERS_TABLE,
    DELIVERIES_TABLE,
    EMAIL_QUEUE,
    FIRINGS_TABLE,
    HUBSPOT_QUEUE,
    PLAYS_TABLE,
)
from shared.routing.dispatch import AwsDispatcher
from shared.routing.ledger import PlayLedger
from shared.routing.messages import PlayDelivery
from shared.routing.models import PlayStatus
from shared.routing.router import FiredMessage, Router, play_id
from shared.rules.dynamo_aggregates import DynamoAggregates
from shared.rules.engine import read_plan
from shared.rules.firings import FiringStore
from shared.rules.loading import parse_ruleset
from shared.rules.online import OnlineEvaluator, sqs_publisher
from shared.rules.plays import Channel
from tests.conftest import TEST_RETENTION_DAYS, Aws, StreamReader, _test_client
from tests.integration.builders import (
    TEST_WRITER,
    an_hour,
    call_api,
    hubspot_queue,
    post_events,
    rfc3339,
    sqs_event,
    stream_event,
    usage_event,
)
from tests.integration.faults import (
    Clock,
    LambdaTimedOut,
    SimulatedQueue,
    fail_calls,
    fail_entries,
    kill_after,
    record_figures,
)

AT = an_hour(0, 23)  # evaluations: 23:00 UTC on the day of the latest events
BUS = "upswing-test-bus"
TOKEN = "pat-na1-00000000-faults"
MARKER = re.compile(r"Upswing play ([0-9a-f]{24})")

RULES = parse_ruleset(
    """
version: faults-1
metrics: {dashboard.created: count}
signals:
  building: {measure: sum, metric: dashboard.created, window: 7d, at_least: 3}
triggers:
  dashboards: {category: adoption, owner_role: csm, play: showcase, when: building, cooldown: 30d}
  dashboards-ae: {category: adoption, owner_role: csm, play: showcase, when: building, cooldown: 30d}
budgets: {plays_per_account: 5, account_period: week, tasks_per_owner_per_day: 50}
plays:
  showcase:
    channels: [hubspot_task, email]
    sla_business_days: 2
""",
    "faults.yaml",
)
TRIGGERS = tuple(RULES.triggers)


# ── the pipeline's pieces, on the test's moto ──────────────────────────────────────────────────


def put_account(aws: Aws, account_id: str) -> None:
    owner = {"name": f"CSM of {account_id}", "email": f"csm-{account_id}@example.com"}
    owner["hubspot_owner_id"] = str(int(hashlib.sha256(account_id.encode()).hexdigest()[:12], 16))
    AccountStore(aws.dynamodb, aws.accounts_table).put(
        account_id,
        AccountProfile.model_validate({"name": account_id.title(), "owners": {"csm": owner}}),
        TEST_WRITER,
    )


@pytest.fixture
def bus(aws: Aws) -> str:
    _test_client("events").create_event_bus(Name=BUS)
    return BUS


def make_router(aws: Aws, dynamodb: Any = None, sqs: Any = None, events: Any = None) -> Router:
    """The router as its function builds it, on the given clients (the ones faults are injected into)."""
    dynamodb = dynamodb or _test_client("dynamodb")
    return Router(
        ruleset=RULES,
        accounts=AccountStore(dynamodb, aws.accounts_table),
        ledger=PlayLedger(dynamodb, aws.tables[PLAYS_TABLE.env_var], TEST_RETENTION_DAYS),
        dispatcher=AwsDispatcher(
            sqs or _test_client("sqs"),
            {
                Channel.HUBSPOT_TASK: aws.queues[HUBSPOT_QUEUE.env_var],
                Channel.EMAIL: aws.queues[EMAIL_QUEUE.env_var],
            },
            events or _test_client("events"),
            BUS,
        ),
        signal_holds=lambda account_id, trigger, at: True,
    )


def make_evaluator(aws: Aws, dynamodb: Any = None, sqs: Any = None) -> OnlineEvaluator:
    dynamodb = dynamodb or _test_client("dynamodb")
    return OnlineEvaluator(
        ruleset=RULES,
        plan=read_plan(RULES),
        aggregates=DynamoAggregates(CounterStore(dynamodb, aws.counters_table, TEST_RETENTION_DAYS)),
        accounts=AccountStore(dynamodb, aws.accounts_table),
        firings=FiringStore(dynamodb, aws.tables[FIRINGS_TABLE.env_var], TEST_RETENTION_DAYS),
        publish=sqs_publisher(sqs or _test_client("sqs"), aws.fired_queue_url),
    )


def fired(account_id: str, trigger: str = "dashboards") -> FiredMessage:
    firing = {
        "ruleset_version": "faults-1",
        "trigger": trigger,
        "account_id": account_id,
        "evaluated_at": rfc3339(AT),
        "category": "adoption",
        "owner_role": "csm",
        "play": "showcase",
        "score": {"total": 80, "base": 0, "parts": []},
        "condition": {
            "signal": "building",
            "detail": "sum of dashboard.created over 7d = 3",
            "held": True,
            "observed": 3,
            "threshold": 3,
            "comparison": "at_least",
            "window": {"from": "2026-11-18", "to": "2026-11-24"},
        },
        "exclusions_checked": [],
    }
    firing_id = hashlib.sha256(f"{account_id}\n{trigger}".encode()).hexdigest()[:24]
    return FiredMessage.model_validate({"type": "trigger.fired", "firing_id": firing_id, "firing": firing})


def dashboards(account_id: str, count: int = 3) -> list[dict[str, Any]]:
    return [
        usage_event(account_id=account_id, name="dashboard.created", occurred_at=rfc3339(an_hour(-day, 9)))
        for day in range(count)
    ]


class Pipeline:
    """API → ledger stream → aggregator → counters stream, as in test_evaluator."""

    def __init__(self, aws: Aws) -> None:
        self.aws = aws
        self.ledger = aws.events_stream()
        self.counters = StreamReader(aws.streams_client, aws.stream_arns[COUNTERS_TABLE.env_var])

    def post(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Accept the events; the ledger stream records they produced."""
        status, summary = call_api(post_events(events))
        assert (status, summary["accepted"]) == (202, len(events))
        return self.ledger.new_records()

    def count(self, records: list[dict[str, Any]]) -> None:
        store = CounterStore(self.aws.dynamodb, self.aws.counters_table, TEST_RETENTION_DAYS)
        assert process_stream_batch(stream_event(records), store) == {"batchItemFailures": []}

    def counter_changes(self) -> list[dict[str, Any]]:
        return self.counters.new_records(event_names=("INSERT", "MODIFY"))


def of(account_id: str) -> Any:
    """Whether a SendMessageBatch call carries this account's firings."""
    return lambda params: any(f'"account_id":"{account_id}"' in e["MessageBody"] for e in params["Entries"])


def fired_bodies(aws: Aws) -> list[dict[str, Any]]:
    return [json.loads(message["Body"]) for message in aws.queue_messages(aws.fired_queue_url)]


def queue_bodies(aws: Aws, queue: Any) -> list[str]:
    return [message["Body"] for message in aws.queue_messages(aws.queues[queue.env_var])]


class HubSpotTasks:
    """HubSpot's tasks API as a mock transport: creates tasks, finds them by play id."""

    def __init__(self) -> None:
        self.tasks: dict[str, str] = {}  # task id → body

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if request.url.path.endswith("/search"):
            token = body["filterGroups"][0]["filters"][0]["value"]
            found = [{"id": task_id} for task_id, text in self.tasks.items() if token in text]
            return httpx.Response(200, json={"total": len(found), "results": found[:1]})
        task_id = str(1000 + len(self.tasks))
        self.tasks[task_id] = body["properties"]["hs_task_body"]
        return httpx.Response(201, json={"id": task_id, "properties": body["properties"]})

    def plays(self) -> list[str]:
        """One entry per task: the play id it carries."""
        return [match.group(1) for text in self.tasks.values() if (match := MARKER.search(text))]


def deliver_tasks(aws: Aws, hubspot: HubSpotTasks) -> list[str]:
    """Drain the HubSpot queue through the real sender (every message, duplicates included); the
    message bodies it took."""
    clock = Clock()  # the pacer's waits pass at once
    client = HubSpotClient(
        HubSpotSettings(),
        token=lambda: TOKEN,
        http=httpx.Client(transport=httpx.MockTransport(hubspot)),
        sleep=clock.sleep,
        clock=clock,
        jitter=lambda: 0.0,
    )
    sender = HubSpotSender(
        client=client,
        ledger=DeliveryLedger(aws.dynamodb, aws.tables[DELIVERIES_TABLE.env_var], TEST_RETENTION_DAYS),
        queue=hubspot_queue(aws.sqs, aws.queues[HUBSPOT_QUEUE.env_var], "unused: nothing here is rejected"),
    )
    bodies = queue_bodies(aws, HUBSPOT_QUEUE)
    for start in range(0, len(bodies), 10):
        answer = send_tasks(sqs_event(bodies[start : start + 10]), sender, clock() + 55)
        assert answer == {"batchItemFailures": []}
    return bodies


def routed_plays(aws: Aws) -> dict[str, PlayStatus]:
    return {
        item["play_id"]: PlayStatus(item["status"])
        for item in aws.scan(aws.tables[PLAYS_TABLE.env_var])
        if item["sk"].startswith("play#")
    }


def budget_counts(aws: Aws) -> dict[str, int]:
    return {
        item["pk"]: int(item["n"])
        for item in aws.scan(aws.tables[PLAYS_TABLE.env_var])
        if item["pk"].startswith("budget#")
    }


def email_plays(aws: Aws) -> list[str]:
    return [json.loads(body)["play_id"] for body in queue_bodies(aws, EMAIL_QUEUE)]


# ── the router's accept: throttling, cancelled transactions, a lost answer ─────────────────────

ACCEPT_FAULTS = {
    "throttled (ProvisionedThroughputExceeded)": {"code": "ProvisionedThroughputExceededException"},
    "throttled (ThrottlingException)": {"code": "ThrottlingException"},
    "TransactionCanceled: TransactionConflict": {
        "code": "TransactionCanceledException",
        "cancellation_reasons": ["TransactionConflict", "None", "None"],
    },
    "TransactionCanceled: a counter throttled": {
        "code": "TransactionCanceledException",
        "cancellation_reasons": ["None", "ThrottlingError", "None"],
    },
    "committed, answer lost (500)": {"code": "InternalServerError", "status": 500, "after_call": True},
}


@pytest.mark.parametrize("fault", list(ACCEPT_FAULTS))
def test_given_the_routers_accept_fails_for_some_firings_then_only_those_retry_and_each_play_arrives_once(
    aws: Aws, bus: str, fault: str
) -> None:
    # Given six firings of six accounts in one batch, and the accept of the 2nd and 5th failing
    accounts = [f"acct-{n}" for n in range(6)]
    for account_id in accounts:
        put_account(aws, account_id)
    messages = [fired(account_id) for account_id in accounts]
    dynamodb = _test_client("dynamodb")
    log = fail_calls(dynamodb, "TransactWriteItems", calls={2, 5}, **ACCEPT_FAULTS[fault])
    router = make_router(aws, dynamodb)
    event = sqs_event([message.model_dump_json() for message in messages])

    # When the batch is routed
    answer = route_fired(event, router)

    expected = {play_id(message.firing_id, 0) for message in messages}
    assert log.failed == 2
    if fault == "TransactionCanceled: TransactionConflict":
        # Then a transaction that lost only a conflict is tried again at once (shared/routing/ledger.py):
        # nothing fails, every play is routed
        failed: list[dict[str, Any]] = []
        assert answer == {"batchItemFailures": []}
    else:
        # Then only the two failed messages are reported; the other four plays are routed
        failed = [event["Records"][index] for index in (1, 4)]
        assert answer == {"batchItemFailures": [{"itemIdentifier": record["messageId"]} for record in failed]}
    routed = routed_plays(aws)
    assert sum(status is PlayStatus.ROUTED for status in routed.values()) == 6 - len(failed)

    # When SQS delivers the failed ones again (the fault has passed)
    if failed:
        assert route_fired(sqs_event([record["body"] for record in failed]), router) == {
            "batchItemFailures": []
        }

    # Then every play is routed, its budgets charged once, and one task and one email go out per play
    assert routed_plays(aws) == dict.fromkeys(expected, PlayStatus.ROUTED)
    assert set(budget_counts(aws).values()) == {1}
    assert len(budget_counts(aws)) == 12  # each account's weekly budget, each CSM's daily one
    hubspot = HubSpotTasks()
    deliver_tasks(aws, hubspot)
    figures = record_figures(f"router accept: {fault}", expected, hubspot.plays())
    assert Counter(email_plays(aws)) == Counter(dict.fromkeys(expected, 1))
    assert (figures.lost, figures.duplicates) == (0, 0)


# ── the evaluator's hand-off: SQS failures ────────────────────────────────────────────────────


def test_given_sqs_failures_in_the_evaluators_hand_off_then_each_firing_becomes_one_play(
    aws: Aws, bus: str
) -> None:
    # Given four accounts whose counters each fire both triggers, in one stream batch
    pipeline = Pipeline(aws)
    accounts = ["acct-a", "acct-b", "acct-c", "acct-d"]
    for account_id in accounts:
        put_account(aws, account_id)
    pipeline.count(pipeline.post([event for account_id in accounts for event in dashboards(account_id)]))
    records = pipeline.counter_changes()

    # And SQS failing each account's hand-off but the first differently: the call refused
    # (b), one of two entries refused (c), the messages sent but the answer lost (d)
    sqs = _test_client("sqs")
    fail_calls(
        sqs,
        "SendMessageBatch",
        "AWS.SimpleQueueService.ServiceUnavailable",
        status=503,
        where=of("acct-b"),
        calls={1},
    )
    fail_calls(
        sqs, "SendMessageBatch", "InternalError", status=500, after_call=True, where=of("acct-d"), calls={1}
    )
    refused_once: list[str] = []

    def refuse_once(entry: dict[str, Any]) -> bool:
        body = entry["MessageBody"]
        if refused_once or '"acct-c"' not in body or '"dashboards-ae"' not in body:
            return False
        refused_once.append(body)
        return True

    refused = fail_entries(sqs, "SendMessageBatch", refuse_once)

    # When the batch is evaluated
    answer = evaluate_changed_accounts({"Records": records}, make_evaluator(aws, sqs=sqs), AT)

    # Then only the records of b, c and d fail; a's firings are handed off
    failing = {"acct-b", "acct-c", "acct-d"}
    assert answer["batchItemFailures"] == [
        {"itemIdentifier": record["dynamodb"]["SequenceNumber"]}
        for record in records
        if record["dynamodb"]["Keys"]["pk"]["S"] in failing
    ]
    assert refused.failed == 1
    firings = [
        item for item in aws.scan(aws.tables[FIRINGS_TABLE.env_var]) if item["sk"].startswith("firing#")
    ]
    assert Counter(item["pk"] for item in firings) == dict.fromkeys(accounts, 2)  # all committed once

    # When Lambda retries the failed records a minute later, SQS having recovered
    retry = [record for record in records if record["dynamodb"]["Keys"]["pk"]["S"] in failing]
    assert evaluate_changed_accounts(
        {"Records": retry}, make_evaluator(aws, sqs=sqs), AT + timedelta(minutes=1)
    ) == {"batchItemFailures": []}

    # Then no new firing, every firing was handed off (d's twice: its answer was lost), and
    # routing every message gives one play, one task and one email per firing
    assert len([i for i in aws.scan(aws.tables[FIRINGS_TABLE.env_var]) if i["sk"].startswith("firing#")]) == 8
    bodies = fired_bodies(aws)
    sent = Counter(body["firing_id"] for body in bodies)
    assert set(sent) == {item["firing_id"] for item in firings}
    assert sorted(sent.values()) == [1] * 6 + [2] * 2  # d's two firings, sent again
    assert route_fired(sqs_event([json.dumps(body) for body in bodies]), make_router(aws)) == {
        "batchItemFailures": []
    }
    expected = {play_id(item["firing_id"], 0) for item in firings}
    assert routed_plays(aws) == dict.fromkeys(expected, PlayStatus.ROUTED)
    hubspot = HubSpotTasks()
    deliver_tasks(aws, hubspot)
    figures = record_figures(
        "evaluator hand-off: SQS refuses, drops an entry, loses an answer",
        expected,
        hubspot.plays(),
        note="2 trigger.fired sent twice (answer lost); the router deduplicates",
    )
    assert Counter(email_plays(aws)) == Counter(dict.fromkeys(expected, 1))
    assert (figures.lost, figures.duplicates) == (0, 0)


# ── a Lambda timeout at every AWS call of a batch ──────────────────────────────────────────────


def counters_of(aws: Aws, account_id: str) -> list[dict[str, Any]]:
    store = CounterStore(aws.dynamodb, aws.counters_table, TEST_RETENTION_DAYS)
    return [bucket_view(bucket) for bucket in store.read_range(account_id, "2000-01-01", "2999-12-31")]


def usage_for(account_id: str) -> list[dict[str, Any]]:
    """Usage over three days and two metrics: six buckets' worth of records, out of order."""
    events = []
    for day in (0, -2, -1):
        for hour in (9, 14):
            events.append(
                usage_event(
                    account_id=account_id,
                    event_id=f"{account_id}-{day}-{hour}",
                    occurred_at=rfc3339(an_hour(day, hour)),
                    value=hour,
                    dimensions={"team": f"t-{hour}"},
                )
            )
        events.append(
            usage_event(
                account_id=account_id,
                event_id=f"{account_id}-{day}-seats",
                name="seats.active",
                kind="gauge",
                value=40 + day,
                occurred_at=rfc3339(an_hour(day, 12)),
                dimensions={},
            )
        )
    return events


def test_given_the_aggregator_times_out_at_any_call_then_the_redelivered_batch_counts_each_event_once(
    aws: Aws,
) -> None:
    pipeline = Pipeline(aws)
    pipeline.count(pipeline.post(usage_for("acct-reference")))
    reference = counters_of(aws, "acct-reference")
    dynamodb = _test_client("dynamodb")
    store = CounterStore(dynamodb, aws.counters_table, TEST_RETENTION_DAYS)

    # A batch of two accounts, and how many AWS calls the aggregator makes for it
    def batch(point: str) -> list[dict[str, Any]]:
        return pipeline.post(usage_for(f"acct-{point}-1") + usage_for(f"acct-{point}-2"))

    with kill_after(None, dynamodb) as calls:
        assert process_stream_batch(stream_event(batch("count")), store) == {"batchItemFailures": []}
    assert len(calls) >= 7  # one read, a write per bucket

    expected, counted, differing = [], [], []
    for point in range(len(calls)):
        records = batch(f"k{point}")
        # When the invocation is killed before its call number point + 1
        with kill_after(point, dynamodb), pytest.raises(LambdaTimedOut):
            process_stream_batch(stream_event(records), store)
        # Then Lambda delivers the whole batch again, and it counts each event once
        assert process_stream_batch(stream_event(records), store) == {"batchItemFailures": []}
        for account in (f"acct-k{point}-1", f"acct-k{point}-2"):
            expected += [f"{account}#{n}" for n in range(events_in(reference))]
            counted += [f"{account}#{n}" for n in range(events_in(counters_of(aws, account)))]
            if counters_of(aws, account) != reference:
                differing.append(f"{account}, killed before call {point + 1} ({calls[point]})")

    figures = record_figures(
        f"aggregator: timeout at each of {len(calls)} calls", expected, counted, unit="events counted"
    )
    assert differing == []  # every account's counters equal a single delivery's
    assert (figures.lost, figures.duplicates) == (0, 0)


def events_in(counters: list[dict[str, Any]]) -> int:
    return sum(int(metric["events"]) for day in counters for metric in day["metrics"].values())


def test_given_the_evaluator_times_out_at_any_call_then_the_redelivered_batch_fires_and_plays_once(
    aws: Aws, bus: str
) -> None:
    pipeline = Pipeline(aws)
    dynamodb, sqs = _test_client("dynamodb"), _test_client("sqs")

    def batch(point: str) -> tuple[list[str], list[dict[str, Any]]]:
        accounts = [f"acct-{point}-1", f"acct-{point}-2"]
        for account_id in accounts:
            put_account(aws, account_id)
        pipeline.count(pipeline.post([event for account_id in accounts for event in dashboards(account_id)]))
        return accounts, pipeline.counter_changes()

    _, records = batch("count")
    with kill_after(None, dynamodb, sqs) as calls:
        evaluate_changed_accounts({"Records": records}, make_evaluator(aws, dynamodb, sqs), AT)
    assert "SendMessageBatch" in calls

    all_accounts = []
    for point in range(len(calls)):
        accounts, records = batch(f"k{point}")
        all_accounts += accounts
        # When the invocation is killed before its call number point + 1
        with kill_after(point, dynamodb, sqs), pytest.raises(LambdaTimedOut):
            evaluate_changed_accounts({"Records": records}, make_evaluator(aws, dynamodb, sqs), AT)
        # Then Lambda delivers the whole batch again (a little later)
        retry = evaluate_changed_accounts(
            {"Records": records}, make_evaluator(aws, dynamodb, sqs), AT + timedelta(minutes=1)
        )
        assert retry == {"batchItemFailures": []}, f"killed before call {point + 1}: {calls[point]}"

    # Then each account fired each trigger once, and each firing became one play and one task
    firings = [
        item for item in aws.scan(aws.tables[FIRINGS_TABLE.env_var]) if item["sk"].startswith("firing#")
    ]
    killed = [item for item in firings if item["pk"] in all_accounts]
    assert Counter((item["pk"], item["trigger"]) for item in killed) == {
        (account_id, trigger): 1 for account_id in all_accounts for trigger in TRIGGERS
    }
    bodies = fired_bodies(aws)
    resent = sum(Counter(body["firing_id"] for body in bodies).values()) - len(firings)
    assert {body["firing_id"] for body in bodies} == {item["firing_id"] for item in firings}
    assert route_fired(sqs_event([json.dumps(body) for body in bodies]), make_router(aws)) == {
        "batchItemFailures": []
    }
    expected = {play_id(item["firing_id"], 0) for item in killed}
    hubspot = HubSpotTasks()
    deliver_tasks(aws, hubspot)
    figures = record_figures(
        f"evaluator: timeout at each of {len(calls)} calls",
        expected,
        [play for play in hubspot.plays() if play in expected],
        note=f"{resent} trigger.fired sent twice (killed between send and outbox update)",
    )
    assert (figures.lost, figures.duplicates) == (0, 0)


def test_given_the_router_times_out_at_any_call_then_the_redelivered_batch_routes_each_play_once(
    aws: Aws, bus: str
) -> None:
    dynamodb, sqs, events = _test_client("dynamodb"), _test_client("sqs"), _test_client("events")

    def batch(point: str) -> list[FiredMessage]:
        accounts = [f"acct-{point}-1", f"acct-{point}-2"]
        for account_id in accounts:
            put_account(aws, account_id)
        return [fired(account_id, trigger) for account_id in accounts for trigger in TRIGGERS]

    with kill_after(None, dynamodb, sqs, events) as calls:
        messages = batch("count")
        route_fired(
            sqs_event([m.model_dump_json() for m in messages]), make_router(aws, dynamodb, sqs, events)
        )
    expected = {play_id(message.firing_id, 0) for message in messages}
    for point in range(len(calls)):
        messages = batch(f"k{point}")
        expected |= {play_id(message.firing_id, 0) for message in messages}
        event = sqs_event([message.model_dump_json() for message in messages])
        router = make_router(aws, dynamodb, sqs, events)
        # When the invocation is killed before its call number point + 1
        with kill_after(point, dynamodb, sqs, events), pytest.raises(LambdaTimedOut):
            route_fired(event, router)
        # Then the messages come back after their visibility timeout, and the batch is routed
        assert route_fired(event, router) == {"batchItemFailures": []}, f"killed before call {point + 1}"

    assert routed_plays(aws) == dict.fromkeys(expected, PlayStatus.ROUTED)
    assert set(budget_counts(aws).values()) == {2}  # each account and each CSM: its two plays, once each
    hubspot = HubSpotTasks()
    queued = Counter(json.loads(body)["play_id"] for body in deliver_tasks(aws, hubspot))
    figures = record_figures(
        f"router: timeout at each of {len(calls)} calls",
        expected,
        hubspot.plays(),
        note=f"{sum(queued.values()) - len(queued)} deliveries queued twice; the sender deduplicates",
    )
    assert (figures.lost, figures.duplicates) == (0, 0)


# ── HubSpot answers 500 for a minute, then recovers ────────────────────────────────────────────

EPOCH = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
OUTAGE = (60.0, 120.0)  # seconds after the first delivery was queued
SEARCH_LAG_SECONDS = 5.0


class FlakyHubSpot(HubSpotTasks):
    """Every request answers 500 during the outage; every other creation in it creates the task
    before failing (the answer lost on the way back). Search sees a task 5 s after its creation."""

    def __init__(self, clock: Clock, outage: tuple[float, float]) -> None:
        super().__init__()
        self.clock = clock
        self.outage = outage
        self.created_at: dict[str, float] = {}
        self.answers: Counter[int] = Counter()
        self.creations_in_outage = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        now = self.clock()
        down = self.outage[0] <= now < self.outage[1]
        body = json.loads(request.content)
        if request.url.path.endswith("/search"):
            if down:
                return self._answer(
                    httpx.Response(500, json={"status": "error", "message": "internal error"})
                )
            token = body["filterGroups"][0]["filters"][0]["value"]
            found = [
                {"id": task_id}
                for task_id, text in self.tasks.items()
                if token in text and self.created_at[task_id] <= now - SEARCH_LAG_SECONDS
            ]
            return self._answer(httpx.Response(200, json={"total": len(found), "results": found[:1]}))
        if down:
            self.creations_in_outage += 1
            if self.creations_in_outage % 2 == 0:
                self._create(body, now)
            return self._answer(httpx.Response(500, json={"status": "error", "message": "internal error"}))
        task_id = self._create(body, now)
        return self._answer(httpx.Response(201, json={"id": task_id, "properties": body["properties"]}))

    def _create(self, body: dict[str, Any], now: float) -> str:
        task_id = str(1000 + len(self.tasks))
        self.tasks[task_id] = body["properties"]["hs_task_body"]
        self.created_at[task_id] = now
        return task_id

    def _answer(self, response: httpx.Response) -> httpx.Response:
        self.answers[response.status_code] += 1
        return response


class SimulatedSender(HubSpotSender):
    """The real sender, its wall clock read from the fake clock (the handler passes datetime.now)."""

    def deliver(self, delivery: PlayDelivery, now: datetime, deadline: float) -> Any:
        return super().deliver(delivery, EPOCH + timedelta(seconds=self.clock()), deadline)


def test_given_hubspot_answers_500_for_a_minute_then_recovers_then_every_play_gets_one_task(aws: Aws) -> None:
    # Given 40 plays queued over four minutes (one every 6 s), HubSpot down from minute 1 to 2, and
    # the HubSpot queue as deployed: visibility timeout 6 x 60 s, dead-lettered after 10 receives
    clock = Clock(start=0.0)
    queue = SimulatedQueue(
        clock, visibility_timeout=6 * FUNCTION_TIMEOUT.total_seconds(), max_receive_count=10
    )
    hubspot = FlakyHubSpot(clock, OUTAGE)
    sender = SimulatedSender(
        client=HubSpotClient(
            HubSpotSettings(),
            token=lambda: TOKEN,
            http=httpx.Client(transport=httpx.MockTransport(hubspot)),
            sleep=clock.sleep,
            clock=clock,
            jitter=lambda: 0.0,
        ),
        ledger=DeliveryLedger(aws.dynamodb, aws.tables[DELIVERIES_TABLE.env_var], TEST_RETENTION_DAYS),
        queue=hubspot_queue(queue, queue.url, queue.dead_letter_url),
        clock=clock,
    )
    plays = [f"{n:024x}" for n in range(1, 41)]
    arrivals = {play: 6.0 * index for index, play in enumerate(plays)}

    # When Lambda polls the queue every second for three hours
    failed_batches = partial_batches = 0
    while clock() < 3 * 3600 and (arrivals or len(queue)):
        for play in [play for play, at in arrivals.items() if at <= clock()]:
            queue.send(_hubspot_delivery(play).model_dump_json())
            del arrivals[play]
        event = queue.receive(10)
        if event is not None:
            try:
                answer: dict[str, Any] | None = send_tasks(event, sender, clock() + 55)
            except BatchProcessingError:  # every record failed: Lambda sees the function fail
                answer, failed_batches = None, failed_batches + 1
            else:
                partial_batches += bool(answer and answer["batchItemFailures"])
            queue.settle(event, answer)
        clock.sleep(1.0)

    # Then the outage really failed deliveries, yet every play has exactly one task, none dead-lettered
    assert hubspot.answers[500] > 0
    assert hubspot.creations_in_outage >= 2  # some tasks were created behind a 500
    assert failed_batches + partial_batches > 0
    assert queue.dead_letters == []
    assert len(queue) == 0
    figures = record_figures(
        "HubSpot 500 for a minute, then recovering",
        plays,
        hubspot.plays(),
        note=f"{hubspot.answers[500]} answers 500 ({hubspot.creations_in_outage // 2} tasks created behind "
        "one); "
        f"{failed_batches + partial_batches} batches retried; queue empty at +{clock() / 60:.0f} min",
    )
    assert (figures.lost, figures.duplicates) == (0, 0)


def _hubspot_delivery(play: str) -> PlayDelivery:
    return PlayDelivery.model_validate(
        {
            "play_id": play,
            "channel": "hubspot_task",
            "firing_id": "f" * 24,
            "account_id": "acct-1",
            "account_name": "Acme",
            "trigger": "dashboards",
            "play": "showcase",
            "tier": 0,
            "ruleset_version": "faults-1",
            "subject": "Dashboards: Acme",
            "body": "Three dashboards in a week.",
            "due": "2026-11-27",
            "priority": "HIGH",
            "owner": {"role": "csm", "name": "Casey", "hubspot_owner_id": "501"},
            "hubspot": {"company_id": "77"},
            "routed_at": "2026-11-25T10:00:00Z",
        }
    )


# ── the scheduler's release: a hand-off that fails after the accept ────────────────────────────

WEDNESDAY = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
NEXT_MONDAY = datetime(2026, 11, 30, 0, 5, tzinfo=UTC)


@pytest.mark.parametrize("fault", ["SQS refuses the delivery", "the scheduler times out"])
def test_given_a_release_fails_after_its_accept_then_the_next_scheduler_run_delivers_the_play_once(
    aws: Aws, bus: str, fault: str
) -> None:
    # Given a play deferred by the account's weekly budget (five plays)
    put_account(aws, "acct-1")
    router = make_router(aws)
    messages = [fired("acct-1", f"trigger-{n}") for n in range(6)]
    statuses = [router.route_firing(message, WEDNESDAY).status for message in messages]
    assert statuses == [PlayStatus.ROUTED] * 5 + [PlayStatus.DEFERRED]
    deferred = play_id(messages[-1].firing_id, 0)

    # When the scheduler releases it on Monday, and the hand-off fails once the play is accepted
    dynamodb, sqs, events = _test_client("dynamodb"), _test_client("sqs"), _test_client("events")
    failing = make_router(aws, dynamodb, sqs, events)
    if fault == "SQS refuses the delivery":
        fail_calls(sqs, "SendMessageBatch", "AWS.SimpleQueueService.ServiceUnavailable", status=503)
        assert release_due(failing, NEXT_MONDAY) == {"failed": 1}
    else:
        with kill_after(0, sqs, events), pytest.raises(LambdaTimedOut):  # the next call is the send
            release_due(failing, NEXT_MONDAY)
    assert routed_plays(aws)[deferred] is PlayStatus.ACCEPTED

    # Then the scheduler's next run (SQS back) hands it over, and a later run does nothing more
    assert release_due(router, NEXT_MONDAY + timedelta(minutes=5)) == {"routed": 1}
    assert release_due(router, NEXT_MONDAY + timedelta(minutes=10)) == {}
    assert routed_plays(aws)[deferred] is PlayStatus.ROUTED
    weeks = (
        router.ledger.counts(["budget#account#acct-1"], "week#2026-W48"),
        router.ledger.counts(["budget#account#acct-1"], "week#2026-W49"),
    )
    assert weeks == ({"budget#account#acct-1": 5}, {"budget#account#acct-1": 1})  # charged once
    hubspot = HubSpotTasks()
    deliver_tasks(aws, hubspot)
    figures = record_figures(
        f"scheduler release: {fault}", [play_id(m.firing_id, 0) for m in messages], hubspot.plays()
    )
    assert (figures.lost, figures.duplicates) == (0, 0)
