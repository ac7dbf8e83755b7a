"""A partition's accepted events as columns, laid out on one account x day grid.

The scalar replay (upswing/backtest/replay.py) folds an account's events into day buckets in
arrival order and evaluates once per batch: for an account whose events arrive in day order,
that is once per active day, at the time of the day's last event, over every day up to it. The
columnar engine computes exactly that, for all of a partition's accounts at once, when the
account's input is one the matrices model exactly (`why_scalar` says when not):

- no event id twice (the ledger's duplicates and conflicts are the scalar replay's to judge);
- no late event (a day before one already seen: the scalar replay folds it into an earlier day
  between two evaluations, which a day grid cannot show);
- whole-number values small enough that every sum is exact in 64-bit integers (then a float of a
  sum is the float of the Decimal sum the buckets keep, to the bit);
- one kind per metric name, and days well inside the buckets' bounds (distinct values, metrics
  per day), so no bucket of the account is ever capped.

Columns are numpy arrays; a grid column is a day (`base` is its first ordinal), a row an account.
The grid starts `pad` days before the partition's first event so that every window of every
evaluation lies on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Inexact, localcontext
from operator import gt

import numpy as np
import numpy.typing as npt

from shared.accounts.models import AccountProfile
from shared.counters.bucket import MAX_DISTINCT_PER_DAY, MAX_METRICS_PER_BUCKET
from shared.events.models import EventKind
from upswing.backtest.events import Accepted

# Whole-number values up to this size: 2**53 / 2**33 leaves room for 8 billion of them summed.
_LARGEST_VALUE = 1 << 33
_LARGEST_TOTAL = 1 << 53

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Needs:
    """What the rulesets read: metric names, (metric, dimension) pairs of distinct values, and the
    `where` slices (metric, dimension, values), each slice a metric of its own."""

    metrics: frozenset[str]
    pairs: tuple[tuple[str, str], ...]
    slices: tuple[tuple[str, str, frozenset[str]], ...]


@dataclass
class MetricDays:
    """One metric (or slice) on the grid: the days' numbers as the buckets keep them."""

    total: Ints  # [rows, days] the sum of values
    events: Ints  # [rows, days] the number of events
    readings: Ints  # [rows, days] 1 on a day with a gauge reading
    last: Floats  # [rows, days] the day's latest reading (by event time, ties: later arrival); NaN
    last_exact: Ints  # [rows, days] the same as an integer (0 without one): exact sums for baselines
    low: Floats  # [rows, days] the day's lowest reading; NaN without
    high: Floats  # [rows, days] the day's highest reading; NaN without


@dataclass
class Occurrences:
    """One (metric, dimension): each (row, value, day) it was seen, once, sorted."""

    rows: Ints
    values: Ints
    cols: Ints


@dataclass
class Frame:
    accounts: list[str]
    profiles: list[AccountProfile | None]
    base: int  # the ordinal of grid column 0
    days: int  # grid columns
    metrics: dict[str | tuple[str, str, frozenset[str]], MetricDays]
    distinct: dict[tuple[str, str], Occurrences]
    # Evaluations, row by row in time order: grid cell and time (the day's latest occurred_at).
    eval_rows: Ints
    eval_cols: Ints
    eval_stamps: list[str]
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)  # first and last day, ordinals
    events: int = 0


class _Columns:
    """Per-event columns while reading; made arrays once."""

    def __init__(self) -> None:
        self.rows: list[int] = []
        self.days: list[int] = []
        self.names: list[int] = []
        self.values: list[int] = []
        self.gauge: list[bool] = []
        self.stamps: list[str] = []
        self.pair_rows: list[int] = []
        self.pair_days: list[int] = []
        self.pair_ids: list[int] = []
        self.pair_values: list[int] = []


def why_scalar(arrivals: Sequence[Accepted], slices: int) -> str | None:
    """Why the account's input needs the scalar replay (None: the columnar engine models it).
    Whole-list checks, each one pass in C where it can be: this runs for every event."""
    events = [arrival.event for arrival in arrivals]
    if not events:
        return None
    if len({event.event_id for event in events}) != len(events):
        return "duplicate event ids"
    days = [event.day for event in events]
    if any(map(gt, days, days[1:])):
        return "late events"
    values = [event.value for event in events]
    whole = list(map(int, values))
    try:
        with localcontext() as exact:
            exact.traps[Inexact] = True
            # int() truncates towards zero: |int(v)| <= |v|, equal only for a whole number.
            fractional = sum(map(abs, values)) != sum(map(abs, whole))
    except Inexact:
        fractional = True
    if fractional:
        return "fractional values"
    if max(map(abs, whole)) > _LARGEST_VALUE or sum(map(abs, whole)) >= _LARGEST_TOTAL:
        return "values too large for exact sums"
    kinds = {(event.name, event.kind) for event in events}
    if len({name for name, _ in kinds}) != len(kinds):
        return "a metric with two kinds"
    if len(kinds) + slices >= MAX_METRICS_PER_BUCKET:
        return "a day near the metrics-per-bucket bound"
    if sum(len(event.dimensions) for event in events) >= MAX_DISTINCT_PER_DAY:
        # Some day may hold that many distinct values: count them day by day.
        by_day: dict[str, set[tuple[str, str, str]]] = {}
        for event in events:
            if event.dimensions:
                by_day.setdefault(event.day, set()).update(
                    (event.name, key, text) for key, text in event.dimensions.items()
                )
        if any(len(values) >= MAX_DISTINCT_PER_DAY for values in by_day.values()):
            return "a day at the distinct-value bound"
    return None


def build_frame(
    accounts: Sequence[tuple[str, Sequence[Accepted], AccountProfile | None]], needs: Needs, pad: int
) -> Frame:
    """The accounts' events (each account's input passed `why_scalar`) on one grid."""
    columns = _Columns()
    names: dict[str | tuple[str, str, frozenset[str]], int] = {}
    for metric in sorted(needs.metrics):
        names[metric] = len(names)
    for sliced in needs.slices:
        names[sliced] = len(names)
    slices_of: dict[str, list[tuple[int, str, frozenset[str]]]] = {}
    for sliced in needs.slices:
        slices_of.setdefault(sliced[0], []).append((names[sliced], sliced[1], sliced[2]))
    pairs_of: dict[str, list[tuple[int, str]]] = {}
    for index, (metric, dimension) in enumerate(needs.pairs):
        pairs_of.setdefault(metric, []).append((index, dimension))
    value_ids: dict[str, int] = {}
    ordinals: dict[str, int] = {}
    eval_rows: list[int] = []
    eval_days: list[int] = []
    eval_stamps: list[str] = []
    spans: dict[str, tuple[int, int]] = {}
    events = 0
    # Hoisted for the loop over every event.
    rows_, days_, names_, values_, gauge_, stamps_ = (
        columns.rows,
        columns.days,
        columns.names,
        columns.values,
        columns.gauge,
        columns.stamps,
    )
    gauge_kind = EventKind.GAUGE
    for row, (account_id, arrivals, _) in enumerate(accounts):
        day_text, day, clock = "", 0, ""
        for arrival in arrivals:
            event = arrival.event
            events += 1
            if event.day != day_text:
                if clock:
                    eval_rows.append(row)
                    eval_days.append(day)
                    eval_stamps.append(clock)
                day_text = event.day
                known = ordinals.get(day_text)
                if known is None:
                    known = ordinals[day_text] = date.fromisoformat(day_text).toordinal()
                day = known
                clock = event.occurred_at
            elif event.occurred_at > clock:
                clock = event.occurred_at
            name = event.name
            metric_index = names.get(name)
            if metric_index is None and name not in slices_of and name not in pairs_of:
                continue
            gauge = event.kind is gauge_kind
            if metric_index is not None:
                rows_.append(row)
                days_.append(day)
                names_.append(metric_index)
                values_.append(int(event.value))
                gauge_.append(gauge)
                stamps_.append(event.occurred_at)
            dimensions = event.dimensions
            if not dimensions:
                continue
            for slice_index, dimension, wanted in slices_of.get(name, ()):
                if dimensions.get(dimension) in wanted:
                    rows_.append(row)
                    days_.append(day)
                    names_.append(slice_index)
                    values_.append(int(event.value))
                    gauge_.append(gauge)
                    stamps_.append(event.occurred_at)
            for pair, dimension in pairs_of.get(name, ()):
                text = dimensions.get(dimension)
                if text is not None:
                    columns.pair_rows.append(row)
                    columns.pair_days.append(day)
                    columns.pair_ids.append(pair)
                    columns.pair_values.append(value_ids.setdefault(text, len(value_ids)))
        if clock:
            eval_rows.append(row)
            eval_days.append(day)
            eval_stamps.append(clock)
            first = ordinals[arrivals[0].event.day]
            spans[account_id] = (first, day)
    first_day = min(eval_days) if eval_days else date.today().toordinal()
    last_day = max(eval_days) if eval_days else first_day
    base = first_day - pad
    width = last_day - base + 1
    height = len(accounts)
    frame = Frame(
        accounts=[account for account, _, _ in accounts],
        profiles=[profile for _, _, profile in accounts],
        base=base,
        days=width,
        metrics={},
        distinct={},
        eval_rows=np.asarray(eval_rows, dtype=np.int64),
        eval_cols=np.asarray(eval_days, dtype=np.int64) - base,
        eval_stamps=eval_stamps,
        spans=spans,
        events=events,
    )
    _fold_metrics(frame, columns, names, height, width)
    _fold_distinct(frame, columns, needs, base)
    return frame


def _fold_metrics(
    frame: Frame,
    columns: _Columns,
    names: dict[str | tuple[str, str, frozenset[str]], int],
    height: int,
    width: int,
) -> None:
    rows = np.asarray(columns.rows, dtype=np.int64)
    cols = np.asarray(columns.days, dtype=np.int64) - frame.base
    metric_ids = np.asarray(columns.names, dtype=np.int64)
    values = np.asarray(columns.values, dtype=np.int64)
    gauge = np.asarray(columns.gauge, dtype=bool)
    cells = height * width
    for key, index in names.items():
        mine = metric_ids == index
        cell = rows[mine] * width + cols[mine]
        chosen = values[mine]
        total = np.zeros(cells, dtype=np.int64)
        np.add.at(total, cell, chosen)
        events = np.bincount(cell, minlength=cells).astype(np.int64)
        readings = np.zeros(cells, dtype=np.int64)
        last = np.full(cells, np.nan)
        last_exact = np.zeros(cells, dtype=np.int64)
        low = np.full(cells, np.nan)
        high = np.full(cells, np.nan)
        is_gauge = gauge[mine]
        if is_gauge.any():
            where = np.flatnonzero(mine)[is_gauge]
            gauge_cells = cell[is_gauge]
            gauge_values = chosen[is_gauge]
            stamps = np.asarray([columns.stamps[at] for at in where])
            # The latest by event time, ties going to the later arrival (MetricDay.add): sorted by
            # cell, then time, then arrival; the last of each cell.
            order = np.lexsort((where, stamps, gauge_cells))
            sorted_cells = gauge_cells[order]
            ends = np.flatnonzero(np.r_[sorted_cells[1:] != sorted_cells[:-1], True])
            last_exact[sorted_cells[ends]] = gauge_values[order][ends]
            last[sorted_cells[ends]] = gauge_values[order][ends].astype(np.float64)
            readings[sorted_cells[ends]] = 1
            lowest = np.full(cells, np.iinfo(np.int64).max, dtype=np.int64)
            highest = np.full(cells, np.iinfo(np.int64).min, dtype=np.int64)
            np.minimum.at(lowest, gauge_cells, gauge_values)
            np.maximum.at(highest, gauge_cells, gauge_values)
            seen = readings > 0
            low[seen] = lowest[seen].astype(np.float64)
            high[seen] = highest[seen].astype(np.float64)
        frame.metrics[key] = MetricDays(
            total=total.reshape(height, width),
            events=events.reshape(height, width),
            readings=readings.reshape(height, width),
            last=last.reshape(height, width),
            last_exact=last_exact.reshape(height, width),
            low=low.reshape(height, width),
            high=high.reshape(height, width),
        )


def _fold_distinct(frame: Frame, columns: _Columns, needs: Needs, base: int) -> None:
    rows = np.asarray(columns.pair_rows, dtype=np.int64)
    cols = np.asarray(columns.pair_days, dtype=np.int64) - base
    pair_ids = np.asarray(columns.pair_ids, dtype=np.int64)
    values = np.asarray(columns.pair_values, dtype=np.int64)
    for index, pair in enumerate(needs.pairs):
        mine = pair_ids == index
        if not mine.any():
            empty = np.zeros(0, dtype=np.int64)
            frame.distinct[pair] = Occurrences(rows=empty, values=empty, cols=empty)
            continue
        seen = np.unique(np.stack([rows[mine], values[mine], cols[mine]]), axis=1)
        frame.distinct[pair] = Occurrences(rows=seen[0], values=seen[1], cols=seen[2])
