"""One account's counters as the engine reads them: per metric, day by day, with prefix sums.

Days are proleptic ordinals (`date.toordinal()`): integer arithmetic is what makes evaluating
thousands of accounts a second possible. A window query is two binary searches and a
subtraction, however long the window. Built from `DayBucket`s — in one go from the buckets
DynamoDB returned (online), or kept up to date bucket by bucket as events are folded in
memory (tests and the backtest); either way the numbers are the buckets' own, so both sides
evaluate alike (tests/integration/test_aggregates_parity.py). The running totals are derived
lazily, one family at a time, when the engine first reads them after a change: recording a day
costs nothing more, and a day appended at the end extends each family read by one entry.

Sums stay `Decimal` until the engine turns them into floats: a prefix-sum difference is then
exact, and a window total equals the plain sum of its days to the last digit.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable
from datetime import date
from decimal import Decimal
from functools import reduce
from operator import or_
from typing import Any

from shared.counters.bucket import DayBucket, MetricDay
from shared.counters.family import family_key

_ZERO = Decimal(0)
_NO_DISTINCT: frozenset[str] = frozenset()
_INF = float("inf")


class MetricSeries:
    """One metric's days with data, in day order, and running totals over them.

    The arrays are public for the engine's generated code (shared/rules/engine.py), which reads
    them directly: `days`; running totals one longer than `days` (`cum_x[i]` sums the entries
    before i), so the entries from lo to hi (exclusive) total `cum_x[hi] - cum_x[lo]`; and per
    entry `lasts`, `lows` and `highs` (readings as floats, None on a day without one) and
    `latest_reading` (the index of the latest entry up to it with a reading, or -1). Read-only for
    everyone but this class.

    Each family of arrays is brought up to date when it is asked for, and only then: `total_sums()`
    (cum_total), `positive_sums()` (cum_positive), `event_sums()` (cum_events), `active_sums()`
    (cum_active), `reading_arrays()` (cum_last, cum_readings and the per-entry readings). A ruleset
    reads one or two families of a metric, and the backtest records a day then reads it at once:
    a day costs an append to each family the rules read, and nothing for the others.
    """

    __slots__ = (
        "_entries",
        "_fresh_active",
        "_fresh_events",
        "_fresh_highest",
        "_fresh_lowest",
        "_fresh_positive",
        "_fresh_readings",
        "_fresh_total",
        "_highest",
        "_lowest",
        "cum_active",
        "cum_events",
        "cum_last",
        "cum_positive",
        "cum_readings",
        "cum_total",
        "days",
        "highs",
        "lasts",
        "latest_reading",
        "lows",
    )

    def __init__(self) -> None:
        self.days: list[int] = []
        self._entries: list[MetricDay] = []  # the buckets' own MetricDay objects
        # Per family, entries [0, _fresh_x) are reflected in its arrays.
        self._fresh_total = self._fresh_positive = self._fresh_events = self._fresh_active = 0
        self._fresh_readings = self._fresh_lowest = self._fresh_highest = 0
        self.cum_total: list[Decimal] = [_ZERO]
        self.cum_positive: list[Decimal] = [_ZERO]  # days with a negative total count as 0
        self.cum_events: list[int] = [0]
        self.cum_active: list[int] = [0]
        self.cum_last: list[Decimal] = [_ZERO]
        self.cum_readings: list[int] = [0]
        self.lasts: list[float | None] = []
        self.lows: list[float | None] = []
        self.highs: list[float | None] = []
        self.latest_reading: list[int] = []
        # Sparse tables for the lowest and highest reading of any window.
        self._lowest: list[list[float]] = []
        self._highest: list[list[float]] = []

    def record(self, day: int, metric: MetricDay) -> None:
        """The metric's numbers for `day` are (now) `metric`; later changes to it need another record."""
        days = self.days
        if not days or day > days[-1]:  # the usual case: a new latest day, which no family reflects yet
            days.append(day)
            self._entries.append(metric)
            return
        index = len(days) - 1 if day == days[-1] else bisect_left(days, day)
        if index < len(days) and days[index] == day:
            self._entries[index] = metric
        else:
            days.insert(index, day)
            self._entries.insert(index, metric)
        self._fresh_total = min(self._fresh_total, index)
        self._fresh_positive = min(self._fresh_positive, index)
        self._fresh_events = min(self._fresh_events, index)
        self._fresh_active = min(self._fresh_active, index)
        self._fresh_readings = min(self._fresh_readings, index)
        self._fresh_lowest = min(self._fresh_lowest, index)
        self._fresh_highest = min(self._fresh_highest, index)

    # the families, up to date

    def total_sums(self) -> list[Decimal]:
        fresh = self._fresh_total
        if fresh < len(self.days):
            self._fresh_total = _cumulate(self.cum_total, fresh, [m.total for m in self._entries[fresh:]])
        return self.cum_total

    def positive_sums(self) -> list[Decimal]:
        fresh = self._fresh_positive
        if fresh < len(self.days):
            positive = [m.total if m.total > 0 else _ZERO for m in self._entries[fresh:]]
            self._fresh_positive = _cumulate(self.cum_positive, fresh, positive)
        return self.cum_positive

    def event_sums(self) -> list[int]:
        fresh = self._fresh_events
        if fresh < len(self.days):
            self._fresh_events = _cumulate(self.cum_events, fresh, [m.events for m in self._entries[fresh:]])
        return self.cum_events

    def active_sums(self) -> list[int]:
        fresh = self._fresh_active
        if fresh < len(self.days):
            active = [m.events > 0 for m in self._entries[fresh:]]
            self._fresh_active = _cumulate(self.cum_active, fresh, active)
        return self.cum_active

    def reading_arrays(self) -> None:
        """Bring cum_last, cum_readings, lasts, lows, highs and latest_reading up to date."""
        start = self._fresh_readings
        if start >= len(self.days):
            return
        if start == len(self.lasts) == len(self.days) - 1:  # the daily case: append the new last day
            metric = self._entries[start]
            latest = self.latest_reading[start - 1] if start else -1
            if metric.last is None:
                self.lasts.append(None)
                self.cum_last.append(self.cum_last[start])
                self.cum_readings.append(self.cum_readings[start])
            else:
                latest = start
                self.lasts.append(float(metric.last))
                self.cum_last.append(self.cum_last[start] + metric.last)
                self.cum_readings.append(self.cum_readings[start] + 1)
            self.lows.append(None if metric.low is None else float(metric.low))
            self.highs.append(None if metric.high is None else float(metric.high))
            self.latest_reading.append(latest)
            self._fresh_readings = start + 1
            return
        for derived in (self.lasts, self.lows, self.highs, self.latest_reading):
            del derived[start:]
        del self.cum_last[start + 1 :]
        del self.cum_readings[start + 1 :]
        last_sum, readings = self.cum_last[start], self.cum_readings[start]
        latest = self.latest_reading[start - 1] if start else -1
        for index, metric in enumerate(self._entries[start:], start):
            if metric.last is None:
                self.lasts.append(None)
            else:
                last_sum += metric.last
                readings += 1
                latest = index
                self.lasts.append(float(metric.last))
            self.cum_last.append(last_sum)
            self.cum_readings.append(readings)
            self.lows.append(None if metric.low is None else float(metric.low))
            self.highs.append(None if metric.high is None else float(metric.high))
            self.latest_reading.append(latest)
        self._fresh_readings = len(self.days)

    def ready(self) -> None:
        """Bring every family up to date (the engine asks for the ones it reads instead)."""
        self.total_sums()
        self.positive_sums()
        self.event_sums()
        self.active_sums()
        self.reading_arrays()

    # windows

    def span(self, first: int, last: int) -> tuple[int, int]:
        """Entry indexes [lo, hi) of the days from first to last inclusive."""
        lo, hi = bisect_left(self.days, first), bisect_right(self.days, last)
        return (lo, hi) if hi > lo else (lo, lo)

    def total(self, first: int, last: int) -> Decimal:
        lo, hi = self.span(first, last)
        sums = self.total_sums()
        return sums[hi] - sums[lo]

    def positive_total(self, first: int, last: int) -> Decimal:
        """An upper bound of the total of any part of the window (counts may be negative)."""
        lo, hi = self.span(first, last)
        sums = self.positive_sums()
        return sums[hi] - sums[lo]

    def events(self, first: int, last: int) -> int:
        lo, hi = self.span(first, last)
        sums = self.event_sums()
        return sums[hi] - sums[lo]

    def active_days(self, first: int, last: int) -> int:
        lo, hi = self.span(first, last)
        sums = self.active_sums()
        return sums[hi] - sums[lo]

    def latest(self, first: int, last: int) -> float | None:
        """The reading of the latest day in the window that has one."""
        lo, hi = self.span(first, last)
        self.reading_arrays()
        at = self.latest_reading[hi - 1] if hi > lo else -1
        return self.lasts[at] if at >= lo else None

    def peak(self, first: int, last: int) -> float | None:
        lo, hi = self.span(first, last)
        self.reading_arrays()
        if self.cum_readings[hi] == self.cum_readings[lo]:
            return None
        if self._fresh_highest < len(self.days):
            self._fresh_highest = _extend_table(self._highest, self.highs, self._fresh_highest, -_INF, max)
        level = (hi - lo).bit_length() - 1  # two spans of 2**level entries cover the window
        highs = self._highest[level]
        return max(highs[lo], highs[hi - (1 << level)])

    def low(self, first: int, last: int) -> float | None:
        lo, hi = self.span(first, last)
        self.reading_arrays()
        if self.cum_readings[hi] == self.cum_readings[lo]:
            return None
        if self._fresh_lowest < len(self.days):
            self._fresh_lowest = _extend_table(self._lowest, self.lows, self._fresh_lowest, _INF, min)
        level = (hi - lo).bit_length() - 1
        lows = self._lowest[level]
        return min(lows[lo], lows[hi - (1 << level)])

    def readings(self, first: int, last: int) -> tuple[Decimal, int]:
        """The sum and the number of the days' readings (each day's latest) in the window."""
        lo, hi = self.span(first, last)
        self.reading_arrays()
        return self.cum_last[hi] - self.cum_last[lo], self.cum_readings[hi] - self.cum_readings[lo]

    def days_between(self, first: int, last: int) -> list[int]:
        lo, hi = self.span(first, last)
        return self.days[lo:hi]


def _cumulate(sums: list[Any], fresh: int, values: list[Any]) -> int:
    """Running totals of the entries from `fresh` on, `sums[i]` totalling the entries before i;
    returns how many entries the sums now reflect."""
    del sums[fresh + 1 :]
    running = sums[fresh]
    for value in values:
        running += value
        sums.append(running)
    return len(sums) - 1


def _extend_table(
    table: list[list[float]],
    values: list[float | None],
    start: int,
    blank: float,
    pick: Callable[[float, float], float],
) -> int:
    """Bring a sparse table of `values` up to date from entry `start` on: level k holds, for each
    entry, the extreme of the 2**k entries from it (days without a reading are `blank`: +inf for
    lows, -inf for highs, which a window with a reading never returns). Returns the entries it
    now reflects."""
    count = len(values)
    if start == count - 1 and start and len(table[0]) == start:  # the daily case: a new last entry
        value = values[start]
        table[0].append(blank if value is None else value)
        for level in range(1, count.bit_length()):
            if len(table) == level:
                table.append([])
            below, index = table[level - 1], count - (1 << level)
            table[level].append(pick(below[index], below[index + (1 << (level - 1))]))
        return count
    if not table:
        table.append([])
    del table[0][start:]
    table[0].extend(blank if value is None else value for value in values[start:])
    level, width = 1, 2
    while width <= count:
        if len(table) == level:
            table.append([])
        below, row, half = table[level - 1], table[level], width >> 1
        # Entries from `first` on span a changed entry (or are new): one per level for a new day.
        first = max(0, start - width + 1)
        del row[first:]
        for index in range(first, count - width + 1):
            row.append(pick(below[index], below[index + half]))
        level, width = level + 1, width << 1
    del table[level:]
    return count


class DistinctSeries:
    """One (metric, dimension): the set of values (tokens) seen each day.

    Each day's set is also kept as a bitmask, one bit per value the history has seen (`bits`,
    shared by its series, so masks of two series combine): a window's distinct values are then the
    OR of its days' masks, and counting them is a popcount.
    """

    __slots__ = ("_bits", "_fresh", "_masks", "_values", "days")

    def __init__(self, bits: dict[str, int] | None = None) -> None:
        self.days: list[int] = []
        self._values: list[set[str]] = []  # the buckets' own sets
        self._bits = {} if bits is None else bits
        self._masks: list[int] = []
        self._fresh = 0  # masks [0, _fresh) are up to date

    def record(self, day: int, values: set[str]) -> None:
        days = self.days
        if not days or day > days[-1]:
            days.append(day)
            self._values.append(values)
            return
        index = bisect_left(days, day)
        if index < len(days) and days[index] == day:
            self._values[index] = values
        else:
            days.insert(index, day)
            self._values.insert(index, values)
        self._fresh = min(self._fresh, index)

    def union(self, first: int, last: int) -> set[str] | frozenset[str]:
        """The values seen in the window (do not modify: it may be a bucket's own set)."""
        lo, hi = bisect_left(self.days, first), bisect_right(self.days, last)
        if hi - lo <= 0:
            return _NO_DISTINCT
        if hi - lo == 1:
            return self._values[lo]
        return set().union(*self._values[lo:hi])

    def mask(self, first: int, last: int) -> int:
        """The values seen in the window, as a bitmask: `union`, for counting."""
        if self._fresh < len(self.days):
            self._refresh()
        lo, hi = bisect_left(self.days, first), bisect_right(self.days, last)
        if hi - lo <= 0:
            return 0
        if hi - lo == 1:
            return self._masks[lo]
        return reduce(or_, self._masks[lo:hi])

    def _refresh(self) -> None:
        bits = self._bits
        del self._masks[self._fresh :]
        for values in self._values[self._fresh :]:
            mask = 0
            for value in values:
                bit = bits.get(value)
                if bit is None:
                    bit = bits[value] = len(bits)
                mask |= 1 << bit
            self._masks.append(mask)
        self._fresh = len(self._values)


class History:
    """An account's series, readable from `first` to `last` (ordinals, inclusive).

    A history kept up to date in memory is evaluated again and again: `memos` holds what the
    engine derived from it (shared/rules/engine.py), and `take_changes` tells the engine which
    days of which metrics were recorded since it last asked, so it can forget what they affect.
    """

    __slots__ = (
        "_bits",
        "_changes",
        "_distinct",
        "_groups",
        "first",
        "first_seen",
        "last",
        "memos",
        "series",
    )

    def __init__(self, first: int = 1, last: int = date.max.toordinal()) -> None:
        self.series: dict[str, MetricSeries] = {}  # by metric name
        self._distinct: dict[tuple[str, str], DistinctSeries] = {}
        self._bits: dict[str, int] = {}  # every distinct value seen, numbered (DistinctSeries.mask)
        # (metric, dimension) → the keys of its group slices (shared/counters/slices.py), sorted
        self._groups: dict[tuple[str, str], list[str]] = {}
        self.first = first
        self.last = last
        self._changes: dict[str, int] = {}  # metric → the earliest day recorded since take_changes
        self.memos: dict[object, Any] = {}  # owned by the engine
        # The account's earliest day with data, whatever the view shows: where its data coverage
        # starts (docs/rules.md, "Data coverage"). Folded in memory, the earliest day recorded; read
        # from DynamoDB, the counters' `first_seen` marker (shared/counters/store.py). A family's
        # folded days do not move it: coverage is the account's own.
        self.first_seen: int | None = None

    @classmethod
    def of(cls, buckets: Iterable[DayBucket], first_day: date, last_day: date) -> History:
        history = cls(first_day.toordinal(), last_day.toordinal())
        for bucket in sorted(buckets, key=lambda bucket: bucket.day):
            history.record_bucket(bucket)
        return history

    def record_bucket(self, bucket: DayBucket, day: int | None = None) -> None:
        day = date.fromisoformat(bucket.day).toordinal() if day is None else day
        for name, metric in bucket.metrics.items():
            self.record_metric(name, day, metric)
        for name, dimensions in bucket.distinct.items():
            for dimension, values in dimensions.items():
                self.record_distinct(name, dimension, day, values)

    def record_family(
        self, day: int, metrics: dict[str, MetricDay], distinct: dict[str, dict[str, set[str]]]
    ) -> None:
        """The family's folded day (shared/counters/family.py), under the family keys."""
        for key, metric in metrics.items():
            self._record_metric(family_key(key), day, metric)
        for name, dimensions in distinct.items():
            for dimension, values in dimensions.items():
                self._record_distinct(family_key(name), dimension, day, values)

    def record_metric(self, name: str, day: int, metric: MetricDay) -> None:
        self.seen(day)
        self._record_metric(name, day, metric)

    def record_distinct(self, name: str, dimension: str, day: int, values: set[str]) -> None:
        self.seen(day)
        self._record_distinct(name, dimension, day, values)

    def seen(self, day: int) -> None:
        """The account has data on `day` (ordinal): its coverage starts no later."""
        if self.first_seen is None or day < self.first_seen:
            self.first_seen = day

    def _record_metric(self, name: str, day: int, metric: MetricDay) -> None:
        self._changed(name, day)
        series = self.series.get(name)
        if series is None:
            series = self.series[name] = MetricSeries()
            if "|" in name:
                self._new_slice(name)
        series.record(day, metric)

    def _record_distinct(self, name: str, dimension: str, day: int, values: set[str]) -> None:
        self._changed(name, day)
        series = self._distinct.get((name, dimension))
        if series is None:
            series = self._distinct[(name, dimension)] = DistinctSeries(self._bits)
        series.record(day, values)

    def _new_slice(self, key: str) -> None:
        metric, rest = key.split("|", 1)
        dimension, tokens = rest.split("=", 1)
        if "+" not in tokens:  # one value: a group (a filter of several values is not one)
            insort(self._groups.setdefault((metric, dimension), []), key)

    def groups(self, metric: str, dimension: str) -> list[str]:
        """The keys of the metric's group slices by the dimension: one per value seen, sorted."""
        return self._groups.get((metric, dimension), [])

    def bounded(self, first: date, last: date) -> History:
        """The same series, readable only from first to last: what a read plan allows."""
        view = History.__new__(History)
        view.series, view._distinct, view._bits = self.series, self._distinct, self._bits
        view._groups = self._groups
        view._changes, view.memos = self._changes, self.memos
        view.first_seen = self.first_seen
        view.first, view.last = first.toordinal(), last.toordinal()
        return view

    def ready(self) -> None:
        """Bring every series' arrays up to date (the engine asks each series for what it reads)."""
        for series in self.series.values():
            series.ready()

    def take_changes(self) -> dict[str, int]:
        """Per metric, the earliest day recorded since the last call (the same for every view)."""
        if not self._changes:
            return {}
        changes = dict(self._changes)
        self._changes.clear()
        return changes

    def _changed(self, name: str, day: int) -> None:
        earliest = self._changes.get(name)
        if earliest is None or day < earliest:
            self._changes[name] = day

    def metric(self, name: str) -> MetricSeries | None:
        return self.series.get(name)

    def distinct(self, name: str, dimension: str, first: int, last: int) -> set[str] | frozenset[str]:
        series = self._distinct.get((name, dimension))
        return _NO_DISTINCT if series is None else series.union(first, last)

    def distinct_series(self, name: str, dimension: str) -> DistinctSeries | None:
        return self._distinct.get((name, dimension))
