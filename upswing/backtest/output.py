"""Writing a backtest's result: JSON (the whole result), CSV (one row a trigger, one row a firing),
the HTML report, and the summary printed on the terminal.

Every file is written under a temporary name and renamed, so a folder never holds half a report.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from upswing.backtest import numbers
from upswing.backtest.html import render_report

RESULT_FILE = "backtest.json"
TRIGGERS_FILE = "triggers.csv"
FIRINGS_FILE = "firings.csv"
REPORT_FILE = "report.html"
TRIGGER_COLUMNS = (
    "ruleset",
    "version",
    "rank",
    "trigger",
    "kind",
    "category",
    "play",
    "lookback_days",
    "scored_from",
    "scored_to",
    "firings",
    "scored_firings",
    "warm_up_firings",
    "censored_firings",
    "after_expansion_firings",
    "accounts_fired",
    "hits",
    "precision",
    "precision_low",
    "precision_high",
    "recall",
    "base_rate",
    "base_rate_pooled",
    "lift",
    "lift_low",
    "lift_high",
    "median_days_to_expansion",
    "warm_up_accounts",
    "silenced_by_warm_up",
    "unique_hits",
    "revenue_captured",
    "hits_without_amount",
    "verdict",
    "note",
)
FIRING_COLUMNS = ("ruleset", "trigger", "account_id", "evaluated_at", "score")


def write_all(
    result: dict[str, Any], firings: Iterable[tuple[str, str, str, str, float]], folder: Path
) -> list[Path]:
    """The four files into `folder` (created if need be); their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    return [
        _write(folder / RESULT_FILE, json.dumps(result, indent=2, ensure_ascii=False) + "\n"),
        _write(folder / TRIGGERS_FILE, _triggers_csv(result)),
        _write(folder / FIRINGS_FILE, _csv(FIRING_COLUMNS, firings)),
        _write(folder / REPORT_FILE, render_report(result)),
    ]


def _triggers_csv(result: dict[str, Any]) -> str:
    rows = []
    for ruleset in result["rulesets"]:
        for row in [*ruleset["triggers"], ruleset["overall"]]:
            rows.append(
                [
                    ruleset["label"],
                    ruleset["version"],
                    *(_cell(row.get(column)) for column in TRIGGER_COLUMNS[2:]),
                ]
            )
    return _csv(TRIGGER_COLUMNS, rows)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dict):  # revenue per currency: "EUR 120.00; USD 4800.50"
        return "; ".join(f"{key} {amount}" for key, amount in value.items())
    return round(value, 6) if isinstance(value, float) else value


def _csv(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _write(path: Path, text: str) -> Path:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
    return path


def summary(result: dict[str, Any]) -> str:
    """The result as a terminal reads it: input quality, then each ruleset's ranked triggers."""
    source = result["input"]
    period = result["period"]
    lines = [
        f"Backtest of {source['events']:,} events from {source['accounts']:,} accounts, "
        f"{period['first_day']} to {period['last_day']}; horizon {result['horizon_days']} days; "
        f"{result['seconds']} s.",
        f"  input: {source['lines']:,} lines, {source['duplicates']:,} duplicates, "
        f"{source['rejected']:,} rejected, {source['malformed']:,} malformed, {source['late']:,} late; "
        f"{source['outcomes']:,} expansions ({source['outcomes_unknown_accounts']:,} of unknown accounts)",
    ]
    engine = source.get("engine")
    if engine:
        reasons = ", ".join(f"{count:,} {reason}" for reason, count in engine["scalar_reasons"].items())
        lines.append(
            f"  engine: {engine['used']} ({engine['requested']} asked); {engine['columnar_accounts']:,} "
            f"accounts columnar, {engine['scalar_accounts']:,} scalar" + (f" ({reasons})" if reasons else "")
        )
        for trigger, reason in engine["scalar_triggers"].items():
            lines.append(f"  scalar for {trigger}: {reason}")
    for problem in source["problems"][:5]:
        lines.append(f"  {problem['file']}:{problem['line']}: {problem['message']}")
    if len(source["problems"]) > 5:
        lines.append(f"  … {source['rejected'] + source['malformed'] - 5:,} more problems: see backtest.json")
    header = "  {:>3} {:<32} {:>8} {:>8} {:>9} {:>7} {:>6} {:>5}  verdict".format(
        "#", "trigger", "firings", "accounts", "precision", "recall", "lift", "days"
    )
    for ruleset in result["rulesets"]:
        overall = ruleset["overall"]
        lines += [
            "",
            f"Ruleset {ruleset['label']}: {ruleset['path']} (version {ruleset['version']}), "
            f"{ruleset['evaluations']:,} evaluations, {ruleset['firings']:,} firings",
            header,
        ]
        for row in [*ruleset["triggers"], overall]:
            lines.append(
                f"  {row['rank'] or '':>3} {row['trigger'][:32]:<32} "
                f"{row['firings']:>8,} {row['accounts_fired']:>8,} "
                f"{numbers.percent(row['precision']):>9} {numbers.percent(row['recall']):>7} "
                f"{numbers.lift(row['lift']):>6} "
                f"{numbers.days(row['median_days_to_expansion']):>5}  {row['verdict']}"
            )
        lines += flood_lines(ruleset.get("flood"))
    return "\n".join(lines)


def flood_lines(flood: dict[str, Any] | None, shown: int = 5) -> list[str]:
    """The busiest days: the flood going live would cause, and what the daily cap holds back."""
    if not flood or not flood["triggers"]:
        return []
    cap = flood["cap"]
    heading = (
        f"  Busiest day per trigger (budgets.plays_per_trigger_per_day: {cap}):"
        if cap
        else "  Busiest day per trigger (no budgets.plays_per_trigger_per_day cap set):"
    )
    lines = [heading]
    worst = sorted(flood["triggers"].items(), key=lambda item: -item[1]["peak_firings"])
    for name, figures in worst[:shown]:
        line = f"    {name[:32]:<32} {figures['peak_firings']:>6,} firings on {figures['peak_day']}"
        if cap:
            line += (
                f"; the cap holds back {figures['held_back']:,} "
                f"(up to {figures['longest_wait_days']} days) over {figures['days_over_cap']} days"
            )
        lines.append(line)
    return lines


def terminal_progress() -> Callable[[int, int, str], None] | None:
    """A progress bar on stderr when it is a terminal; None otherwise (logs stay clean)."""
    return _Bar() if sys.stderr.isatty() else None


class _Bar:
    """`what |██████      | 42.0%`, redrawn at most five times a second; a new stage, a new line."""

    def __init__(self) -> None:
        self._drawn_at = 0.0
        self._stage = ""

    def __call__(self, done: int, total: int, stage: str) -> None:
        now = time.monotonic()
        if done < total and stage == self._stage and now - self._drawn_at < 0.2:
            return
        if stage != self._stage and self._stage:
            sys.stderr.write("\n")
        self._drawn_at, self._stage = now, stage
        share = done / total if total else 1.0
        sys.stderr.write(f"\r{stage:<22} |{'█' * int(share * 30):<30}| {share:6.1%}")
        sys.stderr.flush()
