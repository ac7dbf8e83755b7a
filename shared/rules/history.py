"""One account's counters as the engine reads them: per metric, day by day, with prefix sums.

Days are proleptic ordinals (`date.toordinal()`): integer arithmetic is what makes evaluating
thousands of accounts a second possible. A window query is two binary searches and a
subtraction, however long the window. Built from `DayBucket`s — in one go from the buckets
DynamoDB returned (online), or kept up to date bucket by bucket as events are folded in
memory (tests and the backtest); either way the numbers are the buckets' own, so both sides
evaluate alike (tests/integration/test_aggregates_parity.py).

Sums stay `Decimal` until the engine turns them into floats: a prefix-sum difference is then
exact, and a window total equals the plain sum of its days to the last digit.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from datetime import date
from decimal import Decimal

from shared.counters.bucket import DayBucket, MetricDay

_ZERO = Decimal(0)
_NO_DISTINCT: frozenset[str] = frozenset()


class MetricSeries:
    """One metric's days with data, in day order, and running totals over them."""

    __slots__ = (
        "_cum_active",
        "_cum_events",
        "_cum_last",
        "_cum_positive",
        "_cum_readings",
        "_cum_total",
        "_entries",
        "_fresh",
        "_highs",
        "_lasts",
        "_lows",
        "days",
    )

    def __init__(self) -> None:
        self.days: list[int] = []
        self._entries: list[MetricDay] = []  # the buckets' own MetricDay objects
        self._fresh = 0  # entries [0, _fresh) are reflected in the arrays below
        self._cum_total: list[Decimal] = [_ZERO]
        self._cum_positive: list[Decimal] = [_ZERO]  # days with a negative total count as 0
        self._cum_events: list[int] = [0]
        self._cum_active: list[int] = [0]
        self._cum_last: list[Decimal] = [_ZERO]
        self._cum_readings: list[int] = [0]
        # Readings as floats (what the engine compares); None on a day without one.
        self._lasts: list[float | None] = []
        self._lows: list[float | None] = []
        self._highs: list[float | None] = []

    def record(self, day: int, metric: MetricDay) -> None:
        """The metric's numbers for `day` are (now) `metric`; later changes to it need another record."""
        days = self.days
        if not days or day > days[-1]:
            days.append(day)
            self._entries.append(metric)
            return
        index = len(days) - 1 if day == days[-1] else bisect_left(days, day)
        if index < len(days) and days[index] == day:
            self._entries[index] = metric
        else:
            days.insert(index, day)
            self._entries.insert(index, metric)
        self._fresh = min(self._fresh, index)

    def span(self, first: int, last: int) -> tuple[int, int]:
        """Entry indexes [lo, hi) of the days from first to last inclusive."""
        if self._fresh < len(self.days):
            self._refresh()
        lo, hi = bisect_left(self.days, first), bisect_right(self.days, last)
        return (lo, hi) if hi > lo else (lo, lo)

    def total(self, first: int, last: int) -> Decimal:
        lo, hi = self.span(first, last)
        return self._cum_total[hi] - self._cum_total[lo]

    def positive_total(self, first: int, last: int) -> Decimal:
        """An upper bound of the total of any part of the window (counts may be negative)."""
        lo, hi = self.span(first, last)
        return self._cum_positive[hi] - self._cum_positive[lo]

    def events(self, first: int, last: int) -> int:
        lo, hi = self.span(first, last)
        return self._cum_events[hi] - self._cum_events[lo]

    def active_days(self, first: int, last: int) -> int:
        lo, hi = self.span(first, last)
        return self._cum_active[hi] - self._cum_active[lo]

    def latest(self, first: int, last: int) -> float | None:
        """The reading of the latest day in the window that has one."""
        lo, hi = self.span(first, last)
        for index in range(hi - 1, lo - 1, -1):
            if self._lasts[index] is not None:
                return self._lasts[index]
        return None

    def peak(self, first: int, last: int) -> float | None:
        lo, hi = self.span(first, last)
        if self._cum_readings[hi] - self._cum_readings[lo] == hi - lo:  # a reading every day: no None
            return max(self._highs[lo:hi]) if hi > lo else None  # type: ignore[type-var]
        return max((high for high in self._highs[lo:hi] if high is not None), default=None)

    def low(self, first: int, last: int) -> float | None:
        lo, hi = self.span(first, last)
        if self._cum_readings[hi] - self._cum_readings[lo] == hi - lo:
            return min(self._lows[lo:hi]) if hi > lo else None  # type: ignore[type-var]
        return min((low for low in self._lows[lo:hi] if low is not None), default=None)

    def readings(self, first: int, last: int) -> tuple[Decimal, int]:
        """The sum and the number of the days' readings (each day's latest) in the window."""
        lo, hi = self.span(first, last)
        return self._cum_last[hi] - self._cum_last[lo], self._cum_readings[hi] - self._cum_readings[lo]

    def days_between(self, first: int, last: int) -> list[int]:
        lo, hi = self.span(first, last)
        return self.days[lo:hi]

    def _refresh(self) -> None:
        start = self._fresh
        for cumulative in (
            self._cum_total,
            self._cum_events,
            self._cum_active,
            self._cum_last,
            self._cum_readings,
        ):
            del cumulative[start + 1 :]
        for derived in (self._lasts, self._lows, self._highs):
            del derived[start:]
        total, positive, events = self._cum_total[start], self._cum_positive[start], self._cum_events[start]
        active, last_sum, readings = self._cum_active[start], self._cum_last[start], self._cum_readings[start]
        for metric in self._entries[start:]:
            total += metric.total
            if metric.total > 0:
                positive += metric.total
            events += metric.events
            active += metric.events > 0
            if metric.last is not None:
                last_sum += metric.last
                readings += 1
            self._cum_total.append(total)
            self._cum_positive.append(positive)
            self._cum_events.append(events)
            self._cum_active.append(active)
            self._cum_last.append(last_sum)
            self._cum_readings.append(readings)
            self._lasts.append(None if metric.last is None else float(metric.last))
            self._lows.append(None if metric.low is None else float(metric.low))
            self._highs.append(None if metric.high is None else float(metric.high))
        self._fresh = len(self._entries)


class DistinctSeries:
    """One (metric, dimension): the set of values (tokens) seen each day."""

    __slots__ = ("_values", "days")

    def __init__(self) -> None:
        self.days: list[int] = []
        self._values: list[set[str]] = []  # the buckets' own sets

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

    def union(self, first: int, last: int) -> set[str] | frozenset[str]:
        """The values seen in the window (do not modify: it may be a bucket's own set)."""
        lo, hi = bisect_left(self.days, first), bisect_right(self.days, last)
        if hi - lo <= 0:
            return _NO_DISTINCT
        if hi - lo == 1:
            return self._values[lo]
        return set().union(*self._values[lo:hi])


class History:
    """An account's series, readable from `first` to `last` (ordinals, inclusive)."""

    __slots__ = ("_distinct", "first", "last", "series")

    def __init__(self, first: int = 1, last: int = date.max.toordinal()) -> None:
        self.series: dict[str, MetricSeries] = {}  # by metric name
        self._distinct: dict[tuple[str, str], DistinctSeries] = {}
        self.first = first
        self.last = last

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

    def record_metric(self, name: str, day: int, metric: MetricDay) -> None:
        series = self.series.get(name)
        if series is None:
            series = self.series[name] = MetricSeries()
        series.record(day, metric)

    def record_distinct(self, name: str, dimension: str, day: int, values: set[str]) -> None:
        series = self._distinct.get((name, dimension))
        if series is None:
            series = self._distinct[(name, dimension)] = DistinctSeries()
        series.record(day, values)

    def bounded(self, first: date, last: date) -> History:
        """The same series, readable only from first to last: what a read plan allows."""
        view = History.__new__(History)
        view.series, view._distinct = self.series, self._distinct
        view.first, view.last = first.toordinal(), last.toordinal()
        return view

    def metric(self, name: str) -> MetricSeries | None:
        return self.series.get(name)

    def distinct(self, name: str, dimension: str, first: int, last: int) -> set[str] | frozenset[str]:
        series = self._distinct.get((name, dimension))
        return _NO_DISTINCT if series is None else series.union(first, last)
