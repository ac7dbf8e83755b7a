"""The backtest on account families: a `scope: family` signal fires on the parent, from its children's use.

The backtest partitions its input by family root (a parent and its children replay in one worker),
so the family's folded counters exist wherever the parent is evaluated. One worker or two, four
partitions or one: the same firings, and only on the parent.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from upswing.backtest import BacktestConfig, BacktestRun, backtest

RULES = """\
version: family-backtest-1
metrics: {app.session: count}
signals:
  family_sessions: {measure: sum, metric: app.session, window: 7d, at_least: 60, scope: family}
  own_sessions: {measure: sum, metric: app.session, window: 7d, at_least: 60}
triggers:
  family-busy: {category: value, owner_role: csm, play: p, when: family_sessions, cooldown: 30d}
  account-busy: {category: value, owner_role: csm, play: p, when: own_sessions, cooldown: 30d}
plays: {p: {}}
"""
PARENT, CHILDREN, SOLO = "fam-parent", ("fam-a", "fam-b"), "solo"
START = datetime(2025, 3, 3, 9, tzinfo=UTC)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each child (and a lone account) has 6 sessions a day for two weeks; the parent none.

    42 sessions a week is under the threshold for any one account; the family's 84 is over it.
    """
    folder = tmp_path_factory.mktemp("families")
    lines = [
        json.dumps(
            {
                "event_id": f"{account}-{day}-{n}",
                "account_id": account,
                "name": "app.session",
                "kind": "count",
                "value": 1,
                "occurred_at": (START + timedelta(days=day, minutes=n)).isoformat().replace("+00:00", "Z"),
            }
        )
        for day in range(14)
        for account in (*CHILDREN, SOLO)
        for n in range(6)
    ]
    (folder / "events.jsonl").write_text("\n".join(lines) + "\n")
    profiles = [
        # Children listed before their parent: the partitioning must not depend on the order.
        *(
            {"account_id": child, "profile": {"name": child, "parent_account_id": PARENT}}
            for child in CHILDREN
        ),
        {"account_id": PARENT, "profile": {"name": "Parent Holdings"}},
        {"account_id": SOLO, "profile": {"name": "Solo"}},
    ]
    (folder / "accounts.jsonl").write_text("\n".join(json.dumps(profile) for profile in profiles) + "\n")
    (folder / "outcomes.csv").write_text("account_id,expansion_date,kind,amount,currency\n")
    (folder / "rules.yaml").write_text(RULES)
    return {name: folder / name for name in ("events.jsonl", "accounts.jsonl", "outcomes.csv", "rules.yaml")}


def run(inputs: dict[str, Path], workers: int, partitions: int) -> BacktestRun:
    return backtest(
        BacktestConfig(
            events=(inputs["events.jsonl"],),
            outcomes=inputs["outcomes.csv"],
            accounts=inputs["accounts.jsonl"],
            rules=inputs["rules.yaml"],
            workers=workers,
            partitions=partitions,
        )
    )


def test_a_family_signal_fires_on_the_parent_only_whatever_the_partitioning(inputs: dict[str, Path]) -> None:
    # When the same history is backtested in one partition, and in four over two workers
    single, spread = run(inputs, workers=1, partitions=1), run(inputs, workers=2, partitions=4)

    # Then the family trigger fired once, on the parent, on the day the family reached 60 sessions
    fired = [(trigger, account, at[:10]) for _, trigger, account, at, _ in single.firings]
    assert fired == [("family-busy", PARENT, "2025-03-07")]
    # and no account fired on its own use (42 a week), the lone account included
    assert spread.firings == single.firings
