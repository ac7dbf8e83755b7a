"""What every idempotent batch intake does, whatever it takes in (usage events, outcomes).

A batch of raw items, each validated on its own, becomes one `ItemResult` per item:
- invalid → REJECTED with the reasons, nothing written;
- repeated in the batch → DUPLICATE if the content is the same, REJECTED if not;
- otherwise one conditional put keyed by (account_id, item id) into its ledger, run in parallel:
  stored → ACCEPTED; already there with the same fingerprint → DUPLICATE (a resend, another
  batch, the other channel); already there with other content → REJECTED (a reused id); the
  put failed for an infrastructure reason → FAILED, so the caller has it retried (a retry is
  safe: the ledger recognises what was already stored).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from shared.errors import StorageUnavailable
from shared.observability import logger
from shared.storage.dynamo import error_code, is_conditional_failure, serialize

PARALLEL_WRITES = 16


class Channel(StrEnum):
    HTTPS = "https"
    EVENTBRIDGE = "eventbridge"
    HUBSPOT = "hubspot"  # outcomes the HubSpot read-back made of closed-won deals


class Status(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    FAILED = "failed"


@dataclass
class ItemResult:
    index: int
    status: Status
    item_id: str | None  # the event_id / outcome_id, when it could be read
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Invalid:
    """An item that failed validation: its id when it could be read, and why, one sentence each."""

    item_id: str | None
    errors: list[str]


@dataclass(frozen=True)
class Noun:
    """How messages and metrics name the items of an intake: event / events / event_id."""

    singular: str
    plural: str
    id_field: str


class Keyed(Protocol):
    """A validated item: one fact of one account, named by an id unique within the account."""

    @property
    def account_id(self) -> str: ...

    @property
    def item_id(self) -> str: ...

    def fingerprint(self) -> str: ...


K = TypeVar("K", bound=Keyed)


class BatchIntake(Protocol):
    """One intake as a channel sees it (HTTPS route, bus consumer)."""

    noun: Noun

    def ingest(
        self, raw_items: Sequence[Any], producer: str, channel: Channel, now: datetime
    ) -> list[ItemResult]: ...


@dataclass(frozen=True)
class Existing:
    """The ledger already holds this id; `fingerprint` tells whether it is the same item."""

    fingerprint: str
    received_at: str


class WriteOnce(Protocol):
    """The port of a ledger whose items are written once (the events', the outcomes')."""

    def put_new(self, item: dict[str, Any]) -> Existing | None:
        """Store the item unless its key is there; what is there if so. StorageUnavailable when the
        store cannot answer now (nothing written)."""
        ...


class ConditionalLedger:
    """A DynamoDB table whose items are written once: a put that finds the key there changes nothing."""

    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def put_new(self, item: dict[str, Any]) -> Existing | None:
        """Store the item unless its key is already there; return what is there if so."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item=serialize(item),
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not is_conditional_failure(error):
                raise StorageUnavailable(f"put to {self._table}: {error_code(error)}") from error
            old = error.response.get("Item", {})
            return Existing(
                fingerprint=old.get("fingerprint", {}).get("S", ""),
                received_at=old.get("received_at", {}).get("S", ""),
            )
        except BotoCoreError as error:
            raise StorageUnavailable(f"put to {self._table}: {type(error).__name__}") from error
        return None


def first_of_each(
    checked: Iterable[tuple[int, K | Invalid]], noun: Noun, results: dict[int, ItemResult]
) -> list[tuple[int, K]]:
    """The valid items to write, each key once; records in `results` what is decided already."""
    candidates: list[tuple[int, K]] = []
    first_seen: dict[tuple[str, str], K] = {}
    for index, item in checked:
        if isinstance(item, Invalid):
            results[index] = ItemResult(index, Status.REJECTED, item.item_id, item.errors)
            continue
        key = (item.account_id, item.item_id)
        if key in first_seen:
            results[index] = _repeat_in_batch(index, item, first_seen[key], noun)
            continue
        first_seen[key] = item
        candidates.append((index, item))
    return candidates


class ParallelPuts:
    """Conditional puts of a batch's items, in parallel, each ending in one result."""

    def __init__(self, ledger: WriteOnce, noun: Noun) -> None:
        self._ledger = ledger
        self._noun = noun
        self._pool = ThreadPoolExecutor(
            max_workers=PARALLEL_WRITES, thread_name_prefix=f"{noun.singular}-puts"
        )

    def put_all(
        self,
        writable: Sequence[tuple[int, K]],
        to_item: Callable[[K], dict[str, Any]],
        results: dict[int, ItemResult],
    ) -> None:
        stamps = [to_item(item) for _, item in writable]
        answers = self._pool.map(self._put, stamps)
        for (index, item), answer in zip(writable, answers, strict=True):
            results[index] = self._result_of_put(index, item, answer)

    def _put(self, item: dict[str, Any]) -> Existing | Exception | None:
        try:
            return self._ledger.put_new(item)
        except StorageUnavailable as error:
            return error

    def _result_of_put(self, index: int, item: Keyed, answer: Existing | Exception | None) -> ItemResult:
        if answer is None:
            return ItemResult(index, Status.ACCEPTED, item.item_id)
        if isinstance(answer, Exception):
            logger.error(f"{self._noun.singular} write failed", extra={"error": type(answer).__name__})
            return unavailable(index, item.item_id)
        if answer.fingerprint == item.fingerprint():
            return ItemResult(index, Status.DUPLICATE, item.item_id)
        noun = self._noun
        return ItemResult(
            index,
            Status.REJECTED,
            item.item_id,
            [
                f"{noun.id_field}: already accepted at {answer.received_at} with different content; "
                f"{noun.singular} ids must be unique per account"
            ],
        )


def unavailable(index: int, item_id: str | None) -> ItemResult:
    return ItemResult(index, Status.FAILED, item_id, ["storage unavailable"])


def in_order(results: dict[int, ItemResult], count: int) -> list[ItemResult]:
    return [results[index] for index in range(count)]


@dataclass(frozen=True)
class Tally:
    accepted: int
    duplicates: int
    rejected: list[ItemResult]
    failed: int

    @classmethod
    def of(cls, results: Sequence[ItemResult]) -> Tally:
        return cls(
            accepted=sum(r.status is Status.ACCEPTED for r in results),
            duplicates=sum(r.status is Status.DUPLICATE for r in results),
            rejected=[r for r in results if r.status is Status.REJECTED],
            failed=sum(r.status is Status.FAILED for r in results),
        )


def _repeat_in_batch(index: int, item: Keyed, first: Keyed, noun: Noun) -> ItemResult:
    if item.fingerprint() == first.fingerprint():
        return ItemResult(index, Status.DUPLICATE, item.item_id)
    return ItemResult(
        index,
        Status.REJECTED,
        item.item_id,
        [
            f"{noun.id_field}: repeated in this request with different content; "
            f"{noun.singular} ids must be unique per account"
        ],
    )
