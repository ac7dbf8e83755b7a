"""Which slices of the counters a ruleset reads: the metrics it filters (`where`) or groups
(`group_by`), by which dimension. The aggregator folds exactly these (shared/counters/slices.py),
the backtest too; a ruleset without either reads plain buckets, as before."""

from __future__ import annotations

from shared.counters.slices import Slicing
from shared.rules.language import MetricSignal, Ruleset


def ruleset_slicing(*rulesets: Ruleset) -> Slicing:
    """The slices any of the rulesets reads (the backtest may compare two)."""
    groups: dict[str, set[str]] = {}
    filters: dict[str, set[tuple[str, frozenset[str]]]] = {}
    for ruleset in rulesets:
        for signal in ruleset.signals.values():
            if not isinstance(signal, MetricSignal) or not signal.metric:
                continue
            if signal.group_by:
                groups.setdefault(signal.metric, set()).add(signal.group_by)
            where = signal.where_values()
            if where:
                dimension, values = where
                filters.setdefault(signal.metric, set()).add((dimension, frozenset(values)))
    return Slicing(
        groups={metric: frozenset(dims) for metric, dims in groups.items()},
        filters={metric: frozenset(found) for metric, found in filters.items()},
    )
