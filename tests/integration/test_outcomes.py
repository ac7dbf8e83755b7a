"""Outcomes in: POST /v1/outcomes through the real API function, and `outcome` on the bus, on moto."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from functions.api import handler as api
from functions.bus_ingest.handler import handler as bus_handler
from shared.errors import StorageUnavailable
from shared.outcomes.intake import OutcomeIntake
from shared.outcomes.store import OutcomeStore
from shared.resources import OUTCOMES_TABLE
from tests.conftest import TEST_RETENTION_DAYS, Aws
from tests.integration.builders import (
    an_outcome,
    bus_event,
    call_api,
    post_events,
    post_outcomes,
    proxy_event,
    rfc3339,
    usage_event,
)
from upswing.local.lambda_runtime import LocalContext

NEGATIVE = (
    "amount: must be 0 or more: a contraction or churn is sent as the positive size of the loss "
    "(the kind says which way it went)"
)


def outcomes_table(aws: Aws) -> str:
    return aws.tables[OUTCOMES_TABLE.env_var]


def stored(aws: Aws) -> dict[str, dict[str, Any]]:
    return {item["sk"]: item for item in aws.scan(outcomes_table(aws))}


def store(aws: Aws) -> OutcomeStore:
    return OutcomeStore(aws.dynamodb, outcomes_table(aws))


def rejected_errors(answer: dict[str, Any]) -> list[str]:
    (rejection,) = answer["rejected"]
    return rejection["errors"]


def post_one(**overrides: Any) -> tuple[int, dict[str, Any]]:
    return call_api(post_outcomes([an_outcome(**overrides)]))


# --- the happy path ------------------------------------------------------------------------------


def test_given_valid_outcomes_when_posted_then_202_accepts_them_and_they_are_stored_per_account(aws):
    expansion = an_outcome(outcome_id="chg-1", amount=4800.5)
    churn = an_outcome(
        outcome_id="chg-2", account_id="acct-contoso", kind="churn", amount="12000", deal_id=None
    )

    status, answer = call_api(post_outcomes([expansion, churn]))

    assert status == 202
    assert answer == {"accepted": 2, "duplicates": 0, "rejected": []}
    item = stored(aws)["outcome#chg-1"]
    assert item["pk"] == "acct-northwind"
    assert (item["kind"], item["amount"], item["currency"], item["source"], item["deal_id"]) == (
        "seat_expansion",
        Decimal("4800.50"),
        "USD",
        "billing",
        "9001",
    )
    assert (item["producer"], item["channel"]) == ("checkout-service", "https")
    assert "deal_id" not in stored(aws)["outcome#chg-2"]
    (kept,) = store(aws).outcomes("acct-contoso")
    assert (kept.outcome_id, kept.kind, kept.amount, kept.deal_id) == (
        "chg-2",
        "churn",
        Decimal("12000.00"),
        None,
    )


def test_given_outcomes_when_posted_then_nothing_reaches_the_event_ledger_or_its_counters(aws):
    call_api(post_outcomes([an_outcome()]))

    assert aws.scan(aws.events_table) == []


def test_given_every_kind_when_posted_then_each_is_accepted(aws):
    kinds = ["seat_expansion", "plan_upgrade", "add_on", "cross_sell", "contraction", "churn"]

    status, answer = call_api(post_outcomes([an_outcome(kind=kind) for kind in kinds]))

    assert (status, answer["accepted"]) == (202, 6)


def test_given_an_accounts_outcomes_when_read_then_the_most_recent_comes_first(aws):
    day = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    call_api(
        post_outcomes(
            [
                an_outcome(outcome_id="a-old", occurred_at=rfc3339(day)),
                an_outcome(outcome_id="z-new", occurred_at=rfc3339(day + timedelta(days=2))),
                an_outcome(outcome_id="m-mid", occurred_at=rfc3339(day + timedelta(days=1))),
                an_outcome(outcome_id="other", account_id="acct-other"),
            ]
        )
    )

    assert [o.outcome_id for o in store(aws).outcomes("acct-northwind")] == ["z-new", "m-mid", "a-old"]

    status, answer = call_api(
        proxy_event("GET", "/v1/accounts/acct-northwind/outcomes", None, content_type=None)
    )

    assert status == 200
    assert answer["account_id"] == "acct-northwind"
    assert [outcome["outcome_id"] for outcome in answer["outcomes"]] == ["z-new", "m-mid", "a-old"]
    assert answer["outcomes"][0]["producer"] == "checkout-service"


# --- unknown accounts (docs/decisions.md) --------------------------------------------------------


def test_given_an_account_without_a_profile_when_its_outcome_is_posted_then_it_is_accepted_and_kept(aws):
    assert call_api(proxy_event("GET", "/v1/accounts/acct-new-in-billing"))[0] == 404

    status, answer = post_one(outcome_id="chg-9", account_id="acct-new-in-billing")

    assert (status, answer["accepted"]) == (202, 1)
    assert [o.outcome_id for o in store(aws).outcomes("acct-new-in-billing")] == ["chg-9"]


# --- per-item rejections -------------------------------------------------------------------------


def test_given_a_mixed_batch_when_posted_then_valid_outcomes_are_stored_and_rejections_are_precise(aws):
    good = an_outcome(outcome_id="good")
    batch = [
        good,
        an_outcome(outcome_id="bad-kind", kind="upsell"),
        an_outcome(outcome_id="no-currency", currency=None),
        an_outcome(outcome_id="typo", dael_id="9001"),
        "not an object",
        an_outcome(outcome_id="bad-source", source="Billing System"),
    ]

    status, answer = call_api(post_outcomes(batch))

    assert (status, answer["accepted"], answer["duplicates"]) == (202, 1, 0)
    assert set(stored(aws)) == {"outcome#good"}
    reasons = {(r["index"], r["outcome_id"]): r["errors"] for r in answer["rejected"]}
    assert list(reasons) == [(1, "bad-kind"), (2, "no-currency"), (3, "typo"), (4, None), (5, "bad-source")]
    assert reasons[1, "bad-kind"] == [
        "kind: input should be 'seat_expansion', 'plan_upgrade', 'add_on', 'cross_sell', "
        "'contraction' or 'churn'"
    ]
    assert reasons[2, "no-currency"] == ["currency is required"]
    (typo,) = reasons[3, "typo"]
    assert typo.startswith(
        "unknown field 'dael_id' (did you mean 'deal_id'?) (outcome fields are: outcome_id,"
    )
    assert reasons[4, None] == ["an outcome must be a JSON object, got a string"]
    assert reasons[5, "bad-source"][0].startswith("source: ")


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        (-100, NEGATIVE),
        (-0.01, NEGATIVE),
        ("-100", NEGATIVE),
        (2e15, "amount: must be at most 1e+15 in magnitude"),
        (1e300, "amount: must be at most 1e+15 in magnitude"),
        (10**20, "amount: must be at most 1e+15 in magnitude"),
        ("4800.505", "amount: as a string must be a plain decimal like '48000.50' (at most 2 decimals)"),
        ("1e3", "amount: as a string must be a plain decimal like '48000.50' (at most 2 decimals)"),
        ("lots", "amount: as a string must be a plain decimal like '48000.50' (at most 2 decimals)"),
        (True, "amount: must be a number, e.g. 120000 or 120000.50, or a decimal string"),
        (None, "amount is required"),
    ],
)
def test_given_an_amount_that_is_not_a_sum_of_money_when_posted_then_it_is_rejected_saying_why(
    aws, amount, message
):
    outcome = an_outcome(outcome_id="o-1")
    outcome["amount"] = amount
    if amount is None:
        del outcome["amount"]

    status, answer = call_api(post_outcomes([outcome]))

    assert status == 202
    assert rejected_errors(answer) == [message]
    assert stored(aws) == {}


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_given_a_non_finite_amount_when_posted_then_it_is_rejected_not_stored(aws, literal):
    body = json.dumps({"outcomes": [an_outcome(outcome_id="o-1", amount=0)]}).replace(
        '"amount": 0', f'"amount": {literal}'
    )

    status, answer = call_api(proxy_event("POST", "/v1/outcomes", body))

    assert status == 202
    (error,) = rejected_errors(answer)
    assert error.startswith("amount: must be")
    assert stored(aws) == {}


@pytest.mark.parametrize(
    ("amount", "kept"),
    [(0, "0.00"), (4800.505, "4800.50"), ("4800.5", "4800.50"), (1e15, "1000000000000000.00")],
)
def test_given_an_amount_as_a_number_or_a_decimal_string_then_it_is_kept_to_the_cent(aws, amount, kept):
    status, answer = post_one(outcome_id="o-1", amount=amount)

    assert (status, answer["accepted"]) == (202, 1)
    assert stored(aws)["outcome#o-1"]["amount"] == Decimal(kept)


def test_given_the_same_amount_as_a_number_and_as_a_string_when_resent_then_it_is_a_duplicate(aws):
    post_one(outcome_id="o-1", amount=4800.5)

    status, answer = post_one(outcome_id="o-1", amount="4800.50")

    assert (status, answer) == (202, {"accepted": 0, "duplicates": 1, "rejected": []})


@pytest.mark.parametrize(
    ("currency", "message"),
    [
        ("XYZ", "currency: 'XYZ' is not an ISO 4217 currency code; e.g. USD, EUR, GBP"),
        ("usd", "currency: 'usd' is not an ISO 4217 currency code (did you mean 'USD'?); e.g. USD, EUR, GBP"),
        ("XTS", "currency: 'XTS' is not an ISO 4217 currency code; e.g. USD, EUR, GBP"),
        ("US Dollar", "currency: 'US Dollar' is not an ISO 4217 currency code; e.g. USD, EUR, GBP"),
        (840, "currency: must be an ISO 4217 currency code string, e.g. USD"),
    ],
)
def test_given_an_unknown_currency_when_posted_then_it_is_rejected_naming_it(aws, currency, message):
    status, answer = post_one(outcome_id="o-1", currency=currency)

    assert status == 202
    assert rejected_errors(answer) == [message]
    assert stored(aws) == {}


@pytest.mark.parametrize("currency", ["EUR", "JPY", "GBP", "XOF", "CHF"])
def test_given_a_circulating_currency_when_posted_then_it_is_accepted(aws, currency):
    assert post_one(currency=currency)[1]["accepted"] == 1


def test_given_an_outcome_beyond_the_clock_skew_tolerance_when_posted_then_it_is_rejected(aws):
    now = datetime.now(UTC)
    ahead = an_outcome(outcome_id="ahead", occurred_at=rfc3339(now + timedelta(minutes=30)))
    slightly_ahead = an_outcome(outcome_id="skewed", occurred_at=rfc3339(now + timedelta(minutes=2)))
    too_old = an_outcome(outcome_id="old", occurred_at=rfc3339(now - timedelta(days=TEST_RETENTION_DAYS + 2)))
    no_zone = an_outcome(outcome_id="no-zone", occurred_at="2026-11-23T10:00:00")

    status, answer = call_api(post_outcomes([ahead, slightly_ahead, too_old, no_zone]))

    assert (status, answer["accepted"]) == (202, 1)
    assert set(stored(aws)) == {"outcome#skewed"}
    reasons = {r["outcome_id"]: r["errors"][0] for r in answer["rejected"]}
    assert "is in the future (more than 5 minutes ahead of" in reasons["ahead"]
    assert "check the producer's clock and timezone" in reasons["ahead"]
    assert f"is older than the {TEST_RETENTION_DAYS}-day retention" in reasons["old"]
    assert reasons["no-zone"].startswith("occurred_at: ")


# --- idempotency -----------------------------------------------------------------------------------


def test_given_a_batch_sent_again_when_posted_then_everything_is_a_duplicate_and_stored_once(aws):
    batch = [an_outcome(), an_outcome(kind="add_on", amount=99)]
    call_api(post_outcomes(batch))
    before = stored(aws)

    status, answer = call_api(post_outcomes(batch))

    assert (status, answer) == (202, {"accepted": 0, "duplicates": 2, "rejected": []})
    assert stored(aws) == before


def test_given_an_outcome_id_reused_with_other_content_when_posted_then_it_is_rejected_and_the_first_kept(
    aws,
):
    post_one(outcome_id="chg-1", amount=4800)

    status, answer = post_one(outcome_id="chg-1", amount=9600)

    assert status == 202
    (error,) = rejected_errors(answer)
    assert error.startswith("outcome_id: already accepted at ")
    assert error.endswith(" with different content; outcome ids must be unique per account")
    assert stored(aws)["outcome#chg-1"]["amount"] == Decimal("4800.00")


def test_given_one_outcome_id_twice_in_a_batch_then_same_content_is_a_duplicate_other_content_rejected(
    aws,
):
    first = an_outcome(outcome_id="chg-1")
    status, answer = call_api(post_outcomes([first, dict(first), {**first, "kind": "add_on"}]))

    assert (status, answer["accepted"], answer["duplicates"]) == (202, 1, 1)
    assert answer["rejected"] == [
        {
            "index": 2,
            "outcome_id": "chg-1",
            "errors": [
                "outcome_id: repeated in this request with different content; "
                "outcome ids must be unique per account"
            ],
        }
    ]


def test_given_one_outcome_id_in_two_accounts_then_they_are_two_outcomes(aws):
    status, answer = call_api(
        post_outcomes(
            [an_outcome(outcome_id="chg-1"), an_outcome(outcome_id="chg-1", account_id="acct-other")]
        )
    )

    assert (status, answer["accepted"]) == (202, 2)


# --- the envelope ----------------------------------------------------------------------------------


def test_given_501_outcomes_when_posted_then_413_and_nothing_is_written(aws):
    status, answer = call_api(post_outcomes([an_outcome() for _ in range(501)]))

    assert status == 413
    assert (
        answer["message"] == '"outcomes" holds 501 outcomes; the limit is 500 per request. Split the batch.'
    )
    assert stored(aws) == {}


def test_given_500_outcomes_when_posted_then_all_are_accepted(aws):
    status, answer = call_api(post_outcomes([an_outcome() for _ in range(500)]))

    assert (status, answer["accepted"]) == (202, 500)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ('{"outcomes": []}', 400, '"outcomes" is empty: send between 1 and 500 outcomes.'),
        (
            '{"events": []}',
            400,
            'The body must be a JSON object with an "outcomes" array: {"outcomes": [...]}.',
        ),
        ('{"outcomes": {}}', 400, '"outcomes" must be an array of outcome objects.'),
        ('{"outcomes": [], "x": 1}', 400, "Unknown top-level field(s) 'x'; only \"outcomes\"."),
        ("{not json", 400, "The body is not valid JSON"),
    ],
)
def test_given_a_malformed_envelope_when_posted_then_4xx_says_what_to_send(aws, body, status, message):
    answer_status, answer = call_api(proxy_event("POST", "/v1/outcomes", body))

    assert answer_status == status
    assert answer["message"].startswith(message)


def test_given_a_form_content_type_when_posted_then_415(aws):
    event = post_outcomes([an_outcome()], content_type="application/x-www-form-urlencoded")

    status, _ = call_api(event)

    assert status == 415


# --- storage failing part-way ----------------------------------------------------------------------


class _ThrottledStore(OutcomeStore):
    def put_new(self, item: dict[str, Any]) -> Any:
        if item["sk"].endswith("-throttled"):
            raise StorageUnavailable("ProvisionedThroughputExceededException")
        return super().put_new(item)


def test_given_storage_fails_part_way_when_posted_then_503_and_the_retry_stores_each_outcome_once(
    aws, monkeypatch
):
    throttled = OutcomeIntake(_ThrottledStore(aws.dynamodb, outcomes_table(aws)), TEST_RETENTION_DAYS)
    batch = [
        an_outcome(outcome_id="ok-1"),
        an_outcome(outcome_id="o-throttled"),
        an_outcome(outcome_id="ok-2"),
    ]

    with monkeypatch.context() as patch:
        patch.setattr(api, "outcome_intake", lambda: throttled)
        status, answer = call_api(post_outcomes(batch))

    assert status == 503
    assert answer["message"].startswith("2 of 3 outcomes were stored before storage became unavailable.")
    assert "Retry the whole request" in answer["message"]
    status, answer = call_api(post_outcomes(batch))
    assert (status, answer) == (202, {"accepted": 1, "duplicates": 2, "rejected": []})
    assert set(stored(aws)) == {"outcome#ok-1", "outcome#o-throttled", "outcome#ok-2"}


# --- the bus ---------------------------------------------------------------------------------------


def outcomes_on_the_bus(outcomes: list[Any], source: str = "billing") -> dict[str, Any]:
    return bus_event(outcomes, source=source, detail_type="outcome")


def rejects(aws: Aws) -> list[dict[str, Any]]:
    return [json.loads(message["Body"]) for message in aws.queue_messages(aws.rejects_queue_url)]


def test_given_outcomes_on_the_bus_when_delivered_then_valid_ones_are_stored_and_invalid_ones_go_to_rejects(
    aws,
):
    good, bad = an_outcome(outcome_id="chg-1"), an_outcome(outcome_id="chg-2", amount=-5, currency="XYZ")

    answer = bus_handler(outcomes_on_the_bus([good, bad], source="stripe"), LocalContext("bus_ingest"))

    assert answer == {"batchItemFailures": []}
    assert set(stored(aws)) == {"outcome#chg-1"}
    assert (stored(aws)["outcome#chg-1"]["producer"], stored(aws)["outcome#chg-1"]["channel"]) == (
        "eventbridge:stripe",
        "eventbridge",
    )
    (reject,) = rejects(aws)
    assert (reject["detail_type"], reject["source"], reject["event"]) == ("outcome", "stripe", bad)
    assert reject["errors"] == [
        NEGATIVE,
        "currency: 'XYZ' is not an ISO 4217 currency code; e.g. USD, EUR, GBP",
    ]


def test_given_events_and_outcomes_in_one_bus_batch_then_each_goes_to_its_own_table(aws):
    event, outcome = usage_event(), an_outcome(outcome_id="chg-1")
    batch = bus_event([event])
    batch["Records"] += outcomes_on_the_bus([outcome])["Records"]

    answer = bus_handler(batch, LocalContext("bus_ingest"))

    assert answer == {"batchItemFailures": []}
    assert {item["sk"] for item in aws.scan(aws.events_table)} == {event["event_id"]}
    assert set(stored(aws)) == {"outcome#chg-1"}
    assert rejects(aws) == []


def test_given_an_outcome_sent_over_https_when_it_comes_over_the_bus_then_it_is_a_silent_duplicate(aws):
    outcome = an_outcome(outcome_id="chg-1")
    call_api(post_outcomes([outcome]))

    answer = bus_handler(outcomes_on_the_bus([outcome]), LocalContext("bus_ingest"))

    assert answer == {"batchItemFailures": []}
    assert stored(aws)["outcome#chg-1"]["channel"] == "https"
    assert rejects(aws) == []


def test_given_an_outcome_from_the_bus_when_posted_over_https_then_a_duplicate_and_other_content_rejected(
    aws,
):
    outcome = an_outcome(outcome_id="chg-1")
    bus_handler(outcomes_on_the_bus([outcome]), LocalContext("bus_ingest"))

    assert call_api(post_outcomes([outcome]))[1] == {"accepted": 0, "duplicates": 1, "rejected": []}
    _, answer = call_api(post_outcomes([{**outcome, "amount": 1}]))
    assert "already accepted at" in rejected_errors(answer)[0]
    assert len(stored(aws)) == 1


def test_given_an_outcome_on_the_bus_when_storage_fails_then_sqs_delivers_it_again_and_it_is_stored_once(
    aws, monkeypatch
):
    from functions.bus_ingest import handler as bus_module

    ok, unlucky = an_outcome(outcome_id="ok-1"), an_outcome(outcome_id="o-throttled")
    event = outcomes_on_the_bus([ok, unlucky])
    throttled = OutcomeIntake(_ThrottledStore(aws.dynamodb, outcomes_table(aws)), TEST_RETENTION_DAYS)
    wired = bus_module.intakes()
    with monkeypatch.context() as patch:
        patch.setattr(bus_module, "intakes", lambda: {**wired, "outcome": throttled})
        answer = bus_handler(event, LocalContext("bus_ingest"))

    assert answer == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["messageId"]}]}
    assert rejects(aws) == []
    # SQS delivers the whole batch again (or the failed message): storage is back.
    assert bus_handler(event, LocalContext("bus_ingest")) == {"batchItemFailures": []}
    assert set(stored(aws)) == {"outcome#ok-1", "outcome#o-throttled"}
    assert rejects(aws) == []


def test_given_an_outcome_sent_as_a_usage_event_then_it_is_rejected_as_an_event_not_stored(aws):
    answer = bus_handler(bus_event([an_outcome(outcome_id="chg-1")]), LocalContext("bus_ingest"))

    assert answer == {"batchItemFailures": []}
    assert stored(aws) == {}
    (reject,) = rejects(aws)
    assert reject["detail_type"] == "usage.event"
    assert any("unknown field 'outcome_id'" in error for error in reject["errors"])


def test_given_posting_events_then_the_events_route_still_answers_as_before(aws):
    assert call_api(post_events([usage_event()]))[1] == {"accepted": 1, "duplicates": 0, "rejected": []}
