"""A handler's dependencies: built on first use, kept for the life of the process, reset on demand.

A Lambda process serves many invocations, so a handler builds its clients, stores and services
once (outside the request path, after the first call) and keeps them. The local stack and the
tests run many stacks in one process, each with its own endpoint and tables, so they must be able
to forget what a handler built. Each handler module declares one `wiring = Wiring()` and builds
every dependency through `@wiring.once`; `reset()` forgets them all, and nothing else keeps state
(tests/unit/test_wiring.py holds every function in shared/resources.FUNCTIONS to it).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

T = TypeVar("T")


class Wiring:
    """The dependencies one handler module builds once per process."""

    def __init__(self) -> None:
        self._built: list[Any] = []

    def once(self, build: Callable[[], T]) -> Callable[[], T]:
        """`build` runs on the first call; later calls get what it returned, until `reset`."""
        cached = cache(build)
        self._built.append(cached)
        return cached

    def reset(self) -> None:
        for cached in self._built:
            cached.cache_clear()


def reset_handlers(handlers: list[str]) -> None:
    """Forget what the handlers (`module.function` paths, as in FunctionSpec) have built."""
    for path in handlers:
        module = importlib.import_module(path.rpartition(".")[0])
        module.wiring.reset()
