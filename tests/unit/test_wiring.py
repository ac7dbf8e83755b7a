"""Every function's dependencies are built through its module's `wiring`, and reset in one call."""

from __future__ import annotations

import ast
import importlib
import inspect

import pytest

from shared.resources import FUNCTIONS
from shared.wiring import Wiring

HANDLER_MODULES = sorted({function.handler.rpartition(".")[0] for function in FUNCTIONS})


def test_wiring_builds_once_until_reset() -> None:
    wiring = Wiring()
    built: list[object] = []

    @wiring.once
    def dependency() -> object:
        built.append(object())
        return built[-1]

    first = dependency()
    assert dependency() is first
    wiring.reset()
    assert dependency() is not first
    assert len(built) == 2


@pytest.mark.parametrize("path", HANDLER_MODULES)
def test_each_handler_module_declares_its_wiring_and_caches_nothing_else(path: str) -> None:
    module = importlib.import_module(path)
    assert isinstance(getattr(module, "wiring", None), Wiring), f"{path} has no `wiring = Wiring()`"

    # Another cache would survive a reset: a local stack or a test would reach the last one's tables.
    tree = ast.parse(inspect.getsource(module))
    decorators = [
        ast.unparse(decorator)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
        for decorator in node.decorator_list
    ]
    assert not [d for d in decorators if d.split("(")[0] in {"cache", "lru_cache", "functools.cache"}]
