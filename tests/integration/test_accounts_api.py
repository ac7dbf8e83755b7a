"""Account profiles, counters and the OpenAPI document through the real API function."""

from __future__ import annotations

import json
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.aggregator.handler import process_stream_batch
from functions.api.handler import handler as api_handler
from shared.counters.store import CounterStore
from shared.openapi import openapi_document
from tests.conftest import TEST_RETENTION_DAYS, Aws
from tests.integration.builders import (
    account_path,
    an_hour,
    call_api,
    post_events,
    proxy_event,
    rfc3339,
    stream_event,
    usage_event,
)
from upswing.local.lambda_runtime import LocalContext

NORTHWIND = {
    "name": "Northwind Traders",
    "segment": "mid-market",
    "industry": "wholesale",
    "employees": 240,
    "plan": {"name": "Growth", "tier": 2, "limits": {"seats": 50, "api.calls": 1_000_000}},
    "arr": "48000.00",
    "currency": "EUR",
    "renewal_date": "2027-03-31",
    "owners": {
        "csm": {"name": "Dana Kim", "email": "dana@upswing.example", "hubspot_owner_id": "7712"},
        "ae": {"name": "Lee Park", "hubspot_owner_id": "7713"},
    },
    "hubspot": {"company_id": "9000123"},
    "flags": {"churn_risk": False, "open_expansion_opportunity": True},
}


def put_account(account_id: str, profile: Any) -> tuple[int, Any]:
    body = profile if isinstance(profile, str) else json.dumps(profile)
    return call_api(proxy_event("PUT", account_path(account_id), body, resource="/v1/accounts/{account_id}"))


def get(path: str, query: dict[str, str] | None = None) -> tuple[int, Any]:
    return call_api(proxy_event("GET", path, None, content_type=None, query=query))


def test_given_a_new_account_when_put_then_201_and_get_returns_the_profile(aws):
    status, stored = put_account("acct-northwind", NORTHWIND)

    assert status == 201
    assert stored["account_id"] == "acct-northwind"
    assert stored["updated_at"].endswith("Z")
    status, fetched = get(account_path("acct-northwind"))
    assert status == 200
    assert fetched == stored
    assert fetched["plan"]["limits"] == {"seats": 50, "api.calls": 1_000_000}
    assert fetched["owners"]["csm"]["email"] == "dana@upswing.example"
    assert fetched["flags"]["open_expansion_opportunity"] is True
    assert fetched["flags"]["do_not_contact"] is False  # defaults are filled in


def test_given_an_existing_account_when_put_again_then_200_and_the_profile_is_replaced(aws):
    put_account("acct-northwind", NORTHWIND)

    status, stored = put_account(
        "acct-northwind", {"name": "Northwind Traders GmbH", "segment": "enterprise"}
    )

    assert status == 200
    _, fetched = get(account_path("acct-northwind"))
    assert fetched["name"] == "Northwind Traders GmbH"
    assert fetched["segment"] == "enterprise"
    assert fetched["plan"] is None  # a PUT replaces, it does not merge
    assert fetched == stored


def test_given_a_unicode_account_id_in_a_decoded_path_when_put_and_read_then_it_round_trips(aws):
    # The path arrives decoded here, as the local gateway delivers it (see the report on encoding).
    path = "/v1/accounts/société-générale"
    body = json.dumps({"name": "Société Générale"})

    status, stored = call_api(proxy_event("PUT", path, body, resource="/v1/accounts/{account_id}"))

    assert status == 201
    assert stored["account_id"] == "société-générale"
    assert get(path)[1]["name"] == "Société Générale"


@pytest.mark.parametrize(
    ("profile", "named_field"),
    [
        ({}, "name"),
        ({"name": "N", "segment": "Mid Market"}, "segment"),
        ({"name": "N", "arr": -5}, "arr"),
        ({"name": "N", "renewal_date": "next spring"}, "renewal_date"),
        ({"name": "N", "created_at": "2026-11-23T10:00:00Z"}, "created_at"),  # a day, as renewal_date
        ({"name": "N", "created_at": 20261123}, "created_at"),
        ({"name": "N", "owners": {"csm": {"email": "not-an-email"}}}, "owners.csm.email"),
        ({"name": "N", "hubspot": {"company_id": "ACME"}}, "hubspot.company_id"),
        ({"name": "N", "plan": {"name": "Growth", "limits": {"seats": -1}}}, "plan.limits.seats"),
        ({"name": "N", "tier": "gold"}, "tier"),
        ({"name": "N", "arr": "48000.505"}, "arr"),
        ({"name": "N", "arr": "lots"}, "arr"),
        ({"name": "N", "arr": True}, "arr"),
        ({"name": "N", "arr": 2e15}, "arr"),
        # Past 1e28 rounding to the cent overflowed Decimal's precision: an error that escaped as a 500.
        ({"name": "N", "arr": 1e30}, "arr"),
        ({"name": "N", "arr": 1e300}, "arr"),
    ],
)
def test_given_an_invalid_profile_when_put_then_400_lists_what_is_wrong_and_nothing_is_stored(
    aws, profile, named_field
):
    status, answer = put_account("acct-northwind", profile)

    assert status == 400
    assert answer["message"] == "The profile is not valid."
    assert any(named_field in error for error in answer["errors"]), answer["errors"]
    assert get(account_path("acct-northwind"))[0] == 404


@pytest.mark.parametrize("body", ["{not json", '["a list"]', '"a string"', "", "null"])
def test_given_a_body_that_is_not_a_json_object_when_put_then_400_not_a_crash(aws, body):
    status, answer = put_account("acct-northwind", body)

    assert status == 400
    assert "JSON" in answer["message"]


def test_given_an_account_id_of_129_chars_when_put_then_400(aws):
    status, answer = put_account("a" * 129, {"name": "Too long"})

    assert status == 400
    assert "account_id" in answer["message"]


@pytest.mark.parametrize(
    ("sent", "kept"), [(48000, "48000.00"), (48000.505, "48000.50"), ("48000.5", "48000.5")]
)
def test_given_arr_as_a_number_or_a_decimal_string_when_put_then_it_is_kept_to_the_cent(aws, sent, kept):
    status, stored = put_account("acct-northwind", {"name": "N", "arr": sent})

    assert status == 201
    assert stored["arr"] == kept


def test_given_an_unknown_profile_field_when_put_then_the_message_lists_the_profile_fields(aws):
    status, answer = put_account("acct-northwind", {"name": "N", "segmnet": "smb"})

    assert status == 400
    (error,) = answer["errors"]
    assert error.startswith("unknown field 'segmnet' (did you mean 'segment'?) (profile fields are: name,")
    assert "event_id" not in error


def test_given_an_unknown_owner_field_when_put_then_the_message_lists_an_owners_fields(aws):
    status, answer = put_account("acct-northwind", {"name": "N", "owners": {"csm": {"emial": "a@b.co"}}})

    assert status == 400
    assert answer["errors"] == [
        "unknown field 'owners.csm.emial' (did you mean 'email'?) "
        "(fields of owners.csm are: name, email, hubspot_owner_id)"
    ]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ('{"name": "N", "x": ' + "[" * 3000 + "]" * 3000 + "}", "more than 32 levels deep"),
        ('{"name": "N", "x": ' + "[" * 33 + "]" * 33 + "}", "more than 32 levels deep"),
        ('{"name": "N", "employees": ' + "9" * 5000 + "}", "an integer of 5,000 digits"),
        ('{"name": "N", "arr": 1.' + "0" * 200 + "}", "written with 202 characters"),
    ],
)
def test_given_a_hostile_profile_body_when_put_then_400_with_the_limit_and_nothing_stored(aws, body, words):
    status, answer = put_account("acct-northwind", body)

    assert status == 400
    assert words in answer["message"]
    assert get(account_path("acct-northwind"))[0] == 404


@pytest.mark.parametrize(
    ("profile", "named_field"),
    [
        ({"name": "N", "employees": 10**12}, "employees"),
        ({"name": "N", "plan": {"name": "P", "tier": 10**9}}, "plan.tier"),
        ({"name": "N", "plan": {"name": "P", "limits": {"seats": 1e300}}}, "plan.limits.seats"),
    ],
)
def test_given_numbers_no_real_account_has_when_put_then_400(aws, profile, named_field):
    status, answer = put_account("acct-northwind", profile)

    assert status == 400
    assert any(named_field in error for error in answer["errors"]), answer["errors"]


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("acct%FF", "not valid percent-encoded UTF-8"),
        ("%C3", "not valid percent-encoded UTF-8"),
        (".", "cannot be '.' or '..'"),
        ("..", "cannot be '.' or '..'"),
        ("%2E%2E", "cannot be '.' or '..'"),
    ],
)
def test_given_a_path_id_that_names_no_single_account_when_put_then_400(aws, raw, words):
    status, answer = put_account(raw, {"name": "N"})

    assert status == 400
    assert words in answer["message"]


def test_given_the_nfc_and_nfd_forms_of_one_id_when_put_then_they_are_one_account(aws):
    from urllib.parse import quote

    nfc, nfd = unicodedata.normalize("NFC", "société"), unicodedata.normalize("NFD", "société")
    assert nfc != nfd

    first, _ = put_account(quote(nfc), {"name": "Société"})
    second, stored = put_account(quote(nfd), {"name": "Société, again"})

    assert (first, second) == (201, 200)
    assert stored["account_id"] == nfc


def test_given_an_unknown_account_when_read_then_404_says_how_to_create_it(aws):
    status, answer = get(account_path("acct-nobody"))

    assert status == 404
    assert "acct-nobody" in answer["message"]
    assert "PUT /v1/accounts/{account_id}" in answer["message"]


@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/things"), ("DELETE", "/v1/accounts/acct-1/x")])
def test_given_an_unknown_route_when_called_then_404_json_points_at_the_document(aws, method, path):
    status, answer = call_api(proxy_event(method, path, None, content_type=None))

    assert status == 404
    assert f"No route {method} {path}" in answer["message"]
    assert "/v1/openapi.json" in answer["message"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/v1/accounts/acct-1", "GET, PUT"),
        ("TRACE", "/v1/events", "POST"),
        ("HEAD", "/v1/accounts/acct-1/signals", "GET"),
        ("OPTIONS", "/v1/openapi.json", "GET"),
    ],
)
def test_given_a_method_a_route_does_not_take_when_called_then_405_with_allow(aws, method, path, allowed):
    answer = api_handler(proxy_event(method, path, None, content_type=None), LocalContext("api"))

    assert answer["statusCode"] == 405
    assert answer["multiValueHeaders"]["Allow"] == [allowed]
    assert (
        json.loads(answer["body"])["message"]
        == f"{method} is not allowed on {path}; use {allowed.replace(', ', ' or ')}."
    )


def test_given_an_empty_date_when_counters_are_read_then_400_not_the_default(aws):
    status, answer = get(account_path("acct-northwind", "/counters"), {"to": ""})

    assert status == 400
    assert "dates like" in answer["message"]


def test_given_the_api_when_the_document_is_asked_for_then_it_is_the_generated_one(aws):
    status, document = get("/v1/openapi.json")

    assert status == 200
    assert document == json.loads(json.dumps(openapi_document()))


# --- Counters ------------------------------------------------------------------------------------


def aggregate_everything(aws: Aws) -> None:
    store = CounterStore(aws.dynamodb, aws.counters_table, TEST_RETENTION_DAYS)
    answer = process_stream_batch(stream_event(aws.events_stream().new_records()), store)
    assert answer == {"batchItemFailures": []}


def test_given_aggregated_events_when_counters_are_read_then_each_day_shows_its_metrics(aws):
    day, three_days_before = an_hour(0, 9), an_hour(-3, 9)
    call_api(
        post_events(
            [
                usage_event(account_id="acct-northwind", value=2, dimensions={"user": "u-1"}),
                usage_event(account_id="acct-northwind", value=3, dimensions={"user": "u-2"}),
                usage_event(account_id="acct-northwind", occurred_at=rfc3339(three_days_before)),
                usage_event(
                    account_id="acct-northwind",
                    name="seats.active",
                    kind="gauge",
                    value=41,
                    occurred_at=rfc3339(day),
                    dimensions={},
                ),
                usage_event(account_id="acct-other", value=100),
            ]
        )
    )
    aggregate_everything(aws)

    status, answer = get(account_path("acct-northwind", "/counters"))

    assert status == 200
    today = datetime.now(UTC).date()
    assert (answer["account_id"], answer["to"]) == ("acct-northwind", today.isoformat())
    assert answer["from"] == (today - timedelta(days=29)).isoformat()
    by_day = {entry["day"]: entry["metrics"] for entry in answer["days"]}
    assert list(by_day) == [three_days_before.date().isoformat(), day.date().isoformat()]
    used = by_day[day.date().isoformat()]["feature.analytics.used"]
    assert used == {"kind": "count", "total": 5, "events": 2, "distinct": {"user": 2}}
    seats = by_day[day.date().isoformat()]["seats.active"]
    assert (seats["last"], seats["low"], seats["high"]) == (41, 41, 41)
    assert by_day[three_days_before.date().isoformat()]["feature.analytics.used"]["total"] == 1


def test_given_a_date_range_when_counters_are_read_then_only_those_days_are_returned(aws):
    recent, older = an_hour(0, 9), an_hour(-5, 9)
    call_api(post_events([usage_event(occurred_at=rfc3339(recent)), usage_event(occurred_at=rfc3339(older))]))
    aggregate_everything(aws)
    day = older.date().isoformat()

    status, answer = get(account_path("acct-northwind", "/counters"), {"from": day, "to": day})

    assert status == 200
    assert [entry["day"] for entry in answer["days"]] == [day]


def test_given_an_account_without_usage_when_counters_are_read_then_the_days_list_is_empty(aws):
    status, answer = get(account_path("acct-quiet", "/counters"))

    assert status == 200
    assert answer["days"] == []


def _days_ago(days: int) -> str:
    return (datetime.now(UTC).date() - timedelta(days=days)).isoformat()


# Dates relative to today are computed when the test runs, not when it is collected: a run that
# crosses midnight would otherwise ask for a range a day off.
@pytest.mark.parametrize(
    ("query", "words"),
    [
        (lambda: {"from": "last week"}, "dates like"),
        (lambda: {"from": _days_ago(10), "to": _days_ago(20)}, "must not be after"),
        (lambda: {"from": _days_ago(400), "to": _days_ago(-1)}, "at most 400 days"),
        (lambda: {"to": "10000-01-01"}, "dates like"),
    ],
)
def test_given_a_bad_date_range_when_counters_are_read_then_400_says_why(aws, query, words):
    status, answer = get(account_path("acct-northwind", "/counters"), query())

    assert status == 400
    assert words in answer["message"]


@pytest.mark.parametrize(
    "query",
    [
        # Date arithmetic near the first or last representable day used to crash the handler.
        lambda: {"to": "0001-01-01"},
        lambda: {"to": "9999-12-31"},
        lambda: {"from": "0001-01-01", "to": "0001-01-01"},
        lambda: {"from": "9999-12-31"},
        lambda: {"from": _days_ago(401)},
        lambda: {"to": _days_ago(-2)},
    ],
)
def test_given_days_outside_the_kept_range_when_counters_are_read_then_400_names_the_range(aws, query):
    status, answer = get(account_path("acct-northwind", "/counters"), query())

    assert status == 400
    assert f"between {_days_ago(400)} and {_days_ago(-1)}" in answer["message"]
    assert "counters are kept for 400 days" in answer["message"]


def test_given_a_to_day_near_the_oldest_kept_when_from_is_left_out_then_it_starts_at_the_oldest(aws):
    status, answer = get(account_path("acct-northwind", "/counters"), {"to": _days_ago(390)})

    assert status == 200
    assert (answer["from"], answer["to"]) == (_days_ago(400), _days_ago(390))


def test_given_percent_encoded_account_ids_as_rest_apis_send_them_then_they_are_decoded(aws):
    status, stored = put_account("soci%C3%A9t%C3%A9%20g%C3%A9n%C3%A9rale", {"name": "Société Générale"})

    assert status == 201
    assert stored["account_id"] == "société générale"


def test_given_storage_failing_when_an_account_is_read_then_503_with_a_retry_message(aws, monkeypatch):
    from botocore.exceptions import ClientError

    from shared.accounts.store import AccountStore

    def throttled(self, account_id):
        raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "GetItem")

    monkeypatch.setattr(AccountStore, "get", throttled)

    status, body = get(account_path("acct-northwind"))

    assert status == 503
    assert "retry" in body["message"]


def test_given_too_many_owner_roles_when_put_then_400(aws):
    owners = {f"role-{n}": {"name": "x"} for n in range(21)}

    status, body = put_account("acct-many-owners", {"name": "Many", "owners": owners})

    assert status == 400
    assert any("owners" in error for error in body["errors"])


def test_given_owners_by_email_and_the_company_by_domain_when_put_then_kept_in_lower_case(aws):
    # Given a profile that names its CSM by e-mail only and its HubSpot company by domain, no ids
    profile = {
        "name": "Northwind",
        "owners": {"csm": {"name": "Dana", "email": "dana@upswing.example"}},
        "hubspot": {"domain": "Northwind.Example.com"},
    }

    status, stored = put_account("acct-northwind", profile)

    # Then it is a valid profile; the domain is kept as HubSpot compares it, in lower case
    assert status == 201
    assert stored["owners"]["csm"] == {
        "name": "Dana",
        "email": "dana@upswing.example",
        "hubspot_owner_id": None,
    }
    assert stored["hubspot"]["domain"] == "northwind.example.com"
    assert stored["hubspot"]["company_id"] is None


@pytest.mark.parametrize(
    "domain", ["https://acme.com", "acme.com/about", "acme", "acme.com:443", "-acme.com", "acme .com", ""]
)
def test_given_a_domain_that_is_not_a_host_name_when_put_then_400_names_the_field(aws, domain):
    status, answer = put_account("acct-northwind", {"name": "N", "hubspot": {"domain": domain}})

    assert status == 400
    assert any("hubspot.domain" in error for error in answer["errors"]), answer["errors"]
    assert get(account_path("acct-northwind"))[0] == 404
