"""The backtest's flood figures, checked by hand: busiest day, days over the cap, held back, waits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from upswing.backtest.flood import flood
from upswing.backtest.output import flood_lines
from upswing.backtest.replay import FiredAt

MONDAY = datetime(2026, 3, 2, 9, tzinfo=UTC)


def firings(trigger: str, per_day: list[int]) -> list[FiredAt]:
    return [
        FiredAt(0, f"acct-{day}-{n}", trigger, MONDAY + timedelta(days=day), 1.0)
        for day, count in enumerate(per_day)
        for n in range(count)
    ]


def test_given_a_spike_and_a_cap_then_the_excess_waits_oldest_first_and_is_counted_once():
    # Day 0: 5 firings, day 1: 1, day 3: 2; cap 2 a day.
    # Day 0 routes 2 (3 wait); day 1 routes 2 of day 0 (1 + day 1's 1 wait); day 2 routes day 0's
    # last and day 1's (2); day 3 routes its 2. Held back: 3 of day 0 + 1 of day 1 = 4; the longest
    # wait is 2 days (day 0's last, routed on day 2); days with more waiting than the cap: 0 and 1.
    result = flood(firings("seats", [5, 1, 0, 2]), ["seats", "quiet"], cap=2)

    assert result == {
        "cap": 2,
        "triggers": {
            "seats": {
                "peak_day": "2026-03-02",
                "peak_firings": 5,
                "days_with_firings": 3,
                "days_over_cap": 2,
                "held_back": 4,
                "longest_wait_days": 2,
            }
        },
    }


def test_given_no_cap_then_only_the_busiest_day_is_reported_and_the_summary_says_no_cap_is_set():
    result = flood(firings("seats", [1, 3, 3]), ["seats"], cap=None)

    assert result["triggers"]["seats"] == {
        "peak_day": "2026-03-03",
        "peak_firings": 3,
        "days_with_firings": 3,
    }
    assert flood_lines(result) == [
        "  Busiest day per trigger (no budgets.plays_per_trigger_per_day cap set):",
        "    seats                                 3 firings on 2026-03-03",
    ]


def test_given_a_cap_never_reached_then_nothing_is_held_back():
    result = flood(firings("seats", [2, 1, 2]), ["seats"], cap=2)

    assert result["triggers"]["seats"]["held_back"] == 0
    assert result["triggers"]["seats"]["days_over_cap"] == 0
    assert flood_lines(result)[1].endswith("the cap holds back 0 (up to 0 days) over 0 days")
