"""The aggregator on real stream records: poison records, retries and concurrent writers."""

from __future__ import annotations

import copy
import json
from typing import Any

from botocore.exceptions import ClientError

from functions.aggregator.handler import process_stream_batch, slicing, wiring
from shared.counters.bucket import DayBucket
from shared.counters.slices import slice_key
from shared.counters.store import CounterStore
from shared.resources import RULESET_PATH_ENV
from tests.conftest import TEST_RETENTION_DAYS, Aws
from tests.integration.builders import an_hour, call_api, post_events, rfc3339, stream_event, usage_event

ACCOUNT = "acct-northwind"


def send_and_read_stream(aws: Aws, count: int, **fields: Any) -> list[dict[str, Any]]:
    """Post `count` events (in one batch) and return their stream records, in stream order."""
    events = [
        usage_event(
            account_id=ACCOUNT, event_id=f"evt-{i:03}", occurred_at=rfc3339(an_hour(0, 9 + i)), **fields
        )
        for i in range(count)
    ]
    assert call_api(post_events(events))[1]["accepted"] == count
    records = aws.events_stream().new_records()
    assert len(records) == count
    return records


def store_of(aws: Aws) -> CounterStore:
    return CounterStore(aws.dynamodb, aws.counters_table, TEST_RETENTION_DAYS)


def counted_events(aws: Aws) -> int:
    return sum(
        metric.events
        for bucket in store_of(aws).read_range(ACCOUNT, "2000-01-01", "2999-12-31")
        for metric in bucket.metrics.values()
    )


def test_given_a_poison_record_mid_batch_then_it_is_reported_and_the_records_before_it_are_counted(aws):
    records = send_and_read_stream(aws, 5)
    poison = copy.deepcopy(records[2])
    del poison["dynamodb"]["NewImage"]["name"]
    del poison["dynamodb"]["NewImage"]["kind"]
    batch = [*records[:2], poison, *records[3:]]

    answer = process_stream_batch(stream_event(batch), store_of(aws))

    assert answer == {"batchItemFailures": [{"itemIdentifier": poison["dynamodb"]["SequenceNumber"]}]}
    assert counted_events(aws) == 4  # the good ones, before and after the poison record

    # Lambda retries from the reported record on: the poison fails again, nothing is counted twice.
    retry = process_stream_batch(stream_event(batch[2:]), store_of(aws))

    assert retry == answer
    assert counted_events(aws) == 4


def test_given_a_record_whose_value_is_not_a_number_then_it_is_reported_not_raised(aws):
    records = send_and_read_stream(aws, 2)
    records[1]["dynamodb"]["NewImage"]["value"] = {"S": "twelve"}

    answer = process_stream_batch(stream_event(records), store_of(aws))

    assert answer["batchItemFailures"] == [{"itemIdentifier": records[1]["dynamodb"]["SequenceNumber"]}]
    assert counted_events(aws) == 1


def test_given_several_failures_then_the_earliest_sequence_number_is_reported(aws):
    records = send_and_read_stream(aws, 4)
    for record in (records[3], records[1]):
        del record["dynamodb"]["NewImage"]["day"]

    answer = process_stream_batch(stream_event(records), store_of(aws))

    assert answer == {"batchItemFailures": [{"itemIdentifier": records[1]["dynamodb"]["SequenceNumber"]}]}


def test_given_modify_and_remove_records_then_they_are_ignored(aws):
    (record,) = send_and_read_stream(aws, 1)
    removal = copy.deepcopy(record) | {"eventName": "REMOVE"}
    modification = copy.deepcopy(record) | {"eventName": "MODIFY"}

    answer = process_stream_batch(stream_event([modification, removal]), store_of(aws))

    assert answer == {"batchItemFailures": []}
    assert counted_events(aws) == 0


def test_given_an_empty_batch_then_nothing_happens(aws):
    assert process_stream_batch({"Records": []}, store_of(aws)) == {"batchItemFailures": []}


class SaveLosesOnce(CounterStore):
    """A store whose first save is refused, as when another writer got there first."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.refused = 0

    def save(self, bucket: DayBucket, previous_sequence: str, *, backfill: bool = False) -> bool:
        if not self.refused:
            self.refused += 1
            return False
        return super().save(bucket, previous_sequence, backfill=backfill)


def test_given_a_save_refused_once_then_the_bucket_is_reloaded_and_events_count_exactly_once(aws):
    records = send_and_read_stream(aws, 3)
    store = SaveLosesOnce(aws.dynamodb, aws.counters_table, TEST_RETENTION_DAYS)

    answer = process_stream_batch(stream_event(records), store)

    assert answer == {"batchItemFailures": []}
    assert store.refused == 1
    assert counted_events(aws) == 3


class RivalWritesFirst(CounterStore):
    """Before the first save, a concurrent invocation (a Lambda retry overlapping this one) saves
    the same events: this writer's conditional put then really fails, and it must re-read."""

    def __init__(self, rival_records: list[dict[str, Any]], *args: Any) -> None:
        super().__init__(*args)
        self._rival_records = rival_records
        self.outcomes: list[bool] = []

    def save(self, bucket: DayBucket, previous_sequence: str, *, backfill: bool = False) -> bool:
        if not self.outcomes:
            rival = CounterStore(self._client, self._table, self._retention_days)
            assert process_stream_batch(stream_event(self._rival_records), rival) == {"batchItemFailures": []}
        saved = super().save(bucket, previous_sequence, backfill=backfill)
        self.outcomes.append(saved)
        return saved


def test_given_a_concurrent_writer_saves_first_then_the_conditional_write_fails_and_nothing_doubles(aws):
    records = send_and_read_stream(aws, 3)
    store = RivalWritesFirst(records[:2], aws.dynamodb, aws.counters_table, TEST_RETENTION_DAYS)

    answer = process_stream_batch(stream_event(records), store)

    assert answer == {"batchItemFailures": []}
    assert store.outcomes == [False, True]  # refused by the condition, then saved after re-reading
    assert counted_events(aws) == 3


class AlwaysContended(CounterStore):
    def save(self, bucket: DayBucket, previous_sequence: str, *, backfill: bool = False) -> bool:
        return False


def test_given_a_bucket_that_keeps_changing_then_its_events_are_reported_for_retry(aws):
    records = send_and_read_stream(aws, 2)

    answer = process_stream_batch(
        stream_event(records), AlwaysContended(aws.dynamodb, aws.counters_table, TEST_RETENTION_DAYS)
    )

    assert answer == {"batchItemFailures": [{"itemIdentifier": records[0]["dynamodb"]["SequenceNumber"]}]}
    assert counted_events(aws) == 0
    # The retry, once the contention is gone, counts them once.
    assert process_stream_batch(stream_event(records), store_of(aws)) == {"batchItemFailures": []}
    assert counted_events(aws) == 2


class ThrottledStore(CounterStore):
    def save(self, bucket: DayBucket, previous_sequence: str, *, backfill: bool = False) -> bool:
        raise ClientError(
            {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "Rate exceeded"}},
            "PutItem",
        )


def test_given_storage_errors_while_saving_then_the_batch_reports_a_failure_instead_of_raising(aws):
    records = send_and_read_stream(aws, 2)

    answer = process_stream_batch(
        stream_event(records), ThrottledStore(aws.dynamodb, aws.counters_table, TEST_RETENTION_DAYS)
    )

    assert answer == {"batchItemFailures": [{"itemIdentifier": records[0]["dynamodb"]["SequenceNumber"]}]}


def test_given_events_of_two_days_when_one_day_fails_then_the_other_day_is_still_counted(aws):
    first = usage_event(account_id=ACCOUNT, occurred_at=rfc3339(an_hour(-1, 9)))
    second = usage_event(account_id=ACCOUNT, occurred_at=rfc3339(an_hour(0, 9)))
    call_api(post_events([first, second]))
    records = aws.events_stream().new_records()
    failing_day = an_hour(-1, 9).date().isoformat()

    class FailingDay(CounterStore):
        def save(self, bucket: DayBucket, previous_sequence: str, *, backfill: bool = False) -> bool:
            return (
                False
                if bucket.day == failing_day
                else super().save(bucket, previous_sequence, backfill=backfill)
            )

    answer = process_stream_batch(
        stream_event(records), FailingDay(aws.dynamodb, aws.counters_table, TEST_RETENTION_DAYS)
    )

    # The API writes a batch's events concurrently: the stream may carry them in either order.
    (failed,) = [record for record in records if first["event_id"] in json.dumps(record["dynamodb"]["Keys"])]
    assert answer == {"batchItemFailures": [{"itemIdentifier": failed["dynamodb"]["SequenceNumber"]}]}
    assert [bucket.day for bucket in store_of(aws).read_range(ACCOUNT, "2000-01-01", "2999-12-31")] == [
        an_hour(0, 9).date().isoformat()
    ]


def test_given_a_ruleset_that_filters_and_groups_when_the_handler_folds_then_the_slices_are_stored(
    aws, tmp_path, monkeypatch
):
    # Given the deployment's ruleset grouping app sessions by team and filtering them by region
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "version: slices-1\n"
        "metrics: {app.session: count}\n"
        "signals:\n"
        "  teams: {measure: sum, metric: app.session, window: 7d, at_least: 1, group_by: team, "
        "groups_at_least: 2}\n"
        "  eu: {measure: sum, metric: app.session, where: {region: eu}, window: 7d, at_least: 1}\n"
        "triggers:\n"
        "  t: {category: adoption, owner_role: csm, play: p, when: teams, cooldown: 7d}\n"
        "plays: {p: {}}\n"
    )
    monkeypatch.setenv(RULESET_PATH_ENV, str(rules))  # absolute: read as is, not under the bundle
    wiring.reset()
    try:
        sliced = slicing()
    finally:
        wiring.reset()
    records = send_and_read_stream(aws, 3, name="app.session", dimensions={"team": "t-1", "region": "eu"})

    # When the handler's fold runs with it
    assert process_stream_batch(stream_event(records), store_of(aws), sliced) == {"batchItemFailures": []}

    # Then the bucket holds the metric, its group slice and its filter slice, each with the 3 events
    (bucket,) = store_of(aws).read_range(ACCOUNT, "2000-01-01", "2999-12-31")
    assert {key: metric.events for key, metric in bucket.metrics.items()} == {
        "app.session": 3,
        slice_key("app.session", "team", ["t-1"]): 3,
        slice_key("app.session", "region", ["eu"]): 3,
    }
