"""A sliding-window pacer: at most `limit` requests in any `window_seconds`, within one process.

HubSpot answers 429 once an app exceeds its burst limit (100 requests / 10 s on the lowest
tier), and its error responses should stay under 5 % of all requests. Pacing before each request
keeps a sender under the limit instead of discovering it through 429s.

The pacer only sees its own process. HubSpot counts per app, across every concurrent Lambda, so
the budget given here should be the app's limit divided by the sender's maximum concurrency.
A client that is created once per process (cached by the handler) shares one pacer across
invocations; a client created per invocation would start each with a fresh budget.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

# Sleeps are this much longer than the computed wait, so the oldest slot has surely expired when
# we wake despite float rounding and coarse timers (and a fake clock never loops on a 1e-16 wait).
_SLACK_SECONDS = 0.001


class PacingDeadlineExceeded(Exception):
    """The wait for a free slot would end after the caller's deadline."""

    def __init__(self, wait_seconds: float) -> None:
        super().__init__(f"the next request slot is {wait_seconds:.3f} s away, past the deadline")
        self.wait_seconds = wait_seconds


class Pacer:
    """At most `limit` acquisitions in any window of `window_seconds`; thread-safe.

    `clock` and `sleep` are injectable so tests run on a fake clock; `clock` must be monotonic.
    """

    def __init__(
        self,
        limit: int,
        window_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit < 1 or window_seconds <= 0:
            raise ValueError("a pacer needs a limit of at least 1 and a positive window")
        self.limit = limit
        self.window_seconds = window_seconds
        self._clock = clock
        self._sleep = sleep
        self._granted: deque[float] = deque()  # clock() of each acquisition still inside the window
        self._lock = threading.Lock()

    def acquire(self, deadline: float | None = None) -> None:
        """Take a slot, waiting for one if the window is full.

        Raises PacingDeadlineExceeded, without waiting, when the slot would come after `deadline`
        (a clock() value): a Lambda must hand the work back rather than be killed mid-sleep.
        """
        # Sleeps outside the lock: another thread may take the slot first, then the loop goes on.
        wait_for_slot(self.try_acquire, self._clock, self._sleep, deadline)

    def try_acquire(self) -> float:
        """Take a slot if one is free and return 0; otherwise take nothing and return the wait."""
        with self._lock:
            now = self._clock()
            while self._granted and now - self._granted[0] >= self.window_seconds:
                self._granted.popleft()
            if len(self._granted) < self.limit:
                self._granted.append(now)
                return 0.0
            return self._granted[0] + self.window_seconds - now + _SLACK_SECONDS


def wait_for_slot(
    try_acquire: Callable[[], float],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    deadline: float | None,
) -> None:
    """Take a slot through `try_acquire` (0: taken; else the wait), sleeping between tries; raise
    PacingDeadlineExceeded, without waiting, when the slot would come after `deadline`."""
    while True:
        wait = try_acquire()
        if wait == 0:
            return
        if deadline is not None and clock() + wait > deadline:
            raise PacingDeadlineExceeded(wait)
        sleep(wait)
