"""Going live after a history import (issue 15, point 1): backfill counts but is not evaluated per
batch; the import's end evaluates each account once and handles the pre-existing triggers per the
ruleset's `go_live` setting; pre-existing firings are not contact; all of it idempotent.

Events go in through the real API function (`"backfill": true`), the real aggregator folds them,
and the counters table's own stream records go to the real evaluator handler (moto throughout).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.aggregator.handler import process_stream_batch
from functions.evaluator.handler import evaluate_changed_accounts
from functions.router.scheduler import release_due
from shared.counters.store import CounterStore
from shared.routing.ledger import PlayStatus
from shared.routing.router import FiredMessage, Router
from shared.rules.loading import parse_ruleset
from tests.conftest import TEST_RETENTION_DAYS, Aws
from tests.integration.builders import call_api, proxy_event, rfc3339, stream_event
from tests.integration.test_evaluator import (
    AT,
    NORTHWIND,
    Pipeline,
    bodies,
    dashboard_created,
    fired_messages,
    online_evaluator,
    state_item,
    stored_firings,
)
from tests.integration.test_router import WEDNESDAY, bus, fired, router, signals  # noqa: F401 (the router's fixtures)

GO_LIVE_RULES = """
version: golive-test-1
metrics: {dashboard.created: count, seats.active: gauge}
signals:
  building: {measure: sum, metric: dashboard.created, window: 7d, at_least: 3}
  seats_high: {measure: latest, metric: seats.active, window: 1d, at_least: 10}
triggers:
  dashboards:
    category: adoption
    owner_role: ae
    play: analytics-showcase
    when: building
    cooldown: 30d
  seats:
    category: value
    owner_role: csm
    play: seats-review
    when: seats_high
    unless: [{contacted_within: 14d}]
    cooldown: 30d
plays:
  analytics-showcase: {}
  seats-review: {}
go_live: {pre_existing: MODE, spread_days: 5}
"""


def rules(mode: str) -> Any:
    return parse_ruleset(GO_LIVE_RULES.replace("MODE", mode), "golive-test.yaml")


def post_history(events: list[dict[str, Any]]) -> tuple[int, Any]:
    body = json.dumps({"events": events, "backfill": True})
    return call_api(proxy_event("POST", "/v1/events", body))


class BackfillPipeline(Pipeline):
    def post_history(self, *events: dict[str, Any]) -> dict[str, Any]:
        status, summary = post_history(list(events))
        assert status == 202, summary
        store = CounterStore(self.aws.dynamodb, self.aws.counters_table, TEST_RETENTION_DAYS)
        assert process_stream_batch(stream_event(self._ledger.new_records()), store) == {
            "batchItemFailures": []
        }
        return dict(summary)


def history(account_id: str = NORTHWIND) -> list[dict[str, Any]]:
    return [dashboard_created(account_id, day) for day in (-3, -2, -1)]


def counter_totals(aws: Aws, account_id: str = NORTHWIND) -> dict[str, Any]:
    return {
        item["sk"]: item["metrics"]["dashboard.created"]["total"]
        for item in aws.scan(aws.counters_table)
        if item["pk"] == account_id
    }


# ── backfill: counted, not evaluated ──────────────────────────────────────────────────────────


def test_given_backfilled_history_when_the_evaluator_gets_its_counter_writes_then_nothing_is_evaluated(
    aws,
):
    pipeline = BackfillPipeline(aws)

    summary = pipeline.post_history(*history())
    records = pipeline.counter_changes()
    answer = evaluate_changed_accounts({"Records": records}, online_evaluator(aws, rules=rules("fire")), AT)

    assert summary == {"accepted": 3, "duplicates": 0, "rejected": []}
    assert len(counter_totals(aws)) == 3  # counted as live ingestion would
    assert records
    assert all(r["dynamodb"]["NewImage"]["written_by"] == {"S": "backfill"} for r in records)
    assert answer == {"batchItemFailures": []}
    assert stored_firings(aws) == []
    assert fired_messages(aws) == []
    assert all(item["sk"] != "state" for item in aws.scan(aws.tables["FIRINGS_TABLE"]))


def test_given_an_import_sent_twice_then_the_second_counts_nothing(aws):
    pipeline = BackfillPipeline(aws)
    events = history()
    pipeline.post_history(*events)
    before = counter_totals(aws)

    again = pipeline.post_history(*events)

    assert again == {"accepted": 0, "duplicates": 3, "rejected": []}
    assert counter_totals(aws) == before


def test_given_a_live_event_after_an_import_then_its_counter_write_is_evaluated(aws):
    pipeline = BackfillPipeline(aws)
    pipeline.post_history(*history())
    pipeline.counter_changes()

    pipeline.post(dashboard_created(NORTHWIND, 0))
    records = pipeline.counter_changes()
    evaluate_changed_accounts({"Records": records}, online_evaluator(aws, rules=rules("fire")), AT)

    assert [r["dynamodb"]["NewImage"]["written_by"] for r in records] == [{"S": "live"}]
    assert [firing["trigger"] for firing in stored_firings(aws)] == ["dashboards"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"events": [{}], "backfill": "yes"}, '"backfill" must be true or false'),
        ({"events": [{}], "replay": True}, "Unknown top-level field(s) 'replay'"),
    ],
)
def test_given_a_bad_backfill_envelope_then_400_says_what_to_change_and_nothing_is_written(aws, body, needle):
    status, answer = call_api(proxy_event("POST", "/v1/events", json.dumps(body)))

    assert status == 400
    assert needle in answer["message"]
    assert aws.scan(aws.events_table) == []


# ── going live ────────────────────────────────────────────────────────────────────────────────


def seats(account_id: str, day: int, value: int) -> dict[str, Any]:
    event = dashboard_created(account_id, day)
    return {**event, "name": "seats.active", "kind": "gauge", "value": value}


def test_given_fire_when_an_account_goes_live_then_what_held_fires_once_marked_and_is_not_contact(aws):
    BackfillPipeline(aws).post_history(*history(), seats(NORTHWIND, -1, 4))
    online = online_evaluator(aws, rules=rules("fire"))

    went = online.go_live(NORTHWIND, AT)
    again = online.go_live(NORTHWIND, AT + timedelta(hours=1))

    assert went == again  # once per account: the second call answers the first's decision
    assert went.pre_existing == {"dashboards": rfc3339(AT)}
    (message,) = bodies(fired_messages(aws))
    assert message["firing"]["trigger"] == "dashboards"
    assert message["firing"]["go_live"] == {
        "pre_existing": True,
        "mode": "fire",
        "went_live_at": went.at,
        "release_at": went.at,
    }
    (stored,) = stored_firings(aws)
    assert json.loads(stored["message"]) == message  # a resend from the outbox carries the mark
    state = state_item(aws, NORTHWIND)
    assert state["last_contacted_at"] is None  # history is not contact
    assert state["went_live"]["mode"] == "fire"


def test_given_a_pre_existing_firing_then_a_play_starting_after_go_live_is_not_excluded_as_contacted(aws):
    pipeline = BackfillPipeline(aws)
    pipeline.post_history(*history(), seats(NORTHWIND, -1, 4))
    online = online_evaluator(aws, rules=rules("fire"))
    online.go_live(NORTHWIND, AT)
    fired_messages(aws)

    pipeline.post(seats(NORTHWIND, 0, 12))  # live: seats cross the line after go-live
    evaluate_changed_accounts({"Records": pipeline.counter_changes()}, online, AT + timedelta(minutes=30))

    (message,) = bodies(fired_messages(aws))
    assert message["firing"]["trigger"] == "seats"
    assert "go_live" not in message["firing"]


def test_given_skip_when_an_account_goes_live_then_nothing_fires_until_the_signal_clears_and_holds_again(aws):
    BackfillPipeline(aws).post_history(*history())
    online = online_evaluator(aws, rules=rules("skip"))

    went = online.go_live(NORTHWIND, AT)
    online.evaluate(NORTHWIND, AT + timedelta(hours=1))  # still holding: not re-armed

    assert went.pre_existing == {"dashboards": None}
    assert stored_firings(aws) == []
    assert fired_messages(aws) == []
    assert state_item(aws, NORTHWIND)["triggers"]["dashboards"] == {"last_fired_at": None, "armed": False}

    online.evaluate(NORTHWIND, AT + timedelta(days=10))  # the 7-day window emptied: re-armed
    assert state_item(aws, NORTHWIND)["triggers"]["dashboards"]["armed"] is True


def test_given_spread_when_accounts_go_live_then_each_play_waits_for_its_own_day_within_the_spread(aws):
    accounts = [f"acct-{n:02d}" for n in range(12)]
    BackfillPipeline(aws).post_history(*[event for account in accounts for event in history(account)])
    online = online_evaluator(aws, rules=rules("spread"))

    releases = {account: online.go_live(account, AT).pre_existing["dashboards"] for account in accounts}

    days = {(_moment(release) - AT).days for release in releases.values() if release}
    assert days <= set(range(5))
    assert len(days) > 1
    for account, release in releases.items():  # the same account and trigger: the same day, always
        assert online.go_live(account, AT + timedelta(days=1)).pre_existing["dashboards"] == release


def test_given_a_spread_pre_existing_firing_when_routed_then_it_waits_for_its_release_day_then_goes(
    aws: Aws,
    router: Router,  # noqa: F811 (the fixture imported above)
) -> None:
    release = WEDNESDAY + timedelta(days=3)
    message = fired("acct-spread").model_dump(mode="json")
    message["firing"]["go_live"] = {
        "pre_existing": True,
        "mode": "spread",
        "went_live_at": rfc3339(WEDNESDAY),
        "release_at": rfc3339(release),
    }

    waiting = router.route_firing(FiredMessage.model_validate(message), WEDNESDAY)
    early = router.release(waiting, release - timedelta(minutes=1))
    routed = router.release(waiting, release)

    assert waiting.status is PlayStatus.DEFERRED
    assert waiting.due_at == release
    assert waiting.reason == f"go-live: pre-existing trigger, spread to {release.date().isoformat()}"
    assert early.status is PlayStatus.DEFERRED
    assert routed.status is PlayStatus.ROUTED


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


# ── flood control: a per-trigger daily cap (issue 15, point 3) ────────────────────────────────

CAPPED_RULES = parse_ruleset(
    """
version: flood-test-1
metrics: {seats.active: gauge}
signals:
  busy: {measure: latest, metric: seats.active, window: 1d, at_least: 10}
triggers:
  seats: {category: commercial, owner_role: csm, play: seat-expansion, when: busy, cooldown: 30d}
budgets: {plays_per_account: null, tasks_per_owner_per_day: null, plays_per_trigger_per_day: 2}
plays:
  seat-expansion: {channels: [event]}
""",
    "flood-test.yaml",
)


def capped_router(aws: Aws, bus: str) -> Router:  # noqa: F811 (the bus fixture's value)
    from shared.accounts.store import AccountStore
    from shared.resources import PLAYS_TABLE
    from shared.routing.dispatch import AwsDispatcher
    from shared.routing.ledger import PlayLedger
    from tests.conftest import _test_client

    return Router(
        ruleset=CAPPED_RULES,
        accounts=AccountStore(aws.dynamodb, aws.accounts_table),
        ledger=PlayLedger(aws.dynamodb, aws.tables[PLAYS_TABLE.env_var], TEST_RETENTION_DAYS),
        dispatcher=AwsDispatcher(aws.sqs, {}, _test_client("events"), "upswing-test-bus"),
        signal_holds=lambda account, trigger, at: True,
    )


def test_given_a_daily_cap_per_trigger_when_a_flood_fires_then_the_excess_waits_for_the_next_days(
    aws: Aws,
    bus: str,  # noqa: F811 (the fixture imported above)
) -> None:
    play_router = capped_router(aws, bus)
    flood = [fired(f"acct-{n}", at=WEDNESDAY - timedelta(minutes=n)) for n in range(5)]
    thursday = datetime(2026, 11, 26, tzinfo=UTC)

    first_day = [play_router.route_firing(message, WEDNESDAY) for message in flood]
    redelivered = play_router.route_firing(flood[0], WEDNESDAY)  # charges nothing twice
    released = release_due(play_router, thursday + timedelta(minutes=5))

    statuses = [record.status for record in first_day]
    assert statuses.count(PlayStatus.ROUTED) == 2
    assert statuses.count(PlayStatus.DEFERRED) == 3
    deferred = [record for record in first_day if record.status is PlayStatus.DEFERRED]
    assert {record.due_at for record in deferred} == {thursday}
    assert {record.reason for record in deferred} == {"at most 2 plays of trigger seats per day"}
    assert redelivered.status is PlayStatus.ROUTED
    assert released == {"routed": 2, "deferred": 1}  # Thursday's cap: two more, the last on Friday


def test_given_a_daily_cap_then_pre_existing_firings_of_go_live_draw_on_it_like_any(
    aws: Aws,
    bus: str,  # noqa: F811 (the fixture imported above)
) -> None:
    play_router = capped_router(aws, bus)
    messages = []
    for n in range(3):
        message = fired(f"acct-{n}", at=WEDNESDAY - timedelta(minutes=n)).model_dump(mode="json")
        message["firing"]["go_live"] = {
            "pre_existing": True,
            "mode": "fire",
            "went_live_at": rfc3339(WEDNESDAY),
            "release_at": rfc3339(WEDNESDAY),
        }
        messages.append(FiredMessage.model_validate(message))

    statuses = [play_router.route_firing(message, WEDNESDAY).status for message in messages]

    assert statuses == [PlayStatus.ROUTED, PlayStatus.ROUTED, PlayStatus.DEFERRED]


# ── POST /v1/imports/finish ───────────────────────────────────────────────────────────────────


def finish(*account_ids: str) -> tuple[int, Any]:
    return call_api(proxy_event("POST", "/v1/imports/finish", json.dumps({"account_ids": list(account_ids)})))


def test_given_imported_events_not_counted_yet_when_finishing_then_the_account_waits_until_they_are(aws):
    pipeline = BackfillPipeline(aws)
    status, _ = post_history(history())  # stored in the ledger, the aggregator not run yet
    assert status == 202

    waiting_status, waiting = finish(NORTHWIND)
    store = CounterStore(aws.dynamodb, aws.counters_table, TEST_RETENTION_DAYS)
    process_stream_batch(stream_event(pipeline._ledger.new_records()), store)
    live_status, live = finish(NORTHWIND)
    again_status, again = finish(NORTHWIND)

    assert (waiting_status, waiting["accounts"], waiting["still_counting"]) == (200, [], [NORTHWIND])
    assert live_status == 200
    assert live["still_counting"] == []
    assert [account["account_id"] for account in live["accounts"]] == [NORTHWIND]
    assert (again_status, again) == (200, live)  # once per account: the same answer


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"account_ids": []}, "account_ids"),
        ({"accounts": ["acme"]}, "accounts"),
        ({"account_ids": ["a" * 200]}, "account_ids.0"),
        ({"account_ids": [f"acct-{n}" for n in range(26)]}, "account_ids"),
    ],
)
def test_given_a_bad_finish_body_then_400_names_the_problem(aws, body, needle):
    status, answer = call_api(proxy_event("POST", "/v1/imports/finish", json.dumps(body)))

    assert status == 400
    assert answer["message"].startswith("The body is not a valid import finish: ")
    assert needle in answer["message"]
