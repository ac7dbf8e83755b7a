"""Reading historical events: JSONL, CSV or Parquet, streamed, judged by the API's own contract.

Every line (or row) is turned into an `Arrival`: the event as the counters would see it, or the
reason it would have been rejected, with its file and line either way. Judging is two-tier, for
speed: msgspec decodes a line and checks its types in C, and a conservative fast path in Python
accepts the common, plainly valid shape; anything else — a wrong type, an odd timestamp, free-form
properties — goes to `check_event`, the pydantic model POST /v1/events itself uses, which has the
last word and the error message. So the backtest accepts exactly what the API accepts, and says
why it does not in the API's own words (tests/unit/test_backtest_events.py holds the fast path to
that).

Formats:
- JSONL (`.jsonl`, `.ndjson`, optionally `.gz`): one event per line, the shape of POST /v1/events.
- CSV (`.csv`, optionally `.gz`): a header with the event fields (`event_id`, `account_id`, `name`,
  `occurred_at`, and optionally `value`, `kind`, `properties` as JSON) and one `dimensions.<key>`
  column per dimension; an empty cell is an absent field.
- Parquet (`.parquet`): the columns `upswing simulate` writes (the event fields, `dimensions` as a
  map of strings, `occurred_at` a timestamp or a string).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, NamedTuple

import msgspec

from shared.counters.bucket import CountedEvent
from shared.events.contract import MAX_ABS_VALUE, MAX_DIMENSIONS, MIN_ABS_VALUE
from shared.events.models import EventKind
from shared.events.validation import InvalidEvent, check_event
from shared.json_input import JsonInputError, decode_json
from shared.storage.dynamo import to_decimal
from shared.timestamps import utc_stamp

EVENT_FIELDS = ("event_id", "account_id", "name", "occurred_at", "value", "kind", "dimensions", "properties")
DIMENSION_PREFIX = "dimensions."
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}

# The same patterns as the contract (shared/events/models.py), anchored for fullmatch.
_NAME = re.compile(r"[a-z0-9][a-z0-9_.:/-]{0,127}")  # names with capitals: the contract folds them
_DIMENSION_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# The timestamps the fast path reads itself; every other form goes to the contract's parser.
_UTC_STAMP = re.compile(r"(\d{4}-\d\d-\d\d)T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.(\d{1,6}))?Z")
_DAY = re.compile(r"\d{4}-\d\d-\d\d")
_CLOCK = re.compile(r"(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d")
_OFFSET_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?[+-]\d\d:\d\d")
_ORDER_BASE = 10**12  # arrival order: file index * base + line


class InputError(Exception):
    """The input cannot be read at all (a missing file, an unknown format, a CSV without a header)."""


class Accepted(NamedTuple):
    """An event as the counters see it: its sequence is its arrival order (`location` gives its
    file and line back), its `occurred_at` the ledger's fixed-width UTC stamp (so string order is
    time order). A NamedTuple: ten million of them are made."""

    event: CountedEvent
    properties: str  # canonical JSON: with the event, what the API's fingerprint covers

    def content(self) -> tuple[Any, ...]:
        """What tells a resend (same content) from a reused event id (different content)."""
        event = self.event
        return (
            event.name,
            event.kind,
            event.value,
            event.occurred_at,
            sorted(event.dimensions.items()),
            self.properties,
        )


@dataclass(frozen=True, slots=True)
class Rejected:
    """A line that is not an acceptable event, and why, in the API's words."""

    file: int
    line: int
    event_id: str | None
    account_id: str | None
    message: str
    malformed: bool  # not an event at all (bad JSON, a broken row) rather than a contract violation


Arrival = Accepted | Rejected


def arrival_order(file: int, line: int) -> int:
    return file * _ORDER_BASE + line


def location(event: CountedEvent) -> tuple[int, int]:
    """The file (index) and line an accepted event came from."""
    file, line = divmod(int(event.sequence), _ORDER_BASE)
    return file, line


class _Wire(msgspec.Struct, forbid_unknown_fields=True):
    event_id: str
    account_id: str
    name: str
    occurred_at: str
    value: float = 1.0
    kind: str = "count"
    dimensions: dict[str, str] = {}
    properties: dict[str, Any] = {}


class _AccountOnly(msgspec.Struct):
    account_id: str


_decode_wire = msgspec.json.Decoder(_Wire).decode
_decode_account = msgspec.json.Decoder(_AccountOnly).decode


def format_of(path: Path) -> str:
    suffixes = [suffix.lower() for suffix in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    found = FORMATS.get(suffixes[-1]) if suffixes else None
    if found is None:
        known = ", ".join(sorted(FORMATS))
        raise InputError(
            f"{path}: unknown event format {''.join(path.suffixes) or '(no suffix)'!r}; use {known}"
        )
    if found == "parquet" and path.suffix.lower() == ".gz":
        raise InputError(f"{path}: Parquet is compressed inside; do not gzip it")
    return found


def check_files(files: Sequence[Path]) -> None:
    """Unknown formats and missing files fail before any work."""
    for path in files:
        format_of(path)
        if not path.is_file():
            raise InputError(f"{path}: no such file")


def account_of_line(line: bytes) -> str | None:
    """The account of a JSON line, cheaply (None when the line is not one event with an account)."""
    account = plain_field(line, b"account_id")
    if account is None:
        try:
            account = _decode_account(line).account_id
        except (msgspec.ValidationError, msgspec.DecodeError):
            return None
    # The contract makes NFC and NFD spellings of an id one account: they must share a partition.
    return account if account.isascii() else unicodedata.normalize("NFC", account)


def plain_field(line: bytes, key: bytes) -> str | None:
    """A string field read off the bytes of a compact JSON line; None when that is not certain.

    Splitting ten million lines by account must not parse them all. In the compact form every
    producer and `upswing simulate` write, `"key":"value"` appears once and is the field; anything
    less plain — the key a second time anywhere in the line (a nested object, a dimension of that
    name), an escape in the value, spaces around the colon — gives None, for the caller to decode.
    """
    quoted = b'"' + key + b'"'
    start = line.find(quoted + b':"')
    if start < 0 or line.count(quoted) != 1:
        return None
    start += len(quoted) + 2
    end = line.find(b'"', start)
    if end <= start or line.find(b"\\", start, end) >= 0:
        return None
    try:
        return line[start:end].decode()
    except UnicodeDecodeError:
        return None


def judge_line(file: int, line: int, raw: bytes) -> Arrival:
    """A JSONL line → what the API would make of it."""
    try:
        wire = _decode_wire(raw)
    except msgspec.ValidationError:  # valid JSON, not the common shape (a DecodeError too: first)
        return _judge_decoded(file, line, raw)
    except msgspec.DecodeError as error:
        return _malformed(file, line, raw, error)
    return _fast(file, line, wire) or _judge_decoded(file, line, raw)


def _judge_decoded(file: int, line: int, raw: bytes) -> Arrival:
    """Decoded by the API's own JSON rules (nesting, number literals) and judged by its contract."""
    try:
        document = decode_json(raw, subject="The line")
    except JsonInputError as error:
        return Rejected(file, line, None, None, str(error), malformed=True)
    return _judge_slowly(file, line, document)


def judge_object(file: int, line: int, raw: Any) -> Arrival:
    """An event object from CSV or Parquet (a dict of JSON-like values) → what the API would make of it."""
    if isinstance(raw, BrokenRow):
        return Rejected(file, line, None, None, raw.reason, malformed=True)
    try:
        wire = msgspec.convert(raw, _Wire)
    except msgspec.ValidationError:
        return _judge_slowly(file, line, raw)
    return _fast(file, line, wire) or _judge_slowly(file, line, raw)


def _malformed(file: int, line: int, raw: bytes, error: Exception) -> Rejected:
    if not raw.strip():
        return Rejected(file, line, None, None, "an empty line (one JSON event per line)", malformed=True)
    return Rejected(file, line, None, None, f"not valid JSON: {error}", malformed=True)


def _fast(file: int, line: int, wire: _Wire) -> Accepted | None:
    """The event if it is plainly valid in the common shape; None to let the contract decide."""
    if wire.properties or wire.kind not in ("count", "gauge"):
        return None
    account_id, event_id, name, dimensions = wire.account_id, wire.event_id, wire.name, wire.dimensions
    if not (account_id in _ACCOUNTS or _vet(_ACCOUNTS, account_id, _account_identifier)):
        return None
    if not _identifier(event_id):  # unique: not worth remembering
        return None
    if not (name in _NAMES or _vet(_NAMES, name, _NAME.fullmatch)):
        return None
    value = wire.value
    if not -MAX_ABS_VALUE <= value <= MAX_ABS_VALUE or len(dimensions) > MAX_DIMENSIONS:
        return None
    if value != 0 and -MIN_ABS_VALUE < value < MIN_ABS_VALUE:
        return None
    for key, dimension in dimensions.items():
        if not (key in _KEYS or _vet(_KEYS, key, _DIMENSION_KEY.fullmatch)):
            return None
        if not (dimension in _VALUES or _vet(_VALUES, dimension, _dimension_value)):
            return None
    stamp = _ledger_stamp(wire.occurred_at)
    if stamp is None:
        return None
    kind = EventKind.COUNT if wire.kind == "count" else EventKind.GAUGE
    return _accepted(file, line, account_id, event_id, name, kind, value, stamp, dimensions, "{}")


# Strings already found valid. Most repeat (accounts, names, users, days, times of day), so each
# is checked once; a cache stops growing at its bound, it never forgets (and never needs to).
_ACCOUNTS: set[str] = set()
_NAMES: set[str] = set()
_KEYS: set[str] = set()
_VALUES: set[str] = set()
_DAYS: set[str] = set()
_CLOCKS: set[str] = set()
_VETTED_BOUND = 250_000


def _vet(cache: set[str], text: str, check: Callable[[str], object]) -> bool:
    if not check(text):
        return False
    if len(cache) < _VETTED_BOUND:
        cache.add(text)
    return True


def _identifier(text: str) -> bool:
    return 0 < len(text) <= 128 and text.isprintable() and text == text.strip() and _nfc(text)


def _account_identifier(text: str) -> bool:
    return _identifier(text) and text not in (".", "..")


def _dimension_value(text: str) -> bool:
    return 0 < len(text) <= 256 and text.isprintable() and text == text.strip() and _nfc(text)


def _nfc(text: str) -> bool:
    """Already in the form the contract normalizes ids to (anything else: the contract decides)."""
    return text.isascii() or unicodedata.is_normalized("NFC", text)


def _is_day(text: str) -> bool:
    if not _DAY.fullmatch(text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _ledger_stamp(text: str) -> str | None:
    """A plainly valid RFC 3339 time in the ledger's form (YYYY-MM-DDTHH:MM:SS.ffffffZ), else None.

    The common UTC forms are rewritten as strings (a datetime per event is measurable at ten
    million events); an offset is converted through datetime.
    """
    if len(text) == 20 and text[19] == "Z" and text[10] == "T":  # YYYY-MM-DDTHH:MM:SSZ
        day, clock = text[:10], text[11:19]
        if (day in _DAYS or _vet(_DAYS, day, _is_day)) and (
            clock in _CLOCKS or _vet(_CLOCKS, clock, _CLOCK.fullmatch)
        ):
            return text[:19] + ".000000Z"
        return None
    match = _UTC_STAMP.fullmatch(text)
    if match is not None:
        if not (match.group(1) in _DAYS or _vet(_DAYS, match.group(1), _is_day)):
            return None
        return f"{text[:19]}.{match.group(2) or '':0<6}Z"
    if not _OFFSET_STAMP.fullmatch(text):
        return None
    try:
        return stamp_of(datetime.fromisoformat(text).astimezone(UTC))
    except (ValueError, OverflowError):
        return None


def stamp_of(moment: datetime) -> str:
    """As the ledger writes `occurred_at` (shared/events/ledger.py)."""
    return utc_stamp(moment, "microseconds")


def _judge_slowly(file: int, line: int, raw: Any) -> Arrival:
    checked = check_event(raw)
    if isinstance(checked, InvalidEvent):
        account = raw.get("account_id") if isinstance(raw, dict) else None
        return Rejected(
            file,
            line,
            checked.item_id,
            account if isinstance(account, str) else None,
            "; ".join(checked.errors),
            malformed=not isinstance(raw, dict),
        )
    properties = json.dumps(checked.properties, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return _accepted(
        file,
        line,
        checked.account_id,
        checked.event_id,
        checked.name,
        checked.kind,
        checked.value,
        stamp_of(checked.occurred_at),
        dict(checked.dimensions),
        properties,
    )


def _accepted(
    file: int,
    line: int,
    account_id: str,
    event_id: str,
    name: str,
    kind: EventKind,
    value: float,
    stamp: str,
    dimensions: dict[str, str],
    properties: str,
) -> Accepted:
    # The sequence is the arrival order, which is what a stream's sequence numbers are.
    sequence = f"{arrival_order(file, line):020d}"
    counted = CountedEvent(
        sequence, sequence, account_id, event_id, name, kind, _decimal(value), stamp, stamp[:10], dimensions
    )
    return Accepted(counted, properties)


# Values repeat (1, small counts): one Decimal each. Keys are floats only (msgspec and pydantic
# both give floats), so 1 and True cannot collide in the cache.
_decimal = lru_cache(maxsize=8192)(to_decimal)


# ── reading files ─────────────────────────────────────────────────────────────────────────────


def read_lines(
    path: Path, start: int = 0, end: int | None = None, first_line: int = 1
) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) of a JSONL file, streamed; of the lines from byte `start` (a line's
    first byte, numbered `first_line`) to `end` (the first byte not read; an uncompressed file)."""
    with _open_binary(path) as stream:
        if start:
            stream.seek(start)
        if end is None:
            yield from enumerate(stream, first_line)
            return
        position = start
        for number, raw in enumerate(stream, first_line):
            if position >= end:
                return
            position += len(raw)
            yield number, raw


def read_csv_objects(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, event object) of a CSV file, streamed; an unusable header is an InputError."""
    with _open_binary(path) as binary, io.TextIOWrapper(binary, encoding="utf-8", newline="") as text:
        reader = csv.reader(text)
        try:
            header = next(reader)
        except StopIteration:
            raise InputError(f"{path}: empty file (a CSV needs a header row)") from None
        columns = _csv_columns(path, header)
        for row in reader:
            yield reader.line_num, _csv_object(columns, row)


def _csv_columns(path: Path, header: list[str]) -> list[tuple[str, str | None]]:
    columns: list[tuple[str, str | None]] = []
    for column in header:
        name = column.strip()
        if name.startswith(DIMENSION_PREFIX) and len(name) > len(DIMENSION_PREFIX):
            columns.append(("dimensions", name[len(DIMENSION_PREFIX) :]))
        elif name in EVENT_FIELDS and name != "dimensions":
            columns.append((name, None))
        else:
            raise InputError(
                f"{path}:1: unknown column {column!r}; the columns are {', '.join(EVENT_FIELDS[:-2])}, "
                f"properties (JSON) and one {DIMENSION_PREFIX}<key> per dimension"
            )
    missing = {"event_id", "account_id", "name", "occurred_at"} - {field for field, _ in columns}
    if missing:
        raise InputError(f"{path}:1: the header lacks {', '.join(sorted(missing))}")
    return columns


def _csv_object(columns: list[tuple[str, str | None]], row: list[str]) -> Any:
    if len(row) != len(columns):
        return BrokenRow(f"{len(row)} cells where the header has {len(columns)}")
    event: dict[str, Any] = {}
    dimensions: dict[str, str] = {}
    for (field, key), cell in zip(columns, row, strict=True):
        if cell == "":
            continue
        if key is not None:
            dimensions[key] = cell
        elif field == "value":
            event[field] = _csv_number(cell)
        elif field == "properties":
            try:
                event[field] = decode_json(cell, subject="properties")
            except JsonInputError as error:
                return BrokenRow(str(error))
        else:
            event[field] = cell
    if dimensions:
        event["dimensions"] = dimensions
    return event


def _csv_number(cell: str) -> Any:
    try:
        number = float(cell)
    except ValueError:
        return cell  # the contract's message names it: "value must be a JSON number, got a string"
    return int(cell) if cell.lstrip("+-").isdigit() else number


@dataclass(frozen=True)
class BrokenRow:
    """A CSV row that cannot even be read as an event (judged malformed)."""

    reason: str


def read_parquet_objects(path: Path, batch_rows: int = 65_536) -> Iterator[tuple[int, Any]]:
    """(row number, event object) of a Parquet file, streamed a record batch at a time."""
    try:
        import pyarrow.parquet as parquet
    except ImportError:
        raise InputError(f"{path}: reading Parquet needs pyarrow: pip install 'upswing[parquet]'") from None
    try:
        source = parquet.ParquetFile(path)
    except Exception as error:  # pyarrow raises several types for a file that is not Parquet
        raise InputError(f"{path}: not a readable Parquet file: {error}") from None
    unknown = [name for name in source.schema_arrow.names if name not in EVENT_FIELDS]
    if unknown:
        raise InputError(
            f"{path}: unknown column(s) {', '.join(unknown)}; the columns are {', '.join(EVENT_FIELDS)}"
        )
    row = 0
    for batch in source.iter_batches(batch_size=batch_rows):
        columns = {name: batch.column(name).to_pylist() for name in batch.schema.names}
        for index in range(batch.num_rows):
            row += 1
            event: dict[str, Any] = {}
            for name, values in columns.items():
                value = values[index]
                if value is None:
                    continue
                if name == "dimensions":
                    value = dict(value)
                elif name == "occurred_at" and isinstance(value, datetime):
                    value = value.isoformat()
                elif name == "properties" and isinstance(value, str):
                    value = json.loads(value)
                event[name] = value
            yield row, event


def _open_binary(path: Path) -> IO[bytes]:
    try:
        if path.suffix.lower() == ".gz":
            return gzip.open(path, "rb")  # type: ignore[return-value]
        return path.open("rb")
    except OSError as error:
        raise InputError(f"{path}: {error.strerror or error}") from None
