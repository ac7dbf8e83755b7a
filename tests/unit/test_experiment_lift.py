"""The experiment's figures and verdicts, against hand-computed cases."""

from __future__ import annotations

from decimal import Decimal

import pytest

from shared.experiments.lift import Group, measure


def test_a_planted_effect_is_called_with_newcombes_interval():
    # Newcombe's example (a): 56/70 vs 48/80 → +20 points, 95 % interval +5.24 to +33.39.
    lift = measure(Group(70, 56, Decimal("70000")), Group(80, 48, Decimal("40000")))
    assert lift.absolute is not None
    assert (lift.absolute.low, lift.absolute.high) == pytest.approx((0.0524, 0.3339), abs=1e-4)
    assert lift.relative is not None
    assert lift.relative.value == pytest.approx(0.8 / 0.6)
    assert lift.significant
    assert lift.verdict.startswith("the play works: treated accounts expanded +20.0%")
    assert lift.treated.amount_per_account == Decimal("1000.00")
    assert lift.held_out.amount_per_account == Decimal("500.00")


def test_a_null_effect_is_not_called_significant_and_says_how_many_more_are_needed():
    lift = measure(Group(200, 20), Group(40, 4))
    assert lift.absolute is not None
    assert lift.absolute.value == pytest.approx(0.0)
    assert not lift.significant
    # pooled 10 %: 2 · 1.96² · 0.09 / 0.05² = 276.6 → 277 per group; the smaller has 40.
    assert lift.more_accounts_needed == 237
    assert lift.verdict.startswith("no measurable effect yet: +0.0%")
    assert "237 more accounts per group give ±5%" in lift.verdict
    # 10 % → 12.5 % at 80 % power: (1.96 + 0.8416)² · (0.09 + 0.109375) / 0.025² = 2503.5 → 2,504.
    assert lift.power_note is not None
    assert "2,504 per group" in lift.power_note


def test_too_few_accounts_get_no_verdict_even_with_a_wide_gap():
    lift = measure(Group(10, 9), Group(10, 1))
    assert not lift.significant
    assert lift.verdict.startswith("not enough data yet: 10 account(s) in the smaller group")


def test_an_empty_group_is_answered_not_divided_by():
    lift = measure(Group(50, 10), Group(0, 0))
    assert lift.absolute is None
    assert lift.relative is None
    assert "no held-out account has fired" in lift.verdict


def test_a_harmful_play_is_called_so():
    lift = measure(Group(300, 30), Group(300, 60))
    assert lift.significant
    assert lift.verdict.startswith("the play hurts")


def test_no_expansion_yet_in_the_held_out_group_leaves_the_ratio_undefined():
    lift = measure(Group(100, 10), Group(100, 0))
    assert lift.relative is None
    assert lift.absolute is not None


def test_impossible_counts_are_refused():
    with pytest.raises(ValueError, match="between 0 and accounts"):
        Group(3, 4)
