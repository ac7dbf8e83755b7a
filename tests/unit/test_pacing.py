"""The sliding-window pacer: never more than N requests in any window, never a sleep past a deadline."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.delivery.pacing import Pacer, PacingDeadlineExceeded


@dataclass
class FakeClock:
    """A monotonic clock that only moves when someone sleeps (or the test advances it)."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


def test_given_a_free_window_when_n_requests_come_at_once_then_none_waits():
    clock = FakeClock()
    pacer = Pacer(3, 10.0, clock, clock.sleep)

    for _ in range(3):
        pacer.acquire()

    assert clock.sleeps == []


def test_given_a_full_window_when_one_more_comes_then_it_waits_until_the_oldest_leaves_the_window():
    clock = FakeClock()
    pacer = Pacer(2, 10.0, clock, clock.sleep)
    pacer.acquire()
    clock.now += 4.0
    pacer.acquire()

    pacer.acquire()

    assert clock.now == pytest.approx(1010.0, abs=0.01)  # the first slot, taken at 1000.0, expired


def test_given_a_full_window_when_the_wait_would_pass_the_deadline_then_it_raises_without_sleeping():
    clock = FakeClock()
    pacer = Pacer(1, 10.0, clock, clock.sleep)
    pacer.acquire()

    with pytest.raises(PacingDeadlineExceeded) as raised:
        pacer.acquire(deadline=clock.now + 5.0)

    assert clock.sleeps == []
    assert raised.value.wait_seconds == pytest.approx(10.0, abs=0.01)


def test_given_a_full_window_when_trying_then_the_wait_is_returned_and_no_slot_is_taken():
    clock = FakeClock()
    pacer = Pacer(1, 10.0, clock, clock.sleep)

    assert pacer.try_acquire() == 0.0
    clock.now += 3.0
    assert pacer.try_acquire() == pytest.approx(7.0, abs=0.01)
    clock.now += 7.01
    assert pacer.try_acquire() == 0.0


@pytest.mark.parametrize(("limit", "window"), [(0, 10.0), (1, 0.0)])
def test_given_a_pacer_that_could_never_grant_when_built_then_it_is_refused(limit, window):
    with pytest.raises(ValueError, match="limit"):
        Pacer(limit, window)


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(min_value=1, max_value=8),
    window=st.floats(min_value=0.5, max_value=20.0),
    gaps=st.lists(st.floats(min_value=0.0, max_value=5.0), min_size=1, max_size=60),
)
def test_given_any_arrival_pattern_when_paced_then_no_window_holds_more_than_the_limit(limit, window, gaps):
    clock = FakeClock()
    pacer = Pacer(limit, window, clock, clock.sleep)
    granted: list[float] = []

    for gap in gaps:
        clock.now += gap
        pacer.acquire()
        granted.append(clock.now)

    # Any window of `window` seconds holding limit + 1 grants would contain two grants `limit` apart.
    assert all(later - earlier >= window for earlier, later in zip(granted, granted[limit:], strict=False))
