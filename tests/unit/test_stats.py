"""The intervals against published and hand-computed cases."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.stats import difference, ratio, trials_for_margin, trials_for_power, wilson


def test_wilson_matches_the_hand_computed_interval():
    # 56 of 70: centre (0.8 + z²/140) / (1 + z²/70), spread z·√(0.8·0.2/70 + z²/19600) / (1 + z²/70).
    estimate = wilson(56, 70)
    assert estimate.value == pytest.approx(0.8)
    assert (estimate.low, estimate.high) == pytest.approx((0.6918, 0.8770), abs=1e-4)


def test_wilson_stays_inside_zero_and_one_at_the_edges():
    none, every = wilson(0, 10), wilson(10, 10)
    assert none.low == 0.0
    assert none.high == pytest.approx(0.2775, abs=1e-4)
    assert every.high == 1.0
    assert every.low == pytest.approx(0.7225, abs=1e-4)


def test_difference_matches_newcombes_published_example():
    # Newcombe (1998), Statistics in Medicine 17:873-890, example (a): 56/70 - 48/80, method 10.
    estimate = difference(56, 70, 48, 80)
    assert estimate.value == pytest.approx(0.2)
    assert (estimate.low, estimate.high) == pytest.approx((0.0524, 0.3339), abs=1e-4)
    assert estimate.excludes(0)


def test_ratio_uses_the_katz_log_interval():
    # 30/100 vs 15/100: r = 2, se(ln r) = √(1/30 - 1/100 + 1/15 - 1/100) = √0.08.
    estimate = ratio(30, 100, 15, 100)
    assert estimate is not None
    assert estimate.value == pytest.approx(2.0)
    spread = 1.959964 * math.sqrt(0.08)
    expected = (2 * math.exp(-spread), 2 * math.exp(spread))
    assert (estimate.low, estimate.high) == pytest.approx(expected, rel=1e-6)
    assert ratio(0, 100, 15, 100) is None
    assert ratio(3, 100, 0, 100) is None


def test_sample_sizes_follow_the_normal_approximation():
    # ±5 points around 10 %: 2 · 1.96² · 0.09 / 0.0025 = 276.6 → 277 per group.
    assert trials_for_margin(0.10, 0.05) == 277
    # 10 % → 15 %: (1.96 + 0.8416)² · (0.09 + 0.1275) / 0.0025 = 682.6 → 683 per group.
    assert trials_for_power(0.10, 0.15) == 683
    with pytest.raises(ValueError, match="must differ"):
        trials_for_power(0.1, 0.1)


def test_bad_counts_are_refused_with_the_numbers():
    with pytest.raises(ValueError, match="3 of 2"):
        wilson(3, 2)
    with pytest.raises(ValueError, match="0 of 0"):
        wilson(0, 0)


@given(st.integers(1, 500).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_every_interval_contains_its_estimate(case):
    hits, trials = case
    estimate = wilson(hits, trials)
    assert 0 <= estimate.low <= estimate.value <= estimate.high <= 1
    gap = difference(hits, trials, trials - hits, trials)
    assert -1 <= gap.low <= gap.value <= gap.high <= 1
