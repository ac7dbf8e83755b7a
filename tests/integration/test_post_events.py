"""POST /v1/events through the real API function, on DynamoDB emulated by moto."""

from __future__ import annotations

import json
import unicodedata
from typing import Any

import pytest

from functions.api import handler as api
from shared.errors import StorageUnavailable
from shared.events.ingest import Ingestor
from shared.events.ledger import EventLedger
from shared.events.metric_kinds import MetricKinds
from tests.conftest import Aws
from tests.integration.builders import (
    an_hour,
    call_api,
    post_events,
    proxy_event,
    rfc3339,
    usage_event,
)


def stored_events(aws: Aws) -> dict[str, dict[str, Any]]:
    return {item["sk"]: item for item in aws.scan(aws.events_table)}


def test_given_valid_events_when_posted_then_202_reports_them_accepted_and_they_are_stored(aws):
    events = [usage_event(), usage_event(name="ticket.created", dimensions={"tag": "integration"})]

    status, answer = call_api(post_events(events))

    assert status == 202
    assert answer == {"accepted": 2, "duplicates": 0, "rejected": []}
    assert set(stored_events(aws)) == {event["event_id"] for event in events}


def test_given_a_mixed_batch_when_posted_then_only_valid_events_are_stored_and_rejections_are_precise(aws):
    good_first = usage_event()
    no_timezone = usage_event(occurred_at="2026-11-22T10:00:00")
    good_second = usage_event(name="seats.active", kind="gauge", value=12)
    misspelt = usage_event(colour="red")
    not_an_object = "evt-as-a-string"

    status, answer = call_api(post_events([good_first, no_timezone, good_second, misspelt, not_an_object]))

    assert status == 202
    assert answer["accepted"] == 2
    assert answer["duplicates"] == 0
    assert [(r["index"], r["event_id"]) for r in answer["rejected"]] == [
        (1, no_timezone["event_id"]),
        (3, misspelt["event_id"]),
        (4, None),
    ]
    assert answer["rejected"][0]["errors"] == ["occurred_at: input should have timezone info"]
    assert "unknown field 'colour'" in answer["rejected"][1]["errors"][0]
    assert "must be a JSON object" in answer["rejected"][2]["errors"][0]
    assert set(stored_events(aws)) == {good_first["event_id"], good_second["event_id"]}


def test_given_the_same_event_twice_in_one_batch_when_posted_then_one_is_accepted_and_one_is_a_duplicate(
    aws,
):
    event = usage_event()

    status, answer = call_api(post_events([event, dict(event)]))

    assert status == 202
    assert (answer["accepted"], answer["duplicates"], answer["rejected"]) == (1, 1, [])
    assert len(stored_events(aws)) == 1


def test_given_a_batch_sent_again_when_posted_then_everything_is_a_duplicate(aws):
    events = [usage_event(), usage_event()]
    call_api(post_events(events))

    status, answer = call_api(post_events(events))

    assert status == 202
    assert answer == {"accepted": 0, "duplicates": 2, "rejected": []}
    assert len(stored_events(aws)) == 2


def test_given_an_event_id_reused_with_different_content_when_posted_then_it_is_rejected_and_the_first_kept(
    aws,
):
    first = usage_event(value=3)
    call_api(post_events([first]))

    status, answer = call_api(post_events([{**first, "value": 30}]))

    assert status == 202
    assert answer["accepted"] == 0
    assert answer["rejected"][0]["event_id"] == first["event_id"]
    assert "already accepted" in answer["rejected"][0]["errors"][0]
    assert stored_events(aws)[first["event_id"]]["value"] == 3


def test_given_an_event_id_reused_with_different_content_in_one_batch_when_posted_then_the_second_is_rejected(
    aws,
):
    first = usage_event(value=3)

    _, answer = call_api(post_events([first, {**first, "value": 30}]))

    assert answer["accepted"] == 1
    assert answer["rejected"][0]["index"] == 1
    assert "different content" in answer["rejected"][0]["errors"][0]
    assert stored_events(aws)[first["event_id"]]["value"] == 3


def test_given_the_authorizer_named_a_producer_when_posted_then_the_ledger_records_it(aws):
    event = usage_event()

    call_api(post_events([event], producer="mobile-app"))

    item = stored_events(aws)[event["event_id"]]
    assert item["producer"] == "mobile-app"
    assert item["channel"] == "https"
    assert item["day"] == event["occurred_at"][:10]
    assert json.loads(item["properties"]) == event["properties"]


def test_given_a_name_first_sent_as_a_count_when_sent_as_a_gauge_then_it_is_rejected_with_a_reason(aws):
    call_api(post_events([usage_event(name="seats.active", kind="count")]))
    gauge = usage_event(name="seats.active", kind="gauge", value=12)

    _, answer = call_api(post_events([gauge]))

    assert answer["accepted"] == 0
    (rejection,) = answer["rejected"]
    assert rejection["event_id"] == gauge["event_id"]
    assert "'seats.active' is registered as a count" in rejection["errors"][0]
    assert gauge["event_id"] not in stored_events(aws)


def test_given_one_batch_with_both_kinds_of_a_new_name_when_posted_then_the_first_kind_wins(aws):
    count = usage_event(name="api.calls", kind="count")
    gauge = usage_event(name="api.calls", kind="gauge")

    _, answer = call_api(post_events([count, gauge]))

    assert answer["accepted"] == 1
    assert answer["rejected"][0]["index"] == 1


def test_given_a_2_mb_body_when_posted_then_413_and_nothing_is_written(aws):
    events = [usage_event(properties={"notes": "x" * 7_000}) for _ in range(300)]

    status, answer = call_api(post_events(events))

    assert status == 413
    assert "limit is 1,048,576 bytes" in answer["message"]
    assert stored_events(aws) == {}


def test_given_501_events_when_posted_then_413_and_nothing_is_written(aws):
    status, answer = call_api(post_events([usage_event() for _ in range(501)]))

    assert status == 413
    assert "Split the batch" in answer["message"]
    assert stored_events(aws) == {}


def test_given_a_lowercase_content_type_header_when_posted_then_it_is_recognised(aws):
    event = post_events([usage_event()], content_type=None)
    event["headers"]["content-type"] = "application/json; charset=utf-8"
    event["multiValueHeaders"]["content-type"] = ["application/json; charset=utf-8"]

    status, _ = call_api(event)

    assert status == 202


def test_given_the_nfc_and_nfd_spellings_of_one_event_when_posted_then_it_is_counted_once(aws):
    nfc = usage_event(event_id="évt-1", account_id=unicodedata.normalize("NFC", "société"))
    nfd = {
        **nfc,
        "event_id": unicodedata.normalize("NFD", "évt-1"),
        "account_id": unicodedata.normalize("NFD", "société"),
    }

    _, first = call_api(post_events([nfc]))
    _, second = call_api(post_events([nfd]))

    assert (first["accepted"], second["duplicates"]) == (1, 1)
    (item,) = aws.scan(aws.events_table)
    assert (item["pk"], item["sk"]) == (nfc["account_id"], unicodedata.normalize("NFC", "évt-1"))


def _bad_requests() -> list[Any]:
    """Every kind of bad input a producer can send: (what, proxy event, expected status)."""
    nan_body = '{"events": [{"event_id": "e", "account_id": "a", "name": "n", ' + (
        f'"occurred_at": "{rfc3339(an_hour(0, 10))}", "value": NaN}}]}}'
    )
    return [
        pytest.param(post_events([usage_event()], content_type="text/plain"), 415, id="wrong content type"),
        pytest.param(post_events([usage_event()], content_type=None), 415, id="no content type"),
        pytest.param(proxy_event("POST", "/v1/events", "{not json"), 400, id="body not JSON"),
        pytest.param(proxy_event("POST", "/v1/events", None), 400, id="no body"),
        pytest.param(proxy_event("POST", "/v1/events", '{"evnts": []}'), 400, id="no events"),
        pytest.param(proxy_event("POST", "/v1/events", '{"events": []}'), 400, id="empty events"),
        pytest.param(proxy_event("POST", "/v1/events", '{"events": {}}'), 400, id="events not a list"),
        pytest.param(proxy_event("POST", "/v1/events", "[]"), 400, id="array body"),
        pytest.param(post_events([usage_event() for _ in range(501)]), 413, id="501 events"),
        pytest.param(
            post_events([usage_event(properties={"n": "x" * 7_000}) for _ in range(300)]), 413, id="2 MB"
        ),
        pytest.param(
            post_events([usage_event(properties={"n": "x" * 100_000})]), 202, id="100 KB properties"
        ),
        pytest.param(proxy_event("POST", "/v1/events", nan_body), 202, id="NaN value"),
        pytest.param(post_events([usage_event(value="12")]), 202, id="value as a string"),
        pytest.param(post_events([usage_event(occurred_at="2999-01-01T00:00:00Z")]), 202, id="far future"),
        pytest.param(post_events([usage_event(occurred_at="2001-01-01T00:00:00Z")]), 202, id="too old"),
        pytest.param(
            post_events([usage_event(occurred_at="9999-12-31T23:59:59-01:00")]), 202, id="calendar overflow"
        ),
        pytest.param(post_events([usage_event(occurred_at="2026-11-22T10:00:00")]), 202, id="naive time"),
        pytest.param(post_events([usage_event(colour="red")]), 202, id="unknown field"),
        pytest.param(post_events([usage_event(account_id="a" * 129)]), 202, id="129-char account"),
        pytest.param(post_events([usage_event(account_id="acct\x00")]), 202, id="control character"),
        pytest.param(
            post_events([usage_event(dimensions={f"d{i}": "v" for i in range(17)})]), 202, id="17 dimensions"
        ),
        pytest.param(post_events([None, 1, [], "x", True]), 202, id="events that are not objects"),
        # Hostile documents: each used to crash the handler (a 5xx or a dropped connection).
        pytest.param(
            proxy_event(
                "POST", "/v1/events", '{"events": [{"properties": ' + "[" * 3000 + "]" * 3000 + "}]}"
            ),
            400,
            id="properties 3,000 levels deep",
        ),
        pytest.param(
            proxy_event("POST", "/v1/events", '{"events": [{"value": ' + "9" * 5000 + "}]}"),
            400,
            id="5,000-digit integer",
        ),
        # DynamoDB cannot store magnitudes below 1e-130: this used to fail the write and answer 503.
        pytest.param(post_events([usage_event(value=1e-200)]), 202, id="value below the storable range"),
    ]


@pytest.mark.parametrize(("request_event", "expected_status"), _bad_requests())
def test_given_bad_input_when_posted_then_the_answer_is_a_4xx_or_a_per_event_rejection_never_a_5xx(
    aws, request_event, expected_status
):
    status, answer = call_api(request_event)

    assert status == expected_status
    if status == 202:
        assert answer["accepted"] == 0
        assert all(rejection["errors"] for rejection in answer["rejected"])
    else:
        assert answer["message"]
    assert stored_events(aws) == {}


class _ThrottledLedger(EventLedger):
    def put_new(self, item: dict[str, Any]) -> Any:
        if item["sk"].endswith("-throttled"):
            raise StorageUnavailable("ProvisionedThroughputExceededException")
        return super().put_new(item)


def test_given_storage_fails_for_one_event_when_posted_then_503_asks_to_retry_the_whole_request(
    aws, monkeypatch
):
    throttled = Ingestor(
        _ThrottledLedger(aws.dynamodb, aws.events_table), MetricKinds(aws.dynamodb, aws.registry_table), 400
    )
    ok, unlucky = usage_event(), usage_event(event_id="evt-throttled")

    with monkeypatch.context() as patch:
        patch.setattr(api, "ingestor", lambda: throttled)
        status, answer = call_api(post_events([ok, unlucky]))

    assert status == 503
    assert "1 of 2 events were stored" in answer["message"]
    assert "Retry the whole request" in answer["message"]
    # The retry the message asks for: what was stored is recognised, the rest is stored now.
    status, answer = call_api(post_events([ok, unlucky]))
    assert status == 202
    assert (answer["accepted"], answer["duplicates"]) == (1, 1)


def test_given_no_producer_in_the_authorizer_context_when_posted_then_the_call_fails_loudly(aws):
    event = post_events([usage_event()])
    event["requestContext"]["authorizer"] = {"scopes": "events:write"}

    with pytest.raises(RuntimeError, match="authorizer did not name a producer"):
        call_api(event)
    assert stored_events(aws) == {}


def test_given_an_empty_authorizer_context_when_posted_then_no_scope_lets_it_through(aws):
    event = post_events([usage_event()])
    event["requestContext"]["authorizer"] = {}

    status, answer = call_api(event)

    assert status == 403
    assert "'events:write'" in answer["message"]
    assert stored_events(aws) == {}
