"""Context parsing and asset staging: what `python app.py` does before building the stack."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from infra.assets import default_assets
from infra.bytecode import LAMBDA_PYTHON
from infra.settings import UpswingSettings


def test_given_no_context_then_the_documented_defaults_apply() -> None:
    settings = UpswingSettings.from_context(lambda key: None)

    assert settings == UpswingSettings(
        stage="dev", alarm_email=None, api_rate_limit=100, api_burst_limit=200, retention_days=400
    )
    assert not settings.is_prod


def test_given_cli_context_strings_then_numbers_are_parsed_and_prod_is_recognised() -> None:
    context = {
        "stage": "prod",
        "alarm_email": "ops@example.com",
        "api_rate_limit": "50",
        "retention_days": "90",
    }

    settings = UpswingSettings.from_context(context.get)

    assert settings.is_prod
    assert settings.alarm_email == "ops@example.com"
    assert (settings.api_rate_limit, settings.api_burst_limit, settings.retention_days) == (50, 200, 90)


@pytest.mark.parametrize("stage", ["Prod", "dev_1", "", "-dev", "a" * 21])
def test_given_a_stage_unfit_for_resource_names_then_settings_refuse_it(stage: str) -> None:
    with pytest.raises(ValueError, match="stage"):
        UpswingSettings(stage=stage)


def test_given_a_portal_time_zone_then_it_is_kept_and_an_unknown_one_is_refused_at_synth() -> None:
    settings = UpswingSettings.from_context({"hubspot_portal_timezone": "America/New_York"}.get)

    assert settings.hubspot_portal_timezone == "America/New_York"
    assert UpswingSettings.from_context(lambda key: None).hubspot_portal_timezone == "UTC"
    with pytest.raises(ValueError, match=r"unknown time zone 'EST5'.* IANA name"):
        UpswingSettings(hubspot_portal_timezone="EST5")


def test_given_a_hubspot_due_hour_and_play_id_property_then_they_are_read_and_validated() -> None:
    settings = UpswingSettings.from_context(
        {"hubspot_due_hour": "9", "hubspot_play_id_property": "upswing_play_id"}.get
    )

    assert (settings.hubspot_due_hour, settings.hubspot_play_id_property) == (9, "upswing_play_id")
    defaults = UpswingSettings.from_context(lambda key: None)
    assert (defaults.hubspot_due_hour, defaults.hubspot_play_id_property) == (17, None)
    with pytest.raises(ValueError, match="hubspot_due_hour must be an hour of the day, 0-23"):
        UpswingSettings(hubspot_due_hour=24)
    with pytest.raises(ValueError, match="is not a HubSpot property name"):
        UpswingSettings(hubspot_play_id_property="Upswing Play Id")


def test_given_an_auto_close_check_cadence_then_it_is_read_and_validated() -> None:
    assert UpswingSettings.from_context({"auto_close_check_hours": "12"}.get).auto_close_check_hours == 12
    assert UpswingSettings.from_context(lambda key: None).auto_close_check_hours == 6
    for hours in (0, 169):
        with pytest.raises(ValueError, match="auto_close_check_hours must be 1-168"):
            UpswingSettings(auto_close_check_hours=hours)


def test_given_a_repo_without_a_built_layer_when_assets_are_made_then_it_says_to_run_make_layer(
    tmp_path: Path,
) -> None:
    for package in ("functions", "shared", "rules", "segment"):
        (tmp_path / package).mkdir()

    with pytest.raises(FileNotFoundError, match="run `make layer` first"):
        default_assets(tmp_path)


def test_given_a_repo_with_a_layer_when_assets_are_made_then_only_clean_sources_are_staged(
    tmp_path: Path,
) -> None:
    for package in ("functions", "shared"):
        (tmp_path / package / "__pycache__").mkdir(parents=True)
        (tmp_path / package / "__init__.py").write_text("")
        (tmp_path / package / "__pycache__" / "x.cpython-312.pyc").write_bytes(b"\0")
        (tmp_path / package / "stale.pyc").write_bytes(b"\0")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "reference.yaml").write_text("version: x\n")
    (tmp_path / "segment").mkdir()
    (tmp_path / "segment" / "mapping.yaml").write_text("version: 1\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text("")
    (tmp_path / "build" / "lambda" / "app" / "removed_module").mkdir(parents=True)
    (tmp_path / "build" / "layer" / "python").mkdir(parents=True)

    default_assets(tmp_path)

    staged = tmp_path / "build" / "lambda" / "app"
    files = sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file())
    # The sources, plus bytecode compiled afresh for the runtime; no stale copies, no tests.
    assert [f for f in files if not f.endswith(".pyc")] == [
        "functions/__init__.py",
        "rules/reference.yaml",
        "segment/mapping.yaml",
        "shared/__init__.py",
    ]
    compiled_here = sys.version_info[:2] == LAMBDA_PYTHON  # only the runtime's own version can
    assert [f for f in files if f.endswith(".pyc")] == (
        ["functions/__pycache__/__init__.cpython-312.pyc", "shared/__pycache__/__init__.cpython-312.pyc"]
        if compiled_here
        else []
    )


def test_given_the_makefile_then_it_builds_the_layer_for_the_functions_runtime():
    from pathlib import Path

    from infra.bytecode import LAMBDA_PYTHON
    from infra.function import RUNTIME

    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    version = ".".join(map(str, LAMBDA_PYTHON))

    assert RUNTIME.name == f"python{version}"
    assert f"LAMBDA_PYTHON := {version}\n" in makefile


def test_given_a_package_when_compiled_for_lambda_then_bytecode_needs_no_source_timestamps(tmp_path):
    import importlib.util
    import sys
    from pathlib import Path

    from infra.bytecode import LAMBDA_PYTHON, compile_for_lambda

    (tmp_path / "module.py").write_text("ANSWER = 42\n")

    compiled = compile_for_lambda(tmp_path)

    if sys.version_info[:2] != LAMBDA_PYTHON:
        assert compiled is False  # another Python: warns and leaves the bundle as source only
        return
    bytecode = importlib.util.cache_from_source(str(tmp_path / "module.py"))
    flags = int.from_bytes(Path(bytecode).read_bytes()[4:8], "little")
    assert flags == 0b01  # hash-based, unchecked: valid whatever timestamps the asset zip keeps


def test_given_shadow_rulesets_deployer_and_revision_in_context_then_they_are_read_and_validated() -> None:
    settings = UpswingSettings.from_context(
        {
            "shadow_rulesets": "rules/a.yaml, rules/b.yaml",
            "deployer": "ci@example",
            "git_revision": "abc1234",
        }.get
    )
    assert settings.shadow_rulesets == ("rules/a.yaml", "rules/b.yaml")
    assert (settings.deployer, settings.git_revision) == ("ci@example", "abc1234")
    assert UpswingSettings.from_context({"shadow_rulesets": ["rules/a.yaml"]}.get).shadow_rulesets == (
        "rules/a.yaml",
    )
    assert UpswingSettings.from_context(lambda key: None).shadow_rulesets == ()
    with pytest.raises(ValueError, match="is not a git commit id"):
        UpswingSettings.from_context({"git_revision": "HEAD"}.get)
    with pytest.raises(ValueError, match="deployer 'a b' must be"):
        UpswingSettings.from_context({"deployer": "a b"}.get)


def test_given_an_archive_retention_then_it_is_read_and_must_outlast_the_ledger() -> None:
    assert UpswingSettings().archive_retention_days == 1825
    assert UpswingSettings.from_context({"archive_retention_days": "730"}.get).archive_retention_days == 730
    with pytest.raises(
        ValueError, match=r"archive_retention_days must be from retention_days \(400\) to 3650"
    ):
        UpswingSettings(archive_retention_days=100)
    with pytest.raises(ValueError, match="archive_retention_days"):
        UpswingSettings(archive_retention_days=4000)
