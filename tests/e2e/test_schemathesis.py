"""schemathesis against the OpenAPI document the local stack serves: every operation, positive and
negative data, every check (response schema and status-code conformance included).

Bounded for `make test`: a fixed seed (the same cases in CI and here; set UPSWING_FUZZ_SEED for
others), 25 examples per operation and phase. The contract decisions that
adjust a check are in tests/e2e/schemathesis.toml, each with its reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.openapi import openapi_document
from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).with_name("schemathesis.toml")


def test_schemathesis_finds_nothing_against_the_served_document(stack: RunningStack, tmp_path: Path) -> None:
    seed = os.environ.get("UPSWING_FUZZ_SEED", "20261205")
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "--config-file",
            str(CONFIG),
            "--no-color",
            "run",
            f"{stack.api}/v1/openapi.json",
            "--header",
            f"Authorization: Bearer {stack.key}",
            "--mode",
            "all",
            "--checks",
            "all",
            "--max-examples",
            "25",
            "--seed",
            seed,
            "--workers",
            "1",
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path),
            "--generation-database",
            "none",
        ],
        # Run outside the repository: schemathesis keeps a crash cache in its working directory.
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-5_000:]
    # Every documented operation but GET /v1/openapi.json: schemathesis leaves out the operation
    # that serves the document it loaded.
    operations = sum(
        len(item) for path, item in openapi_document()["paths"].items() if path != "/v1/openapi.json"
    )
    assert f"{operations} selected / {operations} total" in run.stdout
