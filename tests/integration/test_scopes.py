"""Key scopes against every route: each route needs the scope the OpenAPI document declares, a
producer key cannot rewrite routing or read owners' e-mail addresses, and profile writes are audited."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.api import handler as api
from shared.openapi import openapi_document, required_scope, self_verified
from shared.producers import Scope, scopes_text
from shared.resources import OUTCOMES_TABLE
from tests.integration.builders import an_hour, an_outcome, call_api, proxy_event, rfc3339, usage_event

ACCOUNT = "acct-northwind"
TRIGGER = "seat-expansion"  # a trigger of the reference ruleset the API runs in these tests
PROFILE = {
    "name": "Northwind",
    "segment": "mid-market",
    "owners": {"csm": {"name": "Dana", "email": "dana@example.com", "hubspot_owner_id": "1001"}},
}


_TRACK = {
    "type": "track",
    "messageId": "ajs-scope-check",
    "timestamp": rfc3339(an_hour(0, 10)),
    "event": "Report Created",
    "context": {"groupId": ACCOUNT},
}
# A well-formed call per Segment route (the repository's mapping, segment/mapping.yaml, is in force).
SEGMENT_CALLS = {
    "/v1/track": _TRACK,
    "/v1/identify": {"type": "identify", "userId": "u-7", "traits": {"email": "dana@example.com"}},
    "/v1/group": {
        "type": "group",
        "messageId": "grp-scope-check",
        "timestamp": rfc3339(an_hour(0, 10)),
        "groupId": ACCOUNT,
        "traits": {"name": "Northwind"},
    },
    "/v1/batch": {"batch": [_TRACK]},
}


def operations() -> list[tuple[str, str]]:
    """(method, path template) of every operation the document declares that takes a producer key
    (Slack's interactivity route takes none: tests/integration/test_slack_interactions.py)."""
    return [
        (method.upper(), path)
        for path, item in openapi_document()["paths"].items()
        for method in item
        if not self_verified(method, path)
    ]


def request_for(method: str, template: str, scopes: frozenset[Scope] | set[Scope]) -> dict[str, Any]:
    """A well-formed request to the operation, from a key holding `scopes`."""
    path = template.replace("{account_id}", ACCOUNT).replace("{name}", TRIGGER)
    body = None
    if (method, template) == ("POST", "/v1/events"):
        body = json.dumps({"events": [usage_event()]})
    elif (method, template) == ("POST", "/v1/imports/finish"):
        body = json.dumps({"account_ids": [ACCOUNT]})
    elif (method, template) == ("POST", "/v1/outcomes"):
        body = json.dumps({"outcomes": [an_outcome()]})
    elif method == "PUT":
        body = json.dumps(PROFILE)
    elif template in SEGMENT_CALLS:
        body = json.dumps(SEGMENT_CALLS[template])
    return proxy_event(
        method,
        path,
        body,
        content_type="application/json" if body else None,
        resource=template,
        scopes=scopes_text(scopes),
    )


def test_every_route_the_api_serves_is_declared_in_the_document_with_its_scope():
    # Powertools keeps registered routes on the resolver; a route added without an entry in the
    # OpenAPI document (and so without a scope) must fail this test, not ship open.
    served = {
        (route.method, route.path.replace("<", "{").replace(">", "}"))
        for route in api.app._static_routes + api.app._dynamic_routes
    }

    assert served == {*operations(), ("POST", "/v1/slack/interactions")}


def scoped_operations() -> list[tuple[str, str, Scope]]:
    return [(method, path, scope) for method, path in operations() if (scope := required_scope(method, path))]


@pytest.mark.parametrize(("method", "template", "needed"), scoped_operations())
def test_given_a_key_with_every_scope_but_the_needed_one_then_403_names_the_scope(
    aws, method, template, needed
):
    status, answer = call_api(request_for(method, template, set(Scope) - {needed}))

    assert status == 403
    assert f"lacks the scope {needed.value!r}" in answer["message"]
    assert f"upswing keys grant KEY_ID --scope {needed.value}" in answer["message"]


@pytest.mark.parametrize(("method", "template"), operations())
def test_given_a_key_with_only_the_needed_scope_then_the_route_answers(aws, method, template):
    needed = required_scope(method, template)

    status, _ = call_api(request_for(method, template, {needed} if needed else set()))

    assert status not in (401, 403)
    assert status < 400 or status == 404  # well-formed: it went through (the account may not exist)


def test_given_an_events_only_producer_key_when_it_posts_outcomes_then_403_names_outcomes_write(aws):
    status, answer = call_api(request_for("POST", "/v1/outcomes", {Scope.EVENTS_WRITE}))

    assert status == 403
    assert "'outcomes:write'" in answer["message"]
    assert aws.scan(aws.tables[OUTCOMES_TABLE.env_var]) == []


def test_given_an_outcomes_only_key_when_it_posts_events_then_403_names_events_write(aws):
    status, answer = call_api(request_for("POST", "/v1/events", {Scope.OUTCOMES_WRITE}))

    assert status == 403
    assert "'events:write'" in answer["message"]


@pytest.mark.parametrize(
    "template", ["/v1/triggers", "/v1/triggers/{name}", "/v1/triggers/{name}/experiment"]
)
def test_given_a_producer_key_when_it_reads_trigger_metrics_then_403_names_accounts_read(aws, template):
    # Given a product service's key (events:write) and a billing key (events and outcomes)
    for scopes in ({Scope.EVENTS_WRITE}, {Scope.EVENTS_WRITE, Scope.OUTCOMES_WRITE, Scope.ACCOUNTS_WRITE}):
        # When it asks for the trigger metrics
        status, answer = call_api(request_for("GET", template, scopes))

        # Then 403, naming the reader scope
        assert status == 403
        assert "'accounts:read'" in answer["message"]


def test_scope_free_routes_are_only_the_document_itself():
    # (Slack's interactivity route takes no key: it checks Slack's signature; test_slack_interactions.py)
    free = [(method, path) for method, path in operations() if required_scope(method, path) is None]

    assert free == [("GET", "/v1/openapi.json")]


def test_given_a_producer_key_when_it_tries_to_reroute_an_account_then_403_and_the_profile_is_unchanged(aws):
    call_api(request_for("PUT", "/v1/accounts/{account_id}", {Scope.ACCOUNTS_WRITE}))
    hostile = {
        **PROFILE,
        "owners": {"csm": {"email": "attacker@example.net"}},
        "flags": {"do_not_contact": True},
    }
    event = request_for("PUT", "/v1/accounts/{account_id}", {Scope.EVENTS_WRITE})
    event["body"] = json.dumps(hostile)

    status, answer = call_api(event)

    assert status == 403
    assert "'accounts:write'" in answer["message"]
    _, stored = call_api(request_for("GET", "/v1/accounts/{account_id}", {Scope.ACCOUNTS_READ}))
    assert stored["owners"]["csm"]["email"] == "dana@example.com"
    assert stored["flags"]["do_not_contact"] is False


def test_given_a_writer_without_read_scope_when_it_puts_a_profile_then_the_answer_leaves_out_owner_emails(
    aws,
):
    status, answer = call_api(request_for("PUT", "/v1/accounts/{account_id}", {Scope.ACCOUNTS_WRITE}))

    assert status == 201
    assert answer["owners"]["csm"] == {"name": "Dana", "hubspot_owner_id": "1001"}
    assert "dana@example.com" not in json.dumps(answer)


def test_given_a_reader_when_it_reads_the_profile_then_owner_emails_are_shown(aws):
    call_api(request_for("PUT", "/v1/accounts/{account_id}", {Scope.ACCOUNTS_WRITE}))

    status, answer = call_api(request_for("GET", "/v1/accounts/{account_id}", {Scope.ACCOUNTS_READ}))

    assert status == 200
    assert answer["owners"]["csm"]["email"] == "dana@example.com"


def test_given_profile_writes_then_no_owner_email_reaches_the_logs(aws, capsys):
    call_api(request_for("PUT", "/v1/accounts/{account_id}", {Scope.ACCOUNTS_WRITE, Scope.ACCOUNTS_READ}))
    call_api(request_for("GET", "/v1/accounts/{account_id}", {Scope.ACCOUNTS_READ}))

    logged = capsys.readouterr()

    assert "dana@example.com" not in logged.out + logged.err


def test_given_profile_writes_by_two_producers_then_the_profile_says_who_changed_what(aws):
    first = request_for("PUT", "/v1/accounts/{account_id}", {Scope.ACCOUNTS_WRITE})
    second = request_for("PUT", "/v1/accounts/{account_id}", {Scope.ACCOUNTS_WRITE})
    second["requestContext"]["authorizer"] |= {"producer_id": "crm-sync", "key_id": "fedcba9876543210"}
    second["body"] = json.dumps({**PROFILE, "flags": {"do_not_contact": True}})
    call_api(first)

    status, stored = call_api(second)

    assert status == 200
    assert stored["updated_by"] == {"producer_id": "crm-sync", "key_id": "fedcba9876543210"}
    latest, created = stored["changes"]
    assert (latest["producer_id"], latest["key_id"], latest["fields"]) == (
        "crm-sync",
        "fedcba9876543210",
        ["flags.do_not_contact"],
    )
    assert created["producer_id"] == "checkout-service"
    assert "owners.csm.email" in created["fields"]
    assert "dana@example.com" not in json.dumps(stored["changes"])
