"""A family's day: the counters of a parent account and its children, folded into one.

`scope: family` signals (docs/rules.md, "Account families") read the family's usage as if it were
one account's. Each member keeps its own buckets (the aggregator never writes across accounts);
the family's day is made when it is read, from the members' buckets of that day, by `fold_family`:
online from the buckets DynamoDB returns for each member, in the backtest from the in-memory
buckets — the same function, so both read the same numbers.

The family's series sit in the parent's `History` beside its own, under keys no metric can take
(`family_key`: `*` is not allowed in metric names), so the engine reads them like any metric.
Folding a metric day: totals and event counts add up; a gauge keeps the latest reading by event
time (ties: the member first in id order), the day's lowest and highest; distinct values are the
union of the members' (each member's set is bounded, so the union is too).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from shared.counters.bucket import DayBucket, MetricDay

FAMILY_PREFIX = "*"  # not allowed in metric names (shared/events/models.py): never collides


def family_key(key: str) -> str:
    """The family's series of a metric (or of a slice: `*paywall.hit|feature=<token>`)."""
    return f"{FAMILY_PREFIX}{key}"


def fold_family(
    members: Sequence[DayBucket], metrics: frozenset[str]
) -> tuple[dict[str, MetricDay], dict[str, dict[str, set[str]]]]:
    """The family's metric days (by bucket key: metrics and their slices) and distinct values for
    one day, from the members' buckets of that day, for `metrics` only."""
    folded: dict[str, MetricDay] = {}
    distinct: dict[str, dict[str, set[str]]] = {}
    for bucket in sorted(members, key=lambda member: member.account_id):
        for key, metric in bucket.metrics.items():
            if key.split("|", 1)[0] not in metrics:
                continue
            into = folded.get(key)
            if into is None:
                into = folded[key] = MetricDay(metric.kind)
            _add(into, metric)
        for name, dimensions in bucket.distinct.items():
            if name not in metrics:
                continue
            values = distinct.setdefault(name, {})
            for dimension, tokens in dimensions.items():
                values.setdefault(dimension, set()).update(tokens)
    return folded, distinct


def _add(into: MetricDay, metric: MetricDay) -> None:
    into.total += metric.total
    into.events += metric.events
    if metric.last_at is not None and (into.last_at is None or metric.last_at > into.last_at):
        into.last, into.last_at = metric.last, metric.last_at
    if metric.low is not None and (into.low is None or metric.low < into.low):
        into.low = metric.low
    if metric.high is not None and (into.high is None or metric.high > into.high):
        into.high = metric.high


def members_capped(children: Iterable[str], bound: int) -> tuple[list[str], int]:
    """The children read (the first `bound` in id order) and how many were left out."""
    ordered = sorted(children)
    return ordered[:bound], max(0, len(ordered) - bound)
