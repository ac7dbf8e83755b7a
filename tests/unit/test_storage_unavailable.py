"""Adapters turn a store's failures into StorageUnavailable; services never see a botocore error."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from shared.errors import StorageUnavailable
from shared.events.metric_kinds import MetricKinds
from shared.events.models import EventKind
from shared.intake import ConditionalLedger, Existing


class FailingClient:
    """A DynamoDB client whose every call raises `error`."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def put_item(self, **_: Any) -> Any:
        raise self.error

    def get_item(self, **_: Any) -> Any:
        raise self.error


THROTTLED = ClientError(
    {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "Rate exceeded"}}, "PutItem"
)
UNREACHABLE = EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")


@pytest.mark.parametrize("error", [THROTTLED, UNREACHABLE])
def test_a_conditional_put_that_fails_is_storage_unavailable(error: Exception) -> None:
    with pytest.raises(StorageUnavailable) as raised:
        ConditionalLedger(FailingClient(error), "events").put_new({"pk": "a", "sk": "e"})

    assert raised.value.__cause__ is error
    assert str(raised.value).startswith("put to events: ")


def test_a_conditional_put_that_finds_the_key_answers_what_is_there() -> None:
    taken = ClientError(
        {
            "Error": {"Code": "ConditionalCheckFailedException", "Message": "exists"},
            "Item": {"fingerprint": {"S": "f1"}, "received_at": {"S": "2026-12-06T00:00:00Z"}},
        },
        "PutItem",
    )

    existing = ConditionalLedger(FailingClient(taken), "events").put_new({"pk": "a", "sk": "e"})

    assert existing == Existing(fingerprint="f1", received_at="2026-12-06T00:00:00Z")


@pytest.mark.parametrize("error", [THROTTLED, UNREACHABLE])
def test_a_metric_kind_lookup_that_fails_is_storage_unavailable(error: Exception) -> None:
    with pytest.raises(StorageUnavailable):
        MetricKinds(FailingClient(error), "registry").resolve([("seats.active", EventKind.GAUGE)])
