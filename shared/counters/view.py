"""How counters are shown to people (API answers, the demo): plain JSON, numbers as numbers."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from shared.counters.bucket import DayBucket
from shared.counters.slices import is_slice


def bucket_view(bucket: DayBucket) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    slices: dict[str, Any] = {}
    for name, metric in sorted(bucket.metrics.items()):
        shown: dict[str, Any] = {
            "kind": metric.kind.value,
            "total": _number(metric.total),
            "events": metric.events,
        }
        if metric.last is not None:
            shown |= {
                "last": _number(metric.last),
                "last_at": metric.last_at,
                "low": _number(metric.low),
                "high": _number(metric.high),
            }
        distinct = {
            dimension: len(values) for dimension, values in sorted(bucket.distinct.get(name, {}).items())
        }
        if distinct:
            shown["distinct"] = distinct
        # A slice (`where` / `group_by`, shared/counters/slices.py): its value is a hash, never shown.
        (slices if is_slice(name) else metrics)[name] = shown
    view: dict[str, Any] = {"day": bucket.day, "metrics": metrics}
    if slices:
        view["slices"] = slices
    if bucket.capped:
        view["distinct_capped"] = sorted(bucket.capped)
    if bucket.overflow_events:
        view["overflow_events"] = bucket.overflow_events
    return view


def _number(value: Decimal | None) -> int | float | None:
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() else float(value)
