"""Writing a simulation to a folder: events (JSONL, Parquet), profiles, outcomes, the truth, a manifest.

Events are rendered straight from the generator's tuples, one day at a time, so writing ten
million events holds one day of them. JSONL lines are built by hand, not by `json.dumps`: every
string in them comes from fixed tables of safe characters, and rendering is most of the cost of
a run. Every file is written under a temporary name and renamed at the end, so an interrupted
run never leaves a plausible but partial history behind.
"""

from __future__ import annotations

import csv
import gc
import importlib.util
import json
import operator
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import accumulate, chain
from pathlib import Path
from typing import IO, Any

from upswing.simulate.activity import METRICS, NOISE_METRIC, Day, Metric, history
from upswing.simulate.population import (
    BEHAVIOUR_SHARES,
    NOISY_SHARE,
    SimulatedAccount,
    SimulationConfig,
    SimulationError,
    population,
)

FORMATS = ("jsonl", "parquet")
EVENTS_JSONL = "events.jsonl"
EVENTS_PARQUET = "events.parquet"
ACCOUNTS_FILE = "accounts.jsonl"
OUTCOMES_FILE = "outcomes.csv"
PLANTED_FILE = "planted.jsonl"
MANIFEST_FILE = "manifest.json"
OUTCOME_COLUMNS = ("account_id", "expansion_date", "kind", "amount", "currency")
PARQUET_ROW_GROUP = 250_000


@dataclass
class Summary:
    config: SimulationConfig
    out: Path
    files: list[str]
    events: int
    events_by_metric: dict[str, int]
    accounts_by_behaviour: dict[str, int]
    expansions_by_kind: dict[str, int]
    noisy_accounts: int
    seconds: float = field(default=0.0)

    def text(self) -> str:
        behaviours = ", ".join(f"{count:,} {name}" for name, count in self.accounts_by_behaviour.items())
        kinds = ", ".join(f"{count:,} {kind}" for kind, count in self.expansions_by_kind.items()) or "none"
        rate = self.events / self.seconds if self.seconds else 0.0
        return (
            f"Simulated {self.config.accounts:,} accounts over {self.config.days} days from "
            f"{self.config.start.isoformat()} (seed {self.config.seed}): {self.events:,} events "
            f"({self.events / (self.config.accounts * self.config.days):.2f} per account-day); "
            f"accounts: {behaviours}; expansions: {kinds}; {self.noisy_accounts:,} accounts with "
            f"{NOISE_METRIC} noise. Wrote {', '.join(self.files)} to {self.out}/ in "
            f"{self.seconds:.1f} s ({rate:,.0f} events/s)."
        )


def simulate(
    config: SimulationConfig,
    out: Path,
    formats: tuple[str, ...] = FORMATS,
    *,
    arrow: bool | None = None,
    progress: Callable[[int], None] | None = None,
) -> Summary:
    """Generate the whole simulation into `out` (created if needed); returns what was written.

    Events are rendered by Arrow's compute functions when pyarrow is installed, by Python
    otherwise; the bytes are the same (the tests compare them), Arrow's are several times faster.
    `arrow=False` forces Python's JSONL. Parquet needs pyarrow. `progress` is called with the
    number of days written so far.
    """
    started = time.perf_counter()
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise SimulationError(f"--format takes {' and/or '.join(FORMATS)}, comma separated (got {formats})")
    if out.exists() and not out.is_dir():
        raise SimulationError(f"--out {out} is a file; name a folder (it is created if missing)")
    has_arrow = importlib.util.find_spec("pyarrow") is not None
    if "parquet" in formats and not has_arrow:
        raise SimulationError(
            "Parquet output needs pyarrow: install the `parquet` extra (pip install 'upswing[parquet]'; "
            "`make install` includes it), or ask for --format jsonl"
        )
    arrow = has_arrow if arrow is None else arrow and has_arrow
    out.mkdir(parents=True, exist_ok=True)

    accounts = list(population(config))
    files = [ACCOUNTS_FILE, OUTCOMES_FILE, PLANTED_FILE]
    with _published(out / ACCOUNTS_FILE) as stream:
        _write_accounts(accounts, stream)
    with _published(out / OUTCOMES_FILE) as stream:
        _write_outcomes(accounts, config, stream)
    with _published(out / PLANTED_FILE) as stream:
        _write_planted(accounts, config, stream)

    by_metric: Counter[Metric] = Counter()
    with ExitStack() as stack:
        account_ids = [account.account_id for account in accounts]
        jsonl = parquet = None
        if "jsonl" in formats:
            jsonl = stack.enter_context(_published_binary(out / EVENTS_JSONL))
            files.append(EVENTS_JSONL)
        if "parquet" in formats:
            parquet = stack.enter_context(_published_path(out / EVENTS_PARQUET))
            files.append(EVENTS_PARQUET)
        sinks: list[_EventSink] = []
        if jsonl and not arrow:
            sinks.append(JsonlEvents(jsonl, config.seed, account_ids))
            jsonl = None
        if jsonl or parquet:
            sinks.append(stack.enter_context(ArrowEvents(config.seed, account_ids, jsonl, parquet)))
        with _collector_paused():
            for day in history(config, accounts):
                by_metric.update(map(_metric_of, day.events))
                for sink in sinks:
                    sink.write(day)
                if progress:
                    progress(day.offset + 1)

    summary = Summary(
        config=config,
        out=out,
        files=[*files, MANIFEST_FILE],
        events=sum(by_metric.values()),
        events_by_metric={metric.name: by_metric[metric] for metric in METRICS},
        accounts_by_behaviour={
            behaviour.value: sum(a.behaviour is behaviour for a in accounts) for behaviour in BEHAVIOUR_SHARES
        },
        expansions_by_kind=dict(
            sorted(Counter(a.expansion.kind.value for a in accounts if a.expansion).items())
        ),
        noisy_accounts=sum(account.noisy for account in accounts),
    )
    with _published(out / MANIFEST_FILE) as stream:
        json.dump(manifest(summary, formats), stream, indent=2)
        stream.write("\n")
    summary.seconds = time.perf_counter() - started
    return summary


def manifest(summary: Summary, formats: tuple[str, ...]) -> dict[str, Any]:
    """What a reader needs to trust and reproduce the files: settings, counts, what was planted."""
    config = summary.config
    return {
        "generator": "upswing simulate",
        "seed": config.seed,
        "accounts": config.accounts,
        "days": config.days,
        "start": config.start.isoformat(),
        "end": config.day(config.days - 1).isoformat(),
        "formats": list(formats),
        "files": {
            "events": [name for name in (EVENTS_JSONL, EVENTS_PARQUET) if name in summary.files],
            "accounts": ACCOUNTS_FILE,
            "outcomes": OUTCOMES_FILE,
            "planted": PLANTED_FILE,
        },
        "event_id": "s<seed>-<account number>-<days since start>-<sequence within the account's day>",
        "counts": {
            "events": summary.events,
            "events_by_metric": summary.events_by_metric,
            "accounts_by_behaviour": summary.accounts_by_behaviour,
            "expansions_by_kind": summary.expansions_by_kind,
            "noisy_accounts": summary.noisy_accounts,
        },
        "planted": {
            "behaviour_shares": {behaviour.value: share for behaviour, share in BEHAVIOUR_SHARES.items()},
            "expand": "usage grows for 6 to 17 weeks, then the account expands (outcomes file); "
            "seats, breadth or consumption drive it (planted.jsonl: drivers)",
            "plateau": "no expansion: steady usage, about 15 % of it near the seat limit; a quarter of "
            "plateau accounts grow like expanding accounts for a while, then stop (false starts)",
            "churn": "usage decays over 30 to 90 days, then stops; half raise integration tickets as they go",
            "noise": {
                "metric": NOISE_METRIC,
                "share_of_accounts": NOISY_SHARE,
                "what": "bursts of dashboard building, independent of behaviour: a vanity signal",
            },
        },
    }


class _EventSink:
    def write(self, day: Day) -> None:
        raise NotImplementedError


class JsonlEvents(_EventSink):
    """One event per line, in exactly the shape `POST /v1/events` accepts: the reference renderer."""

    def __init__(self, stream: IO[bytes], seed: int, account_ids: list[str]) -> None:
        self._stream = stream
        self._id_prefix = f'{{"event_id":"s{seed}-'
        self._accounts = [f'","account_id":"{account_id}","name":"' for account_id in account_ids]
        self._clock = [f'{time}Z","value":' for time in _clock_table()]
        # The rest of a line after the value: a `str.format` template, a `{}` per dimension value.
        self._tails = {
            metric: ',"kind":"' + metric.kind + '","dimensions":{{' + _dimensions_template(metric) + "}}}}\n"
            for metric in METRICS
        }

    def write(self, day: Day) -> None:
        prefix, accounts, clock, tails, offset = (
            self._id_prefix,
            self._accounts,
            self._clock,
            self._tails,
            day.offset,
        )
        date = day.moment.date().isoformat()
        heads = {metric: f'{metric.name}","occurred_at":"{date}T' for metric in METRICS}
        lines = "".join(
            f"{prefix}{account}-{offset}-{sequence}{accounts[account]}{heads[metric]}{clock[second]}"
            f"{value}{tails[metric].format(*values)}"
            for second, account, sequence, metric, value, values in day.events
        )
        self._stream.write(lines.encode())


class ArrowEvents(_EventSink):
    """JSONL and/or Parquet, assembled column by column by Arrow's compute functions (in C++).

    A day's events are transposed into columns in C (`zip(*events)`); only the dimensions are
    walked in Python. Parquet has the same rows as the JSONL, typed: occurred_at a UTC
    timestamp, value a double, dimensions a string map.
    """

    def __init__(
        self, seed: int, account_ids: list[str], jsonl: IO[bytes] | None, parquet: Path | None
    ) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        self._pa, self._pc = pa, pc
        self.schema = pa.schema(
            [
                ("event_id", pa.string()),
                ("account_id", pa.string()),
                ("name", pa.string()),
                ("occurred_at", pa.timestamp("ms", tz="UTC")),
                ("value", pa.float64()),
                ("kind", pa.string()),
                ("dimensions", pa.map_(pa.string(), pa.string())),
            ]
        )
        self._jsonl = jsonl
        self._parquet = pq.ParquetWriter(parquet, self.schema, compression="zstd") if parquet else None
        self._id_prefix = pa.scalar(f"s{seed}")
        self._account_ids = pa.array(account_ids, pa.string())
        self._ordinal = {metric: ordinal for ordinal, metric in enumerate(METRICS)}
        self._names = pa.array([metric.name for metric in METRICS], pa.string())
        self._kinds = pa.array([metric.kind for metric in METRICS], pa.string())
        self._templates = {metric: _dimensions_template(metric) for metric in METRICS}
        self._line_accounts = pa.array([f'","account_id":"{id_}' for id_ in account_ids], pa.string())
        self._line_clock = pa.array([f'{time}Z","value":' for time in _clock_table()], pa.string())
        self._line_kinds = pa.array(
            [f',"kind":"{metric.kind}","dimensions":{{' for metric in METRICS], pa.string()
        )
        self._pending: list[Any] = []
        self._pending_rows = 0

    def __enter__(self) -> ArrowEvents:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._parquet is not None:
            self._flush()
            self._parquet.close()

    def write(self, day: Day) -> None:
        if not day.events:
            return
        pa, pc = self._pa, self._pc
        seconds, accounts, sequences, metrics, values, dimensions = zip(*day.events, strict=True)
        ordinal = self._ordinal
        metric_ordinals = pa.array([ordinal[metric] for metric in metrics], pa.int8())
        account_numbers = pa.array(accounts, pa.int32())
        event_ids = pc.binary_join_element_wise(
            self._id_prefix,
            pc.cast(account_numbers, pa.string()),
            pa.scalar(str(day.offset)),
            pc.cast(pa.array(sequences, pa.int32()), pa.string()),
            "-",
        )
        value_numbers = pa.array(values, pa.int64())
        second_numbers = pa.array(seconds, pa.int32())
        if self._jsonl is not None:
            self._write_lines(day, event_ids, account_numbers, metric_ordinals, second_numbers, value_numbers)
        if self._parquet is not None:
            midnight = int(day.moment.timestamp()) * 1000
            milliseconds = pc.add(pc.multiply(second_numbers.cast(pa.int64()), 1000), midnight)
            columns = [
                event_ids,
                self._account_ids.take(account_numbers),
                self._names.take(metric_ordinals),
                milliseconds.cast(pa.timestamp("ms", tz="UTC")),
                value_numbers.cast(pa.float64()),
                self._kinds.take(metric_ordinals),
                self._dimension_maps(metrics, dimensions),
            ]
            self._pending.append(pa.Table.from_arrays(columns, schema=self.schema))
            self._pending_rows += len(day.events)
            if self._pending_rows >= PARQUET_ROW_GROUP:
                self._flush()

    def _write_lines(self, day: Day, *columns: Any) -> None:
        """The JSONL renderer's bytes, joined in C++ and written without a copy through Python.

        Constant parts of a line are looked up per account, metric and second (`take`), so that
        the join has few arguments: its cost grows with them.
        """
        assert self._jsonl is not None
        pa, pc = self._pa, self._pc
        event_ids, account_numbers, metric_ordinals, seconds, values = columns
        date = day.moment.date().isoformat()
        heads = pa.array(
            [f'","name":"{metric.name}","occurred_at":"{date}T' for metric in METRICS], pa.string()
        )
        templates = self._templates
        dimensions = pa.array(
            [templates[event[3]].format(*event[5]) if event[5] else "" for event in day.events], pa.string()
        )
        lines = pc.binary_join_element_wise(
            '{"event_id":"',
            event_ids,
            self._line_accounts.take(account_numbers),
            heads.take(metric_ordinals),
            self._line_clock.take(seconds),
            pc.cast(values, pa.string()),
            self._line_kinds.take(metric_ordinals),
            dimensions,
            "}}\n",
            "",
        )
        whole = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(lines)], pa.int32()), lines), "")
        self._jsonl.write(whole[0].as_buffer())

    def _dimension_maps(self, metrics: tuple[Metric, ...], dimensions: tuple[tuple[str, ...], ...]) -> Any:
        pa = self._pa
        offsets = list(accumulate(map(len, dimensions), initial=0))
        keys = list(chain.from_iterable(map(_dimension_names, metrics)))
        items = list(chain.from_iterable(dimensions))
        return pa.MapArray.from_arrays(
            pa.array(offsets, pa.int32()), pa.array(keys, pa.string()), pa.array(items, pa.string())
        )

    def _flush(self) -> None:
        if self._pending and self._parquet is not None:
            table = self._pa.concat_tables(self._pending)
            self._parquet.write_table(table, row_group_size=table.num_rows)
        self._pending, self._pending_rows = [], 0


def _write_accounts(accounts: list[SimulatedAccount], stream: IO[str]) -> None:
    for account in accounts:
        profile = account.profile.model_dump(mode="json", exclude_none=True)
        stream.write(
            json.dumps({"account_id": account.account_id, "profile": profile}, separators=(",", ":"))
        )
        stream.write("\n")


def _write_outcomes(accounts: list[SimulatedAccount], config: SimulationConfig, stream: IO[str]) -> None:
    """The expansions, in date order: what actually happened, to score triggers against."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(OUTCOME_COLUMNS)
    expanded = [(account, account.expansion) for account in accounts if account.expansion]
    for account, expansion in sorted(expanded, key=lambda pair: (pair[1].day, pair[0].number)):
        writer.writerow(
            (
                account.account_id,
                config.day(expansion.day).isoformat(),
                expansion.kind.value,
                str(expansion.amount),
                account.profile.currency,
            )
        )


def _write_planted(accounts: list[SimulatedAccount], config: SimulationConfig, stream: IO[str]) -> None:
    """The ground truth behind each account's usage, for checking a backtest (a real history has none)."""

    def date_of(index: int | None) -> str | None:
        return config.day(index).isoformat() if index is not None else None

    for account in accounts:
        timeline = account.timeline
        record = {
            "account_id": account.account_id,
            "behaviour": account.behaviour.value,
            "drivers": [driver.value for driver in account.drivers],
            "growth_start": date_of(timeline.growth_start),
            "paywall_from": date_of(timeline.paywall_from),
            "growth_end": date_of(timeline.growth_end),
            "expansion_date": date_of(account.expansion.day if account.expansion else None),
            "decline_start": date_of(timeline.decline_start),
            "last_active": date_of(timeline.stop_day - 1 if timeline.stop_day is not None else None),
            "integration_friction_before_churn": account.friction_before_churn,
            "noisy": account.noisy,
        }
        stream.write(json.dumps(record, separators=(",", ":")) + "\n")


_metric_of = operator.itemgetter(3)
_dimension_names = operator.attrgetter("dimensions")


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while generating: events are acyclic tuples, freed by reference
    counting, and the collector would otherwise rescan millions of them (a third of the time)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextmanager
def _published(path: Path) -> Iterator[IO[str]]:
    with _published_path(path) as partial, partial.open("w", encoding="utf-8", buffering=1 << 20) as stream:
        yield stream


@contextmanager
def _published_binary(path: Path) -> Iterator[IO[bytes]]:
    with _published_path(path) as partial, partial.open("wb", buffering=1 << 20) as stream:
        yield stream


@contextmanager
def _published_path(path: Path) -> Iterator[Path]:
    """A temporary name beside `path`, renamed to it only when the block completes."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        yield partial
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)


def _clock_table() -> list[str]:
    """ "HH:MM:SS" for every second of a day: rendering a time is then a list lookup."""
    start = timedelta()
    return [str(start + timedelta(seconds=second)).zfill(8) for second in range(86_400)]


def _dimensions_template(metric: Metric) -> str:
    return ",".join(f'"{key}":"{{}}"' for key in metric.dimensions)
