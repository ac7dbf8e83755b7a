"""Live and shadow rulesets on moto: shadow firings are recorded, never handed to the router; each
deployed version is recorded once; GET /v1/rulesets lists them.

The counters-stream records come from real events through the real API and aggregator (the
evaluator tests' `Pipeline`), and the evaluator function's own entry point takes them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from functions.evaluator import handler as evaluator_function
from functions.evaluator.handler import evaluate_changed_accounts
from shared.resources import (
    RULESET_DEPLOYER_ENV,
    RULESET_GIT_REVISION_ENV,
    RULESET_PATH_ENV,
    SHADOW_RULESETS_ENV,
)
from shared.rules.loading import parse_ruleset
from shared.rules.online import BUNDLE_ROOT, ShadowRuleset
from shared.rules.versions import DeployedRuleset, Role, RulesetRecords, content_hash
from tests.conftest import Aws
from tests.integration.builders import call_api, proxy_event, rfc3339
from tests.integration.test_evaluator import (
    AT,
    NORTHWIND,
    Pipeline,
    bodies,
    dashboard_created,
    fired_messages,
    online_evaluator,
    state_item,
    stored_firings,
)

SHADOW_VERSION = "evaluator-test-2-candidate"
# The same trigger name as the live ruleset, a lower bar, and a trigger the live ruleset lacks.
SHADOW = parse_ruleset(
    f"""
version: {SHADOW_VERSION}
metrics: {{dashboard.created: count}}
signals:
  building: {{measure: sum, metric: dashboard.created, window: 7d, at_least: 2}}
  started: {{measure: sum, metric: dashboard.created, window: 7d, at_least: 1}}
triggers:
  dashboards: {{category: adoption, owner_role: csm, play: analytics-showcase, when: building, cooldown: 30d}}
  first-dashboard:
    {{category: adoption, owner_role: csm, play: analytics-showcase, when: started, cooldown: 30d}}
plays:
  analytics-showcase: {{}}
""",
    "shadow-test.yaml",
)
SHADOW_FILE = "rules/shadow/paywall-earlier.yaml"  # a real candidate, locked like any deployed file


def with_shadow(aws: Aws) -> Any:
    online = online_evaluator(aws)
    online.shadows = (ShadowRuleset.of(SHADOW),)
    return online


def test_given_a_shadow_ruleset_when_its_triggers_fire_then_they_are_recorded_and_never_reach_the_router(aws):
    pipeline = Pipeline(aws)
    pipeline.post(*(dashboard_created(NORTHWIND, offset) for offset in (-2, -1, 0)))

    answer = evaluate_changed_accounts({"Records": pipeline.counter_changes()}, with_shadow(aws), AT)

    assert answer == {"batchItemFailures": []}
    # Then: the live firing and both shadow firings are in the ledger, each naming its ruleset version.
    stored = {(item["trigger"], item["ruleset_version"]): item for item in stored_firings(aws)}
    assert set(stored) == {
        ("dashboards", "evaluator-test-1"),
        ("dashboards", SHADOW_VERSION),
        ("first-dashboard", SHADOW_VERSION),
    }
    shadow_item = stored[("dashboards", SHADOW_VERSION)]
    assert shadow_item["sk"] == f"firing#{rfc3339(AT)}#dashboards#shadow#{SHADOW_VERSION}"
    shadow_evidence = json.loads(shadow_item["message"])["firing"]
    assert shadow_evidence["arm"] == "shadow"
    assert shadow_evidence["ruleset_role"] == "shadow"
    assert shadow_evidence["condition"]["observed"] == 3  # evidence like any firing
    assert shadow_item["firing_id"] != stored[("dashboards", "evaluator-test-1")]["firing_id"]
    # ...and only the live firing was handed off: the fired queue is the router's only way in.
    messages = fired_messages(aws)
    assert [(body["firing"]["trigger"], body["firing"]["ruleset_version"]) for body in bodies(messages)] == [
        ("dashboards", "evaluator-test-1")
    ]
    assert bodies(messages)[0]["firing"]["arm"] == "treated"
    assert "ruleset_role" not in bodies(messages)[0]["firing"]  # a live firing's evidence is unchanged
    # The shadow triggers keep their own state: the live trigger's cooldown is its own.
    state = state_item(aws, NORTHWIND)
    assert "pending" not in state
    assert set(state["triggers"]) == {
        "dashboards",
        f"shadow:{SHADOW_VERSION}:dashboards",
        f"shadow:{SHADOW_VERSION}:first-dashboard",
    }


def test_given_a_redelivered_batch_when_evaluated_again_then_shadow_triggers_do_not_fire_twice(aws):
    pipeline = Pipeline(aws)
    pipeline.post(*(dashboard_created(NORTHWIND, offset) for offset in (-2, -1, 0)))
    records = pipeline.counter_changes()
    evaluate_changed_accounts({"Records": records}, with_shadow(aws), AT)

    evaluate_changed_accounts({"Records": records}, with_shadow(aws), AT)

    assert len(stored_firings(aws)) == 3
    assert len(fired_messages(aws)) == 1


# ── version records ────────────────────────────────────────────────────────────────────────────


@pytest.fixture
def deployed_evaluator(aws, monkeypatch) -> Any:
    monkeypatch.setenv(RULESET_PATH_ENV, "rules/reference.yaml")
    monkeypatch.setenv(SHADOW_RULESETS_ENV, SHADOW_FILE)
    monkeypatch.setenv(RULESET_DEPLOYER_ENV, "release-pipeline")
    monkeypatch.setenv(RULESET_GIT_REVISION_ENV, "0123abc")
    evaluator_function.evaluator.cache_clear()
    yield evaluator_function.evaluator
    evaluator_function.evaluator.cache_clear()


def test_given_a_deployment_when_the_evaluator_starts_twice_then_each_version_is_recorded_once(
    aws, deployed_evaluator
):
    online = deployed_evaluator()
    first = RulesetRecords(aws.dynamodb, aws.registry_table).records()
    deployed_evaluator.cache_clear()
    deployed_evaluator()  # a second cold start

    records = RulesetRecords(aws.dynamodb, aws.registry_table).records()
    assert records == first
    by_version = {record.version: record for record in records}
    assert set(by_version) == {"2026-12-06.3", "2026-12-06.paywall-earlier.1"}
    live, shadow = by_version["2026-12-06.3"], by_version["2026-12-06.paywall-earlier.1"]
    assert (live.first_role, live.file, live.deployer, live.git_revision) == (
        "live",
        "rules/reference.yaml",
        "release-pipeline",
        "0123abc",
    )
    assert live.live_from == live.deployed_at
    assert (shadow.first_role, shadow.live_from) == ("shadow", None)
    text = (BUNDLE_ROOT / SHADOW_FILE).read_text()
    assert shadow.content_hash == content_hash(text)
    assert RulesetRecords(aws.dynamodb, aws.registry_table).text(shadow.version) == text
    assert [one.ruleset.version for one in online.shadows] == ["2026-12-06.paywall-earlier.1"]


def test_given_recorded_versions_when_get_rulesets_then_each_is_listed_with_its_status(
    aws, deployed_evaluator
):
    deployed_evaluator()
    retired = parse_ruleset((BUNDLE_ROOT / "tests/fixtures/rulesets/unlocked.yaml").read_text(), "old.yaml")
    RulesetRecords(aws.dynamodb, aws.registry_table).record(
        DeployedRuleset("rules/old.yaml", Role.LIVE, retired, "old text"),
        datetime(2025, 12, 31, tzinfo=UTC),
        deployer=None,
        git_revision=None,
    )

    status, answer = call_api(proxy_event("GET", "/v1/rulesets", None, content_type=None))

    assert status == 200
    assert answer["live"] == "2026-12-06.3"
    assert answer["shadow"] == ["2026-12-06.paywall-earlier.1"]
    listed = [(entry["version"], entry["status"]) for entry in answer["rulesets"]]
    assert listed[0] == ("test-unlocked.1", "retired")  # oldest first
    assert sorted(listed[1:]) == [("2026-12-06.3", "live"), ("2026-12-06.paywall-earlier.1", "shadow")]
    live = next(entry for entry in answer["rulesets"] if entry["status"] == "live")
    assert set(live) == {
        "version",
        "content_hash",
        "file",
        "first_role",
        "deployed_at",
        "deployer",
        "git_revision",
        "live_from",
        "status",
    }
    assert live["deployer"] == "release-pipeline"


# ── the audit ──────────────────────────────────────────────────────────────────────────────────

REFERENCE = BUNDLE_ROOT / "rules/reference.yaml"


def record_two_versions(aws: Aws) -> RulesetRecords:
    """The reference ruleset, then a next version with the paywall bar lowered, deployed by ana."""
    store = RulesetRecords(aws.dynamodb, aws.registry_table)
    text = REFERENCE.read_text()
    first = DeployedRuleset("rules/reference.yaml", Role.LIVE, parse_ruleset(text, "a.yaml"), text)
    store.record(first, datetime(2026, 12, 6, 9, tzinfo=UTC), deployer="bo", git_revision="aaaaaaa")
    edited = text.replace('version: "2026-12-06.3"', 'version: "2026-12-07.1"').replace(
        "    at_least: 3\n", "    at_least: 2\n", 1
    )
    second = DeployedRuleset("rules/reference.yaml", Role.LIVE, parse_ruleset(edited, "b.yaml"), edited)
    store.record(second, datetime(2026, 12, 7, 9, tzinfo=UTC), deployer="ana", git_revision="bbbbbbb")
    return store


def test_given_two_recorded_versions_when_the_changes_of_the_second_are_asked_then_the_api_says_them(aws):
    record_two_versions(aws)

    status, answer = call_api(
        proxy_event("GET", "/v1/rulesets/2026-12-07.1/changes", None, content_type=None)
    )

    assert status == 200
    assert answer == {
        "version": "2026-12-07.1",
        "previous": "2026-12-06.3",
        "deployed_at": "2026-12-07T09:00:00Z",
        "deployer": "ana",
        "git_revision": "bbbbbbb",
        "first_role": "live",
        "summary": "2 triggers: 2 changed",
        "changes": [
            {
                "trigger": "paywall-intent",
                "change": "changed",
                "details": ["signal paywall_attempts: at_least: 3.0 → 2.0"],
            },
            {
                "trigger": "upgrade",
                "change": "changed",
                "details": ["signal paywall_attempts: at_least: 3.0 → 2.0"],
            },
        ],
    }
    status, first = call_api(proxy_event("GET", "/v1/rulesets/2026-12-06.3/changes", None, content_type=None))
    assert (status, first["previous"], first["changes"]) == (200, None, [])


def test_given_an_unknown_version_when_its_changes_are_asked_then_404_names_the_closest(aws):
    record_two_versions(aws)

    status, answer = call_api(
        proxy_event("GET", "/v1/rulesets/2026-12-07.2/changes", None, content_type=None)
    )

    assert status == 404
    assert "no ruleset version '2026-12-07.2' was recorded" in answer["message"]
    assert "2026-12-07.1" in answer["message"]


def test_given_recorded_versions_when_rules_audit_runs_then_it_prints_who_changed_what_when(aws, capsys):
    from upswing.cli import main

    record_two_versions(aws)

    assert main(["rules", "audit", "--registry-table", aws.registry_table]) == 0

    out = capsys.readouterr().out
    assert out.splitlines() == [
        "2026-12-06.3 — deployed 2026-12-06T09:00:00Z by bo (git aaaaaaa), first live",
        "  the first version recorded",
        "",
        "2026-12-07.1 — deployed 2026-12-07T09:00:00Z by ana (git bbbbbbb), first live",
        "  since 2026-12-06.3: 2 triggers: 2 changed",
        "  - changed trigger paywall-intent",
        "      signal paywall_attempts: at_least: 3.0 → 2.0",
        "  - changed trigger upgrade",
        "      signal paywall_attempts: at_least: 3.0 → 2.0",
    ]


def test_given_a_registry_that_refuses_when_the_evaluator_starts_then_it_still_evaluates(
    aws, deployed_evaluator
):
    from botocore.exceptions import ClientError

    class Refusing(RulesetRecords):
        def record(self, *args: Any, **kwargs: Any) -> bool:
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "UpdateItem")

    settings = evaluator_function.load_settings(evaluator_function.EvaluatorSettings)
    deployed = evaluator_function.active_deployment(settings.ruleset_path, (SHADOW_FILE,))

    evaluator_function.record_versions(deployed, Refusing(aws.dynamodb, aws.registry_table), settings, AT)

    assert RulesetRecords(aws.dynamodb, aws.registry_table).records() == []  # the next cold start records
    assert deployed_evaluator().ruleset.version == "2026-12-06.3"
