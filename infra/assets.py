"""Where the Lambda code and the dependencies layer come from.

The stack takes a `LambdaAssets` instead of finding files itself, so tests hand it two tiny
folders and never need the real layer (which `make layer` builds).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import aws_lambda as lambda_

from .bytecode import compile_for_lambda

# Only what the functions import: hashing the whole repo would redeploy on every README edit.
_CODE_PACKAGES = ("functions", "shared", "rules", "segment")  # segment/: the Segment mapping file
_NOT_CODE = shutil.ignore_patterns("__pycache__", "*.pyc")


@dataclass(frozen=True)
class LambdaAssets:
    code: lambda_.Code
    layer: lambda_.Code


def default_assets(repo_root: Path) -> LambdaAssets:
    return LambdaAssets(code=_staged_code(repo_root), layer=_built_layer(repo_root))


def _staged_code(repo_root: Path) -> lambda_.Code:
    staging = repo_root / "build" / "lambda" / "app"
    # Start clean so a module deleted from the repo does not live on in the bundle.
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for package in _CODE_PACKAGES:
        shutil.copytree(repo_root / package, staging / package, ignore=_NOT_CODE)
    compile_for_lambda(staging)
    return lambda_.Code.from_asset(str(staging))


def _built_layer(repo_root: Path) -> lambda_.Code:
    layer = repo_root / "build" / "layer"
    if not (layer / "python").is_dir():
        raise FileNotFoundError(
            f"{layer / 'python'} does not exist: run `make layer` first (it installs the runtime "
            "dependencies for Lambda's Python on arm64 into build/layer/python)"
        )
    return lambda_.Code.from_asset(str(layer))
