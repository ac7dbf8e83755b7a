"""Firings with their arm, as CSV rows: for RevOps' own analysis of an experiment.

One row per firing (its play's tier 0, which holds the firing's evidence, its fate and the expansion
attributed to it). `trial` says whether the firing is its account's one trial in the comparison;
filter on it to recount what GET /v1/triggers/{name}/experiment reports. No names or e-mail
addresses: accounts by id, as everywhere else.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import IO, Any

from shared.routing.models import PlayRecord

COLUMNS = (
    "firing_id",
    "account_id",
    "trigger",
    "ruleset_version",
    "fired_at",
    "arm",
    "salt",
    "draw",
    "holdout_percent",
    "rollout",
    "trial",
    "status",
    "expanded_at",
    "expansion_kind",
    "expansion_amount",
    "currency",
)


def firing_row(record: PlayRecord) -> dict[str, Any]:
    """The CSV row of a firing, from its play's tier 0."""
    experiment = record.firing.get("experiment") or {}
    expanded = record.expanded or {}
    return {
        "firing_id": record.firing_id,
        "account_id": record.account_id,
        "trigger": record.trigger,
        "ruleset_version": record.firing.get("ruleset_version", ""),
        "fired_at": record.firing.get("evaluated_at", ""),
        "arm": record.arm,
        "salt": experiment.get("salt", ""),
        "draw": experiment.get("draw", ""),
        "holdout_percent": experiment.get("holdout_percent", ""),
        "rollout": experiment.get("rollout", ""),
        "trial": "true" if record.trial else "false",
        "status": record.status.value,
        "expanded_at": expanded.get("at", ""),
        "expansion_kind": expanded.get("kind", ""),
        "expansion_amount": expanded.get("amount", ""),
        "currency": expanded.get("currency", ""),
    }


def write_firings(records: Iterable[PlayRecord], out: IO[str]) -> int:
    """Write the firings (tier 0 plays) as CSV, oldest first; how many rows were written."""
    rows = sorted(
        (firing_row(record) for record in records if record.tier == 0),
        key=lambda row: (row["fired_at"], row["account_id"]),
    )
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return len(rows)
