"""The columnar engine on simulated populations: the scalar replay's firings, to the last one.

`upswing simulate` writes 1,000 accounts with planted behaviours (growers, plateaus, churners,
noise) for three seeds; the backtest's pipeline replays each with the scalar engine and with the
columnar one, on the reference ruleset and on a ruleset using every capability the columnar engine
claims. Every account must take the columnar path (the simulation's input is clean), and the
firings (account, trigger, time, score) and the number of evaluations must be identical.
tests/unit/test_columnar_equality.py proves the same on random rulesets and small histories;
`make bench` repeats it on 10,000 accounts and prints any difference.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from shared.rules.engine import read_plan
from shared.rules.loading import load_ruleset, parse_ruleset
from upswing.backtest.pipeline import Replayed, run
from upswing.backtest.replay import Contender
from upswing.backtest.truth import read_profiles
from upswing.columnar import unsupported_triggers
from upswing.simulate import SimulationConfig, simulate

REFERENCE_RULES = Path(__file__).resolve().parents[2] / "rules" / "reference.yaml"
# Beside the reference ruleset: what it does not use (ratio, where, rising with a bound, growth
# from zero, at_most, requires, a signal check, nested composites, scores of composites).
WIDER_RULES = """
version: columnar-wide
metrics: {seats.active: gauge, app.session: count, api.calls: count, paywall.hit: count,
  feature.analytics.used: count, user.invited: count}
signals:
  calls_per_session: {measure: ratio, ratio: {numerator: {measure: sum, metric: api.calls},
    denominator: {measure: count, metric: app.session}}, window: 14d, at_least: 50}
  users_per_seat: {measure: ratio, ratio: {numerator: {measure: distinct, metric: app.session,
    dimension: user}, denominator: {measure: peak, metric: seats.active}}, window: 30d, at_least: 0.9}
  one_user_busy: {measure: count, metric: app.session, where: {user: [u-1, u-2]}, window: 7d, at_least: 3}
  invites_from_zero: {measure: sum, metric: user.invited, window: 14d,
    growth: {over: previous_window, from_zero: fire}, at_least: 1}
  sessions_rising: {measure: count, metric: app.session, window: 7d, rising: 2, at_least: 10}
  quiet_seats: {measure: low, metric: seats.active, window: 14d, per_limit: seats, at_most: 0.3}
  seats_jump: {measure: peak, metric: seats.active, window: 7d,
    growth: {over: average, baseline_window: 28d}, more_than: 0.05}
  busy: {signals: [calls_per_session, one_user_busy, sessions_rising], n_of: 2, within: 10d}
  very_busy: {signals: [busy, users_per_seat, seats_jump], n_of: 2, within: 5d}
triggers:
  busy-account: {category: adoption, owner_role: csm, play: check-in, when: very_busy, cooldown: 20d,
    unless: [do_not_contact, {contacted_within: 5d}],
    score: {base: 5, weights: {busy: 30, users_per_seat: 40, seats_jump: 25}}}
  invites-start: {category: adoption, owner_role: csm, play: check-in, when: invites_from_zero,
    cooldown: 10d, requires: [{signal: one_user_busy}]}
  quiet: {category: risk, owner_role: csm, play: check-in, when: quiet_seats, cooldown: 30d,
    unless: [{signal: sessions_rising}, {renewal_within: 60d}], segments: [smb, mid-market]}
  per-session: {category: value, owner_role: ae, play: check-in, when: calls_per_session, cooldown: 15d,
    unless: [{contacted_within: 3d}]}
plays: {check-in: {}}
"""


@pytest.fixture(scope="module", params=[1, 2, 3])
def population(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp(f"population-{request.param}")
    simulate(
        SimulationConfig(accounts=1000, days=75, seed=request.param, start=date(2025, 3, 1)),
        folder,
        ("jsonl",),
    )
    return folder


def replayed(folder: Path, contenders: list[Contender], engine: str) -> Replayed:
    return run(
        [folder / "events.jsonl"],
        contenders,
        read_profiles(folder / "accounts.jsonl"),
        retention_days=400,
        strict=False,
        workers=1,
        partitions=4,
        engine=engine,
    )


def test_given_simulated_populations_when_replayed_by_both_engines_then_the_same_firings(
    population: Path,
) -> None:
    # Given: the reference ruleset and a wider one, both columnar throughout, on 1,000 accounts
    rulesets = [load_ruleset(REFERENCE_RULES), parse_ruleset(WIDER_RULES, "wide.yaml")]
    assert all(unsupported_triggers(ruleset) == {} for ruleset in rulesets)
    contenders = [
        Contender(label, ruleset, read_plan(ruleset)) for label, ruleset in zip("AB", rulesets, strict=True)
    ]

    # When: replayed by the scalar engine and by the columnar one
    scalar = replayed(population, contenders, "scalar")
    columnar = replayed(population, contenders, "columnar")

    # Then: every account took the columnar path, and nothing differs
    assert columnar.stats.columnar_accounts == 1000
    assert columnar.stats.scalar_accounts == 0
    assert columnar.stats.evaluations == scalar.stats.evaluations
    assert columnar.stats.accepted == scalar.stats.accepted
    assert columnar.stats.spans == scalar.stats.spans
    assert columnar.firings == scalar.firings
    # Not vacuous: both rulesets fire, most of their triggers too.
    fired = {(firing.contender, firing.trigger) for firing in scalar.firings}
    assert len({trigger for contender, trigger in fired if contender == 0}) >= 6
    assert len({trigger for contender, trigger in fired if contender == 1}) >= 3
