"""End to end on the local stack: a planted effect the experiment report calls significant, and a
null effect it does not.

Two populations of accounts, each firing one trigger with a 50 % holdout (tests/fixtures/rulesets/
experiment-e2e.yaml): usage events go in over HTTP, the real aggregator, evaluator and router fire
and route (or hold out) the plays, and each account's arm is read back as RevOps would (`upswing
experiment export`). Expansions are then posted over HTTP (POST /v1/outcomes) — for the planted
effect to far more treated than held-out accounts, for the null effect to the same share of each
arm — and the real attributor credits them. GET /v1/triggers/{name}/experiment and `upswing experiment
report --html` must tell the two apart.

Sizes come from shared/stats.py: enough accounts per arm for 80 % power on the planted rates (and at
least the report's minimum per arm), doubled for the 50 % holdout, with room for the draw's
imbalance — tens of accounts per arm, not thousands.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.experiments.lift import MIN_PER_GROUP
from shared.stats import trials_for_power
from tests.e2e.conftest import RunningStack, running_stack
from upswing.local.aws import LOCAL_PREFIX

pytestmark = pytest.mark.e2e

RULESET = "tests/fixtures/rulesets/experiment-e2e.yaml"
PLANTED = {"treated": 0.60, "holdout": 0.15}  # treated accounts expand four times as often
NULL = {"treated": 0.30, "holdout": 0.30}
# Per arm: 80 % power for the planted rates, never under the report's minimum for a verdict; the
# population is twice that (a 50 % holdout) and a third more, so the smaller arm still has enough.
PER_ARM = max(MIN_PER_GROUP, trials_for_power(PLANTED["holdout"], PLANTED["treated"]))
ACCOUNTS = math.ceil(2 * PER_ARM * 4 / 3)


@pytest.fixture(scope="module")
def stack() -> Iterator[RunningStack]:
    with running_stack({"RULESET_PATH": RULESET}) as running:
        yield running


def test_a_planted_effect_is_significant_and_a_null_effect_is_not(
    stack: RunningStack, tmp_path: Path
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    planted = [f"planted-{n:03d}" for n in range(ACCOUNTS)]
    null = [f"null-{n:03d}" for n in range(ACCOUNTS)]
    with stack.client() as api:
        # Given each account used its trigger's feature once, and each trigger fired for all of them
        events = [_event(a, "trial.planted", now) for a in planted] + [
            _event(a, "trial.null", now) for a in null
        ]
        for start in range(0, len(events), 100):
            answer = api.post("/v1/events", json={"events": events[start : start + 100]})
            assert answer.status_code == 202, answer.text
        for trigger in ("planted-effect", "null-effect"):
            _wait(api, trigger, lambda report: _trials(report) == ACCOUNTS)

        # ...each account's arm as RevOps' export of the firings says it (the draw is the engine's)
        arms = _arms(stack, "planted-effect") | _arms(stack, "null-effect")
        for population in (planted, null):
            treated = [a for a in population if arms[a] == "treated"]
            held_out = [a for a in population if arms[a] == "holdout"]
            assert len(treated) + len(held_out) == ACCOUNTS
            assert min(len(treated), len(held_out)) >= PER_ARM

        # When expansions come in: far more often for treated accounts of the planted experiment,
        # equally often in both arms of the null one
        expanding = _chosen(planted, arms, PLANTED) + _chosen(null, arms, NULL)
        after_the_firings = datetime.now(UTC).replace(microsecond=0)  # within each firing's horizon
        outcomes = [_expansion(account, after_the_firings) for account in expanding]
        for start in range(0, len(outcomes), 100):
            answer = api.post("/v1/outcomes", json={"outcomes": outcomes[start : start + 100]})
            assert answer.status_code == 202, answer.text
        expected = {
            "planted-effect": sum(1 for a in expanding if a.startswith("planted")),
            "null-effect": sum(1 for a in expanding if a.startswith("null")),
        }
        reports = {
            trigger: _wait(api, trigger, lambda report, n=n: _expanded(report) == n)
            for trigger, n in expected.items()
        }

    # Then the planted effect is found, with the right sign, and the null effect is not
    found = reports["planted-effect"]
    assert found["significant"] is True, found["verdict"]
    assert found["verdict"].startswith("the play works")
    low, high = found["absolute_lift"]["interval_95"]
    assert 0 < low < PLANTED["treated"] - PLANTED["holdout"] < high
    assert found["treated"]["rate"]["value"] == pytest.approx(PLANTED["treated"], abs=0.02)
    assert found["held_out"]["rate"]["value"] == pytest.approx(PLANTED["holdout"], abs=0.02)

    none = reports["null-effect"]
    assert none["significant"] is False, none["verdict"]
    low, high = none["absolute_lift"]["interval_95"]
    assert low < 0 < high
    assert not none["verdict"].startswith(("the play works", "the play hurts"))

    # ...and the report command says the same, as text and as an HTML page
    page = tmp_path / "planted.html"
    ran = stack.cli(
        "experiment",
        "report",
        "planted-effect",
        "--endpoint",
        stack.api,
        "--html",
        str(page),
        environment={"UPSWING_API_KEY": stack.key},
    )
    assert ran.returncode == 0, ran.stderr
    assert "Verdict: the play works" in ran.stdout
    assert "the play works" in page.read_text()


# ── helpers ─────────────────────────────────────────────────────────────────────────────────────


def _event(account: str, name: str, when: datetime) -> dict[str, Any]:
    return {
        "event_id": f"{account}-{name}",
        "account_id": account,
        "name": name,
        "occurred_at": when.isoformat().replace("+00:00", "Z"),
        "value": 1,
    }


def _expansion(account: str, when: datetime) -> dict[str, Any]:
    return {
        "outcome_id": f"expansion-{account}",
        "account_id": account,
        "kind": "seat_expansion",
        "occurred_at": when.isoformat().replace("+00:00", "Z"),
        "amount": "100.00",
        "currency": "USD",
        "source": "billing",
    }


def _arms(stack: RunningStack, trigger: str) -> dict[str, str]:
    """Account → arm, from `upswing experiment export` (the CSV of the trigger's firings)."""
    ran = stack.cli("experiment", "export", trigger, "--plays-table", f"{LOCAL_PREFIX}-plays")
    assert ran.returncode == 0, ran.stderr
    rows = list(csv.DictReader(io.StringIO(ran.stdout)))
    assert len(rows) == ACCOUNTS
    return {row["account_id"]: row["arm"] for row in rows}


def _chosen(population: list[str], arms: dict[str, str], rates: dict[str, float]) -> list[str]:
    """The first share of each arm's accounts, by the arm's rate (rounded to the nearest account)."""
    chosen = []
    for arm, rate in rates.items():
        members = [a for a in population if arms[a] == arm]
        chosen += members[: round(rate * len(members))]
    return chosen


def _trials(report: dict[str, Any]) -> int:
    return int(report["treated"]["accounts"]) + int(report["held_out"]["accounts"])


def _expanded(report: dict[str, Any]) -> int:
    return int(report["treated"]["expanded"]) + int(report["held_out"]["expanded"])


def _wait(api: httpx.Client, trigger: str, ready: Any, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        report: dict[str, Any] = api.get(f"/v1/triggers/{trigger}/experiment").json()
        if ready(report):
            return report
        if time.monotonic() > deadline:
            raise AssertionError(f"{trigger}: the stack did not get there in {timeout} s: {report}")
        time.sleep(0.3)
