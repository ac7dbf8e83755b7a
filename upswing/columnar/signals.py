"""Signals as account x day matrices: whether each signal holds for each account on each day.

Compiled from the same `MetricSignal` / `CompositeSignal` models as the reference engine
(shared/rules/engine.py), with the same arithmetic in the same order, so the floats agree to the
bit:

- sum, count, active_days: prefix sums along the days, a window a difference of two columns;
- latest: the index of the latest reading carried forward, kept when inside the window;
- peak, low: sliding max / min by doubling (log₂ window steps), readings counted by prefix sums;
- distinct: an interval sweep — a value seen on day x counts in the windows ending x … x+w-1,
  up to the day it is seen again — summed with a difference array;
- share: the same intervals for `of` and `among`, a value counting where both cover the day;
- ratio: two of the above; growth: the measure against itself shifted one window (previous
  window) or against the gauge's mean daily reading before the window (average); sustained and
  rising: shifted copies, one per window;
- per_limit and per-segment thresholds: a value per account (row);
- composites: "held on some day within N" as a sliding sum of the members' held days.

A cell's value is "missing" (no reading, no plan limit, a zero baseline) where `ok` is False;
the signal does not hold there, as in the reference.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable
from datetime import date
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from shared.rules.durations import days
from shared.rules.engine import compiled_ruleset
from shared.rules.language import (
    BySegment,
    CompositeSignal,
    Measure,
    MetricSignal,
    RatioPart,
    Ruleset,
)
from upswing.columnar.frame import Floats, Frame, Ints, MetricDays, Needs, Occurrences

Bools = npt.NDArray[np.bool_]
_FOREVER = date.max.toordinal()
_Array = TypeVar("_Array", Floats, Ints, Bools)

_COMPARE: dict[str, Callable[[Floats, Floats | float], Bools]] = {
    "at_least": np.greater_equal,
    "more_than": np.greater,
    "at_most": np.less_equal,
    "less_than": np.less,
}


def needs_of(*rulesets: Ruleset) -> Needs:
    """The metrics, distinct pairs and `where` slices the rulesets' metric signals read."""
    metrics: set[str] = set()
    pairs: dict[tuple[str, str], None] = {}
    slices: dict[tuple[str, str, frozenset[str]], None] = {}
    for ruleset in rulesets:
        for signal in ruleset.signals.values():
            if not isinstance(signal, MetricSignal):
                continue
            where = signal.where_values()
            if where is not None and signal.metric:
                slices[(signal.metric, where[0], frozenset(where[1]))] = None
            elif signal.ratio is not None:
                for part in (signal.ratio.numerator, signal.ratio.denominator):
                    metrics.add(part.metric)
                    if part.dimension:
                        pairs[(part.metric, part.dimension)] = None
            elif signal.of is not None and signal.among is not None:
                pairs[(signal.of.metric, signal.of.dimension)] = None
                pairs[(signal.among.metric, signal.among.dimension)] = None
            elif signal.metric:
                metrics.add(signal.metric)
                if signal.dimension:
                    pairs[(signal.metric, signal.dimension)] = None
    return Needs(frozenset(metrics), tuple(pairs), tuple(slices))


class SignalGrid:
    """Every signal of a ruleset over a frame, computed when first asked and kept."""

    def __init__(self, frame: Frame, ruleset: Ruleset) -> None:
        self.frame = frame
        self.ruleset = ruleset
        self.height, self.width = len(frame.accounts), frame.days
        self._held: dict[str, Bools] = {}
        self._prefix: dict[tuple[object, str], Ints] = {}
        self._distinct: dict[tuple[tuple[str, str], int], Ints] = {}
        profiles = frame.profiles
        self.segments = [profile.segment if profile else None for profile in profiles]
        self._firmographics = [
            (profile.segment, profile.industry, profile.employees) if profile else (None, None, None)
            for profile in profiles
        ]
        self._limits = [profile.plan.limits if profile and profile.plan else {} for profile in profiles]
        self._columns = np.arange(self.width)

    def held(self, name: str) -> Bools:
        """[accounts, days]: whether the signal holds for the account on the day."""
        found = self._held.get(name)
        if found is None:
            signal = self.ruleset.signals[name]
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                if isinstance(signal, CompositeSignal):
                    found = self._composite(signal)
                else:
                    found = self._metric(signal)
                    if signal.full_window_required:
                        found = found & self._covered(name)
            self._held[name] = found
        return found

    def held_within(self, name: str, within: int) -> Bools:
        """[accounts, days]: whether the signal held on one of the `within` days ending with the day."""
        if within == 1:
            return self.held(name)
        return self._window(_prefix(self.held(name).astype(np.int64)), within) > 0

    def _covered(self, name: str) -> Bools:
        """[accounts, days]: whether the account's data covers every day the signal reads for the
        day (requires_full_window: the reference's _CoveredRule and coverage_start): its first event
        or its profile's created_at on or before the first of them."""
        back = compiled_ruleset(self.ruleset).lookback[name] - 1
        starts = []
        for account, profile in zip(self.frame.accounts, self.frame.profiles, strict=True):
            known = [self.frame.spans[account][0]] if account in self.frame.spans else []
            if profile is not None and profile.created_at is not None:
                known.append(profile.created_at.toordinal())
            starts.append(min(known, default=_FOREVER))
        coverage = np.asarray(starts, dtype=np.int64)[:, None]
        return self._columns + self.frame.base - back >= coverage

    # composites

    def _composite(self, signal: CompositeSignal) -> Bools:
        within = days(signal.within)
        count = np.zeros((self.height, self.width), dtype=np.int64)
        for member in signal.signals:
            count += self.held_within(member, within)
        return count >= signal.n_of

    # metric signals

    def _metric(self, signal: MetricSignal) -> Bools:
        window = days(signal.window)
        value, ok = self._value(signal, window)
        comparison, threshold = signal.threshold() or (None, None)
        compare = _COMPARE[comparison] if comparison else None
        bound = self._bound(threshold) if threshold is not None else None
        if signal.rising:
            values = [self._shift(value, window * period, np.nan) for period in range(signal.rising, -1, -1)]
            held = ok.copy()
            for period in range(1, signal.rising + 1):
                held &= self._shift(ok, window * period, False)
            for earlier, later in itertools.pairwise(values):
                held &= earlier < later
            if compare is not None and bound is not None:
                held &= compare(value, bound)
            return held
        passes = ok if compare is None or bound is None else ok & compare(value, bound)
        held = passes.copy()
        for period in range(1, signal.sustained or 1):
            held &= self._shift(passes, window * period, False)
        return held

    def _bound(self, threshold: float | BySegment) -> Floats | float:
        if not isinstance(threshold, BySegment):
            return float(threshold)
        bounds = [threshold.value_for(*firmographics) for firmographics in self._firmographics]
        return np.asarray(bounds, dtype=np.float64)[:, None]

    def _value(self, signal: MetricSignal, window: int) -> tuple[Floats, Bools]:
        """The signal's value over the window ending each day: the measure, its growth, per limit."""
        value, ok = self._measure(signal, window)
        growth = signal.growth
        if growth is not None:
            if growth.over == "previous_window":
                baseline = self._shift(value, window, np.nan)
                ok = ok & self._shift(ok, window, False)
            else:
                gauge = self._metric_days(signal)
                span = days(growth.baseline_window or "1d")
                total = self._shift(self._window(self._prefix_of(gauge, "last_exact"), span), window, 0)
                readings = self._shift(self._window(self._prefix_of(gauge, "readings"), span), window, 0)
                baseline = total.astype(np.float64) / readings
                ok = ok & (readings > 0)
            zero = baseline == 0
            if growth.from_zero == "fire":
                rise = np.where(value > 0, np.inf, np.where(value < 0, -np.inf, 0.0))
                value = np.where(zero, rise, (value - baseline) / baseline)
            else:
                ok = ok & ~zero
                value = (value - baseline) / baseline
        if signal.per_limit:
            limits = [limits.get(signal.per_limit) or np.nan for limits in self._limits]
            limit = np.asarray(limits, dtype=np.float64)[:, None]
            ok = ok & ~np.isnan(limit)
            value = value / limit
        return value, ok

    def _metric_days(self, signal: MetricSignal) -> MetricDays:
        where = signal.where_values()
        assert signal.metric
        if where is not None:
            return self.frame.metrics[(signal.metric, where[0], frozenset(where[1]))]
        return self.frame.metrics[signal.metric]

    def _measure(self, signal: MetricSignal, window: int) -> tuple[Floats, Bools]:
        if signal.forecast is not None:
            return self._forecast(signal, window)
        if signal.measure is Measure.RATIO:
            assert signal.ratio
            numerator, numerator_ok = self._part(signal.ratio.numerator, window)
            denominator, denominator_ok = self._part(signal.ratio.denominator, window)
            ok = denominator_ok & (denominator != 0) & numerator_ok
            return numerator / denominator, ok
        if signal.measure is Measure.SHARE:
            assert signal.of
            assert signal.among
            of = (signal.of.metric, signal.of.dimension)
            among = (signal.among.metric, signal.among.dimension)
            both = self._shared(of, among, window)
            counted = self._distinct_count(among, window)
            return both / counted, counted > 0
        if signal.measure is Measure.NEW_DISTINCT:
            assert signal.metric
            assert signal.dimension
            before = days(signal.not_seen_in or "1d")
            return self._new((signal.metric, signal.dimension), window, before), self._all
        if signal.measure is Measure.DISTINCT:
            assert signal.metric
            assert signal.dimension
            count = self._distinct_count((signal.metric, signal.dimension), window)
            return count.astype(np.float64), self._all
        return self._plain(self._metric_days(signal), signal.measure, window)

    def _forecast(self, signal: MetricSignal, window: int) -> tuple[Floats, Bools]:
        """The highest point of the least-squares line over the window, between the day and `within`
        days ahead (the reference's _Forecast): a sum fitted as its running total, a day a point; a
        gauge as its readings, days without one left out; at least two points. The reference sums
        with Python's `sum`, so the sums here are `_python_sum`, term by term in the same order."""
        assert signal.forecast
        metric = self._metric_days(signal)
        ahead = days(signal.forecast.within)
        offsets = range(window - 1, -1, -1)  # the window's days, oldest first, as days back
        if signal.measure is Measure.SUM:
            prefix = self._prefix_of(metric, "total")
            start = self._shift_prefix(prefix, window)  # the running total before the window
            ys = [(self._shift_prefix(prefix, back) - start).astype(np.float64) for back in offsets]
            present = [self._all] * window
        else:
            ys = [self._shift(metric.last, back, np.nan) for back in offsets]
            present = [self._shift(metric.readings > 0, back, False) for back in offsets]
        xs = [float(-back) for back in offsets]
        points = np.zeros((self.height, self.width), dtype=np.int64)
        x_total = np.zeros((self.height, self.width), dtype=np.int64)
        y_total = np.zeros((self.height, self.width), dtype=np.float64)
        for x, y, here in zip(xs, ys, present, strict=True):
            points += here
            x_total += np.where(here, int(x), 0)
            y_total += np.where(here, y, 0.0)  # whole numbers: every partial sum is exact
        mean_x = x_total / points
        mean_y = y_total / points
        spread = _python_sum([(x - mean_x) * (x - mean_x) for x in xs], present)
        slope = (
            _python_sum([(x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)], present) / spread
        )
        value = np.maximum(mean_y - slope * mean_x, mean_y + slope * (ahead - mean_x))
        return value, points >= 2

    def _shift_prefix(self, prefix: Ints, back: int) -> Ints:
        """[accounts, days]: the running total through the day `back` days before each day."""
        return prefix[:, np.maximum(self._columns + 1 - back, 0)]

    def _part(self, part: RatioPart, window: int) -> tuple[Floats, Bools]:
        if part.measure is Measure.DISTINCT:
            assert part.dimension
            count = self._distinct_count((part.metric, part.dimension), window)
            return count.astype(np.float64), self._all
        return self._plain(self.frame.metrics[part.metric], part.measure, window)

    def _plain(self, metric: MetricDays, measure: Measure, window: int) -> tuple[Floats, Bools]:
        if measure in (Measure.SUM, Measure.COUNT, Measure.ACTIVE_DAYS):
            family = {Measure.SUM: "total", Measure.COUNT: "events", Measure.ACTIVE_DAYS: "active"}[measure]
            return self._window(self._prefix_of(metric, family), window).astype(np.float64), self._all
        readings = self._window(self._prefix_of(metric, "readings"), window)
        if measure is Measure.LATEST:
            at = np.where(metric.readings > 0, self._columns, -1)
            np.maximum.accumulate(at, axis=1, out=at)
            ok = (at >= 0) & (at > self._columns - window)
            return np.take_along_axis(metric.last, np.maximum(at, 0), axis=1), ok
        if measure is Measure.PEAK:
            return _sliding(
                np.where(metric.readings > 0, metric.high, -np.inf), window, np.maximum
            ), readings > 0
        return _sliding(np.where(metric.readings > 0, metric.low, np.inf), window, np.minimum), readings > 0

    @property
    def _all(self) -> Bools:
        return np.ones((self.height, self.width), dtype=bool)

    # building blocks

    def _prefix_of(self, metric: MetricDays, family: str) -> Ints:
        key = (id(metric), family)
        found = self._prefix.get(key)
        if found is None:
            daily = (metric.events > 0).astype(np.int64) if family == "active" else getattr(metric, family)
            found = self._prefix[key] = _prefix(daily)
        return found

    def _window(self, prefix: Ints, window: int) -> Ints:
        """[accounts, days]: the total of the `window` days ending with each day."""
        high = self._columns + 1
        return prefix[:, high] - prefix[:, np.maximum(high - window, 0)]

    def _shift(self, values: _Array, by: int, fill: float | bool) -> _Array:
        """[accounts, days]: each day's cell holds the value of `by` days before it."""
        if by == 0:
            return values
        shifted = np.empty_like(values)
        shifted[:, :by] = fill
        shifted[:, by:] = values[:, :-by]
        return shifted

    def _coverage(self, seen: Occurrences, window: int, later: int = 0) -> tuple[Ints, Ints, Ints, Ints]:
        """The days whose window counts each value: from a day it is seen (`later` days after it) for
        `window` days, or until it is seen again; as (row, value, start, end) intervals, disjoint per
        value and sorted."""
        rows, values, seen_on = seen.rows, seen.values, seen.cols
        again = np.r_[(rows[1:] == rows[:-1]) & (values[1:] == values[:-1]), False]
        following = np.r_[seen_on[1:], 0] + later
        starts = np.minimum(seen_on + later, self.width)
        ends = np.minimum(starts + window, np.where(again, following, self.width))
        return rows, values, starts, np.minimum(ends, self.width)

    def _sweep(self, rows: Ints, starts: Ints, ends: Ints) -> Ints:
        """[accounts, days]: how many of the intervals cover each day."""
        stride = self.width + 1
        change = np.zeros(self.height * stride, dtype=np.int64)
        np.add.at(change, rows * stride + starts, 1)
        np.add.at(change, rows * stride + ends, -1)
        return np.cumsum(change.reshape(self.height, stride), axis=1)[:, : self.width]

    def _distinct_count(self, pair: tuple[str, str], window: int) -> Ints:
        key = (pair, window)
        found = self._distinct.get(key)
        if found is None:
            rows, _, starts, ends = self._coverage(self.frame.distinct[pair], window)
            found = self._distinct[key] = self._sweep(rows, starts, ends)
        return found

    def _shared(self, of: tuple[str, str], among: tuple[str, str], window: int) -> Floats:
        """[accounts, days]: how many values both pairs saw in the window ending with each day."""
        distinct = self.frame.distinct
        covered = [(self._coverage(distinct[of], window), 1), (self._coverage(distinct[among], window), 1)]
        return self._level(covered, 2).astype(np.float64)

    def _new(self, pair: tuple[str, str], window: int, before: int) -> Floats:
        """[accounts, days]: how many values the window ending with each day saw that the `before`
        days before the window did not (new_distinct)."""
        seen = self.frame.distinct[pair]
        covered = [(self._coverage(seen, window), 1), (self._coverage(seen, before, later=window), 2)]
        return self._level(covered, 1).astype(np.float64)

    def _level(self, covered: list[tuple[tuple[Ints, Ints, Ints, Ints], int]], wanted: int) -> Ints:
        """[accounts, days]: how many values sit at `wanted` on each day, a value's level being the
        sum of the weights of the interval sets covering the day (each set disjoint per value)."""
        rows = np.concatenate([part[0] for part, _ in covered for _ in (0, 1)])
        values = np.concatenate([part[1] for part, _ in covered for _ in (0, 1)])
        points = np.concatenate([edge for part, _ in covered for edge in (part[2], part[3])])
        steps = np.concatenate(
            [np.full(len(part[2]), sign * weight) for part, weight in covered for sign in (1, -1)]
        )
        order = np.lexsort((points, values, rows))
        rows, points, steps = rows[order], points[order], steps[order]
        level = np.cumsum(steps)  # each value's steps sum to zero: the running level is per value
        at = np.flatnonzero(level[:-1] == wanted)  # from this point to the next, the value is there
        return self._sweep(rows[at], points[at], points[at + 1])


def _python_sum(terms: list[Floats], present: list[Bools]) -> Floats:
    """Per cell, Python's `sum` of the terms present, in order: Neumaier's compensated sum from
    Python 3.12 (what the reference engine's `sum` computes), a plain running sum before it."""
    total = np.zeros_like(terms[0])
    if sys.version_info < (3, 12):
        for term, here in zip(terms, present, strict=True):
            total = np.where(here, total + term, total)
        return total
    compensation = np.zeros_like(total)
    for term, here in zip(terms, present, strict=True):
        step = total + term
        lost = np.where(np.abs(total) >= np.abs(term), (total - step) + term, (term - step) + total)
        compensation = np.where(here, compensation + lost, compensation)
        total = np.where(here, step, total)
    usable = (compensation != 0) & np.isfinite(compensation)
    return np.where(usable, total + compensation, total)


def _prefix(daily: Ints) -> Ints:
    """[accounts, days + 1]: running totals, column 0 the empty sum."""
    prefix = np.zeros((daily.shape[0], daily.shape[1] + 1), dtype=np.int64)
    np.cumsum(daily, axis=1, out=prefix[:, 1:])
    return prefix


def _sliding(values: Floats, window: int, pick: np.ufunc) -> Floats:
    """[accounts, days]: `pick` (max or min) of the `window` days ending with each day, by doubling:
    after step k each cell holds the pick of the 2**k days ending with it."""
    span, current = 1, values
    while span * 2 <= window:
        shifted = np.empty_like(current)
        shifted[:, :span] = current[:, :span]
        shifted[:, span:] = current[:, :-span]
        current = pick(current, shifted)
        span *= 2
    if span == window:
        return current
    rest = window - span  # two overlapping spans of `span` days cover the window
    earlier = np.empty_like(current)
    earlier[:, :rest] = current[:, :rest]
    earlier[:, rest:] = current[:, :-rest]
    return pick(current, earlier)
