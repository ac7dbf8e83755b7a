"""`upswing backtest` end to end on simulated histories: the files it writes, what it finds, and the
same firings whatever the format, the number of workers or the bad lines around them."""

from __future__ import annotations

import csv
import json
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from upswing.backtest import BacktestConfig, BacktestRun, backtest
from upswing.cli import main
from upswing.simulate import SimulationConfig, simulate

REFERENCE = Path("rules/reference.yaml")
NOISE = "signal:dashboards_built"


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough accounts and days for verdicts: 300 accounts over 300 days."""
    folder = tmp_path_factory.mktemp("population")
    simulate(SimulationConfig(accounts=300, days=300, seed=11, start=date(2025, 1, 1)), folder, ("jsonl",))
    return folder


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small history in every format: 40 accounts over 220 days."""
    folder = tmp_path_factory.mktemp("small")
    simulate(
        SimulationConfig(accounts=40, days=220, seed=5, start=date(2025, 1, 1)), folder, ("jsonl", "parquet")
    )
    _write_csv(folder / "events.jsonl", folder / "events.csv")
    return folder


def run(folder: Path, events: str = "events.jsonl", **options: Any) -> BacktestRun:
    config = BacktestConfig(
        events=(folder / events,),
        outcomes=folder / "outcomes.csv",
        accounts=folder / "accounts.jsonl",
        **{"rules": REFERENCE, "workers": 1, "partitions": 8, **options},
    )
    return backtest(config)


def test_the_cli_writes_the_report_and_the_noise_signal_is_judged_vanity(
    population: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    code = main(
        [
            "backtest",
            "--events",
            str(population / "events.jsonl"),
            "--outcomes",
            str(population / "outcomes.csv"),
            "--accounts",
            str(population / "accounts.jsonl"),
            "--signals",
            "--workers",
            "2",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert sorted(path.name for path in out.iterdir()) == [
        "backtest.json",
        "firings.csv",
        "report.html",
        "triggers.csv",
    ]
    result = json.loads((out / "backtest.json").read_text())
    ruleset = result["rulesets"][0]
    rows = {row["trigger"]: row for row in ruleset["triggers"]}
    assert set(rows) >= {"seat-expansion", "upgrade", NOISE}
    # The planted noise predicts nothing; every judged trigger ranks above it (the exclusion
    # signal usage_decline, which predicts *less* expansion, may rank below it).
    assert rows[NOISE]["verdict"] == "vanity", rows[NOISE]
    judged = [row for row in ruleset["triggers"] if row["verdict"] != "too few firings"]
    assert all(row["rank"] < rows[NOISE]["rank"] for row in judged if row["kind"] == "trigger")
    assert sum(row["verdict"] == "predictive" for row in judged) >= 3
    assert ruleset["overall"]["lift"] > 1.5
    firings = list(csv.DictReader((out / "firings.csv").open()))
    assert len(firings) == ruleset["firings"] > 0
    html = (out / "report.html").read_text()
    assert html.count("<svg") >= 3
    assert "dashboards_built" in html


def test_formats_and_workers_do_not_change_the_firings(small: Path) -> None:
    reference = run(small)
    assert len(reference.firings) > 20
    assert run(small, "events.parquet").firings == reference.firings
    assert run(small, "events.csv").firings == reference.firings
    assert run(small, workers=2, partitions=5).firings == reference.firings
    assert reference.result["input"]["events"] == reference.result["input"]["lines"]


def test_bad_lines_are_skipped_and_counted_with_file_and_line_or_stop_a_strict_run(
    small: Path, tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    shutil.copy(small / "events.jsonl", events)
    lines = events.read_text().splitlines(keepends=True)
    first = json.loads(lines[0])
    broken = [
        "{this is not json\n",
        json.dumps({**first, "event_id": "bad-value", "value": "many"}) + "\n",
        lines[0],  # a resend: a duplicate, not a problem
    ]
    events.write_text("".join(lines[:10] + broken + lines[10:]))
    for name in ("outcomes.csv", "accounts.jsonl"):
        shutil.copy(small / name, tmp_path / name)

    lenient = run(tmp_path)
    source = lenient.result["input"]
    assert (source["malformed"], source["rejected"], source["duplicates"]) == (1, 1, 1)
    assert [(problem["line"], problem["message"][:16]) for problem in source["problems"]] == [
        (11, "not valid JSON: "),
        (12, "value must be a "),
    ]
    assert lenient.firings == run(small).firings  # nothing else changed

    code = main(
        ["backtest", "--events", str(events), "--outcomes", str(tmp_path / "outcomes.csv"), "--strict"]
    )
    assert code == 2


def test_compare_scores_a_second_ruleset_on_the_same_replay(small: Path, tmp_path: Path) -> None:
    stricter = tmp_path / "stricter.yaml"
    stricter.write_text(
        REFERENCE.read_text()
        .replace('version: "', 'version: "stricter-')
        .replace("at_least: {default: 0.85, segments: {enterprise: 0.9, smb: 0.75}}", "at_least: 0.99")
    )
    result = run(small, compare=stricter).result
    first, second = result["rulesets"]
    assert (first["label"], second["label"]) == ("A", "B")
    assert second["version"].startswith("stricter-")
    seat = {ruleset["label"]: _row(ruleset, "seat-expansion")["firings"] for ruleset in result["rulesets"]}
    assert seat["B"] < seat["A"]
    assert _row(first, "upgrade")["firings"] >= _row(second, "upgrade")["firings"]


def test_holdout_and_rollout_keys_are_accepted_and_change_no_firing_and_no_score(
    small: Path, tmp_path: Path
) -> None:
    # Given the reference rules with a holdout on one trigger and a segment rollout on another
    experimental = tmp_path / "experimental.yaml"
    experimental.write_text(
        REFERENCE.read_text().replace(
            "      - {signal: usage_decline}\n    cooldown: 30d\n",
            "      - {signal: usage_decline}\n    cooldown: 30d\n"
            "    holdout: 20%\n    rollout: {segments: [smb]}\n",
            1,
        )
    )
    assert "holdout: 20%" in experimental.read_text()

    # When both are backtested on the same history
    plain, with_keys = run(small), run(small, rules=experimental)

    # Then the backtest scores every firing as if every account were treated: nothing differs
    assert with_keys.firings == plain.firings
    assert with_keys.result["rulesets"][0]["triggers"] == plain.result["rulesets"][0]["triggers"]


def test_problems_with_the_inputs_are_plain_errors(
    small: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outcomes = tmp_path / "outcomes.csv"
    outcomes.write_text("account_id,expansion_date\nacct-000001,2025-13-01\n")
    code = main(["backtest", "--events", str(small / "events.jsonl"), "--outcomes", str(outcomes)])
    assert code == 2
    assert f"{outcomes}:2: expansion_date '2025-13-01' is not a date (YYYY-MM-DD)" in capsys.readouterr().err
    code = main(["backtest", "--events", str(tmp_path / "missing.jsonl"), "--outcomes", str(outcomes)])
    assert code == 2
    assert "missing.jsonl: no such file" in capsys.readouterr().err
    events = str(small / "events.jsonl")
    code = main(["backtest", "--events", events, "--outcomes", str(outcomes), "--workers", "0"])
    assert code == 2
    assert "--workers and the number of partitions must be at least 1" in capsys.readouterr().err


def _row(ruleset: dict[str, Any], trigger: str) -> dict[str, Any]:
    return next(row for row in ruleset["triggers"] if row["trigger"] == trigger)


def _write_csv(source: Path, target: Path) -> None:
    events = [json.loads(line) for line in source.read_text().splitlines()]
    keys = sorted({key for event in events for key in event.get("dimensions", {})})
    columns = [
        "event_id",
        "account_id",
        "name",
        "occurred_at",
        "value",
        "kind",
        *(f"dimensions.{k}" for k in keys),
    ]
    with target.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(columns)
        for event in events:
            dimensions = event.get("dimensions", {})
            writer.writerow(
                [*(event.get(c, "") for c in columns[:6]), *(dimensions.get(k, "") for k in keys)]
            )
