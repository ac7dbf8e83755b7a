"""Slices: a metric's day counted again for a dimension's value, for rules that filter or group by it.

A bucket keeps, per metric, one `MetricDay` for all of the day's events. `where: {feature: sso}`
and `group_by: team` (docs/rules.md) need the same numbers for part of the events: a *slice* is
one more `MetricDay` in the bucket's `metrics` map, under a key no metric name can take
(`paywall.hit|feature=<token>`), folded by the same code from the events that match. Values are
kept as the distinct counts keep them, as short hashes: no raw value sits in the counters.

Which slices exist is the active ruleset's business, not every producer's: only the (metric,
dimension) pairs a rule groups by and the filters a rule names are sliced, so rulesets that use
neither store and read exactly what they did before. Group slices are bounded per metric,
dimension and day (`MAX_GROUPS_PER_DAY`); values past the bound are not sliced and the pair is
listed in the bucket's `capped`, as distinct values are. A filter with several values (`[sso,
scim]`) is one slice of the events matching any of them.

The aggregator reads the slicing from its environment (computed from the ruleset at synth:
`shared/rules/slicing.py`), the backtest from the ruleset it replays: both fold alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from shared.counters.bucket import distinct_token

MAX_GROUPS_PER_DAY = 50
SEPARATOR = "|"  # not allowed in metric names (shared/events/models.py), so a slice never collides


def slice_key(metric: str, dimension: str, values: Iterable[str]) -> str:
    """The bucket key of the metric's events whose dimension has one of `values`."""
    tokens = sorted({distinct_token(value) for value in values})
    return f"{metric}{SEPARATOR}{dimension}={'+'.join(tokens)}"


def group_prefix(metric: str, dimension: str) -> str:
    """What the keys of the metric's groups by the dimension start with."""
    return f"{metric}{SEPARATOR}{dimension}="


def is_slice(key: str) -> bool:
    return SEPARATOR in key


@dataclass(frozen=True)
class Slicing:
    """Per metric: the dimensions grouped by, and the filters (dimension, values) named."""

    groups: dict[str, frozenset[str]] = field(default_factory=dict)
    filters: dict[str, frozenset[tuple[str, frozenset[str]]]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.groups or self.filters)

    def metrics(self) -> frozenset[str]:
        return frozenset(self.groups) | frozenset(self.filters)

    def filter_keys(self, metric: str, dimensions: dict[str, str]) -> list[str]:
        """The keys of the metric's filter slices an event with these dimensions belongs to."""
        return [
            slice_key(metric, dimension, values)
            for dimension, values in self.filters.get(metric, ())
            if dimensions.get(dimension) in values
        ]

    def to_json(self) -> str:
        return json.dumps(
            {
                "groups": {metric: sorted(dims) for metric, dims in sorted(self.groups.items())},
                "filters": {
                    metric: sorted([dimension, sorted(values)] for dimension, values in filters)
                    for metric, filters in sorted(self.filters.items())
                },
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Slicing:
        if not text:
            return cls()
        document = json.loads(text)
        return cls(
            groups={metric: frozenset(dims) for metric, dims in document.get("groups", {}).items()},
            filters={
                metric: frozenset((dimension, frozenset(values)) for dimension, values in filters)
                for metric, filters in document.get("filters", {}).items()
            },
        )

    def union(self, other: Slicing) -> Slicing:
        metrics = self.metrics() | other.metrics()
        return Slicing(
            groups={
                m: self.groups.get(m, frozenset()) | other.groups.get(m, frozenset())
                for m in metrics
                if m in self.groups or m in other.groups
            },
            filters={
                m: self.filters.get(m, frozenset()) | other.filters.get(m, frozenset())
                for m in metrics
                if m in self.filters or m in other.filters
            },
        )


NO_SLICING = Slicing()
