"""The shared write path, with in-memory stand-ins for the ledger and the metric-kind registry."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.errors import StorageUnavailable
from shared.events.ingest import Ingestor, Status, summarize
from shared.events.ledger import Channel, Existing
from shared.events.models import EventKind

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class MemoryLedger:
    """The ledger's contract: the first put of an (account, event id) wins; later ones see it."""

    def __init__(self, failing_event_ids: Iterable[str] = ()) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self._failing = set(failing_event_ids)

    def put_new(self, item: dict[str, Any]) -> Existing | None:
        if item["sk"] in self._failing:
            raise StorageUnavailable("ProvisionedThroughputExceededException")
        key = (item["pk"], item["sk"])
        if key in self.items:
            return Existing(self.items[key]["fingerprint"], self.items[key]["received_at"])
        self.items[key] = item
        return None


class MemoryKinds:
    def __init__(self, failing: bool = False) -> None:
        self.registered: dict[str, EventKind] = {}
        self._failing = failing

    def resolve(self, proposals: Iterable[tuple[str, EventKind]]) -> dict[str, EventKind]:
        if self._failing:
            raise StorageUnavailable("InternalServerError")
        for name, kind in proposals:
            self.registered.setdefault(name, kind)
        return dict(self.registered)


def an_event(event_id: str = "evt-1", **overrides: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "account_id": "acct-northwind",
        "name": "feature.analytics.used",
        "occurred_at": "2026-11-23T10:00:00Z",
    } | overrides


@pytest.fixture
def ledger() -> MemoryLedger:
    return MemoryLedger()


@pytest.fixture
def ingestor(ledger: MemoryLedger) -> Ingestor:
    return Ingestor(ledger, MemoryKinds(), retention_days=400)  # type: ignore[arg-type]


def ingest(ingestor: Ingestor, *events: Any, producer: str = "checkout-service") -> list[Status]:
    return [outcome.status for outcome in ingestor.ingest(list(events), producer, Channel.HTTPS, NOW)]


def test_given_new_events_when_ingested_then_each_is_accepted_and_stored(ingestor, ledger):
    assert ingest(ingestor, an_event("evt-1"), an_event("evt-2")) == [Status.ACCEPTED, Status.ACCEPTED]
    assert set(ledger.items) == {("acct-northwind", "evt-1"), ("acct-northwind", "evt-2")}


def test_given_a_resend_when_ingested_then_it_is_a_duplicate_and_not_stored_again(ingestor, ledger):
    ingest(ingestor, an_event())
    first_item = dict(ledger.items[("acct-northwind", "evt-1")])

    assert ingest(ingestor, an_event(), producer="another-producer") == [Status.DUPLICATE]
    assert ledger.items[("acct-northwind", "evt-1")] == first_item


def test_given_a_reused_event_id_with_other_content_when_ingested_then_it_is_rejected(ingestor):
    ingest(ingestor, an_event(value=1))

    outcome = ingestor.ingest([an_event(value=2)], "checkout-service", Channel.HTTPS, NOW)[0]

    assert outcome.status is Status.REJECTED
    assert "already accepted" in outcome.errors[0]
    assert "different content" in outcome.errors[0]


def test_given_the_same_event_id_in_two_accounts_when_ingested_then_both_are_accepted(ingestor):
    statuses = ingest(ingestor, an_event(account_id="acct-a"), an_event(account_id="acct-b"))

    assert statuses == [Status.ACCEPTED, Status.ACCEPTED]


def test_given_a_repeat_inside_one_batch_when_ingested_then_it_is_a_duplicate(ingestor, ledger):
    assert ingest(ingestor, an_event(), an_event()) == [Status.ACCEPTED, Status.DUPLICATE]
    assert len(ledger.items) == 1


def test_given_a_conflicting_repeat_inside_one_batch_when_ingested_then_the_second_is_rejected(ingestor):
    outcomes = ingestor.ingest([an_event(value=1), an_event(value=5)], "p", Channel.HTTPS, NOW)

    assert [o.status for o in outcomes] == [Status.ACCEPTED, Status.REJECTED]
    assert "repeated in this request with different content" in outcomes[1].errors[0]


def test_given_a_mixed_batch_when_ingested_then_outcomes_keep_the_request_order(ingestor):
    outcomes = ingestor.ingest(
        [an_event("evt-1"), an_event("evt-2", value="NaN"), an_event("evt-3")], "p", Channel.HTTPS, NOW
    )

    assert [(o.index, o.status, o.item_id) for o in outcomes] == [
        (0, Status.ACCEPTED, "evt-1"),
        (1, Status.REJECTED, "evt-2"),
        (2, Status.ACCEPTED, "evt-3"),
    ]


def test_given_a_name_registered_as_a_count_when_a_gauge_arrives_then_it_is_rejected_with_advice(ingestor):
    ingest(ingestor, an_event("evt-1", name="seats.active"))

    outcome = ingestor.ingest(
        [an_event("evt-2", name="seats.active", kind="gauge")], "p", Channel.HTTPS, NOW
    )[0]

    assert outcome.status is Status.REJECTED
    assert "'seats.active' is registered as a count" in outcome.errors[0]
    assert "another name" in outcome.errors[0]


def test_given_a_storage_error_on_one_event_when_ingested_then_only_that_event_fails():
    ingestor = Ingestor(MemoryLedger(failing_event_ids={"evt-2"}), MemoryKinds(), 400)  # type: ignore[arg-type]

    statuses = ingest(ingestor, an_event("evt-1"), an_event("evt-2"), an_event("evt-3"))

    assert statuses == [Status.ACCEPTED, Status.FAILED, Status.ACCEPTED]


def test_given_the_kind_registry_is_down_when_ingested_then_valid_events_fail_and_invalid_are_rejected():
    ingestor = Ingestor(MemoryLedger(), MemoryKinds(failing=True), 400)  # type: ignore[arg-type]

    statuses = ingest(ingestor, an_event("evt-1"), an_event("evt-2", colour="red"))

    assert statuses == [Status.FAILED, Status.REJECTED]


def test_given_outcomes_when_summarised_then_the_answer_counts_and_lists_rejections(ingestor):
    ingest(ingestor, an_event("evt-1"))
    outcomes = ingestor.ingest(
        [an_event("evt-1"), an_event("evt-2"), {"event_id": "evt-3"}], "p", Channel.HTTPS, NOW
    )

    summary = summarize(outcomes)

    assert summary.accepted == 1
    assert summary.duplicates == 1
    assert [(r.index, r.event_id) for r in summary.rejected] == [(2, "evt-3")]
    assert "account_id is required" in summary.rejected[0].errors
