"""Shared pieces for the CDK tests: offline environment, tiny assets, the project's CDK context."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

# jsii reads these when it starts (at the first aws_cdk import), so set them before any test module.
os.environ.setdefault("AWS_REGION", "us-east-1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def cdk_context() -> dict[str, Any]:
    """The feature flags and defaults from cdk.json, so tests synthesize what `cdk synth` does."""
    context: dict[str, Any] = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    return context


@pytest.fixture(scope="session")
def tiny_asset_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A one-file code folder and an empty layer folder: the stack never needs the real layer."""
    code = tmp_path_factory.mktemp("code")
    (code / "handler.py").write_text("def handler(event, context):\n    return None\n")
    layer = tmp_path_factory.mktemp("layer")
    (layer / "python").mkdir()
    (layer / "python" / "placeholder.txt").write_text("not a real dependency\n")
    return code, layer
