"""The flood a ruleset would cause: per trigger, its busiest day, and what a daily cap holds back.

Online, a day on which one trigger starts holding for many accounts at once (the day a long window
first fills after go-live, a ruleset change) becomes that many plays in a day. The router caps it
with `budgets.plays_per_trigger_per_day` (docs/rules.md): over the cap a play waits for the next
day, oldest first. This replays that queue on the backtest's firings, every one of them (the warm-up
spike is exactly the flood a go-live without backfill mode would cause): per trigger, the busiest
UTC day and its firings, and with a cap the days over it, the firings held back at least a day and
the longest wait. Budgets per account and per owner are left out: they depend on owners the
backtest does not know, and they only ever delay more.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

from upswing.backtest.replay import FiredAt


def flood(firings: Sequence[FiredAt], triggers: Iterable[str], cap: int | None) -> dict[str, Any]:
    """{"cap": cap, "triggers": {name: figures}} for every trigger with at least one firing."""
    days_of: dict[str, Counter[int]] = {}
    for fired in firings:
        days_of.setdefault(fired.trigger, Counter())[fired.at.toordinal()] += 1
    figures = {}
    for name in triggers:
        per_day = days_of.get(name)
        if per_day:
            figures[name] = _trigger_flood(per_day, cap)
    return {"cap": cap, "triggers": figures}


def _trigger_flood(per_day: Counter[int], cap: int | None) -> dict[str, Any]:
    peak_day, peak = max(per_day.items(), key=lambda item: (item[1], -item[0]))
    found: dict[str, Any] = {
        "peak_day": date.fromordinal(peak_day).isoformat(),
        "peak_firings": peak,
        "days_with_firings": len(per_day),
    }
    if cap is None:
        return found
    waiting: deque[list[int]] = deque()  # [day fired, firings still waiting], oldest first
    held_back = longest_wait = days_over = 0
    day, last = min(per_day), max(per_day)
    while day <= last or waiting:
        if per_day.get(day):
            waiting.append([day, per_day[day]])
        if sum(count for _, count in waiting) > cap:
            days_over += 1
        room = cap
        while waiting and room:
            fired_on, count = waiting[0]
            routed = min(room, count)
            room -= routed
            if day > fired_on:  # routed, but not on the day it fired
                held_back += routed
                longest_wait = max(longest_wait, day - fired_on)
            if routed == count:
                waiting.popleft()
            else:
                waiting[0][1] -= routed
        day += 1
    found.update({"days_over_cap": days_over, "held_back": held_back, "longest_wait_days": longest_wait})
    return found
