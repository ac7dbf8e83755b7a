"""Synthesizing the Upswing stack for tests, with tiny assets and no cdk-nag plugin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_

from infra.assets import LambdaAssets
from infra.settings import UpswingSettings
from infra.stack import UpswingStack

SETTINGS = UpswingSettings(
    stage="test", api_rate_limit=42, api_burst_limit=84, retention_days=30, expansion_horizon_days=14
)


def synthesize(
    tiny_asset_dirs: tuple[Path, Path],
    cdk_context: dict[str, Any],
    outdir: Path,
    settings: UpswingSettings = SETTINGS,
) -> tuple[cdk.App, UpswingStack]:
    code, layer = tiny_asset_dirs
    app = cdk.App(context=cdk_context, outdir=str(outdir))
    assets = LambdaAssets(code=lambda_.Code.from_asset(str(code)), layer=lambda_.Code.from_asset(str(layer)))
    return app, UpswingStack(app, f"Upswing-{settings.stage}", assets=assets, settings=settings)
