"""Ruleset versions: the lock keeps a version's content fixed; a deployment's versions are distinct."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.rules.versions import (
    LOCK_FILE,
    Role,
    VersionError,
    content_hash,
    deployment,
    folder_entries,
    lock_problems,
    lock_text,
    read_lock,
    relocked,
    shadow_paths,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
RULES = """version: "{version}"
metrics: {{paywall.hit: count}}
signals:
  tried: {{measure: active_days, metric: paywall.hit, window: 14d, at_least: {at_least}}}
triggers:
  paywall-intent: {{category: intent, owner_role: ae, play: trial, when: tried, cooldown: 30d}}
plays:
  trial: {{}}
"""


def write(root: Path, name: str, version: str, at_least: int = 2) -> str:
    path = root / "rules" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(RULES.format(version=version, at_least=at_least))
    return f"rules/{name}"


def test_given_the_repository_then_every_rules_file_is_locked_with_its_content():
    entries = folder_entries(REPO_ROOT / "rules", REPO_ROOT)

    assert {file for file, _, _ in entries} >= {"rules/reference.yaml", "rules/shadow/paywall-earlier.yaml"}
    assert lock_problems(entries, read_lock(REPO_ROOT / LOCK_FILE)) == []


def test_given_a_file_changed_under_its_locked_version_then_the_problem_says_to_give_a_new_version(tmp_path):
    write(tmp_path, "live.yaml", "1")
    lock = relocked(folder_entries(tmp_path / "rules", tmp_path), {})
    write(tmp_path, "live.yaml", "1", at_least=3)
    entries = folder_entries(tmp_path / "rules", tmp_path)

    (problem,) = lock_problems(entries, lock)

    assert problem.startswith("rules/live.yaml: its content changed but its version is still '1'")
    assert "give the ruleset a new `version`, then run `upswing rules lock`" in problem
    with pytest.raises(VersionError, match="content changed"):
        relocked(entries, lock)  # the lock command never rewrites a locked version


def test_given_a_new_version_then_lock_adds_it_and_keeps_the_others(tmp_path):
    write(tmp_path, "live.yaml", "1")
    lock = relocked(folder_entries(tmp_path / "rules", tmp_path), {})
    write(tmp_path, "live.yaml", "2", at_least=3)
    entries = folder_entries(tmp_path / "rules", tmp_path)
    assert lock_problems(entries, lock) == [
        "rules/live.yaml: version '2' is not in rules/versions.lock: run `upswing rules lock` and commit it"
    ]

    updated = relocked(entries, lock)

    assert updated == {"1": lock["1"], "2": content_hash((tmp_path / "rules/live.yaml").read_text())}
    (tmp_path / LOCK_FILE).write_text(lock_text(updated))
    assert read_lock(tmp_path / LOCK_FILE) == updated  # the text reads back (versions stay strings)


def test_given_a_live_and_shadow_rulesets_then_the_deployment_lists_them_with_their_roles(tmp_path):
    live = write(tmp_path, "live.yaml", "1")
    shadow = write(tmp_path, "shadow/next.yaml", "2", at_least=1)

    deployed = deployment(tmp_path, live, shadow_paths(f" {shadow} ,"))

    assert [(one.path, one.role, one.version) for one in deployed] == [
        (live, Role.LIVE, "1"),
        (shadow, Role.SHADOW, "2"),
    ]


def test_given_two_rulesets_with_one_version_then_the_deployment_is_refused(tmp_path):
    live = write(tmp_path, "live.yaml", "1")
    shadow = write(tmp_path, "copy.yaml", "1", at_least=1)

    with pytest.raises(VersionError, match="both say version '1': every deployed ruleset needs its own"):
        deployment(tmp_path, live, (shadow,))
    with pytest.raises(VersionError, match="deployed twice"):
        deployment(tmp_path, live, (live,))
    with pytest.raises(VersionError, match="name a file under rules/"):
        deployment(tmp_path, live, ("../elsewhere.yaml",))
