"""The synth runs the live and shadow rulesets it is given, and refuses versions the lock does not
vouch for (rules/versions.lock) with a message that says what to do."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Template

from shared.resources import REGISTRY_TABLE, SHADOW_RULESETS_ENV
from shared.rules.versions import VersionError

from .synth import SETTINGS, synthesize
from .test_stack import EVALUATOR_HANDLER, allowed_actions, function_id, role_statements, table_id


def synth(
    tiny_asset_dirs: tuple[Path, Path], cdk_context: dict[str, Any], outdir: Path, **changes: Any
) -> Any:
    _, stack = synthesize(tiny_asset_dirs, cdk_context, outdir, settings=replace(SETTINGS, **changes))
    return dict(Template.from_stack(stack).to_json())


def test_given_a_locked_shadow_ruleset_then_the_evaluator_runs_it_and_may_only_record_versions(
    tiny_asset_dirs, cdk_context, tmp_path
):
    template = synth(
        tiny_asset_dirs,
        cdk_context,
        tmp_path,
        shadow_rulesets=("rules/shadow/paywall-earlier.yaml",),
        deployer="release-pipeline",
        git_revision="0123abc",
    )

    evaluator = function_id(template, EVALUATOR_HANDLER)
    variables = template["Resources"][evaluator]["Properties"]["Environment"]["Variables"]
    assert variables[SHADOW_RULESETS_ENV] == "rules/shadow/paywall-earlier.yaml"
    assert (variables["RULESET_DEPLOYER"], variables["RULESET_GIT_REVISION"]) == (
        "release-pipeline",
        "0123abc",
    )
    statements = role_statements(template, evaluator)
    # Conditional writes of its version records; never a read of the registry (producer key hashes).
    assert allowed_actions(statements, table_id(template, REGISTRY_TABLE)) == {
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
    }


def test_given_a_shadow_ruleset_missing_from_the_lock_then_the_synth_refuses_it(
    tiny_asset_dirs, cdk_context, tmp_path
):
    with pytest.raises(VersionError) as refused:
        synth(
            tiny_asset_dirs, cdk_context, tmp_path, shadow_rulesets=("tests/fixtures/rulesets/unlocked.yaml",)
        )

    assert str(refused.value) == (
        "tests/fixtures/rulesets/unlocked.yaml: version 'test-unlocked.1' is not in rules/versions.lock: "
        "run `upswing rules lock` and commit it"
    )


def test_given_a_live_ruleset_changed_without_a_new_version_then_the_synth_refuses_it(
    tiny_asset_dirs, cdk_context, tmp_path
):
    with pytest.raises(VersionError, match=r"its content changed but its version is still '2026-12-06\.3'"):
        synth(
            tiny_asset_dirs,
            cdk_context,
            tmp_path,
            ruleset_path="tests/fixtures/rulesets/reference-edited.yaml",
        )


def test_given_a_shadow_ruleset_with_the_live_version_then_the_synth_refuses_it(
    tiny_asset_dirs, cdk_context, tmp_path
):
    with pytest.raises(VersionError, match=r"both say version '2026-12-06\.3'"):
        synth(
            tiny_asset_dirs,
            cdk_context,
            tmp_path,
            shadow_rulesets=("tests/fixtures/rulesets/reference-edited.yaml",),
        )
