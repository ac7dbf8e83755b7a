"""Scoring firings against expansions: the rules docs/backtest.md states, checked by hand and by
brute force."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from upswing.backtest.replay import FiredAt
from upswing.backtest.scoring import MIN_ACCOUNTS, Outcomes, Score, Subject, overlap, rank, score
from upswing.backtest.truth import Expansion

START = date(2025, 1, 1)
HORIZON = 30
LOOKBACK = 10
SUBJECT = Subject("seat-expansion", "trigger", "commercial", "seat-expansion", LOOKBACK)


def day(number: int) -> date:
    """Day `number` of the history (day 0 is START)."""
    return START + timedelta(days=number)


def fired(account: str, on: int, trigger: str = "seat-expansion") -> FiredAt:
    return FiredAt(0, account, trigger, datetime.combine(day(on), time(15), UTC), 50.0)


def expansion(account: str, on: int) -> Expansion:
    return Expansion(account, day(on), "seats", "1000", "USD")


def outcomes(expansions: list[Expansion], accounts: int = 4, days: int = 200) -> Outcomes:
    spans = {f"acct-{n}": (day(0).toordinal(), day(days - 1).toordinal()) for n in range(accounts)}
    return Outcomes(expansions, spans, HORIZON)


def test_a_firing_predicts_an_expansion_from_one_to_h_days_after_it() -> None:
    history = outcomes(
        [
            expansion("acct-0", 50 + 1),
            expansion("acct-1", 50 + HORIZON),
            expansion("acct-2", 50 + HORIZON + 1),
            expansion("acct-3", 50),
        ]
    )
    result = score(SUBJECT, [fired(f"acct-{n}", 50) for n in range(3)], history)
    assert (result.accounts_fired, result.hits) == (3, 2)  # next day and day H count; day H+1 does not
    assert sorted(result.days_to_expansion) == [1, HORIZON]
    assert result.median_days_to_expansion == (1 + HORIZON) / 2
    # A firing on the expansion's own day is its echo: the account is settling, not scored.
    same_day = score(SUBJECT, [fired("acct-3", 50)], history)
    assert (same_day.scored_firings, same_day.after_expansion_firings) == (0, 1)


def test_warm_up_censored_and_settling_firings_are_counted_but_not_scored() -> None:
    history = outcomes([expansion("acct-2", 100)], days=200)
    firings = [
        fired("acct-0", LOOKBACK - 2),  # its window reaches before the first day: warm-up
        fired("acct-0", LOOKBACK - 1),  # the first day with a whole window
        fired("acct-1", 199 - HORIZON + 1),  # its horizon runs past the data: censored
        fired("acct-2", 100 + HORIZON - 1),  # still settling after an expansion
        fired("acct-2", 100 + HORIZON),  # settled
    ]
    result = score(SUBJECT, firings, history)
    assert (result.warm_up_firings, result.censored_firings, result.after_expansion_firings) == (1, 1, 1)
    assert result.scored_firings == 2
    assert (result.scored_from, result.scored_to) == (
        day(LOOKBACK - 1).isoformat(),
        day(199 - HORIZON).isoformat(),
    )


def test_precision_takes_each_accounts_first_scored_firing_once() -> None:
    # acct-0 fires three times and expands after the third only: its first firing was not followed.
    history = outcomes([expansion("acct-0", 120), expansion("acct-1", 60)])
    firings = [fired("acct-0", 20), fired("acct-0", 60), fired("acct-0", 100), fired("acct-1", 50)]
    result = score(SUBJECT, firings, history)
    assert (result.accounts_fired, result.hits, result.precision) == (2, 1, 0.5)
    # Recall is per expansion: both were preceded within H by some scored firing.
    assert result.recall == 1.0


def test_the_base_rate_is_the_share_of_eligible_account_days_followed_by_an_expansion() -> None:
    # One account of four expands on day 100; the window is days 9..169 (161 days a account).
    history = outcomes([expansion("acct-0", 100)], days=200)
    first, last = day(LOOKBACK - 1).toordinal(), day(199 - HORIZON).toordinal()
    # acct-0: days 70..99 are followed within H; days 100..129 are settling (not eligible).
    expected = HORIZON / (4 * (last - first + 1) - HORIZON)
    assert history.base_rate(first, last) == pytest.approx(expected)
    result = score(SUBJECT, [fired("acct-0", 80)] * 1, history)
    assert result.base_rate_pooled == pytest.approx(expected)
    # On day 80 one of the four accounts (acct-0 itself) is 20 days from its expansion: 1/4.
    assert result.base_rate == pytest.approx(0.25)
    assert result.lift is None  # one fired account: not judged, shown as "—"


def test_the_base_rate_is_matched_in_time_to_the_firings() -> None:
    # 40 accounts; the ten of acct-0..9 expand on day 100, the rest never: expansions come in a
    # season. A trigger firing on day 80 on 20 accounts (10 of them the expanders) is compared with
    # accounts on day 80 (10 of 40 expand within H: 25 %), not with the whole year (~5 %).
    spans = {f"acct-{n}": (day(0).toordinal(), day(199).toordinal()) for n in range(40)}
    history = Outcomes([expansion(f"acct-{n}", 100) for n in range(10)], spans, HORIZON)
    firings = [fired(f"acct-{n}", 80) for n in range(20)]
    result = score(SUBJECT, firings, history)
    assert result.precision == 0.5
    assert result.base_rate == pytest.approx(0.25)
    assert result.base_rate_pooled is not None
    assert result.base_rate_pooled < 0.06
    assert result.lift == pytest.approx(2.0)
    # Katz: se(ln lift) = √(1/10 - 1/20 + 1/(0.25·40) - 1/40) over the 40 accounts of the window.
    spread = 1.959964 * math.sqrt(1 / 10 - 1 / 20 + 1 / 10 - 1 / 40)
    expected = (2 * math.exp(-spread), 2 * math.exp(spread))
    assert (result.lift_low, result.lift_high) == pytest.approx(expected, rel=1e-5)
    # Lift 2 whose interval (1.0002 to 4.0) just clears chance: predictive, barely.
    assert result.verdict == "predictive"
    assert "for a random account on the same days" in result.note


@given(
    expansions=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 60)), max_size=8),
    spans=st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), min_size=4, max_size=4),
    today=st.integers(0, 60),
    horizon=st.integers(1, 20),
)
@settings(max_examples=200, deadline=None)
def test_the_day_rate_equals_counting_every_account_on_that_day(
    expansions: list[tuple[int, int]], spans: list[tuple[int, int]], today: int, horizon: int
) -> None:
    accounts = {
        f"acct-{n}": (day(min(a, b)).toordinal(), day(max(a, b)).toordinal())
        for n, (a, b) in enumerate(spans)
    }
    history = Outcomes([expansion(f"acct-{n}", on) for n, on in expansions], accounts, horizon)
    moment = day(today).toordinal()
    eligible = positive = 0
    for account, (start, end) in accounts.items():
        if not start <= moment <= end:
            continue
        days = sorted(day(on).toordinal() for n, on in expansions if f"acct-{n}" == account)
        if any(0 <= moment - e < horizon for e in days):
            continue
        eligible += 1
        positive += any(1 <= e - moment <= horizon for e in days)
    expected = positive / eligible if eligible else None
    assert history.day_rate(moment) == (pytest.approx(expected) if expected is not None else None)


def test_accounts_silenced_by_a_warm_up_firing_are_counted_and_named() -> None:
    subject = Subject("seat-expansion", "trigger", "commercial", "seat-expansion", LOOKBACK, cooldown_days=30)
    history = outcomes([], accounts=4)
    firings = [
        fired("acct-0", LOOKBACK - 3),  # cooling down until day 37: silenced, never scored
        fired("acct-1", LOOKBACK - 3),
        fired("acct-1", 60),  # fires again in the window: not silenced
    ]
    result = score(subject, firings, history)
    assert (result.warm_up_accounts, result.silenced_by_warm_up) == (2, 1)
    assert "1 account(s) fired only in the warm-up" in result.note


def test_breakdowns_by_segment_and_kind_and_the_revenue_captured() -> None:
    history = outcomes(
        [
            Expansion("acct-0", day(60), "seat_expansion", "1200.50", "USD"),
            Expansion("acct-1", day(60), "plan_upgrade", "800", "USD"),
            Expansion("acct-2", day(60), "add_on", "", "EUR"),
        ]
    )
    segments = {"acct-0": "enterprise", "acct-1": "smb", "acct-3": "smb"}
    result = score(SUBJECT, [fired(f"acct-{n}", 50) for n in range(4)], history, segments)
    assert result.by_segment == {
        "(none)": {"accounts_fired": 1, "hits": 1, "precision": 1.0},
        "enterprise": {"accounts_fired": 1, "hits": 1, "precision": 1.0},
        "smb": {"accounts_fired": 2, "hits": 1, "precision": 0.5},
    }
    assert result.by_kind == {"add_on": 1, "plan_upgrade": 1, "seat_expansion": 1}
    assert result.revenue_captured == {"USD": "2000.50"}
    assert result.hits_without_amount == 1


def test_overlap_counts_the_hits_no_other_trigger_found() -> None:
    history = outcomes([expansion(f"acct-{n}", 60) for n in range(3)])
    seats = score(SUBJECT, [fired("acct-0", 50), fired("acct-1", 50)], history)
    api = score(
        Subject("api-limit", "trigger", "commercial", "api", LOOKBACK),
        [fired("acct-1", 50, "api-limit"), fired("acct-2", 50, "api-limit")],
        history,
    )
    invites = score(
        Subject("signal:invites", "signal", None, None, LOOKBACK),
        [fired("acct-2", 50, "signal:invites")],
        history,
    )
    overlap([seats, api, invites])
    assert (seats.unique_hits, api.unique_hits) == (1, 1)
    assert invites.unique_hits == 0  # api-limit found acct-2 already
    assert "hit_accounts" not in seats.as_dict()


@given(
    expansions=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 90)), max_size=8),
    spans=st.lists(st.tuples(st.integers(0, 90), st.integers(0, 90)), min_size=4, max_size=4),
    window=st.tuples(st.integers(0, 90), st.integers(0, 90)),
    horizon=st.integers(1, 20),
)
@settings(max_examples=200, deadline=None)
def test_the_base_rate_equals_counting_every_account_day(
    expansions: list[tuple[int, int]],
    spans: list[tuple[int, int]],
    window: tuple[int, int],
    horizon: int,
) -> None:
    accounts = {
        f"acct-{n}": (day(min(a, b)).toordinal(), day(max(a, b)).toordinal())
        for n, (a, b) in enumerate(spans)
    }
    history = Outcomes([expansion(f"acct-{n}", on) for n, on in expansions], accounts, horizon)
    first, last = day(min(window)).toordinal(), day(max(window)).toordinal()
    eligible = positive = 0
    for account, (start, end) in accounts.items():
        days = sorted(day(on).toordinal() for n, on in expansions if f"acct-{n}" == account)
        for today in range(max(first, start), min(last, end) + 1):
            if any(0 <= today - e < horizon for e in days):
                continue
            eligible += 1
            positive += any(1 <= e - today <= horizon for e in days)
    expected = positive / eligible if eligible else None
    assert history.base_rate(first, last) == (pytest.approx(expected) if expected is not None else None)


def test_the_precision_interval_is_wilsons() -> None:
    history = outcomes([expansion(f"acct-{n}", 60) for n in range(2)], accounts=4)
    result = score(SUBJECT, [fired(f"acct-{n}", 50) for n in range(4)], history)
    assert result.precision == 0.5
    assert result.precision_low == pytest.approx(0.150, abs=0.001)
    assert result.precision_high == pytest.approx(0.850, abs=0.001)


def test_too_few_accounts_are_not_judged_and_say_why() -> None:
    history = outcomes([expansion("acct-0", 60)])
    result = score(SUBJECT, [fired("acct-0", 50)], history)
    assert result.verdict == "too few firings"
    assert f"at least {MIN_ACCOUNTS}" in result.note


def test_a_lookback_longer_than_the_history_leaves_nothing_to_score() -> None:
    long = Subject("sustained", "trigger", "commercial", "x", 400)
    result = score(long, [fired("acct-0", 50)], outcomes([]))
    assert result.verdict == "too few firings"
    assert "leave no scored days" in result.note
    assert result.precision is None
    assert result.lift is None
    assert result.base_rate is None


def many(verdict_lift: float, accounts: int = 40) -> Score:
    row = Score("t", "trigger", None, None, 1, "2025-01-01", "2025-12-31", accounts_fired=accounts)
    row.lift = verdict_lift
    return row


def test_ranking_puts_the_best_lift_first_and_the_unjudgeable_last() -> None:
    judged = [many(1.0), many(5.0), many(2.5)]
    for row, name in zip(judged, ["noise", "best", "middle"], strict=True):
        row.trigger, row.verdict = name, "weak"
    unjudged = many(9.0, accounts=3)
    unjudged.trigger, unjudged.verdict = "rare", "too few firings"
    nothing = many(0.0)
    nothing.trigger, nothing.lift = "never", None
    ordered = rank([*judged, unjudged, nothing])
    assert [row.trigger for row in ordered] == ["best", "middle", "noise", "rare", "never"]
    assert [row.rank for row in ordered] == [1, 2, 3, 4, 5]


def test_verdicts_follow_lift_and_the_interval() -> None:
    accounts = MIN_ACCOUNTS * 2
    expanding = [expansion(f"acct-{n}", 60) for n in range(accounts // 2)]
    history = outcomes(expanding, accounts=accounts * 5)
    predictive = score(SUBJECT, [fired(f"acct-{n}", 50) for n in range(accounts)], history)
    assert predictive.verdict == "predictive", predictive.note
    assert "median lead time 10 days" in predictive.note
    # Firing on accounts that do not expand: no better than chance.
    chance = score(SUBJECT, [fired(f"acct-{n}", 50) for n in range(accounts, accounts * 5)], history)
    assert chance.verdict == "vanity"
    assert "no better than chance" in chance.note
