"""Day buckets: what a day of one account's usage adds up to, and why replays change nothing."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.counters.bucket import (
    MAX_DISTINCT_PER_BUCKET,
    MAX_DISTINCT_PER_DAY,
    MAX_METRICS_PER_BUCKET,
    CountedEvent,
    DayBucket,
    distinct_token,
    padded_sequence,
)
from shared.counters.slices import MAX_GROUPS_PER_DAY, Slicing, group_prefix, slice_key
from shared.counters.view import bucket_view
from shared.events.models import EventKind

ACCOUNT = "acct-northwind"
DAY = "2026-11-22"
_sequence = itertools.count(1_100_000_000_000_000_000_000)


def counted(
    name: str = "feature.analytics.used",
    value: str | int = 1,
    at: str = "10:00:00",
    kind: EventKind = EventKind.COUNT,
    dimensions: dict[str, str] | None = None,
    sequence: int | None = None,
) -> CountedEvent:
    """An accepted event as the aggregator decodes it from the stream (next sequence by default)."""
    raw_sequence = str(sequence if sequence is not None else next(_sequence))
    return CountedEvent(
        sequence=padded_sequence(raw_sequence),
        stream_sequence=raw_sequence,
        account_id=ACCOUNT,
        event_id=f"evt-{raw_sequence}",
        name=name,
        kind=kind,
        value=Decimal(value),
        occurred_at=f"{DAY}T{at}.000000Z",
        day=DAY,
        dimensions=dimensions or {},
    )


def gauge(value: str | int, at: str) -> CountedEvent:
    return counted(name="seats.active", value=value, at=at, kind=EventKind.GAUGE)


def bucket_with(*events: CountedEvent) -> DayBucket:
    bucket = DayBucket(ACCOUNT, DAY)
    for event in events:
        bucket.apply(event)
    return bucket


def test_given_count_events_when_applied_then_values_add_up_and_events_are_counted():
    bucket = bucket_with(counted(value=1), counted(value=5), counted(value="2.5"))

    metric = bucket.metrics["feature.analytics.used"]
    assert metric.total == Decimal("8.5")
    assert metric.events == 3
    assert metric.last is None  # counts have no "latest level"


def test_given_a_negative_correction_when_applied_then_it_is_subtracted():
    bucket = bucket_with(counted(value=10), counted(value=-3))

    assert bucket.metrics["feature.analytics.used"].total == 7


def test_given_decimal_values_when_summed_then_there_is_no_float_drift():
    bucket = bucket_with(*(counted(value="0.1") for _ in range(10)))

    assert bucket.metrics["feature.analytics.used"].total == Decimal("1.0")


def test_given_gauge_readings_in_time_order_when_applied_then_the_latest_wins():
    bucket = bucket_with(gauge(10, "09:00:00"), gauge(12, "11:00:00"), gauge(11, "13:00:00"))

    seats = bucket.metrics["seats.active"]
    assert seats.last == 11
    assert seats.last_at == f"{DAY}T13:00:00.000000Z"


def test_given_an_older_gauge_reading_arriving_later_when_applied_then_the_newer_reading_stays_latest():
    bucket = bucket_with(gauge(12, "15:00:00"), gauge(9, "08:00:00"))

    seats = bucket.metrics["seats.active"]
    assert seats.last == 12
    assert seats.last_at == f"{DAY}T15:00:00.000000Z"


def test_given_two_gauge_readings_at_the_same_instant_when_applied_then_the_later_arrival_wins():
    bucket = bucket_with(gauge(12, "15:00:00"), gauge(14, "15:00:00"))

    assert bucket.metrics["seats.active"].last == 14


def test_given_gauge_readings_when_applied_then_low_and_high_span_the_day():
    bucket = bucket_with(
        gauge(10, "09:00:00"), gauge(4, "10:00:00"), gauge(17, "11:00:00"), gauge(8, "12:00:00")
    )

    seats = bucket.metrics["seats.active"]
    assert (seats.low, seats.high, seats.last) == (4, 17, 8)
    assert seats.events == 4


def test_given_dimensions_when_applied_then_distinct_values_are_counted_per_metric_and_dimension():
    bucket = bucket_with(
        counted(dimensions={"team": "t-1", "user": "u-1"}),
        counted(dimensions={"team": "t-1", "user": "u-2"}),
        counted(dimensions={"team": "t-2", "user": "u-1"}),
        counted(name="ticket.created", dimensions={"team": "t-9"}),
    )

    assert bucket.distinct_count("feature.analytics.used", "team") == 2
    assert bucket.distinct_count("feature.analytics.used", "user") == 2
    assert bucket.distinct_count("ticket.created", "team") == 1
    assert bucket.distinct_count("ticket.created", "user") == 0


def test_given_personal_dimension_values_when_stored_then_only_hashes_are_kept():
    bucket = bucket_with(counted(dimensions={"user": "jane.doe@northwind.example"}))

    item = bucket.to_item()

    assert "jane.doe@northwind.example" not in repr(item)
    assert item["distinct"]["feature.analytics.used"]["user"] == {
        distinct_token("jane.doe@northwind.example")
    }


def test_given_two_values_when_tokenised_then_tokens_are_stable_short_and_different():
    assert distinct_token("u-1") == distinct_token("u-1")
    assert distinct_token("u-1") != distinct_token("u-2")
    assert len(distinct_token("u-1")) <= 12


def test_given_more_distinct_values_than_the_cap_when_applied_then_the_set_stops_and_is_marked_capped():
    bucket = bucket_with(*(counted(dimensions={"user": f"u-{i}"}) for i in range(MAX_DISTINCT_PER_DAY + 5)))

    assert bucket.distinct_count("feature.analytics.used", "user") == MAX_DISTINCT_PER_DAY
    assert bucket.capped == {"feature.analytics.used/user"}
    assert bucket.metrics["feature.analytics.used"].events == MAX_DISTINCT_PER_DAY + 5
    assert bucket_view(bucket)["distinct_capped"] == ["feature.analytics.used/user"]


def test_given_exactly_the_cap_when_applied_then_the_set_is_not_marked_capped():
    bucket = bucket_with(*(counted(dimensions={"user": f"u-{i}"}) for i in range(MAX_DISTINCT_PER_DAY)))

    assert bucket.capped == set()


def test_given_a_full_set_when_a_known_value_comes_again_then_it_is_not_marked_capped():
    bucket = bucket_with(*(counted(dimensions={"user": f"u-{i}"}) for i in range(MAX_DISTINCT_PER_DAY)))

    bucket.apply(counted(dimensions={"user": "u-0"}))

    assert bucket.capped == set()


def test_given_a_bucket_at_its_metric_bound_when_a_new_name_arrives_then_it_is_counted_as_overflow():
    bucket = bucket_with(*(counted(name=f"metric.{n}") for n in range(MAX_METRICS_PER_BUCKET)))

    assert bucket.apply(counted(name="one.too.many"))
    assert bucket.apply(counted(name="metric.0"))  # known names keep counting

    assert "one.too.many" not in bucket.metrics
    assert bucket.overflow_events == 1
    assert bucket.metrics["metric.0"].events == 2
    assert DayBucket.from_item(bucket.to_item()).overflow_events == 1
    assert bucket_view(bucket)["overflow_events"] == 1


def test_given_a_bucket_at_its_distinct_bound_when_a_new_value_arrives_then_the_pair_is_capped():
    per_dimension = MAX_DISTINCT_PER_DAY
    dimensions = MAX_DISTINCT_PER_BUCKET // per_dimension
    bucket = DayBucket(ACCOUNT, DAY)
    for dimension in range(dimensions):
        for value in range(per_dimension):
            bucket.apply(counted(dimensions={f"d{dimension}": f"v{value}"}))

    bucket.apply(counted(dimensions={"fresh": "value"}))

    assert bucket.distinct_count("feature.analytics.used", "fresh") == 0
    assert "feature.analytics.used/fresh" in bucket.capped


def test_given_an_event_at_or_below_the_applied_sequence_when_applied_then_it_is_skipped():
    bucket = bucket_with(counted(sequence=500), counted(sequence=900))

    assert bucket.apply(counted(sequence=900, value=100)) is False
    assert bucket.apply(counted(sequence=700, value=100)) is False
    assert bucket.metrics["feature.analytics.used"].total == 2
    assert bucket.applied_sequence == padded_sequence("900")


def test_given_sequences_of_different_lengths_when_compared_then_numeric_order_is_kept():
    bucket = bucket_with(counted(sequence=99))

    assert bucket.apply(counted(sequence=100)) is True
    assert bucket.apply(counted(sequence=100)) is False


def test_given_a_full_bucket_when_stored_and_read_back_then_nothing_is_lost():
    bucket = bucket_with(
        counted(value=3, dimensions={"team": "t-1"}),
        gauge(12, "11:00:00"),
        gauge(9, "08:00:00"),
        *(
            counted(name="invite.sent", dimensions={"user": f"u-{i}"})
            for i in range(MAX_DISTINCT_PER_DAY + 1)
        ),
    )

    again = DayBucket.from_item(bucket.to_item())

    assert again == bucket


def test_given_an_empty_bucket_when_stored_and_read_back_then_it_stays_empty():
    bucket = DayBucket(ACCOUNT, DAY)

    item = bucket.to_item()

    assert "capped" not in item  # DynamoDB cannot store an empty set
    assert DayBucket.from_item(item) == bucket


def test_given_a_bucket_when_viewed_then_numbers_are_plain_json_numbers():
    view = bucket_view(bucket_with(counted(value=2), counted(value="0.5"), gauge(7, "10:00:00")))

    assert view == {
        "day": DAY,
        "metrics": {
            "feature.analytics.used": {"kind": "count", "total": 2.5, "events": 2},
            "seats.active": {
                "kind": "gauge",
                "total": 7,
                "events": 1,
                "last": 7,
                "last_at": f"{DAY}T10:00:00.000000Z",
                "low": 7,
                "high": 7,
            },
        },
    }


# --- Property: replays never change a bucket -------------------------------------------------------

_names = st.sampled_from([("feature.analytics.used", EventKind.COUNT), ("seats.active", EventKind.GAUGE)])
_event_specs = st.lists(
    st.tuples(
        _names,
        st.decimals(min_value=-1000, max_value=1000, places=2, allow_nan=False, allow_infinity=False),
        st.times(),
        st.dictionaries(st.sampled_from(["team", "user"]), st.sampled_from(["a", "b", "c"]), max_size=2),
        st.integers(min_value=1, max_value=10**12),  # gap to the next sequence number
    ),
    max_size=25,
)


def _stream(specs: list[Any]) -> list[CountedEvent]:
    events, sequence = [], 10**20
    for (name, kind), value, moment, dimensions, gap in specs:
        sequence += gap
        events.append(
            counted(
                name=name,
                kind=kind,
                value=str(value),
                at=moment.strftime("%H:%M:%S"),
                dimensions=dimensions,
                sequence=sequence,
            )
        )
    return events


@settings(max_examples=150, deadline=None)
@given(specs=_event_specs, data=st.data())
def test_property_given_any_stream_when_prefixes_and_suffixes_are_replayed_then_the_bucket_is_unchanged(
    specs, data
):
    events = _stream(specs)
    once = bucket_with(*events)

    positions = st.integers(min_value=0, max_value=len(events))
    split = data.draw(positions, label="batch split")
    prefix_end = data.draw(positions, label="replayed prefix ends")
    suffix_start = data.draw(positions, label="replayed suffix starts")
    # Two Lambda batches with a store round trip between them, then a redelivered prefix (a whole
    # batch retried) and a redelivered suffix (a retry from the first failed record on).
    replayed = DayBucket.from_item(bucket_with(*events[:split]).to_item())
    for event in events[split:]:
        replayed.apply(event)
    replays = [replayed.apply(event) for event in events[:prefix_end] + events[suffix_start:]]

    assert not any(replays)
    assert replayed.to_item() == once.to_item()


@settings(max_examples=100, deadline=None)
@given(specs=_event_specs)
def test_property_given_any_gauge_readings_when_applied_then_last_is_the_latest_by_event_time(specs):
    events = _stream(specs)
    bucket = bucket_with(*events)

    readings = [event for event in events if event.kind is EventKind.GAUGE]
    if not readings:
        assert "seats.active" not in bucket.metrics
        return
    latest_at = max(event.occurred_at for event in readings)
    latest = [event for event in readings if event.occurred_at == latest_at][-1]
    seats = bucket.metrics["seats.active"]
    assert (seats.last, seats.last_at) == (latest.value, latest_at)
    assert seats.low == min(event.value for event in readings)
    assert seats.high == max(event.value for event in readings)
    assert seats.total == sum(event.value for event in readings)


# ── slices: the metric counted again for a dimension's value (where, group_by) ─────────────────

SLICING = Slicing(
    groups={"feature.analytics.used": frozenset({"team"})},
    filters={
        "paywall.hit": frozenset({("feature", frozenset({"sso"})), ("feature", frozenset({"sso", "scim"}))})
    },
)


def test_given_a_slicing_when_events_are_folded_then_each_group_and_filter_slice_counts_its_events():
    bucket = DayBucket(ACCOUNT, DAY)
    events = [
        counted("feature.analytics.used", 2, dimensions={"team": "t-1"}),
        counted("feature.analytics.used", 3, dimensions={"team": "t-2"}),
        counted("feature.analytics.used", 5, dimensions={"team": "t-1"}),
        counted("feature.analytics.used", 7),  # no team: in the metric, in no group
        counted("paywall.hit", 1, dimensions={"feature": "sso"}),
        counted("paywall.hit", 1, dimensions={"feature": "scim"}),
        counted("paywall.hit", 1, dimensions={"feature": "audit-log"}),
    ]

    for event in events:
        bucket.apply(event, SLICING)

    totals = {key: metric.total for key, metric in bucket.metrics.items()}
    assert totals == {
        "feature.analytics.used": 17,
        slice_key("feature.analytics.used", "team", ["t-1"]): 7,
        slice_key("feature.analytics.used", "team", ["t-2"]): 3,
        "paywall.hit": 3,
        slice_key("paywall.hit", "feature", ["sso"]): 1,
        slice_key("paywall.hit", "feature", ["sso", "scim"]): 2,
    }
    # Values are hashed as distinct values are: no raw team or feature name in the counters.
    assert not any("t-1" in key or "sso" in key for key in bucket.metrics)


def test_given_a_replayed_event_when_sliced_then_the_slices_do_not_count_it_twice():
    bucket = DayBucket(ACCOUNT, DAY)
    event = counted("feature.analytics.used", 4, dimensions={"team": "t-1"})

    assert bucket.apply(event, SLICING)
    assert not bucket.apply(event, SLICING)

    assert bucket.metrics[slice_key("feature.analytics.used", "team", ["t-1"])].total == 4


def test_given_more_groups_than_the_bound_in_a_day_when_sliced_then_the_rest_are_capped_not_sliced():
    bucket = DayBucket(ACCOUNT, DAY)

    for team in range(MAX_GROUPS_PER_DAY + 5):
        bucket.apply(counted("feature.analytics.used", dimensions={"team": f"t-{team}"}), SLICING)

    groups = [key for key in bucket.metrics if key.startswith(group_prefix("feature.analytics.used", "team"))]
    assert len(groups) == MAX_GROUPS_PER_DAY
    assert "feature.analytics.used/team" in bucket.capped
    assert bucket.metrics["feature.analytics.used"].events == MAX_GROUPS_PER_DAY + 5


def test_given_a_sliced_bucket_when_viewed_then_slices_are_apart_from_metrics_and_it_round_trips():
    bucket = DayBucket(ACCOUNT, DAY)
    bucket.apply(counted("paywall.hit", dimensions={"feature": "sso"}), SLICING)

    view = bucket_view(bucket)

    assert list(view["metrics"]) == ["paywall.hit"]
    assert len(view["slices"]) == 2
    assert DayBucket.from_item(bucket.to_item()) == bucket


def test_given_a_slicing_when_written_for_the_environment_then_it_reads_back_the_same():
    assert Slicing.from_json(SLICING.to_json()) == SLICING
    assert Slicing.from_json("") == Slicing()
