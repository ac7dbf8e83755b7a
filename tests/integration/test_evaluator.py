"""The evaluator on real counters-stream records: firings, the ledger, the outbox and the signals route.

Events go in through the real API function, the real aggregator folds them into day buckets, and
the counters table's own stream records (read from moto, INSERT and MODIFY as the event-source
filter passes them) are what the evaluator gets. Every firing must end up exactly once in the
firings table and exactly once as a `trigger.fired` message on the fired queue.

The API only accepts events around the real clock, so the events are placed on "yesterday" (see
`an_hour`) and the evaluation time is fixed relative to them: 23:00 UTC that same day.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from functions.aggregator.handler import process_stream_batch
from functions.evaluator.handler import evaluate_changed_accounts
from shared.accounts.models import AccountProfile
from shared.accounts.store import AccountStore
from shared.counters.store import FIRST_SEEN_KEY, CounterStore
from shared.resources import COUNTERS_TABLE, DEFAULT_RULESET_PATH, FIRINGS_TABLE
from shared.rules.dynamo_aggregates import DynamoAggregates
from shared.rules.engine import AccountState, Evaluation, TriggerState, read_plan
from shared.rules.firings import ConcurrentEvaluation, FiringStore, StoredState
from shared.rules.loading import parse_ruleset
from shared.rules.online import HandOffFailed, OnlineEvaluator, Publisher, active_ruleset, sqs_publisher
from tests.conftest import TEST_RETENTION_DAYS, Aws, StreamReader
from tests.integration.builders import (
    TEST_WRITER,
    account_path,
    an_hour,
    call_api,
    post_events,
    proxy_event,
    rfc3339,
    stream_event,
    usage_event,
)

NORTHWIND = "acct-northwind"
CONTOSO = "acct-contoso"
FABRIKAM = "acct-fabrikam"
AT = an_hour(0, 23)  # the evaluation time: 23:00 UTC on the day of the latest events
TRIGGER = "dashboards"

RULES = parse_ruleset(
    """
version: evaluator-test-1
metrics: {dashboard.created: count, app.session: count}
signals:
  building: {measure: sum, metric: dashboard.created, window: 7d, at_least: 3}
triggers:
  dashboards:
    category: adoption
    owner_role: csm
    play: analytics-showcase
    when: building
    unless: [do_not_contact]
    cooldown: 30d
plays:
  analytics-showcase: {}
""",
    "evaluator-test.yaml",
)


# ── builders ───────────────────────────────────────────────────────────────────────────────────


def dashboard_created(account_id: str, day_offset: int = 0, hour: int = 9) -> dict[str, Any]:
    return usage_event(
        account_id=account_id,
        name="dashboard.created",
        kind="count",
        value=1,
        occurred_at=rfc3339(an_hour(day_offset, hour)),
    )


class Pipeline:
    """API → events ledger stream → aggregator → counters table; then its stream, as Lambda reads it."""

    def __init__(self, aws: Aws) -> None:
        self.aws = aws
        self._ledger = aws.events_stream()
        self._counters = StreamReader(aws.streams_client, aws.stream_arns[COUNTERS_TABLE.env_var])

    def post(self, *events: dict[str, Any]) -> None:
        status, summary = call_api(post_events(list(events)))
        assert status == 202
        assert summary["accepted"] == len(events)
        store = CounterStore(self.aws.dynamodb, self.aws.counters_table, TEST_RETENTION_DAYS)
        assert process_stream_batch(stream_event(self._ledger.new_records()), store) == {
            "batchItemFailures": []
        }

    def counter_changes(self) -> list[dict[str, Any]]:
        """The counters stream records written since the last call (what the evaluator is sent: the
        event-source filter passes day buckets only, not the first_seen marker)."""
        return [record for record in self.every_counter_change() if not is_marker(record)]

    def every_counter_change(self) -> list[dict[str, Any]]:
        return self._counters.new_records(event_names=("INSERT", "MODIFY"))


def is_marker(record: dict[str, Any]) -> bool:
    return record["dynamodb"]["Keys"]["sk"]["S"] == FIRST_SEEN_KEY


def account_of(record: dict[str, Any]) -> str:
    return record["dynamodb"]["Keys"]["pk"]["S"]


def sequence_numbers(records: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"itemIdentifier": record["dynamodb"]["SequenceNumber"]} for record in records]


def firings_table(aws: Aws) -> str:
    return aws.tables[FIRINGS_TABLE.env_var]


def firing_store(aws: Aws) -> FiringStore:
    return FiringStore(aws.dynamodb, firings_table(aws), TEST_RETENTION_DAYS)


def working_publisher(aws: Aws) -> Publisher:
    return sqs_publisher(aws.sqs, aws.fired_queue_url)


def failing_publisher(messages: list[dict[str, Any]]) -> set[str]:
    """SQS refused every entry (the batch call answered, each entry in `Failed`)."""
    return set()


def online_evaluator(
    aws: Aws,
    *,
    publish: Publisher | None = None,
    firings: FiringStore | None = None,
    rules: Any = RULES,
) -> OnlineEvaluator:
    return OnlineEvaluator(
        ruleset=rules,
        plan=read_plan(rules),
        aggregates=DynamoAggregates(CounterStore(aws.dynamodb, aws.counters_table, TEST_RETENTION_DAYS)),
        accounts=AccountStore(aws.dynamodb, aws.accounts_table),
        firings=firings or firing_store(aws),
        publish=publish or working_publisher(aws),
    )


@dataclass
class SpyEvaluator(OnlineEvaluator):
    """Records each evaluation; raises for the accounts in `failing` (before touching anything)."""

    failing: frozenset[str] = frozenset()
    calls: list[str] = field(default_factory=list)

    def evaluate(self, account_id: str, at: datetime) -> Evaluation:
        self.calls.append(account_id)
        if account_id in self.failing:
            raise RuntimeError(f"evaluation of {account_id} failed")
        return super().evaluate(account_id, at)


def spy_evaluator(aws: Aws, failing: frozenset[str] = frozenset()) -> SpyEvaluator:
    online = online_evaluator(aws)
    return SpyEvaluator(
        ruleset=online.ruleset,
        plan=online.plan,
        aggregates=online.aggregates,
        accounts=online.accounts,
        firings=online.firings,
        publish=online.publish,
        failing=failing,
    )


def stored_firings(aws: Aws) -> list[dict[str, Any]]:
    return [item for item in aws.scan(firings_table(aws)) if item["sk"].startswith("firing#")]


def state_item(aws: Aws, account_id: str) -> dict[str, Any]:
    (item,) = [
        item for item in aws.scan(firings_table(aws)) if item["pk"] == account_id and item["sk"] == "state"
    ]
    return item


def fired_messages(aws: Aws) -> list[dict[str, Any]]:
    """Every message now visible on the fired queue, received once (they stay invisible after)."""
    received: list[dict[str, Any]] = []
    while True:
        batch = aws.sqs.receive_message(
            QueueUrl=aws.fired_queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            VisibilityTimeout=600,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not batch:
            return received
        received.extend(batch)


def bodies(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [json.loads(message["Body"]) for message in messages]


def expected_firing_id(account_id: str, trigger: str, at: datetime) -> str:
    """docs/rules.md: derived from (account, trigger, evaluation time), stable across retries."""
    return hashlib.sha256(f"{account_id}\n{trigger}\n{at.isoformat()}".encode()).hexdigest()[:24]


# ── the evaluator function on real counters-stream records ─────────────────────────────────────


def test_given_counter_changes_from_real_events_when_evaluated_then_the_firing_is_stored_and_sent_once(aws):
    pipeline = Pipeline(aws)
    AccountStore(aws.dynamodb, aws.accounts_table).put(
        NORTHWIND, AccountProfile(name="Northwind Traders", segment="mid-market"), TEST_WRITER
    )
    pipeline.post(dashboard_created(NORTHWIND, -2), dashboard_created(NORTHWIND, -1))
    pipeline.post(dashboard_created(NORTHWIND, -1, 11), dashboard_created(NORTHWIND, 0))
    records = pipeline.counter_changes()
    assert {record["eventName"] for record in records} == {"INSERT", "MODIFY"}  # a bucket changed twice
    assert {account_of(record) for record in records} == {NORTHWIND}

    answer = evaluate_changed_accounts({"Records": records}, online_evaluator(aws), AT)

    assert answer == {"batchItemFailures": []}
    fid = expected_firing_id(NORTHWIND, TRIGGER, AT)
    (stored,) = stored_firings(aws)
    assert stored["pk"] == NORTHWIND
    assert stored["sk"] == f"firing#{rfc3339(AT)}#{TRIGGER}"
    assert (stored["firing_id"], stored["trigger"], stored["ruleset_version"]) == (
        fid,
        TRIGGER,
        "evaluator-test-1",
    )
    state = state_item(aws, NORTHWIND)
    assert state["version"] == 1
    assert "pending" not in state  # handed off: the outbox is empty
    assert state["triggers"][TRIGGER] == {"last_fired_at": AT.isoformat(), "armed": False}

    (message,) = fired_messages(aws)
    assert message["MessageAttributes"]["type"]["StringValue"] == "trigger.fired"
    body = json.loads(message["Body"])
    assert set(body) == {"type", "firing_id", "firing"}
    assert body["type"] == "trigger.fired"
    assert body["firing_id"] == fid
    assert body == json.loads(stored["message"])  # the ledger keeps exactly what was sent
    firing = body["firing"]
    assert firing["ruleset_version"] == "evaluator-test-1"
    assert firing["trigger"] == TRIGGER
    assert firing["account_id"] == NORTHWIND
    assert firing["evaluated_at"] == rfc3339(AT)
    assert (firing["category"], firing["owner_role"], firing["play"]) == (
        "adoption",
        "csm",
        "analytics-showcase",
    )
    assert firing["condition"] == {
        "signal": "building",
        "held": True,
        "observed": 4,
        "comparison": "at_least",
        "threshold": 3,
        "window": {
            "from": (AT.date() - timedelta(days=6)).isoformat(),
            "to": AT.date().isoformat(),
        },
        "detail": "sum of dashboard.created over 7d = 4",
    }
    assert firing["exclusions_checked"] == [
        {"exclusion": "do_not_contact", "applies": False, "detail": "flag not set"}
    ]
    assert firing["score"]["total"] == 100  # one signal, weighed 100, held


def test_given_several_records_of_one_account_in_a_batch_when_evaluated_then_each_account_is_evaluated_once(
    aws,
):
    pipeline = Pipeline(aws)
    pipeline.post(
        dashboard_created(NORTHWIND, -2), dashboard_created(NORTHWIND, -1), dashboard_created(NORTHWIND)
    )
    pipeline.post(dashboard_created(CONTOSO))
    pipeline.post(dashboard_created(NORTHWIND, 0, 12))
    records = pipeline.counter_changes()
    assert Counter(account_of(record) for record in records) == {NORTHWIND: 4, CONTOSO: 1}
    spy = spy_evaluator(aws)

    answer = evaluate_changed_accounts({"Records": records}, spy, AT)

    assert answer == {"batchItemFailures": []}
    assert Counter(spy.calls) == {NORTHWIND: 1, CONTOSO: 1}
    assert [body["firing"]["account_id"] for body in bodies(fired_messages(aws))] == [NORTHWIND]
    assert [item["pk"] for item in stored_firings(aws)] == [NORTHWIND]


def test_given_a_record_without_keys_when_evaluated_then_only_that_record_fails_and_the_others_fire(aws):
    pipeline = Pipeline(aws)
    pipeline.post(*(dashboard_created(NORTHWIND, -offset) for offset in range(3)))
    pipeline.post(dashboard_created(FABRIKAM))
    pipeline.post(*(dashboard_created(CONTOSO, -offset) for offset in range(3)))
    records = pipeline.counter_changes()
    (poison,) = [record for record in records if account_of(record) == FABRIKAM]
    del poison["dynamodb"]["Keys"]

    answer = evaluate_changed_accounts({"Records": records}, online_evaluator(aws), AT)

    assert answer == {"batchItemFailures": sequence_numbers([poison])}
    assert sorted(body["firing"]["account_id"] for body in bodies(fired_messages(aws))) == [
        CONTOSO,
        NORTHWIND,
    ]
    assert sorted(item["pk"] for item in stored_firings(aws)) == [CONTOSO, NORTHWIND]


def test_given_an_account_whose_evaluation_fails_when_evaluated_then_all_its_records_fail_and_the_rest_fire(
    aws,
):
    pipeline = Pipeline(aws)
    # Interleaved in the stream: Contoso, Northwind, Contoso, Northwind.
    pipeline.post(dashboard_created(CONTOSO, -2), dashboard_created(CONTOSO, -1))
    pipeline.post(dashboard_created(NORTHWIND, -2), dashboard_created(NORTHWIND, -1))
    pipeline.post(dashboard_created(CONTOSO), dashboard_created(CONTOSO, 0, 10))
    pipeline.post(dashboard_created(NORTHWIND), dashboard_created(NORTHWIND, 0, 10))
    records = pipeline.counter_changes()
    failing = [record for record in records if account_of(record) == CONTOSO]
    assert len(failing) == 3
    spy = spy_evaluator(aws, failing=frozenset({CONTOSO}))

    answer = evaluate_changed_accounts({"Records": records}, spy, AT)

    assert answer == {"batchItemFailures": sequence_numbers(failing)}
    assert Counter(spy.calls) == {CONTOSO: 1, NORTHWIND: 1}  # the failure is shared, not retried per record
    assert [body["firing"]["account_id"] for body in bodies(fired_messages(aws))] == [NORTHWIND]
    assert [item["pk"] for item in stored_firings(aws)] == [NORTHWIND]

    # Lambda retries the failed records together; once the account evaluates, it fires once.
    retry = evaluate_changed_accounts({"Records": failing}, online_evaluator(aws), AT)

    assert retry == {"batchItemFailures": []}
    assert [body["firing"]["account_id"] for body in bodies(fired_messages(aws))] == [CONTOSO]
    assert sorted(item["pk"] for item in stored_firings(aws)) == [CONTOSO, NORTHWIND]


def test_given_a_batch_delivered_again_when_evaluated_then_there_is_still_one_firing_and_one_message(aws):
    pipeline = Pipeline(aws)
    pipeline.post(*(dashboard_created(NORTHWIND, -offset) for offset in range(3)))
    records = pipeline.counter_changes()

    answers = [
        evaluate_changed_accounts({"Records": copy.deepcopy(records)}, online_evaluator(aws), at)
        for at in (AT, AT, AT + timedelta(hours=1))  # redelivered at once, then after a while
    ]

    assert answers == [{"batchItemFailures": []}] * 3
    assert len(stored_firings(aws)) == 1
    (body,) = bodies(fired_messages(aws))
    assert body["firing_id"] == expected_firing_id(NORTHWIND, TRIGGER, AT)
    assert state_item(aws, NORTHWIND)["version"] == 1  # nothing changed after the first commit
    again = online_evaluator(aws).evaluate(NORTHWIND, AT + timedelta(hours=2))
    assert again.firings == []
    assert again.outcomes[0].reason in ("not re-armed", "cooling down")


# ── concurrent evaluations of one account ──────────────────────────────────────────────────────


class RivalCommitsFirst(FiringStore):
    """Before this store's first commit, a concurrent evaluation of the account commits (and
    fires): this evaluation's conditional commit then really fails, and it must evaluate again."""

    def __init__(self, rival: OnlineEvaluator, rival_at: datetime, *args: Any) -> None:
        super().__init__(*args)
        self._rival, self._rival_at = rival, rival_at
        self.rival_evaluation: Evaluation | None = None
        self.outcomes: list[str] = []

    def commit(
        self, account_id: str, read: StoredState, state: AccountState, firings: list[Any], **options: Any
    ) -> None:
        if self.rival_evaluation is None:
            self.rival_evaluation = self._rival.evaluate(account_id, self._rival_at)
        try:
            super().commit(account_id, read, state, firings, **options)
        except ConcurrentEvaluation:
            self.outcomes.append("lost the race")
            raise
        self.outcomes.append("committed")


def test_given_two_evaluations_of_an_account_at_once_when_the_first_commits_then_the_second_does_not_fire(
    aws,
):
    pipeline = Pipeline(aws)
    pipeline.post(*(dashboard_created(NORTHWIND, -offset) for offset in range(3)))
    later = AT + timedelta(minutes=1)  # a different evaluation time: a different firing id
    store = RivalCommitsFirst(
        online_evaluator(aws), AT, aws.dynamodb, firings_table(aws), TEST_RETENTION_DAYS
    )

    evaluation = online_evaluator(aws, firings=store).evaluate(NORTHWIND, later)

    assert store.rival_evaluation is not None
    assert [firing.trigger for firing in store.rival_evaluation.firings] == [TRIGGER]
    assert store.outcomes == ["lost the race", "committed"]  # the re-evaluation commits nothing new
    assert evaluation.firings == []
    assert evaluation.outcomes[0].held
    assert evaluation.outcomes[0].reason in ("not re-armed", "cooling down")
    (stored,) = stored_firings(aws)
    assert stored["firing_id"] == expected_firing_id(NORTHWIND, TRIGGER, AT)
    (body,) = bodies(fired_messages(aws))
    assert body["firing_id"] == stored["firing_id"]


def test_given_two_commits_from_the_same_read_when_committed_then_the_second_raises_concurrent_evaluation(
    aws,
):
    pipeline = Pipeline(aws)
    pipeline.post(*(dashboard_created(NORTHWIND, -offset) for offset in range(3)))
    online = online_evaluator(aws)
    store = firing_store(aws)
    first, second = online.preview(NORTHWIND, AT), online.preview(NORTHWIND, AT + timedelta(minutes=1))
    assert len(first.firings) == len(second.firings) == 1

    # No state yet (version 0): both read "nothing"; the transaction path (state + firing).
    read_a, read_b = store.load(NORTHWIND), store.load(NORTHWIND)
    assert read_a.version == read_b.version == 0
    store.commit(NORTHWIND, read_a, first.state, first.firings)
    with pytest.raises(ConcurrentEvaluation):
        store.commit(NORTHWIND, read_b, second.state, second.firings)

    assert [item["firing_id"] for item in stored_firings(aws)] == [expected_firing_id(NORTHWIND, TRIGGER, AT)]
    assert state_item(aws, NORTHWIND)["version"] == 1

    # An existing state (version 1): the single-item path (a state change, no firing).
    read_a, read_b = store.load(NORTHWIND), store.load(NORTHWIND)
    assert read_a.version == read_b.version == 1
    rearmed = AccountState(
        triggers={TRIGGER: TriggerState(last_fired_at=AT, armed=True)}, last_contacted_at=AT
    )
    store.commit(NORTHWIND, read_a, rearmed, [])
    with pytest.raises(ConcurrentEvaluation):
        store.commit(NORTHWIND, read_b, rearmed, [])

    assert state_item(aws, NORTHWIND)["version"] == 2
    assert store.load(NORTHWIND).state == rearmed


# ── the outbox ─────────────────────────────────────────────────────────────────────────────────


def test_given_a_failed_send_when_evaluated_then_the_firing_stays_pending_and_the_next_evaluation_sends_once(
    aws,
):
    pipeline = Pipeline(aws)
    pipeline.post(*(dashboard_created(NORTHWIND, -offset) for offset in range(3)))
    fid = expected_firing_id(NORTHWIND, TRIGGER, AT)

    with pytest.raises(HandOffFailed):
        online_evaluator(aws, publish=failing_publisher).evaluate(NORTHWIND, AT)

    assert [item["firing_id"] for item in stored_firings(aws)] == [fid]  # committed before the send
    assert state_item(aws, NORTHWIND)["pending"] == {fid}
    assert fired_messages(aws) == []

    evaluation = online_evaluator(aws).evaluate(NORTHWIND, AT + timedelta(minutes=5))

    assert evaluation.firings == []  # nothing new fires: the pending one is sent
    assert [body["firing_id"] for body in bodies(fired_messages(aws))] == [fid]
    assert "pending" not in state_item(aws, NORTHWIND)

    online_evaluator(aws).evaluate(NORTHWIND, AT + timedelta(minutes=10))

    assert fired_messages(aws) == []  # sent once, not again
    assert len(stored_firings(aws)) == 1


def test_given_a_failed_send_in_the_function_when_retried_then_the_account_records_fail_then_send_once(
    aws,
):
    pipeline = Pipeline(aws)
    pipeline.post(dashboard_created(NORTHWIND, -2), dashboard_created(NORTHWIND, -1))
    pipeline.post(dashboard_created(NORTHWIND))
    pipeline.post(dashboard_created(CONTOSO))
    records = pipeline.counter_changes()
    northwind = [record for record in records if account_of(record) == NORTHWIND]

    answer = evaluate_changed_accounts(
        {"Records": records}, online_evaluator(aws, publish=failing_publisher), AT
    )

    assert answer == {"batchItemFailures": sequence_numbers(northwind)}
    assert fired_messages(aws) == []

    retry = evaluate_changed_accounts(
        {"Records": northwind}, online_evaluator(aws), AT + timedelta(minutes=1)
    )

    assert retry == {"batchItemFailures": []}
    assert [body["firing_id"] for body in bodies(fired_messages(aws))] == [
        expected_firing_id(NORTHWIND, TRIGGER, AT)
    ]
    assert len(stored_firings(aws)) == 1
    assert "pending" not in state_item(aws, NORTHWIND)


def test_given_a_pending_firing_when_the_next_evaluation_also_changes_the_state_then_it_is_still_sent_once(
    aws,
):
    pipeline = Pipeline(aws)
    pipeline.post(*(dashboard_created(NORTHWIND, -offset) for offset in range(3)))
    fid = expected_firing_id(NORTHWIND, TRIGGER, AT)
    with pytest.raises(HandOffFailed):
        online_evaluator(aws, publish=failing_publisher).evaluate(NORTHWIND, AT)

    # Eight days on the dashboards have left the 7d window: the signal no longer holds, so this
    # evaluation re-arms the trigger and commits a new state, after sending the pending firing.
    week_later = AT + timedelta(days=8)
    evaluation = online_evaluator(aws).evaluate(NORTHWIND, week_later)

    assert evaluation.firings == []
    assert evaluation.state.triggers[TRIGGER].armed
    assert [body["firing_id"] for body in bodies(fired_messages(aws))] == [fid]
    state = state_item(aws, NORTHWIND)
    assert state["triggers"][TRIGGER]["armed"] is True
    # The commit after the send starts from the state read *before* it: it must not put the id
    # it just sent back into the outbox (a bug this test found)...
    assert "pending" not in state

    online_evaluator(aws).evaluate(NORTHWIND, week_later + timedelta(hours=1))

    # ...and so the next evaluation does not send it a second time.
    assert fired_messages(aws) == []


# ── GET /v1/accounts/{account_id}/signals ──────────────────────────────────────────────────────


def get_signals(account_id: str) -> tuple[int, Any]:
    return call_api(
        proxy_event(
            "GET",
            account_path(account_id, "/signals"),
            None,
            content_type=None,
            resource="/v1/accounts/{account_id}/signals",
        )
    )


def test_given_an_account_with_data_when_signals_are_asked_then_every_trigger_is_shown_with_recent_firings(
    aws,
):
    reference, _ = active_ruleset(DEFAULT_RULESET_PATH)
    pipeline = Pipeline(aws)
    AccountStore(aws.dynamodb, aws.accounts_table).put(
        NORTHWIND, AccountProfile(name="Northwind Traders", segment="mid-market"), TEST_WRITER
    )
    admins = [
        usage_event(
            account_id=NORTHWIND, name="admin.added", kind="count", occurred_at=rfc3339(an_hour(-3, 9))
        ),
        usage_event(
            account_id=NORTHWIND, name="admin.added", kind="count", occurred_at=rfc3339(an_hour(0, 9))
        ),
    ]
    paywall_hits = [
        usage_event(
            account_id=NORTHWIND, name="paywall.hit", kind="count", occurred_at=rfc3339(an_hour(-day, 9))
        )
        for day in (6, 5, 4)
    ]
    pipeline.post(*admins, *paywall_hits)

    status, before = get_signals(NORTHWIND)

    assert status == 200
    assert before["account_id"] == NORTHWIND
    assert before["ruleset_version"] == reference.version
    assert before["evaluated_at"].endswith("Z")
    assert [trigger["trigger"] for trigger in before["triggers"]] == list(reference.triggers)
    shown = {trigger["trigger"]: trigger for trigger in before["triggers"]}
    assert shown["admin-growth"]["held"] is True
    assert shown["admin-growth"]["status"] == "fired"  # would fire now; the preview commits nothing
    assert shown["admin-growth"]["condition"]["signal"] == "admin_growth"
    assert shown["admin-growth"]["condition"]["observed"] == 2
    assert shown["admin-growth"]["condition"]["threshold"] == 2
    assert shown["feature-breadth"] == {
        "trigger": "feature-breadth",
        "held": False,
        "status": "not held",
        "condition": shown["feature-breadth"]["condition"],
    }
    assert shown["feature-breadth"]["condition"]["held"] is False
    assert before["recent_firings"] == []
    assert stored_firings(aws) == []  # a preview: nothing committed
    assert fired_messages(aws) == []  # and nothing sent

    # The evaluator (on the reference ruleset) fired paywall-intent four days earlier, and now
    # fires admin-growth from the counter changes.
    online = online_evaluator(aws, rules=reference)
    earlier = AT - timedelta(days=4)
    assert [firing.trigger for firing in online.evaluate(NORTHWIND, earlier).firings] == ["paywall-intent"]
    assert evaluate_changed_accounts({"Records": pipeline.counter_changes()}, online, AT) == {
        "batchItemFailures": []
    }
    sent = {body["firing"]["trigger"]: body["firing"] for body in bodies(fired_messages(aws))}
    assert set(sent) == {"paywall-intent", "admin-growth"}

    status, after = get_signals(NORTHWIND)

    assert status == 200
    shown = {trigger["trigger"]: trigger for trigger in after["triggers"]}
    for name in ("admin-growth", "paywall-intent"):
        assert shown[name]["held"] is True
        assert shown[name]["status"] in ("not re-armed", "cooling down")
    # Newest first, each with the evidence exactly as handed off.
    assert after["recent_firings"] == [sent["admin-growth"], sent["paywall-intent"]]
    assert sent["paywall-intent"]["evaluated_at"] == rfc3339(earlier)
    firing = after["recent_firings"][0]
    assert firing["trigger"] == "admin-growth"
    assert firing["account_id"] == NORTHWIND
    assert firing["ruleset_version"] == reference.version
    assert firing["evaluated_at"] == rfc3339(AT)
    assert firing["condition"]["signal"] == "admin_growth"
    assert firing["condition"]["observed"] == 2
    assert [check["exclusion"] for check in firing["exclusions_checked"]] == ["do_not_contact"]


def test_given_a_held_trigger_that_an_exclusion_stops_when_signals_are_asked_then_the_exclusion_is_named(aws):
    pipeline = Pipeline(aws)
    AccountStore(aws.dynamodb, aws.accounts_table).put(
        NORTHWIND,
        AccountProfile.model_validate({"name": "Northwind Traders", "flags": {"do_not_contact": True}}),
        TEST_WRITER,
    )
    pipeline.post(
        *(
            usage_event(
                account_id=NORTHWIND, name="admin.added", kind="count", occurred_at=rfc3339(an_hour(-day, 9))
            )
            for day in (3, 0)
        )
    )

    status, answer = get_signals(NORTHWIND)

    assert status == 200
    shown = {trigger["trigger"]: trigger for trigger in answer["triggers"]}
    assert shown["admin-growth"]["held"] is True
    assert shown["admin-growth"]["status"] == "excluded"
    assert shown["admin-growth"]["excluded_by"] == ["do_not_contact"]
    assert shown["admin-growth"]["exclusions_checked"] == [
        {"exclusion": "do_not_contact", "applies": True, "detail": "flag set"}
    ]
    # Triggers that were not stopped by an exclusion do not carry the keys.
    others = [trigger for trigger in answer["triggers"] if trigger["status"] != "excluded"]
    assert all("excluded_by" not in trigger for trigger in others)


def test_given_an_unknown_account_when_signals_are_asked_then_the_same_shape_with_nothing_held_and_no_firings(
    aws,
):
    reference, _ = active_ruleset(DEFAULT_RULESET_PATH)

    status, answer = get_signals("acct-never-seen")

    assert status == 200
    assert answer["account_id"] == "acct-never-seen"
    assert answer["ruleset_version"] == reference.version
    assert answer["recent_firings"] == answer["recent_plays"] == []
    assert [trigger["trigger"] for trigger in answer["triggers"]] == list(reference.triggers)
    for trigger in answer["triggers"]:
        assert trigger["held"] is False
        if reference.triggers[trigger["trigger"]].segments is not None:
            # No profile, so no segment: a segment-restricted trigger is not evaluated.
            assert (trigger["status"], trigger["condition"]) == ("other segment", None)
        else:
            assert trigger["status"] == "not held"
            assert trigger["condition"]["held"] is False
    assert aws.scan(firings_table(aws)) == []  # asking commits nothing


def test_given_an_invalid_account_id_when_signals_are_asked_then_400(aws):
    status, answer = get_signals("x" * 129)

    assert status == 400
    assert "account_id" in answer["message"]


FAMILY_RULES = parse_ruleset(
    """
version: evaluator-family-1
metrics: {dashboard.created: count}
signals:
  family_building: {measure: sum, metric: dashboard.created, window: 7d, at_least: 3, scope: family}
triggers:
  family-dashboards: {category: adoption, owner_role: csm, play: p, when: family_building, cooldown: 30d}
plays: {p: {}}
""",
    "evaluator-family.yaml",
)


def test_given_children_whose_counters_change_when_evaluated_then_the_parent_is_evaluated_once_and_fires(aws):
    # Given a parent (Northwind) without usage and two children with 2 dashboards each
    accounts = AccountStore(aws.dynamodb, aws.accounts_table)
    accounts.put(NORTHWIND, AccountProfile(name="Northwind Holding"), TEST_WRITER)
    for child in (CONTOSO, FABRIKAM):
        accounts.put(child, AccountProfile(name=child, parent_account_id=NORTHWIND), TEST_WRITER)
    pipeline = Pipeline(aws)
    pipeline.post(*(dashboard_created(child, offset) for child in (CONTOSO, FABRIKAM) for offset in (-1, 0)))
    records = pipeline.counter_changes()
    assert {account_of(record) for record in records} == {CONTOSO, FABRIKAM}
    online = online_evaluator(aws, rules=FAMILY_RULES)
    spy = SpyEvaluator(
        ruleset=online.ruleset,
        plan=online.plan,
        aggregates=DynamoAggregates(
            CounterStore(aws.dynamodb, aws.counters_table, TEST_RETENTION_DAYS), children=accounts.children_of
        ),
        accounts=online.accounts,
        firings=online.firings,
        publish=online.publish,
    )

    # When the children's counter changes are evaluated
    answer = evaluate_changed_accounts({"Records": records}, spy, AT)

    # Then the parent is evaluated once, besides each child, and the family's trigger fires on it
    assert answer == {"batchItemFailures": []}
    assert Counter(spy.calls) == {CONTOSO: 1, FABRIKAM: 1, NORTHWIND: 1}
    (firing,) = [body["firing"] for body in bodies(fired_messages(aws))]
    assert firing["account_id"] == NORTHWIND
    assert firing["condition"]["observed"] == 4
    assert firing["condition"]["detail"] == "sum of dashboard.created over 7d across the family = 4"


def test_given_a_parent_whose_evaluation_fails_when_a_child_changes_then_the_child_records_fail_too(aws):
    accounts = AccountStore(aws.dynamodb, aws.accounts_table)
    accounts.put(CONTOSO, AccountProfile(name="Contoso", parent_account_id=NORTHWIND), TEST_WRITER)
    pipeline = Pipeline(aws)
    pipeline.post(dashboard_created(CONTOSO))
    pipeline.post(dashboard_created("acct-solo"))  # standalone: its records succeed
    records = pipeline.counter_changes()
    online = online_evaluator(aws, rules=FAMILY_RULES)
    spy = SpyEvaluator(
        ruleset=online.ruleset,
        plan=online.plan,
        aggregates=DynamoAggregates(
            CounterStore(aws.dynamodb, aws.counters_table, TEST_RETENTION_DAYS), children=accounts.children_of
        ),
        accounts=online.accounts,
        firings=online.firings,
        publish=online.publish,
        failing=frozenset({NORTHWIND}),
    )

    answer = evaluate_changed_accounts({"Records": records}, spy, AT)

    # Then Lambda retries the child's records: the parent's evaluation is retried with them
    contoso = [record for record in records if account_of(record) == CONTOSO]
    assert answer["batchItemFailures"] == [
        {"itemIdentifier": r["dynamodb"]["SequenceNumber"]} for r in contoso
    ]


def test_given_first_seen_marker_records_in_a_batch_then_they_evaluate_nothing_and_never_fail(aws):
    # Given: a local pump that passes every counters record, the first_seen markers included
    pipeline = Pipeline(aws)
    pipeline.post(dashboard_created(NORTHWIND, -1), dashboard_created(NORTHWIND))
    records = pipeline.every_counter_change()
    markers = [record for record in records if is_marker(record)]
    assert markers  # the aggregator wrote the account's marker with its first day
    spy = spy_evaluator(aws)

    # When only the markers are handed over, nothing is evaluated; with the buckets, once
    assert evaluate_changed_accounts({"Records": markers}, spy, AT) == {"batchItemFailures": []}
    assert spy.calls == []
    assert evaluate_changed_accounts({"Records": records}, spy, AT) == {"batchItemFailures": []}
    assert Counter(spy.calls) == {NORTHWIND: 1}
