"""Counts DynamoDB requests and the capacity units they consume, from item sizes.

moto does not report consumed capacity faithfully, so units are computed with DynamoDB's
documented rules: a write costs 1 WCU per started KB of the larger of the old and new item
(a failed conditional write still costs the item's size, at least 1), a strongly consistent
read 1 RCU per started 4 KB (summed per item for batch reads, per page for queries), an
eventually consistent read half that. A transactional write costs twice a plain one, per item
(DynamoDB: two underlying writes, prepare and commit), on the larger of the old and new item.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(attribute: dict[str, Any]) -> int:
    ((kind, value),) = attribute.items()
    match kind:
        case "S":
            return len(value.encode())
        case "N":
            digits = len(value.lstrip("-").replace(".", "").lstrip("0")) or 1
            return math.ceil(digits / 2) + 1
        case "BOOL" | "NULL":
            return 1
        case "SS":
            return sum(len(member.encode()) for member in value)
        case "NS":
            return sum(_value_size({"N": member}) for member in value)
        case "M":
            return 3 + sum(1 + len(name.encode()) + _value_size(member) for name, member in value.items())
        case "L":
            return 3 + sum(1 + _value_size(member) for member in value)
    raise ValueError(kind)


@dataclass
class Meter:
    requests: Counter[str] = field(default_factory=Counter)
    write_units: float = 0
    read_units: float = 0
    # UpdateItem costs too; off by default so the older figures (which never metered it) stay comparable.
    count_updates: bool = False
    # The ingest writes from a thread pool: += on a float is not atomic across threads.
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, client: Any, shadow: Any) -> None:
        """Meter `client`; `shadow` is an unmetered client used to look at the old items."""
        self._shadow = shadow
        client.meta.events.register("provide-client-params.dynamodb.*", self._before)
        client.meta.events.register("after-call.dynamodb.*", self._after)

    def _before(self, model: Any, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        read_factor = 1.0 if params.get("ConsistentRead") else 0.5
        context["meter_read_factor"] = read_factor
        with self._lock:
            self._charge_request(model, params, read_factor)

    def _after(self, model: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        with self._lock:
            self._charge_response(model, parsed, context.get("meter_read_factor", 1.0))

    def _charge_request(self, model: Any, params: dict[str, Any], read_factor: float) -> None:
        self.requests[model.name] += 1
        if model.name == "PutItem":
            key = {name: params["Item"][name] for name in ("pk", "sk") if name in params["Item"]}
            old = self._shadow.get_item(TableName=params["TableName"], Key=key).get("Item") or {}
            self.write_units += max(1, math.ceil(max(item_size(params["Item"]), item_size(old)) / 1024))

        elif model.name == "UpdateItem" and self.count_updates:
            # Charged after the call, on the larger of the old and the new item (a failed conditional
            # update is not charged here: the read-back avoids them by checking its registry first).
            self._old_size = item_size(
                self._shadow.get_item(TableName=params["TableName"], Key=params["Key"]).get("Item") or {}
            )
            self._update_key = (params["TableName"], params["Key"])
        elif model.name == "TransactWriteItems":
            self._transaction = [
                (table, key, self._size_of(table, key)) for table, key in _transaction_keys(params)
            ]
        elif model.name == "GetItem":
            self.read_units += read_factor  # a miss costs a read unit too
        elif model.name == "BatchGetItem":
            # Consistency is asked per table there; Upswing's batch reads are all consistent.
            self.read_units += sum(len(request["Keys"]) for request in params["RequestItems"].values())

    def _size_of(self, table: str, key: dict[str, Any]) -> int:
        return item_size(self._shadow.get_item(TableName=table, Key=key).get("Item") or {})

    def _charge_response(self, model: Any, parsed: dict[str, Any], read_factor: float) -> None:
        if model.name == "TransactWriteItems":
            # Charged whether it committed or was cancelled (a cancelled one is charged too).
            for table, key, old in self._transaction:
                new = self._size_of(table, key)
                self.write_units += 2 * max(1, math.ceil(max(old, new) / 1024))
        if model.name == "UpdateItem" and self.count_updates:
            table, key = self._update_key
            new = self._shadow.get_item(TableName=table, Key=key).get("Item") or {}
            self.write_units += max(1, math.ceil(max(self._old_size, item_size(new)) / 1024))
        # Items over 4 KB cost one more read unit per started 4 KB beyond the first.
        if model.name == "GetItem" and "Item" in parsed:
            self.read_units += read_factor * (math.ceil(item_size(parsed["Item"]) / 4096) - 1)
        elif model.name == "BatchGetItem":
            for items in parsed.get("Responses", {}).values():
                self.read_units += sum(math.ceil(item_size(item) / 4096) - 1 for item in items)
        elif model.name == "Query":
            size = sum(item_size(item) for item in parsed.get("Items", []))
            self.read_units += read_factor * max(1, math.ceil(size / 4096))


def _transaction_keys(params: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(table, key) of each item a TransactWriteItems request writes."""
    found = []
    for entry in params["TransactItems"]:
        ((kind, write),) = entry.items()
        if kind == "Put":
            key = {name: write["Item"][name] for name in ("pk", "sk") if name in write["Item"]}
        else:
            key = write["Key"]
        found.append((write["TableName"], key))
    return found
