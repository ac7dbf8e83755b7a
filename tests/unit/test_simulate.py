"""`upswing simulate`: reproducible files, valid events in time order, behaviours really planted."""

from __future__ import annotations

import csv
import json
import statistics
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from shared.accounts.models import AccountProfile
from shared.events.models import UsageEvent
from upswing.cli import main
from upswing.simulate import SimulationConfig, account_events, event_id, history, population, simulate

SMALL = SimulationConfig(accounts=60, days=70, seed=3, start=date(2026, 1, 5))
EVENT_FILES = ("events.jsonl", "accounts.jsonl", "outcomes.csv", "planted.jsonl", "manifest.json")


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("simulated")
    simulate(SMALL, out, ("jsonl", "parquet"))
    return out


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _planted(out: Path) -> dict[str, dict[str, Any]]:
    return {record["account_id"]: record for record in _lines(out / "planted.jsonl")}


def test_given_the_same_seed_when_simulated_twice_then_every_file_is_byte_identical(small_run, tmp_path):
    simulate(SMALL, tmp_path, ("jsonl", "parquet"))

    for name in EVENT_FILES:
        assert (tmp_path / name).read_bytes() == (small_run / name).read_bytes(), name


def test_given_another_seed_then_the_history_differs(small_run, tmp_path):
    simulate(
        SimulationConfig(accounts=SMALL.accounts, days=SMALL.days, seed=4, start=SMALL.start),
        tmp_path,
        ("jsonl",),
    )

    assert (tmp_path / "events.jsonl").read_bytes() != (small_run / "events.jsonl").read_bytes()
    assert (tmp_path / "planted.jsonl").read_bytes() != (small_run / "planted.jsonl").read_bytes()


def test_given_the_events_file_then_every_line_is_an_event_the_api_accepts_with_a_unique_id(small_run):
    lines = (small_run / "events.jsonl").read_text().splitlines()

    events = [UsageEvent.model_validate_json(line) for line in lines]

    assert len(events) > SMALL.accounts * SMALL.days  # a few events per account-day
    assert len({event.event_id for event in events}) == len(events)
    assert {event.name for event in events} >= {
        "seats.active",
        "api.calls",
        "app.session",
        "dashboard.created",
    }
    first, last = SMALL.day(0), SMALL.day(SMALL.days - 1)
    assert all(first <= event.occurred_at.date() <= last for event in events)


def test_given_the_events_file_then_events_are_in_time_order(small_run):
    times = [UsageEvent.model_validate_json(line).occurred_at for line in (small_run / "events.jsonl").open()]

    assert times == sorted(times)


def test_given_the_profiles_then_each_is_a_valid_account_profile_with_owners_and_hubspot_ids(small_run):
    records = _lines(small_run / "accounts.jsonl")

    profiles = {record["account_id"]: AccountProfile.model_validate(record["profile"]) for record in records}

    assert len(profiles) == SMALL.accounts
    for profile in profiles.values():
        assert profile.plan is not None
        assert {"seats", "api.calls"} <= set(profile.plan.limits)
        assert {"csm", "ae"} <= set(profile.owners)
        assert profile.owners["csm"].email
        assert profile.owners["csm"].hubspot_owner_id
        assert profile.hubspot.company_id
    event_accounts = {json.loads(line)["account_id"] for line in (small_run / "events.jsonl").open()}
    assert event_accounts <= set(profiles)


def test_given_the_outcomes_then_only_expanding_accounts_expand_after_their_growth_began(small_run):
    planted = _planted(small_run)
    with (small_run / "outcomes.csv").open() as stream:
        outcomes = list(csv.DictReader(stream))

    assert outcomes, "a population of 60 should have some expansions"
    assert {row["account_id"] for row in outcomes} == {
        account_id for account_id, record in planted.items() if record["behaviour"] == "expand"
    }
    for row in outcomes:
        truth = planted[row["account_id"]]
        assert truth["growth_start"] < row["expansion_date"] == truth["expansion_date"]
        assert row["kind"] in {"seats", "plan_upgrade", "add_on"}
        assert float(row["amount"]) > 0


def test_given_the_parquet_file_then_it_holds_the_same_rows_as_the_jsonl(small_run):
    from_jsonl = [UsageEvent.model_validate_json(line) for line in (small_run / "events.jsonl").open()]

    from_parquet = [
        _event_from_parquet(row) for row in pq.read_table(small_run / "events.parquet").to_pylist()
    ]

    assert from_parquet == from_jsonl


def test_given_no_arrow_then_python_renders_the_same_jsonl_bytes(small_run, tmp_path):
    simulate(SMALL, tmp_path, ("jsonl",), arrow=False)

    assert (tmp_path / "events.jsonl").read_bytes() == (small_run / "events.jsonl").read_bytes()


def test_given_the_manifest_then_it_counts_what_was_written(small_run):
    manifest = json.loads((small_run / "manifest.json").read_text())
    lines = (small_run / "events.jsonl").read_text().splitlines()

    assert manifest["seed"] == SMALL.seed
    assert manifest["counts"]["events"] == len(lines) == sum(manifest["counts"]["events_by_metric"].values())
    assert sum(manifest["counts"]["accounts_by_behaviour"].values()) == SMALL.accounts
    assert manifest["planted"]["noise"]["metric"] == "dashboard.created"
    assert manifest["files"]["events"] == ["events.jsonl", "events.parquet"]


def test_given_one_account_then_its_own_events_are_those_the_whole_history_gives_it():
    config = SimulationConfig(accounts=5, days=40, seed=11)
    account = list(population(config))[3]

    alone = [event_id(config.seed, day.offset, event) for day, event in account_events(account, config)]
    together = [
        event_id(config.seed, day.offset, event)
        for day in history(config)
        for event in day.events
        if event[1] == account.number
    ]

    assert alone == together


def test_given_growers_and_plateaus_then_growers_trigger_metrics_rise_before_expansion_and_plateaus_do_not():
    # Given a population long enough for growth to unfold
    config = SimulationConfig(accounts=240, days=240, seed=5)
    accounts = list(population(config))
    daily: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    seats: dict[str, list[tuple[int, float]]] = defaultdict(list)
    signals = {
        "paywall.hit",
        "user.invited",
        "admin.added",
        "feature.analytics.used",
        "ticket.integration.created",
    }
    for day in history(config, accounts):
        for _second, number, _sequence, metric, value, _dimensions in day.events:
            if metric.name in signals:
                daily[accounts[number].account_id][day.offset] += value
            elif metric.name == "seats.active":
                seats[accounts[number].account_id].append((day.offset, value))

    def four_weeks_to(account_id: str, end: int) -> float:
        return sum(daily[account_id].get(day, 0.0) for day in range(end - 28, end))

    # When usage in the four weeks before expansion is compared with the four weeks before growth
    growers = [
        a for a in accounts if a.expansion and a.timeline.growth_start and a.timeline.growth_start >= 28
    ]
    grower_ratios = [
        (four_weeks_to(a.account_id, a.expansion.day) + 1)
        / (four_weeks_to(a.account_id, a.timeline.growth_start) + 1)
        for a in growers
        if a.expansion
    ]
    # ... and plateau accounts (without a false start) over the same kind of span
    steady = [a for a in accounts if a.behaviour == "plateau" and not a.drivers]
    steady_ratios = [
        (four_weeks_to(a.account_id, config.days) + 1) / (four_weeks_to(a.account_id, config.days - 84) + 1)
        for a in steady
    ]

    # Then growers' trigger metrics rise clearly, plateaus' do not
    assert len(growers) >= 20
    assert statistics.median(grower_ratios) > 2.0
    assert 0.6 < statistics.median(steady_ratios) < 1.4
    # And seat-driven growers reach most of their seat limit before expanding
    seat_growers = [a for a in growers if a.drivers[0] == "seats" and a.expansion]
    near_limit = [
        max(
            value for offset, value in seats[a.account_id] if a.expansion.day - 14 <= offset < a.expansion.day
        )
        / a.usage.seats_limit
        >= 0.85
        for a in seat_growers
        if a.expansion
        and any(a.expansion.day - 14 <= offset < a.expansion.day for offset, _ in seats[a.account_id])
    ]
    assert near_limit
    assert sum(near_limit) / len(near_limit) >= 0.8


def test_given_the_cli_then_it_writes_the_files_and_prints_a_summary(tmp_path, capsys):
    code = main(
        ["simulate", "--accounts", "8", "--days", "30", "--seed", "2", "--out", str(tmp_path / "sim")]
    )

    assert code == 0
    summary = capsys.readouterr().out
    assert "Simulated 8 accounts over 30 days" in summary
    assert "events.jsonl" in summary
    assert {path.name for path in (tmp_path / "sim").iterdir()} == {*EVENT_FILES, "events.parquet"}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--accounts", "0"], "--accounts must be between 1 and"),
        (["--days", "3"], "--days must be between 28 and"),
        (["--seed", "-1"], "--seed must be a non-negative integer"),
        (["--format", "csv"], "--format takes jsonl and/or parquet"),
    ],
)
def test_given_bad_settings_then_the_cli_says_what_to_change_and_exits_2(
    tmp_path, capsys, arguments, message
):
    code = main(["simulate", "--out", str(tmp_path / "sim"), *arguments])

    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "sim" / "events.jsonl").exists()


def test_given_an_out_path_that_is_a_file_then_the_cli_refuses(tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("")

    assert main(["simulate", "--days", "28", "--accounts", "2", "--out", str(taken)]) == 2
    assert "is a file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--start", "2025-13-01"], "is not a date: use YYYY-MM-DD"),
        (["--accounts", "many"], "invalid int value"),
        ([], "the following arguments are required: --out"),
    ],
)
def test_given_unreadable_arguments_then_argparse_exits_2_with_the_reason(capsys, arguments, message):
    with pytest.raises(SystemExit) as exit_:
        main(["simulate", *arguments])

    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def _event_from_parquet(row: dict[str, Any]) -> UsageEvent:
    return UsageEvent.model_validate(
        {
            **row,
            "occurred_at": (row["occurred_at"] + timedelta()).isoformat(),
            "dimensions": dict(row["dimensions"]),
        }
    )
