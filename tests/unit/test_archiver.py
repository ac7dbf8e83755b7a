"""The archiver: ledger stream records → archive rows on the Firehose delivery stream, at least once.

Firehose is a boundary: a fake client stands for it (what PutRecordBatch answers is documented:
per record an ErrorCode when it was not taken, FailedPutCount their number).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from functions.archiver.handler import archive_stream_batch
from shared.archive.firehose import MAX_RECORDS_PER_CALL
from shared.archive.layout import ARCHIVE_COLUMNS, PARTITION_KEY, archive_row
from shared.events.ledger import Channel, ledger_item
from shared.events.models import UsageEvent
from shared.storage.dynamo import serialize

RECEIVED = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


class FakeFirehose:
    """Takes records, but refuses the ones whose account is in `refuse` `times` times each."""

    def __init__(self, refuse: set[str] = frozenset(), times: int = 1) -> None:  # type: ignore[assignment]
        self.calls: list[list[dict[str, Any]]] = []
        self.delivered: list[dict[str, Any]] = []
        self._refusals = dict.fromkeys(refuse, times)

    def put_record_batch(self, DeliveryStreamName: str, Records: list[dict[str, bytes]]) -> dict[str, Any]:
        assert DeliveryStreamName == "archive"
        rows = [json.loads(record["Data"]) for record in Records]
        self.calls.append(rows)
        responses = []
        for row in rows:
            if self._refusals.get(row["account_id"], 0) > 0:
                self._refusals[row["account_id"]] -= 1
                responses.append({"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "slow down"})
            else:
                self.delivered.append(row)
                responses.append({"RecordId": "r"})
        failed = sum("ErrorCode" in response for response in responses)
        return {"FailedPutCount": failed, "RequestResponses": responses}


def record(number: int, account: str = "acme", **fields: Any) -> dict[str, Any]:
    event = UsageEvent.model_validate(
        {
            "event_id": f"evt-{number}",
            "account_id": account,
            "name": "api.calls",
            "value": 12.5,
            "occurred_at": "2026-11-30T23:59:00Z",
            "dimensions": {"team": "t-1"},
            "properties": {"email": "someone@example.com"},
            **fields,
        }
    )
    item = ledger_item(event, "billing", Channel.HTTPS, RECEIVED, 400)
    return {
        "eventName": "INSERT",
        "dynamodb": {"SequenceNumber": str(1000 + number), "NewImage": serialize(item)},
    }


def test_given_new_ledger_items_when_archived_then_each_is_one_archive_row_without_properties():
    firehose = FakeFirehose()
    answer = archive_stream_batch({"Records": [record(1), record(2, "globex")]}, firehose, "archive")

    assert answer == {"batchItemFailures": []}
    first = firehose.delivered[0]
    assert set(first) == {name for name, _ in ARCHIVE_COLUMNS} | {PARTITION_KEY}
    assert first == {
        "event_id": "evt-1",
        "account_id": "acme",
        "name": "api.calls",
        "kind": "count",
        "value": "12.5",  # the ledger's exact decimal, as text
        "occurred_at": "2026-11-30T23:59:00.000000Z",
        "dimensions": {"team": "t-1"},
        "received_at": "2026-12-01T09:30:00.000Z",
        "day": "2026-11-30",  # the event's day: the folder it lands in
    }
    assert "someone@example.com" not in json.dumps(firehose.calls)  # properties are not archived


def test_given_a_record_firehose_refuses_once_then_it_is_put_again_and_nothing_fails():
    firehose = FakeFirehose(refuse={"globex"}, times=1)
    answer = archive_stream_batch(
        {"Records": [record(1), record(2, "globex"), record(3)]}, firehose, "archive"
    )

    assert answer == {"batchItemFailures": []}
    assert [len(call) for call in firehose.calls] == [3, 1]  # only the refused one again
    assert sorted(row["event_id"] for row in firehose.delivered) == ["evt-1", "evt-2", "evt-3"]


def test_given_a_record_firehose_keeps_refusing_then_the_batch_fails_from_it_for_lambda_to_retry():
    firehose = FakeFirehose(refuse={"globex"}, times=99)
    answer = archive_stream_batch(
        {"Records": [record(1), record(2, "globex"), record(3), record(4, "globex")]}, firehose, "archive"
    )

    # The earliest record not archived: Lambda retries from it (the later ones again: at least once)
    assert answer == {"batchItemFailures": [{"itemIdentifier": "1002"}]}
    assert len(firehose.calls) == 3  # the first put and two retries of what was refused


def test_given_more_records_than_one_call_takes_then_they_are_put_in_batches_of_at_most_500():
    firehose = FakeFirehose()
    records = [record(number) for number in range(MAX_RECORDS_PER_CALL + 20)]
    assert archive_stream_batch({"Records": records}, firehose, "archive") == {"batchItemFailures": []}
    assert [len(call) for call in firehose.calls] == [MAX_RECORDS_PER_CALL, 20]


def test_given_an_undecodable_record_and_removals_then_removals_are_skipped_and_the_bad_one_fails():
    firehose = FakeFirehose()
    bad = {"eventName": "INSERT", "dynamodb": {"SequenceNumber": "999", "NewImage": {"pk": {"S": "acme"}}}}
    removal = {"eventName": "REMOVE", "dynamodb": {"SequenceNumber": "998"}}
    answer = archive_stream_batch({"Records": [removal, bad, record(1)]}, firehose, "archive")

    assert answer == {"batchItemFailures": [{"itemIdentifier": "999"}]}
    assert [row["event_id"] for row in firehose.delivered] == ["evt-1"]


def test_given_a_gauge_reading_then_its_value_keeps_every_digit():
    row = archive_row(serialize({**_item(), "value": Decimal("0.000001234"), "kind": "gauge"}))
    assert row["value"] == "0.000001234"
    assert row["kind"] == "gauge"


def _item() -> dict[str, Any]:
    return {
        "pk": "acme",
        "sk": "evt-x",
        "name": "seats.active",
        "occurred_at": "2026-11-30T10:00:00.000000Z",
        "day": "2026-11-30",
        "received_at": "2026-11-30T10:00:01.000Z",
    }
