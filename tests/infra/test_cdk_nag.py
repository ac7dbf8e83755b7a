"""cdk-nag (AwsSolutions) runs on every synth: the stack must pass it with only reasoned acknowledgements."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import Validations
from aws_cdk import aws_sqs as sqs
from cdk_nag import AwsSolutionsChecks

from .synth import synthesize


def test_given_the_stack_when_synthesized_with_aws_solutions_checks_then_validation_passes(
    tiny_asset_dirs: tuple[Path, Path], cdk_context: dict[str, Any], tmp_path: Path
) -> None:
    app, _ = synthesize(tiny_asset_dirs, cdk_context, tmp_path)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))

    app.synth()  # raises ValidationFailed on any unacknowledged finding


def test_given_an_unacknowledged_finding_when_synthesized_then_validation_fails(tmp_path: Path) -> None:
    # Proves the check above is live: the same plugin rejects a queue without encryption or a DLQ.
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Careless")
    sqs.Queue(stack, "Plain", encryption=sqs.QueueEncryption.UNENCRYPTED)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))

    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
