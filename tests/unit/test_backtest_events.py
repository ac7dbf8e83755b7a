"""Reading backtest input: the fast path accepts exactly what the API accepts, and every format
reports its bad lines with file and line."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.events.models import EventKind, UsageEvent
from shared.events.validation import InvalidEvent, check_event
from shared.json_input import JsonInputError, decode_json
from shared.storage.dynamo import to_decimal
from upswing.backtest.events import (
    Accepted,
    InputError,
    Rejected,
    account_of_line,
    format_of,
    judge_line,
    judge_object,
    location,
    read_csv_objects,
    read_lines,
    read_parquet_objects,
    stamp_of,
)


def an_event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": "evt-1",
        "account_id": "acct-1",
        "name": "feature.analytics.used",
        "occurred_at": "2025-03-04T10:15:00Z",
        "value": 1,
        "kind": "count",
        "dimensions": {"team": "t-1"},
    }
    event.update(overrides)
    return {key: value for key, value in event.items() if value is not None}


def judged(raw: Any) -> Accepted | Rejected:
    return judge_line(2, 17, json.dumps(raw).encode() + b"\n")


def assert_same_as_contract(raw: Any) -> None:
    """What judge_line makes of a line is what POST /v1/events' contract makes of it: first the
    body's JSON limits (a number past 38 digits refuses the whole request), then the event's checks."""
    verdict = judged(raw)
    limit = _json_limit(raw)
    if limit is not None:
        assert isinstance(verdict, Rejected), raw
        assert (verdict.malformed, verdict.message) == (True, limit)
        return
    contract = check_event(raw)
    if isinstance(contract, InvalidEvent):
        assert isinstance(verdict, Rejected), raw
        assert verdict.message == "; ".join(contract.errors)
        assert (verdict.file, verdict.line) == (2, 17)
        return
    assert isinstance(verdict, Accepted), (raw, verdict)
    assert_counts_like(verdict, contract)


def _json_limit(raw: Any) -> str | None:
    """The API's message when the JSON itself is past its limits (None: within them)."""
    try:
        decode_json(json.dumps(raw).encode(), subject="The line")
    except JsonInputError as error:
        return str(error)
    return None


def assert_counts_like(verdict: Accepted, contract: UsageEvent) -> None:
    event = verdict.event
    assert (event.account_id, event.event_id, event.name, event.kind) == (
        contract.account_id,
        contract.event_id,
        contract.name,
        contract.kind,
    )
    assert event.value == to_decimal(contract.value)
    assert event.occurred_at == stamp_of(contract.occurred_at)
    assert event.day == contract.occurred_at.date().isoformat()
    assert event.dimensions == dict(contract.dimensions)
    assert location(event) == (2, 17)


# ── the fast path agrees with the contract ────────────────────────────────────────────────────

TIMES = st.sampled_from(
    [
        "2025-03-04T10:15:00Z",
        "2025-03-04T10:15:00.5Z",
        "2025-03-04T10:15:00.123456Z",
        "2025-03-04T10:15:00.1234567Z",
        "2025-03-04T23:59:59Z",
        "2025-03-04T24:00:00Z",
        "2025-03-04T10:15:60Z",
        "2025-02-29T10:15:00Z",
        "2024-02-29T10:15:00Z",
        "2025-03-04t10:15:00z",
        "2025-03-04 10:15:00Z",
        "2025-03-04T10:15Z",
        "2025-03-04T10:15:00+02:00",
        "2025-03-04T01:15:00-05:30",
        "2025-03-04T10:15:00",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "1741083300",
        "",
    ]
)
TEXT = st.one_of(
    st.sampled_from(["acct-1", "a", "x" * 128, "x" * 129, " padded", "tab\there", "", "é-ü", "line\n"]),
    st.text(max_size=6),
)
VALUES = st.one_of(
    st.integers(min_value=-(10**16), max_value=10**16),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([True, "3", None, 1e15, -1e15, 1.0000001e15]),
)
DIMENSIONS = st.dictionaries(
    st.sampled_from(["team", "user", "_bad", "a" * 64, "a" * 65, "ok.key-1", "spa ce"]),
    st.one_of(TEXT, st.integers(), st.none()),
    max_size=18,
)


@given(
    event_id=TEXT,
    account_id=TEXT,
    name=st.sampled_from(["seats.active", "a:b/c-d_e", "-bad", "x" * 129, "ok\n", "with space"]),
    occurred_at=TIMES,
    value=VALUES,
    kind=st.sampled_from(["count", "gauge", "Count", None, 3]),
    dimensions=st.one_of(DIMENSIONS, st.sampled_from([None, [], "team"])),
    properties=st.sampled_from([None, {}, {"a": 1}, {"deep": [1, {"b": None}]}, "x"]),
    extra=st.sampled_from([None, "unknown", "event_id"]),
)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_fast_path_accepts_exactly_what_the_api_accepts(
    event_id: str,
    account_id: str,
    name: str,
    occurred_at: str,
    value: Any,
    kind: Any,
    dimensions: Any,
    properties: Any,
    extra: str | None,
) -> None:
    raw = an_event(
        event_id=event_id,
        account_id=account_id,
        name=name,
        occurred_at=occurred_at,
        value=value,
        kind=kind,
        dimensions=dimensions,
        properties=properties,
    )
    if extra:
        raw[extra] = "x"
    assert_same_as_contract(raw)
    verdict = judged(raw)
    if isinstance(verdict, Accepted):  # the split by account reads the same account off the bytes
        for separators in ((",", ":"), (", ", ": ")):
            line = json.dumps(raw, separators=separators, ensure_ascii=False).encode()
            assert account_of_line(line) == verdict.event.account_id


@pytest.mark.parametrize(
    "line",
    [
        b'{"account_id":"a\\"b","properties":{"account_id":"other"}}',
        b'{"properties":{"account_id":"other"},"account_id":"real"}',
        b'{"account_id" : "spaced"}',
        b'{"account_id":"caf\\u00e9"}',
    ],
)
def test_the_account_is_read_off_the_bytes_only_when_that_is_certain(line: bytes) -> None:
    assert account_of_line(line) == json.loads(line)["account_id"]


@pytest.mark.parametrize(
    ("given_time", "stored"),
    [
        ("2025-03-04T10:15:00Z", "2025-03-04T10:15:00.000000Z"),
        ("2025-03-04T10:15:00.5Z", "2025-03-04T10:15:00.500000Z"),
        ("2025-03-04T01:15:00+02:00", "2025-03-03T23:15:00.000000Z"),
    ],
)
def test_times_are_stored_as_the_ledger_stores_them_in_utc(given_time: str, stored: str) -> None:
    verdict = judged(an_event(occurred_at=given_time))
    assert isinstance(verdict, Accepted)
    assert verdict.event.occurred_at == stored
    assert verdict.event.day == stored[:10]


def test_properties_are_kept_for_telling_a_resend_from_a_reused_id() -> None:
    first = judged(an_event(properties={"b": 1, "a": [1, 2]}))
    same = judged(an_event(properties={"a": [1, 2], "b": 1}))
    other = judged(an_event(properties={"a": [1, 2], "b": 2}))
    assert isinstance(first, Accepted)
    assert isinstance(same, Accepted)
    assert isinstance(other, Accepted)
    assert first.content() == same.content() != other.content()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"{not json\n", "not valid JSON"),
        (b"\n", "an empty line"),
        (b'"just a string"\n', "an event must be a JSON object, got a string"),
        (b"[1, 2]\n", "an event must be a JSON object, got an array"),
    ],
)
def test_a_line_that_is_not_an_event_is_malformed(line: bytes, message: str) -> None:
    verdict = judge_line(0, 9, line)
    assert isinstance(verdict, Rejected)
    assert verdict.malformed
    assert message in verdict.message
    assert verdict.line == 9


def test_a_contract_violation_is_rejected_not_malformed_and_names_the_field() -> None:
    verdict = judged(an_event(value="3"))
    assert isinstance(verdict, Rejected)
    assert not verdict.malformed
    assert verdict.message == "value must be a JSON number, got a string"
    assert verdict.event_id == "evt-1"
    assert verdict.account_id == "acct-1"


# ── formats ───────────────────────────────────────────────────────────────────────────────────


def test_jsonl_lines_are_numbered_from_one_and_a_gzip_file_reads_the_same(tmp_path: Path) -> None:
    import gzip

    text = b'{"a": 1}\n{"b": 2}\n{"c": 3}'
    plain, packed = tmp_path / "events.jsonl", tmp_path / "events.jsonl.gz"
    plain.write_bytes(text)
    packed.write_bytes(gzip.compress(text))
    assert (
        list(read_lines(plain))
        == list(read_lines(packed))
        == [
            (1, b'{"a": 1}\n'),
            (2, b'{"b": 2}\n'),
            (3, b'{"c": 3}'),
        ]
    )


def test_csv_rows_become_events_with_dimension_columns_and_typed_values(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "event_id,account_id,name,occurred_at,value,kind,dimensions.team,dimensions.user,properties\n"
        'e1,acct-1,seats.active,2025-03-04T10:00:00Z,12,gauge,t-1,,"{""plan"": ""pro""}"\n'
        "e2,acct-1,app.session,2025-03-04T11:00:00Z,,,,u-1,\n"
        "e3,acct-1,app.session,2025-03-04T11:00:00Z,lots,,,,\n"
        "e4,acct-1,app.session\n"
    )
    rows = list(read_csv_objects(path))
    assert [line for line, _ in rows] == [2, 3, 4, 5]
    verdicts = [judge_object(0, line, row) for line, row in rows]
    first, second, third, fourth = verdicts
    assert isinstance(first, Accepted)
    assert isinstance(second, Accepted)
    assert first.event.kind is EventKind.GAUGE
    assert first.event.value == to_decimal(12.0)
    assert first.event.dimensions == {"team": "t-1"}
    assert first.properties == '{"plan":"pro"}'
    assert second.event.kind is EventKind.COUNT
    assert second.event.value == to_decimal(1.0)
    assert second.event.dimensions == {"user": "u-1"}
    assert isinstance(third, Rejected)
    assert third.message == "value must be a JSON number, got a string"
    assert isinstance(fourth, Rejected)
    assert fourth.malformed
    assert "3 cells where the header has 9" in fourth.message


@pytest.mark.parametrize(
    ("header", "complaint"),
    [
        ("event_id,account_id,name,occurred_at,colour\n", "unknown column 'colour'"),
        ("event_id,account_id,name\n", "the header lacks occurred_at"),
        ("", "empty file"),
    ],
)
def test_an_unusable_csv_header_stops_with_file_and_line(tmp_path: Path, header: str, complaint: str) -> None:
    path = tmp_path / "events.csv"
    path.write_text(header)
    with pytest.raises(InputError, match=complaint) as raised:
        list(read_csv_objects(path))
    assert str(path) in str(raised.value)


def test_parquet_records_become_events_as_simulate_writes_them(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "events.parquet"
    table = pa.table(
        {
            "event_id": ["e1", "e2"],
            "account_id": ["acct-1", "acct-2"],
            "name": ["seats.active", "app.session"],
            "occurred_at": pa.array(
                [datetime(2025, 3, 4, 10, tzinfo=UTC), datetime(2025, 3, 5, 11, 30, tzinfo=UTC)],
                pa.timestamp("ms", tz="UTC"),
            ),
            "value": [12.0, 1.0],
            "kind": ["gauge", "count"],
            "dimensions": pa.array([[], [("user", "u-1")]], pa.map_(pa.string(), pa.string())),
        }
    )
    pq.write_table(table, path)
    rows = list(read_parquet_objects(path, batch_rows=1))
    verdicts = [judge_object(0, line, row) for line, row in rows]
    assert [line for line, _ in rows] == [1, 2]
    assert all(isinstance(verdict, Accepted) for verdict in verdicts)
    events = [verdict.event for verdict in verdicts if isinstance(verdict, Accepted)]
    assert [event.occurred_at for event in events] == [
        "2025-03-04T10:00:00.000000Z",
        "2025-03-05T11:30:00.000000Z",
    ]
    assert events[1].dimensions == {"user": "u-1"}


def test_a_parquet_file_with_foreign_columns_is_refused(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "events.parquet"
    pq.write_table(pa.table({"event_id": ["e1"], "colour": ["red"]}), path)
    with pytest.raises(InputError, match="unknown column"):
        list(read_parquet_objects(path))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.jsonl", "jsonl"),
        ("a.ndjson", "jsonl"),
        ("a.jsonl.gz", "jsonl"),
        ("A.CSV", "csv"),
        ("a.parquet", "parquet"),
    ],
)
def test_the_format_comes_from_the_file_name(name: str, expected: str) -> None:
    assert format_of(Path(name)) == expected


@pytest.mark.parametrize("name", ["events.json", "events", "events.parquet.gz", "events.xlsx"])
def test_an_unknown_format_is_refused_with_the_known_ones(name: str) -> None:
    with pytest.raises(InputError, match=r"use \.csv, \.jsonl|do not gzip"):
        format_of(Path(name))


@pytest.mark.parametrize("raw", [an_event(dimensions={"team": 10**40}), an_event(value=-(10**39))])
def test_a_number_past_the_json_limit_is_a_malformed_line_as_the_api_refuses_the_body(raw: Any) -> None:
    assert_same_as_contract(raw)
    assert judged(raw).message.startswith("The line holds an integer of")  # type: ignore[union-attr]
