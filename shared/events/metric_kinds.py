"""A metric name keeps one kind for ever: `seats.active` is a gauge or a count, never both.

The first accepted event of a name registers its kind (a conditional put, so concurrent first
events agree). Kinds never change, so each process caches what it has read.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from botocore.exceptions import ClientError

from shared.events.models import EventKind
from shared.storage.dynamo import is_conditional_failure, unavailable_on_failure


def kind_conflict(name: str, registered: EventKind, given: EventKind) -> str:
    """Why an event of the wrong kind is rejected (the API and the backtest say it alike)."""
    return (
        f"kind: {name!r} is registered as a {registered.value}, this event says {given.value}; a name "
        f"keeps one kind, so send the {given.value} under another name"
    )


class MetricKinds:
    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table
        self._known: dict[str, EventKind] = {}

    def resolve(self, proposals: Iterable[tuple[str, EventKind]]) -> dict[str, EventKind]:
        """The registered kind of each name; a name seen for the first time takes the proposed kind."""
        resolved: dict[str, EventKind] = {}
        with unavailable_on_failure("metric kind registry"):
            for name, kind in proposals:
                if name not in resolved:
                    resolved[name] = self._known.get(name) or self._register(name, kind)
        return resolved

    def _register(self, name: str, kind: EventKind) -> EventKind:
        key = {"pk": {"S": f"metric#{name}"}}
        existing = self._client.get_item(TableName=self._table, Key=key).get("Item")
        if existing:
            self._known[name] = EventKind(existing["kind"]["S"])
            return self._known[name]
        try:
            self._client.put_item(
                TableName=self._table,
                Item={**key, "kind": {"S": kind.value}},
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            registered = kind
        except ClientError as error:
            if not is_conditional_failure(error):
                raise
            old = (
                error.response.get("Item")
                or self._client.get_item(TableName=self._table, Key=key, ConsistentRead=True)["Item"]
            )
            registered = EventKind(old["kind"]["S"])
        self._known[name] = registered
        return registered
