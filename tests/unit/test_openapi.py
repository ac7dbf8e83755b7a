"""The published OpenAPI document: generated from the models, and the committed copy kept in step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.events.contract import MAX_EVENTS_PER_REQUEST
from shared.openapi import (
    SEGMENT_SCHEME,
    SLACK_INTERACTIONS_PATH,
    SLACK_SCHEME,
    openapi_document,
    self_verified,
)
from shared.segment import SEGMENT_PATHS

COMMITTED_COPY = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
REGENERATE = "upswing openapi --out docs/openapi.json"


def test_given_the_committed_docs_openapi_json_then_it_matches_what_the_code_generates():
    assert COMMITTED_COPY.exists(), f"docs/openapi.json is missing: create it with `{REGENERATE}`"
    expected = json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"

    if COMMITTED_COPY.read_text() != expected:
        pytest.fail(
            f"docs/openapi.json is out of date with the models in shared/: regenerate it with "
            f"`{REGENERATE}` and commit the result.",
            pytrace=False,
        )


def test_given_the_document_then_it_lists_the_routes_of_the_api():
    paths = openapi_document()["paths"]

    assert set(paths) == {
        "/v1/events",
        "/v1/outcomes",
        "/v1/imports/finish",
        "/v1/accounts/{account_id}",
        "/v1/accounts/{account_id}/counters",
        "/v1/accounts/{account_id}/signals",
        "/v1/accounts/{account_id}/outcomes",
        "/v1/triggers",
        "/v1/triggers/{name}",
        "/v1/triggers/{name}/experiment",
        "/v1/rulesets",
        "/v1/rulesets/{version}/changes",
        "/v1/openapi.json",
        "/v1/slack/interactions",
        *SEGMENT_PATHS,
    }
    assert set(paths["/v1/events"]) == {"post"}
    assert set(paths["/v1/outcomes"]) == {"post"}
    assert set(paths["/v1/accounts/{account_id}"]) == {"put", "get"}
    assert set(paths["/v1/accounts/{account_id}/counters"]) == {"get"}


def test_given_the_document_then_every_call_needs_a_bearer_producer_key():
    document = openapi_document()

    assert document["security"] == [{"producerKey": []}]
    scheme = document["components"]["securitySchemes"]["producerKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if path == SLACK_INTERACTIONS_PATH:
                continue  # Slack calls it without a key (below)
            # Each operation names the scope it needs; none opts out of the key (an empty list).
            requirement, *alternatives = operation["security"]
            assert list(requirement) == ["producerKey"], f"{method.upper()} {path} must need a producer key"
            # The Segment routes also take the key as a Segment write key, for the same scope.
            expected = [{SEGMENT_SCHEME: requirement["producerKey"]}] if path in SEGMENT_PATHS else []
            assert alternatives == expected, f"{method.upper()} {path}"


def test_given_slacks_interactivity_route_then_it_alone_takes_no_key_and_says_it_checks_slacks_signature():
    document = openapi_document()
    keyless = [
        (method, path)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if self_verified(method, path)
    ]
    scheme = document["components"]["securitySchemes"][SLACK_SCHEME]

    assert keyless == [("post", SLACK_INTERACTIONS_PATH)]
    assert document["paths"][SLACK_INTERACTIONS_PATH]["post"]["security"] == [{SLACK_SCHEME: []}]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "X-Slack-Signature")


def test_given_the_segment_write_key_scheme_then_it_is_http_basic():
    scheme = openapi_document()["components"]["securitySchemes"][SEGMENT_SCHEME]

    assert (scheme["type"], scheme["scheme"]) == ("http", "basic")


def test_given_every_operation_then_it_has_an_id_and_documents_the_auth_failures():
    for path, operations in openapi_document()["paths"].items():
        for method, operation in operations.items():
            assert operation.get("operationId"), f"{method.upper()} {path} has no operationId"
            if path == SLACK_INTERACTIONS_PATH:  # no key, so no scope: a bad signature is the 401
                assert "401" in operation["responses"]
            elif path != "/v1/openapi.json":
                assert {"401", "403"} <= set(operation["responses"]), f"{method.upper()} {path}"


def test_given_every_schema_reference_then_it_resolves_to_a_component():
    document = openapi_document()
    text = json.dumps(document)
    references = {part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]}

    assert references
    assert references <= set(document["components"]["schemas"])


def test_given_the_events_operation_then_it_documents_the_contract_limits_and_outcomes():
    operation = openapi_document()["paths"]["/v1/events"]["post"]
    batch = openapi_document()["components"]["schemas"]["EventBatch"]

    assert {"202", "400", "413", "415", "503"} <= set(operation["responses"])
    assert batch["properties"]["events"]["maxItems"] == MAX_EVENTS_PER_REQUEST
    event = openapi_document()["components"]["schemas"]["UsageEvent"]
    assert set(event["required"]) == {"event_id", "account_id", "name", "occurred_at"}
    assert event["additionalProperties"] is False


def test_given_the_document_then_it_is_valid_json_for_the_3_1_dialect():
    document = openapi_document()

    assert document["openapi"] == "3.1.0"
    assert json.loads(json.dumps(document)) == document
