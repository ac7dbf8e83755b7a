"""Plays learn their fate, and the live per-trigger metrics, on moto: attribution of expansions
(horizon, boundaries, redelivery, a second expansion, contractions, unknown accounts), counters
kept exactly once through the router, the read-back and attribution, the escalation stop on
expansion, and GET /v1/triggers.

Times are relative to the real clock: the API answers "the last 7/30/90 days" from now.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from functions.attributor.handler import attribute_outcomes
from shared.accounts.models import AccountProfile
from shared.accounts.store import AccountStore
from shared.horizon import DEFAULT_HORIZON_DAYS
from shared.intake import Channel
from shared.outcomes.attribution import Attributor, StoredOutcomeFacts
from shared.outcomes.intake import outcome_intake_for
from shared.outcomes.models import OutcomeKind
from shared.resources import OUTCOMES_TABLE, PLAYS_TABLE
from shared.routing.ledger import PlayLedger
from shared.routing.messages import PlayDelivery
from shared.routing.models import PlayRecord, PlayStatus, TaskFacts, TaskStatus
from shared.routing.router import FiredMessage, Router, play_id
from shared.rules.loading import parse_ruleset
from shared.trigger_metrics.counters import Count
from shared.trigger_metrics.store import CohortCounts, TriggerMetricsStore
from tests.conftest import TEST_RETENTION_DAYS, Aws, StreamReader
from tests.firings import fired_message
from tests.integration.builders import TEST_WRITER, call_api, proxy_event

NOW = datetime.now(UTC).replace(microsecond=0)
TRIGGER = "seat-expansion"  # a trigger of the reference ruleset, which the API runs in tests
HORIZON = timedelta(days=DEFAULT_HORIZON_DAYS)

RULES = parse_ruleset(
    """
version: metrics-test-1
metrics: {seats.active: gauge}
signals:
  busy: {measure: latest, metric: seats.active, window: 1d, at_least: 10}
triggers:
  seat-expansion: {category: commercial, owner_role: csm, play: seat-expansion, when: busy, cooldown: 30d}
budgets: {plays_per_account: 1, account_period: week}
plays:
  seat-expansion:
    channels: [hubspot_task]
    escalation:
      - {after: 0d, channels: [hubspot_task]}
      - {after: 7d, role: ae, channels: [hubspot_task]}
""",
    "metrics-test.yaml",
)
CSM = {"name": "Casey CSM", "email": "casey@example.com", "hubspot_owner_id": "501"}
AE = {"name": "Alex AE", "hubspot_owner_id": "601"}


class Recorder:
    """The router's queues and bus, as lists."""

    def __init__(self) -> None:
        self.delivered: list[PlayDelivery] = []
        self.announced: list[PlayRecord] = []

    def deliver(self, deliveries: list[PlayDelivery]) -> None:
        self.delivered += deliveries

    def announce(self, record: PlayRecord) -> None:
        self.announced.append(record)


@pytest.fixture
def ledger(aws: Aws) -> PlayLedger:
    return PlayLedger(aws.dynamodb, aws.tables[PLAYS_TABLE.env_var], TEST_RETENTION_DAYS)


@pytest.fixture
def router(aws: Aws, ledger: PlayLedger) -> Router:
    return Router(
        ruleset=RULES,
        accounts=AccountStore(aws.dynamodb, aws.accounts_table),
        ledger=ledger,
        dispatcher=Recorder(),
        signal_holds=lambda account_id, trigger, at: True,
    )


@pytest.fixture
def attributor(ledger: PlayLedger) -> Attributor:
    return Attributor(plays=ledger, horizon_days=DEFAULT_HORIZON_DAYS)


def put_account(aws: Aws, account_id: str, **profile: Any) -> None:
    AccountStore(aws.dynamodb, aws.accounts_table).put(
        account_id,
        AccountProfile.model_validate(
            {"name": account_id.title(), "owners": {"csm": CSM, "ae": AE}, **profile}
        ),
        TEST_WRITER,
    )


def fired(account_id: str, at: datetime, *, version: str = "v1", trigger: str = TRIGGER) -> FiredMessage:
    return fired_message(account_id, at, trigger=trigger, version=version)


def expansion(
    account_id: str,
    at: datetime,
    *,
    outcome_id: str = "out-1",
    kind: str = "seat_expansion",
    amount: str = "4800",
) -> StoredOutcomeFacts:
    return StoredOutcomeFacts(
        account_id=account_id,
        outcome_id=outcome_id,
        kind=OutcomeKind(kind),
        occurred_at=at,
        amount=Decimal(amount),
        currency="USD",
    )


def totals(aws: Aws, trigger: str = TRIGGER) -> dict[str, Any]:
    """Every cohort of the trigger added up: counts by name, amounts, histogram entries."""
    cohorts = TriggerMetricsStore(aws.dynamodb, aws.tables[PLAYS_TABLE.env_var]).cohorts(
        trigger, date(2000, 1, 1), date(2100, 1, 1)
    )
    summed: dict[str, Any] = {count.value: sum(c.counts[count] for c in cohorts) for count in Count}
    summed["amount_USD"] = sum((c.amounts.get("USD", Decimal(0)) for c in cohorts), Decimal(0))
    summed["time_to_work"] = sum(sum(c.time_to_work) for c in cohorts)
    return summed


def cohorts(aws: Aws) -> list[CohortCounts]:
    return TriggerMetricsStore(aws.dynamodb, aws.tables[PLAYS_TABLE.env_var]).cohorts(
        TRIGGER, date(2000, 1, 1), date(2100, 1, 1)
    )


def first_tier(ledger: PlayLedger, message: FiredMessage) -> PlayRecord:
    record = ledger.get(message.firing.account_id, play_id(message.firing_id, 0))
    assert record is not None
    return record


# ── attribution ────────────────────────────────────────────────────────────────────────────────


def test_given_a_firing_when_the_account_expands_within_the_horizon_then_its_play_is_expanded_and_counted(
    aws: Aws, router: Router, ledger: PlayLedger, attributor: Attributor
) -> None:
    # Given a firing 20 days ago, routed
    put_account(aws, "acct-1")
    message = fired("acct-1", NOW - timedelta(days=20))
    router.route_firing(message, NOW - timedelta(days=20))

    # When the account expands 10 days after the firing
    result = attributor.attribute(expansion("acct-1", NOW - timedelta(days=10), amount="4800.50"))

    # Then the firing's play holds the expansion, and the trigger counts it with its amount
    assert result.attributed == 1
    assert first_tier(ledger, message).expanded == {
        "outcome_id": "out-1",
        "at": (NOW - timedelta(days=10)).isoformat().replace("+00:00", "Z"),
        "kind": "seat_expansion",
        "amount": "4800.50",
        "currency": "USD",
    }
    assert totals(aws)["expanded"] == 1
    assert totals(aws)["amount_USD"] == Decimal("4800.50")


@pytest.mark.parametrize(
    ("after_firing", "attributed"),
    [
        (timedelta(seconds=-1), False),  # before the firing: not its result
        (timedelta(0), True),  # at the firing's instant: fired_at ≤ occurred_at
        (HORIZON, True),  # the horizon's last instant: occurred_at ≤ fired_at + horizon
        (HORIZON + timedelta(seconds=1), False),  # past the horizon
    ],
    ids=["a second before", "at the firing", "at the horizon", "a second after the horizon"],
)
def test_the_horizon_includes_both_of_its_ends(
    aws: Aws,
    router: Router,
    ledger: PlayLedger,
    attributor: Attributor,
    after_firing: timedelta,
    attributed: bool,
) -> None:
    fired_at = NOW - timedelta(days=120)
    put_account(aws, "acct-1")
    message = fired("acct-1", fired_at)
    router.route_firing(message, fired_at)

    attributor.attribute(expansion("acct-1", fired_at + after_firing))

    assert (first_tier(ledger, message).expanded is not None) is attributed
    assert totals(aws)["expanded"] == int(attributed)


def test_an_expansion_is_attributed_to_every_firing_of_the_account_within_its_horizon_and_no_other(
    aws: Aws, router: Router, ledger: PlayLedger, attributor: Attributor
) -> None:
    # Given three firings of one account (each its own week, within budget) and one of another account
    put_account(aws, "acct-1")
    put_account(aws, "acct-2")
    old, recent, later = (fired("acct-1", NOW - timedelta(days=d)) for d in (150, 40, 5))
    neighbour = fired("acct-2", NOW - timedelta(days=40))
    for message in (old, recent, later, neighbour):
        router.route_firing(message, message.firing.evaluated_at)

    # When acct-1 expands 20 days ago
    attributor.attribute(expansion("acct-1", NOW - timedelta(days=20)))

    # Then only the firing 40 days ago is credited: 150 days is past the horizon, 5 days is after it
    assert first_tier(ledger, recent).expanded is not None
    assert first_tier(ledger, old).expanded is None
    assert first_tier(ledger, later).expanded is None
    assert first_tier(ledger, neighbour).expanded is None
    # And only the firing's own play (tier 0) holds it, not its escalation tier
    escalation = ledger.get("acct-1", play_id(recent.firing_id, 1))
    assert escalation is not None
    assert escalation.expanded is None


def test_a_redelivered_outcome_attributes_nothing_twice(
    aws: Aws, router: Router, ledger: PlayLedger, attributor: Attributor
) -> None:
    put_account(aws, "acct-1")
    router.route_firing(fired("acct-1", NOW - timedelta(days=3)), NOW - timedelta(days=3))
    outcome = expansion("acct-1", NOW - timedelta(days=1))

    first, again = attributor.attribute(outcome), attributor.attribute(outcome)

    assert (first.attributed, again.attributed, again.already_expanded) == (1, 0, 1)
    assert totals(aws)["expanded"] == 1
    assert totals(aws)["amount_USD"] == Decimal("4800")


def test_given_two_expansions_within_the_horizon_then_the_first_stored_wins_and_the_second_adds_nothing(
    aws: Aws, router: Router, ledger: PlayLedger, attributor: Attributor
) -> None:
    put_account(aws, "acct-1")
    message = fired("acct-1", NOW - timedelta(days=30))
    router.route_firing(message, NOW - timedelta(days=30))

    attributor.attribute(expansion("acct-1", NOW - timedelta(days=20), outcome_id="first", amount="1000"))
    second = attributor.attribute(
        expansion("acct-1", NOW - timedelta(days=25), outcome_id="second", amount="9000")
    )

    assert second.attributed == 0
    expanded = first_tier(ledger, message).expanded
    assert expanded is not None
    assert expanded["outcome_id"] == "first"
    assert (totals(aws)["expanded"], totals(aws)["amount_USD"]) == (1, Decimal("1000"))


@pytest.mark.parametrize("kind", ["contraction", "churn"])
def test_contractions_and_churn_are_not_attributed(
    aws: Aws, router: Router, ledger: PlayLedger, attributor: Attributor, kind: str
) -> None:
    put_account(aws, "acct-1")
    message = fired("acct-1", NOW - timedelta(days=3))
    router.route_firing(message, NOW - timedelta(days=3))

    result = attributor.attribute(expansion("acct-1", NOW - timedelta(days=1), kind=kind))

    assert result.ignored
    assert first_tier(ledger, message).expanded is None
    assert totals(aws)["expanded"] == 0


def test_an_outcome_for_an_account_without_plays_attributes_nothing(aws: Aws, attributor: Attributor) -> None:
    result = attributor.attribute(expansion("nobody-knows-me", NOW - timedelta(days=1)))

    assert (result.attributed, result.already_expanded) == (0, 0)
    assert cohorts(aws) == []


def test_the_attributor_takes_new_outcomes_from_the_tables_stream_and_a_replayed_batch_changes_nothing(
    aws: Aws, router: Router, ledger: PlayLedger, attributor: Attributor
) -> None:
    # Given a firing, and outcomes stored by the intake (as POST /v1/outcomes or the bus would)
    put_account(aws, "acct-1")
    message = fired("acct-1", NOW - timedelta(days=3))
    router.route_firing(message, NOW - timedelta(days=3))
    intake = outcome_intake_for(aws.dynamodb, aws.tables[OUTCOMES_TABLE.env_var], TEST_RETENTION_DAYS)
    occurred = (NOW - timedelta(days=1)).isoformat().replace("+00:00", "Z")
    intake.ingest(
        [
            {
                "outcome_id": "chg-1",
                "account_id": "acct-1",
                "kind": "plan_upgrade",
                "occurred_at": occurred,
                "amount": "1200",
                "currency": "EUR",
                "source": "billing",
            },
            {
                "outcome_id": "chg-2",
                "account_id": "ghost",
                "kind": "seat_expansion",
                "occurred_at": occurred,
                "amount": "10",
                "currency": "USD",
                "source": "billing",
            },
        ],
        "billing",
        Channel.HTTPS,
        datetime.now(UTC),
    )
    records = StreamReader(aws.streams_client, aws.stream_arns[OUTCOMES_TABLE.env_var]).new_records()
    assert len(records) == 2

    # When the stream batch is handled, then delivered again (a retry)
    first = attribute_outcomes({"Records": records}, attributor)
    again = attribute_outcomes({"Records": records}, attributor)

    # Then nothing failed, the play is expanded, and the trigger counted it once, in its currency
    assert first == again == {"batchItemFailures": []}
    expanded = first_tier(ledger, message).expanded
    assert expanded is not None
    assert expanded["kind"] == "plan_upgrade"
    assert expanded["currency"] == "EUR"
    [cohort] = cohorts(aws)
    assert cohort.counts[Count.EXPANDED] == 1
    assert cohort.amounts == {"EUR": Decimal("1200")}


def test_an_unreadable_stream_record_fails_alone(aws: Aws, router: Router, attributor: Attributor) -> None:
    put_account(aws, "acct-1")
    router.route_firing(fired("acct-1", NOW - timedelta(days=3)), NOW - timedelta(days=3))
    good = {
        "eventID": "2",
        "eventName": "INSERT",
        "eventSource": "aws:dynamodb",
        "dynamodb": {
            "SequenceNumber": "200",
            "NewImage": {
                "pk": {"S": "acct-1"},
                "outcome_id": {"S": "chg-9"},
                "kind": {"S": "add_on"},
                "occurred_at": {"S": (NOW - timedelta(days=1)).isoformat()},
                "amount": {"N": "99"},
                "currency": {"S": "USD"},
            },
        },
    }
    broken = {**good, "eventID": "1", "dynamodb": {"SequenceNumber": "100", "NewImage": {"pk": {"S": "x"}}}}

    answer = attribute_outcomes({"Records": [broken, good]}, attributor)

    assert answer == {"batchItemFailures": [{"itemIdentifier": "100"}]}
    assert totals(aws)["expanded"] == 1


# ── counters, exactly once ─────────────────────────────────────────────────────────────────────


def test_a_redelivered_firing_counts_one_firing_routed_once(aws: Aws, router: Router) -> None:
    put_account(aws, "acct-1")
    message = fired("acct-1", NOW - timedelta(hours=2))

    router.route_firing(message, NOW - timedelta(hours=2))
    router.route_firing(message, NOW - timedelta(hours=1))  # SQS delivers it again

    counted = totals(aws)
    assert (counted["firings"], counted["routed"], counted["deferred"]) == (1, 1, 0)
    [cohort] = cohorts(aws)
    assert (cohort.cohort.ruleset_version, cohort.cohort.day) == ("v1", (NOW - timedelta(hours=2)).date())


def test_a_play_deferred_twice_then_routed_counts_one_deferral_and_one_routing(
    aws: Aws, router: Router, ledger: PlayLedger
) -> None:
    # Given an account whose weekly budget (1 play) the first firing spends
    put_account(aws, "acct-1")
    monday = datetime.combine(NOW.date() - timedelta(days=NOW.weekday() + 7), datetime.min.time(), UTC)
    router.route_firing(fired("acct-1", monday, trigger="other-trigger"), monday)

    # When a second firing is deferred, released while the budget is still spent (deferred again)
    second = fired("acct-1", monday + timedelta(hours=1))
    deferred = router.route_firing(second, monday + timedelta(hours=1))
    assert deferred.status is PlayStatus.DEFERRED
    router.ledger.settle(first_tier(ledger, second).moved(PlayStatus.DEFERRED, monday + timedelta(hours=2)))
    router.route_firing(second, monday + timedelta(hours=3))  # a redelivery meanwhile: still waiting
    # and finally released in the next week
    released = router.release(first_tier(ledger, second), monday + timedelta(days=7, hours=1))

    # Then: one firing, deferred once, routed once
    assert released.status is PlayStatus.ROUTED
    counted = totals(aws)
    assert (counted["firings"], counted["deferred"], counted["routed"]) == (1, 1, 1)


def test_a_suppressed_play_counts_as_a_firing_suppressed_once(aws: Aws, router: Router) -> None:
    put_account(aws, "acct-1", flags={"do_not_contact": True})
    message = fired("acct-1", NOW - timedelta(hours=2))

    router.route_firing(message, NOW - timedelta(hours=2))
    router.route_firing(message, NOW - timedelta(hours=1))

    counted = totals(aws)
    assert (counted["firings"], counted["suppressed"], counted["routed"]) == (1, 1, 0)


def test_a_routed_escalation_tier_counts_as_an_escalation_not_a_firing(
    aws: Aws, router: Router, ledger: PlayLedger
) -> None:
    put_account(aws, "acct-1")
    message = fired("acct-1", NOW - timedelta(days=8))
    router.route_firing(message, NOW - timedelta(days=8))
    tier_1 = ledger.get("acct-1", play_id(message.firing_id, 1))
    assert tier_1 is not None

    router.release(tier_1, NOW)
    router.release(tier_1, NOW)  # the scheduler's next run finds it done

    counted = totals(aws)
    assert (counted["firings"], counted["routed"], counted["escalated"]) == (1, 1, 1)


def worked_facts(modified_ms: int, at: datetime) -> TaskFacts:
    return TaskFacts(
        task_id="31415",
        status=TaskStatus.COMPLETED,
        modified_ms=modified_ms,
        worked={"at": at.isoformat().replace("+00:00", "Z"), "by": "501"},
    )


def test_a_task_worked_counts_once_with_its_time_to_work_whatever_the_read_back_repeats(
    aws: Aws, router: Router, ledger: PlayLedger
) -> None:
    # Given a routed play
    put_account(aws, "acct-1")
    message = fired("acct-1", NOW - timedelta(days=2))
    router.route_firing(message, NOW - timedelta(days=2))
    tier_0 = play_id(message.firing_id, 0)

    # When the read-back records its completion 5 hours later, reads it again (the watermark's
    # overlap), and later sees it reopened and completed once more
    completed = NOW - timedelta(days=2) + timedelta(hours=5)
    assert ledger.record_task_change("acct-1", tier_0, worked_facts(1000, completed))
    assert not ledger.record_task_change("acct-1", tier_0, worked_facts(1000, completed))
    ledger.record_task_change(
        "acct-1", tier_0, TaskFacts(task_id="31415", status=TaskStatus.OPEN, modified_ms=2000)
    )
    assert ledger.record_task_change("acct-1", tier_0, worked_facts(3000, NOW))

    # Then the trigger counts one task worked, with one time to work in the 4-8 hour bucket
    counted = totals(aws)
    assert (counted["worked"], counted["time_to_work"]) == (1, 1)
    [cohort] = cohorts(aws)
    assert cohort.time_to_work[3] == 1  # (4 h, 8 h]
    # And the play shows its latest completion
    record = ledger.get("acct-1", tier_0)
    assert record is not None
    assert record.task is not None
    assert record.task.worked is not None


def test_a_task_change_for_an_unknown_play_counts_nothing(aws: Aws, ledger: PlayLedger) -> None:
    assert not ledger.record_task_change("acct-1", "0" * 24, worked_facts(1000, NOW))
    assert cohorts(aws) == []


def test_a_deferred_play_expanded_meanwhile_keeps_its_expansion_when_routed(
    aws: Aws, router: Router, ledger: PlayLedger, attributor: Attributor
) -> None:
    # Given a deferred play (the account's weekly budget spent) that the account's expansion reaches
    put_account(aws, "acct-1")
    monday = datetime.combine(NOW.date() - timedelta(days=NOW.weekday() + 7), datetime.min.time(), UTC)
    router.route_firing(fired("acct-1", monday, trigger="other-trigger"), monday)
    second = fired("acct-1", monday + timedelta(hours=1))
    assert router.route_firing(second, monday + timedelta(hours=1)).status is PlayStatus.DEFERRED
    stale = first_tier(ledger, second)  # what the scheduler read before the expansion was recorded
    attributor.attribute(expansion("acct-1", monday + timedelta(days=2)))

    # When the scheduler releases the play from its stale read, then from a fresh one
    router.release(stale, monday + timedelta(days=7, hours=1))
    released = router.release(first_tier(ledger, second), monday + timedelta(days=7, hours=1))

    # Then the expansion is still there (the stale write could not remove it) and counted once
    assert released.status is PlayStatus.ROUTED
    assert first_tier(ledger, second).expanded is not None
    assert totals(aws)["expanded"] == 1
    assert attributor.attribute(expansion("acct-1", monday + timedelta(days=2))).attributed == 0
    assert totals(aws)["expanded"] == 1


# ── escalation stops on expansion ──────────────────────────────────────────────────────────────


def test_given_the_account_expanded_after_the_firing_when_the_escalation_is_due_then_it_stops_saying_why(
    aws: Aws, router: Router, ledger: PlayLedger, attributor: Attributor
) -> None:
    put_account(aws, "acct-1")
    message = fired("acct-1", NOW - timedelta(days=8))
    router.route_firing(message, NOW - timedelta(days=8))
    attributor.attribute(expansion("acct-1", NOW - timedelta(days=3), outcome_id="chg-42", amount="4800"))
    tier_1 = ledger.get("acct-1", play_id(message.firing_id, 1))
    assert tier_1 is not None

    stopped = router.release(tier_1, NOW)

    assert stopped.status is PlayStatus.STOPPED
    assert stopped.reason == (
        "the account expanded after the firing: seat_expansion of 4800.00 USD on "
        f"{(NOW - timedelta(days=3)).isoformat().replace('+00:00', 'Z')} (outcome chg-42)"
    )
    assert len(router.dispatcher.delivered) == 1  # type: ignore[attr-defined]  # tier 0's task only
    assert totals(aws)["escalated"] == 0


# ── GET /v1/triggers ───────────────────────────────────────────────────────────────────────────


def get(path: str) -> tuple[int, dict[str, Any]]:
    return call_api(proxy_event("GET", path, None, content_type=None))


def window(answer: dict[str, Any], days: int) -> dict[str, Any]:
    return next(w for w in answer["windows"] if w["days"] == days)


def test_the_trigger_metrics_add_up_cohorts_per_window_and_version_with_honest_precision(
    aws: Aws, router: Router, ledger: PlayLedger, attributor: Attributor
) -> None:
    # Given firings of seat-expansion: 2 three days ago (v2), 3 twenty days ago (v1), 1 sixty days ago (v1)
    ages = {
        "a": (3, "v2"),
        "b": (3, "v2"),
        "c": (20, "v1"),
        "d": (20, "v1"),
        "e": (20, "v1"),
        "f": (60, "v1"),
    }
    messages = {}
    for account, (days, version) in ages.items():
        put_account(aws, account)
        messages[account] = fired(account, NOW - timedelta(days=days), version=version)
        router.route_firing(messages[account], NOW - timedelta(days=days))
    # And accounts a and c expanded, c's task was worked 2 hours after routing
    attributor.attribute(expansion("a", NOW - timedelta(days=1), amount="100"))
    attributor.attribute(expansion("c", NOW - timedelta(days=10), amount="250.50"))
    ledger.record_task_change(
        "c",
        play_id(messages["c"].firing_id, 0),
        worked_facts(1, NOW - timedelta(days=20) + timedelta(hours=2)),
    )

    # When RevOps reads the trigger
    status, answer = get(f"/v1/triggers/{TRIGGER}")

    # Then each window counts the cohorts fired within it
    assert status == 200
    assert answer["trigger"] == TRIGGER
    assert answer["in_active_ruleset"] is True
    assert answer["horizon_days"] == DEFAULT_HORIZON_DAYS
    week, month, quarter = (window(answer, days) for days in (7, 30, 90))
    assert (week["firings"], month["firings"], quarter["firings"]) == (2, 5, 6)
    assert (week["routed"], month["routed"], quarter["routed"]) == (2, 5, 6)
    assert (week["accounts_expanded"], month["accounts_expanded"]) == (1, 2)
    assert month["expansion_amount"] == {"USD": "350.50"}
    assert month["tasks_worked"] == 1
    assert month["median_hours_to_work"] == 1.5  # one value in (1 h, 2 h]: the bucket's middle
    assert week["median_hours_to_work"] is None
    # And per ruleset version
    by_version = {v["ruleset_version"]: v for v in month["by_ruleset_version"]}
    assert (by_version["v2"]["firings"], by_version["v1"]["firings"]) == (2, 3)
    assert (by_version["v2"]["accounts_expanded"], by_version["v1"]["accounts_expanded"]) == (1, 1)
    # And precision: nothing has matured within a 90-day horizon, so the to-date rate is a lower bound
    precision = month["precision"]
    assert precision["matured"] == {"firings": 0, "expanded": 0, "rate": None, "interval_95": None}
    assert precision["to_date"]["rate"] == 0.4
    assert precision["to_date"]["lower_bound"] is True
    low, high = precision["to_date"]["interval_95"]
    assert low == pytest.approx(0.1176, abs=1e-4)
    assert high == pytest.approx(0.7693, abs=1e-4)
    assert precision["open"] == {"firings": 5, "expanded": 2}
    assert "5 of 5 firings are still within their 90-day horizon" in precision["note"]


def test_firings_whose_horizon_has_passed_are_reported_as_matured(
    aws: Aws, router: Router, attributor: Attributor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a 10-day horizon, and four firings 20 days ago (matured: one expanded) and one 2 days ago
    monkeypatch.setenv("EXPANSION_HORIZON_DAYS", "10")
    from functions.api import handler as api

    api.wiring.reset()
    short = Attributor(plays=attributor.plays, horizon_days=10)
    for account, days in (("m1", 20), ("m2", 20), ("m3", 20), ("m4", 20), ("o1", 2)):
        put_account(aws, account)
        router.route_firing(fired(account, NOW - timedelta(days=days)), NOW - timedelta(days=days))
    short.attribute(expansion("m1", NOW - timedelta(days=15)))
    short.attribute(expansion("m2", NOW - timedelta(days=5)))  # 15 days after its firing: too late

    _, answer = get(f"/v1/triggers/{TRIGGER}")
    api.wiring.reset()

    precision = window(answer, 30)["precision"]
    assert precision["matured"]["firings"] == 4
    assert precision["matured"]["expanded"] == 1
    assert precision["matured"]["rate"] == 0.25
    assert precision["open"] == {"firings": 1, "expanded": 0}
    assert precision["to_date"]["lower_bound"] is True


def test_every_trigger_of_the_active_ruleset_is_listed(aws: Aws, router: Router) -> None:
    put_account(aws, "acct-1")
    router.route_firing(fired("acct-1", NOW - timedelta(days=1)), NOW - timedelta(days=1))

    status, answer = get("/v1/triggers")

    assert status == 200
    listed = {entry["trigger"]: entry for entry in answer["triggers"]}
    from shared.rules.online import active_ruleset

    assert set(listed) == set(active_ruleset("rules/reference.yaml")[0].triggers)
    assert window(listed[TRIGGER], 7)["firings"] == 1
    assert [w["days"] for w in listed[TRIGGER]["windows"]] == [7, 30, 90]


def test_an_unknown_trigger_is_a_404_that_suggests_the_closest_name_and_lists_the_known_ones(
    aws: Aws,
) -> None:
    status, answer = get("/v1/triggers/seat-expanzion")

    assert status == 404
    assert "No trigger 'seat-expanzion'" in answer["message"]
    assert "Did you mean 'seat-expansion'?" in answer["message"]
    assert "Known triggers: " in answer["message"]
    assert "seat-expansion" in answer["message"]


def test_a_retired_trigger_with_firings_is_still_answered(aws: Aws, router: Router) -> None:
    put_account(aws, "acct-1")
    router.route_firing(
        fired("acct-1", NOW - timedelta(days=1), trigger="retired-one"), NOW - timedelta(days=1)
    )

    status, answer = get("/v1/triggers/retired-one")

    assert status == 200
    assert answer["in_active_ruleset"] is False
    assert window(answer, 7)["firings"] == 1


# ── fates on /signals ──────────────────────────────────────────────────────────────────────────


def test_the_signals_route_shows_each_plays_fate(
    aws: Aws, router: Router, ledger: PlayLedger, attributor: Attributor
) -> None:
    # Given plays that expanded, were worked, lapsed (fired 100 days ago), or are still open
    for account, days in (("grew", 5), ("worked", 5), ("old", 100), ("open", 5)):
        put_account(aws, account)
        router.route_firing(fired(account, NOW - timedelta(days=days)), NOW - timedelta(days=days))
    attributor.attribute(expansion("grew", NOW - timedelta(days=1)))
    ledger.record_task_change(
        "worked", play_id(fired("worked", NOW - timedelta(days=5)).firing_id, 0), worked_facts(1, NOW)
    )

    fates = {}
    for account in ("grew", "worked", "old", "open"):
        _, answer = get(f"/v1/accounts/{account}/signals")
        fates[account] = {play["tier"]: play["fate"]["state"] for play in answer["recent_plays"]}
        if account == "grew":
            [tier_0] = [play for play in answer["recent_plays"] if play["tier"] == 0]
            assert tier_0["expanded"]["outcome_id"] == "out-1"

    # Then the escalation tier shares its firing's expansion; each other play has its own fate
    assert fates == {
        "grew": {0: "expanded", 1: "expanded"},
        "worked": {0: "worked", 1: "open"},
        "old": {0: "lapsed", 1: "lapsed"},
        "open": {0: "open", 1: "open"},
    }
