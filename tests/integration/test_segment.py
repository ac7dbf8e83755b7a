"""Segment-compatible ingest through the real API function, on DynamoDB emulated by moto.

The fixtures in tests/fixtures/segment_spec_examples.json are the Segment documentation's own
example payloads, verbatim:
- track_spec_complete, group_spec_complete: "Spec: Track" and "Spec: Group", section "Example"
  (segment.com/docs/connections/spec/track/, .../group/);
- http_api_*: "HTTP API Source", sections Identify, Track, Group and Batch
  (segment.com/docs/connections/sources/catalog/libraries/server/http-api/).
Where a test needs a call Upswing can take (a recent timestamp, an account), it says what it changes.
"""

from __future__ import annotations

import copy
import functools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from functions.api import handler as api
from shared.accounts.store import AccountStore
from shared.producers import Scope, scopes_text
from shared.segment.mapping import MAPPING_PATH_ENV
from tests.conftest import Aws
from tests.integration.builders import account_path, call_api, proxy_event, rfc3339

EXAMPLES = json.loads((Path(__file__).parents[1] / "fixtures" / "segment_spec_examples.json").read_text())
MAPPING = """
version: 1
track:
  account: [context.groupId, properties.account_id]
  events:
    Course Clicked: {metric: course.clicked, dimensions: {user: userId}}
    Item Purchased: {metric: purchases.revenue, value: properties.revenue}
    Song Played: {metric: songs.played}
    Seats Updated: {metric: seats.active, kind: gauge, value: properties.seats}
group:
  traits:
    name: name
    industry: industry
    employees: employees
    plan: plan.name
    seats: plan.limits.seats
    arr: arr
    csm_email: owners.csm.email
"""
ACCOUNT = "0e8c78ea9d97a7b8185e8632"


@pytest.fixture(autouse=True)
def mapping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text(MAPPING)
    monkeypatch.setenv(MAPPING_PATH_ENV, str(path))


def example(name: str) -> dict[str, Any]:
    return copy.deepcopy(EXAMPLES[name])


def recent(hours: int = 1) -> str:
    return rfc3339(datetime.now(UTC).replace(microsecond=0) - timedelta(hours=hours))


def a_course_click(**changes: Any) -> dict[str, Any]:
    """The Spec's complete track example, stamped an hour ago and given the account in context.groupId."""
    call = example("track_spec_complete")
    call["timestamp"] = recent()
    call["context"]["groupId"] = ACCOUNT
    call.update(changes)
    return call


def segment(path: str, body: Any, scopes: set[Scope] | None = None, **options: Any) -> dict[str, Any]:
    event = proxy_event("POST", path, json.dumps(body), **options)
    if scopes is not None:
        event["requestContext"]["authorizer"]["scopes"] = scopes_text(scopes)
    return event


def ledger(aws: Aws) -> dict[str, dict[str, Any]]:
    return {item["sk"]: item for item in aws.scan(aws.events_table)}


def profile(account_id: str = ACCOUNT) -> dict[str, Any]:
    status, stored = call_api(proxy_event("GET", account_path(account_id)))
    assert status == 200, stored
    return stored


# --- track ---------------------------------------------------------------------------------------


def test_given_the_specs_track_example_as_published_then_it_is_refused_for_its_2015_timestamp(aws):
    status, answer = call_api(segment("/v1/track", example("track_spec_complete")))

    assert status == 400
    assert answer["message"] == "The track call was not taken."
    assert answer["errors"] == [
        "timestamp 2015-12-12T19:11:01.249000+00:00 is older than the 400-day retention "
        f"(oldest accepted: {answer['errors'][0].split('oldest accepted: ')[1]}"
    ]
    assert ledger(aws) == {}


def test_given_the_specs_track_example_recent_and_with_a_group_then_it_is_one_usage_event(aws):
    call = a_course_click()

    status, answer = call_api(segment("/v1/track", call))

    assert status == 200
    assert answer == {"accepted": 1, "duplicates": 0, "ignored": [], "rejected": []}
    (stored,) = ledger(aws).values()
    assert stored["sk"] == "ajs-f8ca1e4de5024d9430b3928bd8ac6b96"  # messageId is the event_id
    assert stored["pk"] == ACCOUNT
    assert stored["name"] == "course.clicked"
    assert stored["kind"] == "count"
    assert stored["value"] == 1
    assert stored["dimensions"] == {"user": "AiUGstSDIg"}
    assert json.loads(stored["properties"]) == {"title": "Intro to Analytics"}
    assert stored["producer"] == "segment:checkout-service"


def test_given_a_track_call_delivered_again_then_it_is_a_duplicate_and_counted_once(aws):
    call = a_course_click()
    call_api(segment("/v1/track", call))

    again = call_api(segment("/v1/track", call))
    in_a_batch = call_api(segment("/v1/batch", {"batch": [call, call]}))

    assert again == (200, {"accepted": 0, "duplicates": 1, "ignored": [], "rejected": []})
    assert in_a_batch == (200, {"accepted": 0, "duplicates": 2, "ignored": [], "rejected": []})
    assert len(ledger(aws)) == 1


def test_given_a_redelivery_with_segments_own_fields_changed_then_it_is_still_a_duplicate(aws):
    call = a_course_click()
    call_api(segment("/v1/track", call))
    redelivered = {**call, "sentAt": recent(0), "receivedAt": recent(0), "_metadata": {"bundled": []}}

    status, answer = call_api(segment("/v1/track", redelivered))

    assert (status, answer["duplicates"]) == (200, 1)


def test_given_a_message_id_reused_for_other_content_then_it_is_rejected_and_the_first_kept(aws):
    call = a_course_click()
    call_api(segment("/v1/track", call))

    status, answer = call_api(segment("/v1/track", {**call, "properties": {"title": "Another course"}}))

    assert status == 400
    assert "already accepted" in answer["errors"][0]
    assert json.loads(next(iter(ledger(aws).values()))["properties"]) == {"title": "Intro to Analytics"}


def test_given_the_http_api_track_example_then_it_is_refused_for_want_of_a_message_id_and_an_account(aws):
    call = example("http_api_track")  # no messageId (Segment's server would add one), no group
    call["timestamp"] = recent()  # (the published one is from 2012)

    status, answer = call_api(segment("/v1/track", call))

    assert status == 400
    assert answer["errors"] == ["messageId is required"]


def test_given_a_track_call_without_an_account_then_400_says_where_the_account_goes(aws):
    call = a_course_click()
    del call["context"]["groupId"]

    status, answer = call_api(segment("/v1/track", call))

    assert status == 400
    assert answer["errors"] == [
        "no account: the call has none of context.groupId, properties.account_id; send the account id "
        "as context.groupId (or configure track.account in segment/mapping.yaml)"
    ]


def test_given_the_account_in_a_configured_property_then_it_is_used(aws):
    call = a_course_click(properties={"title": "Intro", "account_id": "acme"})
    del call["context"]["groupId"]

    status, _ = call_api(segment("/v1/track", call))

    assert status == 200
    assert next(iter(ledger(aws).values()))["pk"] == "acme"


def test_given_a_value_property_then_it_is_the_events_value_and_a_string_there_is_refused(aws):
    purchase = example("http_api_track")
    purchase |= {"messageId": "msg-purchase-1", "timestamp": recent(), "context": {"groupId": "acme"}}
    as_text = {**purchase, "messageId": "msg-purchase-2", "properties": {"revenue": "14.99"}}

    first = call_api(segment("/v1/track", purchase))
    second = call_api(segment("/v1/track", as_text))

    assert first[0] == 200
    assert float(next(iter(ledger(aws).values()))["value"]) == pytest.approx(14.99)
    assert second == (
        400,
        {
            "message": "The track call was not taken.",
            "errors": ["properties.revenue must be a JSON number, got a string"],
        },
    )


def test_given_an_event_the_mapping_does_not_list_then_it_is_ignored_with_the_reason(aws):
    call = a_course_click(event="Course clicked")

    status, answer = call_api(segment("/v1/track", call))

    assert status == 200
    assert answer["ignored"] == [
        {
            "index": 0,
            "message_id": call["messageId"],
            "reason": "event 'Course clicked' is not in the Segment mapping (segment/mapping.yaml, "
            "track.events) (did you mean 'Course Clicked'?)",
        }
    ]
    assert ledger(aws) == {}


def test_given_a_group_call_on_the_track_route_then_400_names_the_right_route(aws):
    status, answer = call_api(segment("/v1/track", example("group_spec_complete")))

    assert status == 400
    assert answer["errors"] == ["this is a group call; send it to /v1/group or /v1/batch, not /v1/track"]


# --- identify ------------------------------------------------------------------------------------


def test_given_the_http_api_identify_example_then_it_is_accepted_and_ignored(aws):
    status, answer = call_api(segment("/v1/identify", example("http_api_identify")))

    assert status == 200
    assert answer["accepted"] == 0
    assert answer["ignored"][0]["reason"].startswith("identify calls describe a person")
    assert ledger(aws) == {}


# --- group ---------------------------------------------------------------------------------------


def test_given_the_specs_group_example_as_published_then_it_creates_the_profile_from_mapped_traits(aws):
    status, answer = call_api(segment("/v1/group", example("group_spec_complete")))

    assert status == 200
    assert answer == {"accepted": 1, "duplicates": 0, "ignored": [], "rejected": []}
    stored = profile()
    assert stored["name"] == "Initech"
    assert stored["industry"] == "technology"  # a profile's labels are lower case
    assert stored["employees"] == 329
    assert stored["plan"]["name"] == "enterprise"
    assert "total billed" not in json.dumps(stored)  # not in the mapping: ignored
    assert stored["updated_by"] == {"producer_id": "segment:checkout-service", "key_id": "0123456789abcdef"}


def test_given_the_http_api_group_example_with_employees_as_text_then_it_is_read_as_a_number(aws):
    call = example("http_api_group") | {"messageId": "grp-1"}
    call["traits"]["employees"] = "420"  # the Spec types employees as a string

    status, _ = call_api(segment("/v1/group", call))

    assert status == 200
    assert profile("8e9df332ac")["employees"] == 420


def test_given_a_group_call_delivered_again_then_it_is_a_duplicate_and_writes_no_second_audit_entry(aws):
    call = example("group_spec_complete")
    call_api(segment("/v1/group", call))

    status, answer = call_api(segment("/v1/group", call))

    assert (status, answer["duplicates"], answer["accepted"]) == (200, 1, 0)
    assert len(profile()["changes"]) == 1


def test_given_an_older_group_call_arriving_late_then_it_changes_nothing(aws):
    newer = example("group_spec_complete") | {"messageId": "grp-new", "timestamp": recent(1)}
    newer["traits"]["employees"] = 400
    older = example("group_spec_complete") | {"messageId": "grp-old", "timestamp": recent(5)}
    call_api(segment("/v1/group", newer))

    status, answer = call_api(segment("/v1/group", older))

    assert status == 200
    assert answer["ignored"][0]["reason"].startswith("a newer group call of this account was applied")
    assert profile()["employees"] == 400


def test_given_a_profile_written_by_put_then_a_group_call_changes_only_its_mapped_traits(aws):
    call_api(
        proxy_event(
            "PUT",
            account_path(ACCOUNT),
            json.dumps(
                {
                    "name": "Initech",
                    "segment": "mid-market",
                    "plan": {"name": "Growth", "limits": {"seats": 50, "api.calls": 1000}},
                    "owners": {"ae": {"hubspot_owner_id": "1002"}},
                }
            ),
        )
    )
    call = {
        "type": "group",
        "messageId": "grp-seats",
        "timestamp": recent(),
        "groupId": ACCOUNT,
        "traits": {"seats": 80, "csm_email": "dana@example.com", "unmapped": True},
    }

    status, _ = call_api(segment("/v1/group", call))

    assert status == 200
    stored = profile()
    assert stored["plan"] == {
        "name": "Growth",
        "tier": None,
        "top_tier": False,
        "limits": {"seats": 80, "api.calls": 1000},
    }
    assert stored["segment"] == "mid-market"
    assert stored["owners"] == {
        "ae": {"name": None, "email": None, "hubspot_owner_id": "1002"},
        "csm": {"name": None, "email": "dana@example.com", "hubspot_owner_id": None},
    }
    latest = stored["changes"][0]
    assert latest["producer_id"] == "segment:checkout-service"
    assert latest["fields"] == ["owners.csm.email", "plan.limits.seats"]


def test_given_a_trait_sent_as_null_then_its_field_is_cleared(aws):
    call_api(segment("/v1/group", example("group_spec_complete")))
    clearing = {
        "type": "group",
        "messageId": "grp-clear",
        "timestamp": recent(),
        "groupId": ACCOUNT,
        "traits": {"employees": None},
    }

    call_api(segment("/v1/group", clearing))

    assert profile()["employees"] is None


def test_given_an_invalid_trait_then_400_names_the_trait_and_nothing_is_written(aws):
    call_api(segment("/v1/group", example("group_spec_complete")))
    bad = {
        "type": "group",
        "messageId": "grp-bad",
        "timestamp": recent(),
        "groupId": ACCOUNT,
        "traits": {"plan": "enterprise-plus", "employees": "lots"},
    }

    status, answer = call_api(segment("/v1/group", bad))

    assert status == 400
    assert answer["errors"] == [
        "traits.employees (profile field employees): must be a whole number (a JSON number, not a string "
        "or a boolean)"
    ]
    stored = profile()
    assert (stored["plan"]["name"], stored["employees"], len(stored["changes"])) == ("enterprise", 329, 1)


def test_given_a_new_account_and_no_name_trait_then_400_says_a_profile_needs_a_name(aws):
    call = {"type": "group", "messageId": "grp-x", "timestamp": recent(), "groupId": "newco", "traits": {}}

    status, answer = call_api(segment("/v1/group", call))

    assert status == 400
    assert answer["errors"][0].startswith("account 'newco' has no profile yet and a profile needs a name")
    assert aws.scan(aws.accounts_table) == []


def test_given_a_group_call_from_the_future_then_it_is_refused(aws):
    call = example("group_spec_complete") | {"timestamp": rfc3339(datetime.now(UTC) + timedelta(days=30))}

    status, answer = call_api(segment("/v1/group", call))

    assert status == 400
    assert "is in the future" in answer["errors"][0]


# --- batch ---------------------------------------------------------------------------------------


def test_given_the_http_api_batch_example_then_each_call_gets_its_own_result(aws):
    status, answer = call_api(segment("/v1/batch", example("http_api_batch")))

    assert status == 200
    assert answer["accepted"] == 0
    assert [(item["index"], item["reason"][:8]) for item in answer["ignored"]] == [
        (0, "identify"),
        (2, "identify"),
    ]
    assert [(item["index"], item["errors"]) for item in answer["rejected"]] == [
        (1, ["messageId is required"]),
        (
            3,
            [
                "messageId is required",
                "timestamp: must be an RFC 3339 timestamp string, e.g. 2026-11-23T10:15:00Z",  # 2015-2-02
            ],
        ),
    ]


def test_given_a_batch_with_a_shared_context_then_its_group_id_names_every_calls_account(aws):
    calls = example("http_api_batch")
    for index, call in enumerate(calls["batch"]):
        call |= {"messageId": f"batch-msg-{index}", "timestamp": recent(index + 1)}
    calls["context"]["groupId"] = "acme"

    status, answer = call_api(segment("/v1/batch", calls))

    assert (status, answer["accepted"], len(answer["ignored"]), answer["rejected"]) == (200, 2, 2, [])
    assert {item["pk"] for item in ledger(aws).values()} == {"acme"}
    assert set(ledger(aws)) == {"batch-msg-1", "batch-msg-3"}


def test_given_a_batch_sent_again_then_nothing_is_counted_or_changed_twice(aws):
    group = example("group_spec_complete")
    batch = {"batch": [a_course_click(), group, a_course_click(messageId="ajs-second")]}
    first = call_api(segment("/v1/batch", batch))

    again = call_api(segment("/v1/batch", batch))

    assert first == (200, {"accepted": 3, "duplicates": 0, "ignored": [], "rejected": []})
    assert again == (200, {"accepted": 0, "duplicates": 3, "ignored": [], "rejected": []})
    assert len(ledger(aws)) == 2
    assert len(profile()["changes"]) == 1


def test_given_an_events_only_key_then_a_batchs_group_call_is_rejected_naming_the_scope(aws):
    batch = {"batch": [a_course_click(), example("group_spec_complete")]}

    status, answer = call_api(segment("/v1/batch", batch, scopes={Scope.EVENTS_WRITE}))

    assert (status, answer["accepted"]) == (200, 1)
    assert answer["rejected"][0]["index"] == 1
    assert "the key needs the scope 'accounts:write'" in answer["rejected"][0]["errors"][0]
    assert aws.scan(aws.accounts_table) == []


def test_given_an_events_only_key_then_the_group_route_is_403(aws):
    status, answer = call_api(
        segment("/v1/group", example("group_spec_complete"), scopes={Scope.EVENTS_WRITE})
    )

    assert status == 403
    assert "'accounts:write'" in answer["message"]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"batch": []}, 400, '"batch" is empty'),
        ({"calls": []}, 400, 'a "batch" array'),
        ({"batch": [{}] * 501}, 413, "the limit is 500"),
        ({"batch": [{"type": "track"}], "context": "phone"}, 400, '"context" must be an object'),
        ([1, 2], 400, "must be a JSON object"),
    ],
)
def test_given_a_malformed_batch_then_4xx_says_what_is_wrong(aws, body, status, words):
    answer_status, answer = call_api(segment("/v1/batch", body))

    assert answer_status == status
    assert words in answer["message"]


def test_given_a_batch_item_of_an_unknown_type_then_it_is_rejected_naming_the_types(aws):
    status, answer = call_api(segment("/v1/batch", {"batch": [{"type": "trak"}, "text"]}))

    assert status == 200
    assert answer["rejected"] == [
        {
            "index": 0,
            "message_id": None,
            "errors": ["type must be one of track, group, identify, page, screen, alias (got 'trak')"],
        },
        {"index": 1, "message_id": None, "errors": ["a call must be a JSON object, got a string"]},
    ]


# --- the write key (HTTP Basic) ------------------------------------------------------------------


def basic_context(event: dict[str, Any]) -> dict[str, Any]:
    event["requestContext"]["authorizer"]["auth_scheme"] = "basic"
    return event


def test_given_a_segment_write_key_then_the_segment_routes_answer(aws):
    status, answer = call_api(basic_context(segment("/v1/track", a_course_click())))

    assert (status, answer["accepted"]) == (200, 1)


def test_given_a_segment_write_key_on_another_route_then_403_says_where_it_works(aws):
    event = basic_context(proxy_event("GET", "/v1/openapi.json", None, content_type=None))

    status, answer = call_api(event)

    assert status == 403
    assert "accepted only on the Segment routes" in answer["message"]


def test_given_an_identify_call_that_is_not_one_then_400_says_what_is_wrong(aws):
    status, answer = call_api(segment("/v1/identify", {"type": "identify", "traits": ["email"]}))

    assert status == 400
    assert answer["errors"] == ["traits: input should be a valid dictionary"]


class _ThrottledAccounts(AccountStore):
    def _read(self, account_id: str) -> dict[str, Any] | None:
        raise ClientError(
            {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "Rate exceeded"}},
            "GetItem",
        )


def test_given_storage_fails_during_a_batch_then_503_and_the_retry_counts_each_call_once(aws, monkeypatch):
    batch = {"batch": [a_course_click(), example("group_spec_complete")]}

    with monkeypatch.context() as patch:
        patch.setattr(api, "accounts", lambda: _ThrottledAccounts(aws.dynamodb, aws.accounts_table))
        patch.setattr(api, "segment_intake", functools.cache(api.segment_intake.__wrapped__))
        status, answer = call_api(segment("/v1/batch", batch))

    assert status == 503
    assert "Retry the whole request" in answer["message"]
    assert len(ledger(aws)) == 1  # the track call was stored before the failure
    status, answer = call_api(segment("/v1/batch", batch))
    assert (status, answer["accepted"], answer["duplicates"]) == (200, 1, 1)
    assert len(ledger(aws)) == 1
    assert profile()["name"] == "Initech"
