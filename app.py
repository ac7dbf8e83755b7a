#!/usr/bin/env python3
"""CDK entry point: builds the Upswing stack for one stage and checks it with cdk-nag.

Context (cdk.json or `cdk synth -c key=value`): every setting of infra/settings.py's UpswingSettings
(stage, alarm e-mail, API limits, retention, HubSpot, auto-close, the expansion horizon...), checked
there at synth; README.md, "Deploy", lists them with their defaults.
"""

from __future__ import annotations

import os
from pathlib import Path

from aws_cdk import App, Validations
from cdk_nag import AwsSolutionsChecks

from infra.assets import default_assets
from infra.settings import UpswingSettings
from infra.stack import UpswingStack

REPO_ROOT = Path(__file__).resolve().parent


def main() -> None:
    # The CLI passes its output folder in CDK_OUTDIR; `python app.py` alone writes to cdk.out too.
    app = App(outdir=os.environ.get("CDK_OUTDIR", str(REPO_ROOT / "cdk.out")))
    settings = UpswingSettings.from_context(app.node.try_get_context)
    UpswingStack(app, f"Upswing-{settings.stage}", assets=default_assets(REPO_ROOT), settings=settings)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    app.synth()


if __name__ == "__main__":
    main()
