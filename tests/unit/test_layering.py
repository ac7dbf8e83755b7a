"""The house's layering, checked: functions depend on shared, never back; pure modules import no adapter.

Each check imports the module in a fresh interpreter, so what it pulls in is what it pulls in alone.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ADAPTERS = ("boto3", "botocore", "yaml", "httpx")

# Pure: the rules engine (and the models and histories it reads), the routing and experiment
# arithmetic. Adapters (DynamoDB, SQS, HubSpot, YAML files) are wired in by the functions.
PURE = [
    "shared.rules.engine",
    "shared.rules.language",
    "shared.rules.aggregates",
    "shared.experiments.lift",
    "shared.stats",
]


@pytest.mark.parametrize("module", PURE)
def test_a_pure_module_imports_no_adapter(module: str) -> None:
    probe = (
        f"import sys, {module}; print(sorted({{m.split('.')[0] for m in sys.modules}} & set({ADAPTERS!r})))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert loaded.stdout.strip() == "[]", f"{module} pulls in {loaded.stdout.strip()}"


def test_shared_never_imports_functions() -> None:
    offenders = []
    for path in (REPO / "shared").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [
                f"{path.relative_to(REPO)}: {name}" for name in names if name.startswith("functions")
            ]
    assert offenders == []
