"""Producer keys (issued, verified, revoked, stored only as hashes) and the API's TOKEN authorizer."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from functions.authorizer.handler import authorize, handler
from shared.producers import (
    KEY_PREFIX,
    LEGACY_SCOPES,
    ProducerKeyError,
    ProducerKeys,
    Scope,
    key_hash,
    parse_scopes,
)
from shared.segment import SEGMENT_PATHS
from tests.conftest import Aws
from upswing.local.lambda_runtime import LocalContext

METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/POST/v1/events"


@pytest.fixture
def keys(aws: Aws) -> ProducerKeys:
    return ProducerKeys(aws.dynamodb, aws.registry_table)


def token_event(authorization: str, method_arn: str = METHOD_ARN) -> dict[str, str]:
    """What API Gateway passes to a TOKEN authorizer."""
    return {"type": "TOKEN", "authorizationToken": authorization, "methodArn": method_arn}


# --- Keys ----------------------------------------------------------------------------------------


def test_given_a_producer_when_a_key_is_issued_then_it_is_a_long_prefixed_secret_with_a_short_id(keys):
    issued = keys.issue("checkout-service")

    assert issued.key.startswith(KEY_PREFIX)
    assert len(issued.key) >= len(KEY_PREFIX) + 40
    assert issued.producer_id == "checkout-service"
    assert issued.key_id == key_hash(issued.key)[:16]


def test_given_an_issued_key_then_only_its_hash_is_stored(aws, keys):
    issued = keys.issue("checkout-service")

    (item,) = aws.scan(aws.registry_table)

    assert issued.key not in repr(item)
    assert issued.key.removeprefix(KEY_PREFIX) not in repr(item)
    assert item["hash"] == key_hash(issued.key)
    assert item["pk"] == f"key#{issued.key_id}"


def test_given_two_keys_for_one_producer_then_they_differ_and_both_verify(keys):
    first, second = keys.issue("checkout-service"), keys.issue("checkout-service")

    assert first.key != second.key
    assert keys.verify(first.key).key_id == first.key_id
    assert keys.verify(second.key).key_id == second.key_id


def test_given_an_issued_key_when_verified_then_it_names_its_producer(keys):
    issued = keys.issue("mobile-app")

    producer = keys.verify(issued.key)

    assert producer is not None
    assert (producer.producer_id, producer.key_id) == ("mobile-app", issued.key_id)


@pytest.mark.parametrize(
    "presented", ["", "upk_", "upk_not-a-key-we-issued", "sk_live_abc", "upk_" + "a" * 200]
)
def test_given_a_key_that_was_never_issued_when_verified_then_none(keys, presented):
    keys.issue("mobile-app")

    assert keys.verify(presented) is None


def test_given_a_revoked_key_when_verified_then_none_while_other_keys_still_work(keys):
    revoked, kept = keys.issue("mobile-app"), keys.issue("mobile-app")

    keys.revoke(revoked.key_id, now=datetime(2026, 11, 23, 12, tzinfo=UTC))

    assert keys.verify(revoked.key) is None
    assert keys.verify(kept.key) is not None


def test_given_a_key_revoked_twice_then_the_first_revocation_time_is_kept(keys):
    issued = keys.issue("mobile-app")

    keys.revoke(issued.key_id, now=datetime(2026, 11, 23, 12, tzinfo=UTC))
    keys.revoke(issued.key_id, now=datetime(2026, 11, 24, 12, tzinfo=UTC))

    (record,) = keys.list()
    assert record.revoked_at == "2026-11-23T12:00:00Z"


def test_given_an_unknown_key_id_when_revoked_then_a_clear_error(keys):
    with pytest.raises(ProducerKeyError, match="no producer key with id 0123456789abcdef"):
        keys.revoke("0123456789abcdef")


@pytest.mark.parametrize("not_an_id", ["upk_abc", "0123", "0123456789ABCDEF", "key#0123456789abcdef"])
def test_given_something_that_is_not_a_key_id_when_revoked_then_the_error_says_what_an_id_looks_like(
    keys, not_an_id
):
    with pytest.raises(ProducerKeyError, match="16 hex digits"):
        keys.revoke(not_an_id)


@pytest.mark.parametrize("name", ["Checkout Service", "", "-leading-dash", "x" * 65, "ünïcode"])
def test_given_a_bad_producer_name_when_a_key_is_issued_then_it_is_refused_and_nothing_stored(
    aws, keys, name
):
    with pytest.raises(ProducerKeyError, match="producer name"):
        keys.issue(name)

    assert aws.scan(aws.registry_table) == []


def test_given_issued_and_revoked_keys_when_listed_then_ids_producers_and_states_show_without_secrets(keys):
    first = keys.issue("billing", now=datetime(2026, 11, 1, tzinfo=UTC))
    second = keys.issue("mobile-app", now=datetime(2026, 11, 2, tzinfo=UTC))
    keys.revoke(first.key_id, now=datetime(2026, 11, 3, tzinfo=UTC))

    records = keys.list()

    assert [(r.key_id, r.producer_id, r.revoked_at) for r in records] == [
        (first.key_id, "billing", "2026-11-03T00:00:00Z"),
        (second.key_id, "mobile-app", None),
    ]
    assert first.key not in repr(records)


def test_given_metric_kinds_in_the_same_table_when_keys_are_listed_then_only_keys_are_listed(aws, keys):
    from shared.events.metric_kinds import MetricKinds
    from shared.events.models import EventKind

    MetricKinds(aws.dynamodb, aws.registry_table).resolve([("seats.active", EventKind.GAUGE)])
    keys.issue("billing")

    assert [record.producer_id for record in keys.list()] == ["billing"]


# --- Scopes --------------------------------------------------------------------------------------


def test_given_a_key_issued_without_scopes_then_it_may_only_write_events(keys):
    issued = keys.issue("checkout-service")

    assert issued.scopes == {Scope.EVENTS_WRITE}
    assert keys.verify(issued.key).scopes == {Scope.EVENTS_WRITE}


def test_given_a_key_issued_with_scopes_then_the_authorizer_passes_them_sorted_and_space_separated(keys):
    issued = keys.issue("crm-sync", scopes={Scope.ACCOUNTS_WRITE, Scope.ACCOUNTS_READ})

    policy = authorize(token_event(f"Bearer {issued.key}"), keys)

    assert policy["context"]["scopes"] == "accounts:read accounts:write"


def test_given_a_key_stored_before_scopes_existed_then_it_keeps_writing_events_and_can_be_granted_more(
    aws, keys
):
    issued = keys.issue("legacy-service")
    aws.dynamodb.update_item(  # how a key issued by an earlier version looks: no scopes attribute
        TableName=aws.registry_table,
        Key={"pk": {"S": f"key#{issued.key_id}"}},
        UpdateExpression="REMOVE scopes",
    )
    assert keys.verify(issued.key).scopes == LEGACY_SCOPES == {Scope.EVENTS_WRITE}

    keys.grant(issued.key_id, {Scope.ACCOUNTS_WRITE})

    assert keys.verify(issued.key).scopes == {Scope.EVENTS_WRITE, Scope.ACCOUNTS_WRITE}
    assert [record.scopes for record in keys.list()] == [{Scope.EVENTS_WRITE, Scope.ACCOUNTS_WRITE}]


def test_given_an_unknown_scope_name_then_the_error_lists_the_valid_ones():
    with pytest.raises(ProducerKeyError, match="unknown scope 'accounts:delete'; scopes are: events:write"):
        parse_scopes(["events:write", "accounts:delete"])


def test_given_no_scope_or_an_unknown_key_when_granting_then_it_is_refused(keys):
    with pytest.raises(ProducerKeyError, match="at least one scope"):
        keys.issue("x", scopes=set())
    with pytest.raises(ProducerKeyError, match="no producer key with id 0123456789abcdef"):
        keys.grant("0123456789abcdef", {Scope.ACCOUNTS_READ})


# --- The authorizer ------------------------------------------------------------------------------


def test_given_a_valid_key_when_authorized_then_the_whole_api_is_allowed_and_the_producer_named(keys):
    issued = keys.issue("checkout-service")

    policy = authorize(token_event(f"Bearer {issued.key}"), keys)

    assert policy["principalId"] == "checkout-service"
    assert policy["context"] == {
        "producer_id": "checkout-service",
        "key_id": issued.key_id,
        "scopes": "events:write",
        "auth_scheme": "bearer",
    }
    (statement,) = policy["policyDocument"]["Statement"]
    assert statement == {
        "Action": "execute-api:Invoke",
        "Effect": "Allow",
        "Resource": "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/*",
    }


# --- Segment write keys (HTTP Basic) -------------------------------------------------------------


def basic(user: str, password: str = "", colon: bool = True) -> str:
    credentials = f"{user}:{password}" if colon else user
    return "Basic " + base64.b64encode(credentials.encode()).decode()


SEGMENT_ROUTES = [
    f"arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/*{path}" for path in SEGMENT_PATHS
]


def test_given_a_key_as_a_segment_write_key_then_only_the_segment_routes_are_allowed(keys):
    issued = keys.issue("segment-prod", scopes={Scope.EVENTS_WRITE, Scope.ACCOUNTS_WRITE})
    arn = "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/POST/v1/batch"

    policy = authorize(token_event(basic(issued.key), arn), keys)

    assert policy["principalId"] == "segment-prod"
    assert policy["context"] == {
        "producer_id": "segment-prod",
        "key_id": issued.key_id,
        "scopes": "accounts:write events:write",
        "auth_scheme": "basic",
    }
    (statement,) = policy["policyDocument"]["Statement"]
    # Cached per header for a minute: the answer must not open any other route.
    assert statement["Resource"] == SEGMENT_ROUTES


def test_given_a_write_key_encoded_without_the_colon_then_it_is_accepted_as_segment_does(keys):
    issued = keys.issue("segment-prod")

    policy = authorize(token_event(basic(issued.key, colon=False)), keys)

    assert policy["context"]["auth_scheme"] == "basic"


@pytest.mark.parametrize(
    "header",
    [
        "Basic not-base64!",
        "Basic " + base64.b64encode(b"\xff\xfe:").decode(),
        "Basic " + base64.b64encode(b":").decode(),
    ],
)
def test_given_malformed_basic_credentials_then_unauthorized(keys, header):
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorize(token_event(header), keys)


def test_given_a_write_key_with_a_password_then_unauthorized(keys):
    issued = keys.issue("segment-prod")

    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorize(token_event(basic(issued.key, password="secret")), keys)


def test_given_a_revoked_key_as_a_write_key_then_unauthorized(keys):
    issued = keys.issue("segment-prod")
    keys.revoke(issued.key_id)

    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorize(token_event(basic(issued.key)), keys)


def test_given_the_cached_policy_then_it_also_covers_the_other_routes_of_the_api(keys):
    issued = keys.issue("checkout-service")
    arn = "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/GET/v1/accounts/acct-1/counters"

    resource = authorize(token_event(f"Bearer {issued.key}", arn), keys)["policyDocument"]["Statement"][0][
        "Resource"
    ]

    assert resource == "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/*"


def test_given_a_lowercase_bearer_scheme_when_authorized_then_it_is_accepted(keys):
    issued = keys.issue("checkout-service")

    assert authorize(token_event(f"bearer {issued.key}"), keys)["principalId"] == "checkout-service"


@pytest.mark.parametrize("authorization", ["{key}", "Basic {key}", "Token {key}", "Bearer", "", "Bearer  "])
def test_given_no_bearer_key_when_authorized_then_unauthorized(keys, authorization):
    issued = keys.issue("checkout-service")

    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorize(token_event(authorization.format(key=issued.key)), keys)


def test_given_an_unknown_key_when_authorized_then_unauthorized(keys):
    keys.issue("checkout-service")

    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorize(token_event("Bearer upk_this-key-was-never-issued-by-anyone-at-all"), keys)


def test_given_a_revoked_key_when_authorized_then_unauthorized(keys):
    issued = keys.issue("checkout-service")
    keys.revoke(issued.key_id)

    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorize(token_event(f"Bearer {issued.key}"), keys)


def test_given_the_deployed_handler_when_invoked_then_it_finds_the_registry_from_its_environment(keys):
    issued = keys.issue("checkout-service")

    policy = handler(token_event(f"Bearer {issued.key}"), LocalContext("authorizer"))

    assert policy["context"]["producer_id"] == "checkout-service"
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        handler(token_event("Bearer upk_nope"), LocalContext("authorizer"))


# --- The CLI -------------------------------------------------------------------------------------


def test_given_the_cli_when_a_reader_key_is_issued_granted_and_listed_then_scopes_show(aws, capsys):
    from upswing.cli import main

    table = ["--registry-table", aws.registry_table]
    assert main(["keys", *table, "issue", "revops-dashboard", "--scope", "accounts:read"]) in (0, None)
    issued = capsys.readouterr().out
    key_id = issued.split()[2]
    assert "scopes   accounts:read\n" in issued

    assert main(["keys", *table, "grant", key_id, "--scope", "outcomes:write,events:write"]) in (0, None)
    assert main(["keys", *table, "list"]) in (0, None)

    listed = capsys.readouterr().out
    assert f"granted events:write outcomes:write to {key_id}" in listed
    assert "accounts:read events:write outcomes:write" in listed


def test_given_the_cli_when_an_unknown_scope_is_asked_for_then_it_exits_2_naming_the_valid_ones(aws, capsys):
    from upswing.cli import main

    code = main(["keys", "--registry-table", aws.registry_table, "issue", "x", "--scope", "admin"])

    assert code == 2
    assert "unknown scope 'admin'; scopes are: events:write" in capsys.readouterr().err
    assert aws.scan(aws.registry_table) == []
