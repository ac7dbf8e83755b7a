"""The audit's structural diff: triggers added, removed or changed, in plain words."""
# ruff: noqa: E501 (the rulesets are written on one line each, as in a file)

from __future__ import annotations

from shared.rules.audit import TriggerChange, ruleset_audit, ruleset_changes, summary
from shared.rules.loading import parse_ruleset
from shared.rules.versions import VersionRecord

BEFORE = """
version: "1"
metrics: {paywall.hit: count, seats.active: gauge}
signals:
  tried: {measure: active_days, metric: paywall.hit, window: 14d, at_least: 3}
  seats: {measure: latest, metric: seats.active, window: 7d, at_least: 10}
  either: {signals: [tried, seats], n_of: 1, within: 30d}
triggers:
  paywall: {category: intent, owner_role: ae, play: trial, when: tried, unless: [do_not_contact, top_tier], cooldown: 30d}
  combined: {category: intent, owner_role: ae, play: trial, when: either, cooldown: 30d}
  seats: {category: commercial, owner_role: csm, play: seats, when: seats, cooldown: 30d}
plays:
  trial: {sla_business_days: 2}
  seats: {}
"""


def ruleset(text: str, version: str = "2") -> object:
    return parse_ruleset(text.replace('version: "1"', f'version: "{version}"'), f"v{version}.yaml")


def test_given_the_same_rules_written_differently_then_nothing_changed():
    reformatted = BEFORE.replace("triggers:", "# a comment\ntriggers:").replace(
        "{category: intent, owner_role: ae, play: trial, when: tried,",
        "{when: tried,   category: intent, play: trial, owner_role: ae,",
    )
    assert ruleset_changes(ruleset(BEFORE, "1"), ruleset(reformatted)) == []


def test_given_a_changed_threshold_then_every_trigger_reading_the_signal_shows_it_even_through_a_composite():
    after = BEFORE.replace("window: 14d, at_least: 3", "window: 14d, at_least: 2")

    changes = ruleset_changes(ruleset(BEFORE, "1"), ruleset(after))

    assert changes == [
        TriggerChange("paywall", "changed", ("signal tried: at_least: 3.0 → 2.0",)),
        TriggerChange("combined", "changed", ("signal tried: at_least: 3.0 → 2.0",)),
    ]
    assert summary(changes) == "2 triggers: 2 changed"


def test_given_added_removed_and_edited_triggers_then_each_is_said_in_plain_words():
    after = (
        BEFORE.replace(
            "unless: [do_not_contact, top_tier], cooldown: 30d}",
            "unless: [do_not_contact, {contacted_within: 14d}], cooldown: 14d, holdout: 10%}",
        )
        .replace(
            "  seats: {category: commercial, owner_role: csm, play: seats, when: seats, cooldown: 30d}\n",
            "  seats-now: {category: commercial, owner_role: csm, play: seats, when: seats, cooldown: 30d}\n",
        )
        .replace("trial: {sla_business_days: 2}", "trial: {sla_business_days: 3}")
    )

    changes = ruleset_changes(ruleset(BEFORE, "1"), ruleset(after))

    assert changes == [
        TriggerChange(
            "paywall",
            "changed",
            (
                "unless: added contacted_within: 14d; removed top_tier",
                "cooldown: 30d → 14d",
                "holdout: none → 10%",
                "play trial: sla_business_days: 2 → 3",
            ),
        ),
        TriggerChange("combined", "changed", ("play trial: sla_business_days: 2 → 3",)),
        TriggerChange("seats-now", "added", ("fires on seats, play seats",)),
        TriggerChange("seats", "removed"),
    ]
    assert summary(changes) == "4 triggers: 1 added, 1 removed, 2 changed"
    assert changes[0].lines() == [
        "  - changed trigger paywall",
        "      unless: added contacted_within: 14d; removed top_tier",
        "      cooldown: 30d → 14d",
        "      holdout: none → 10%",
        "      play trial: sla_business_days: 2 → 3",
    ]


def record(version: str, at: str, deployer: str | None = None) -> VersionRecord:
    return VersionRecord(version, "sha256:x", "rules/r.yaml", "live", at, deployer, None, at)


def test_given_recorded_versions_then_each_is_diffed_with_the_one_recorded_before_it():
    texts = {
        "1": BEFORE,
        "2": BEFORE.replace('version: "1"', 'version: "2"').replace(
            "cooldown: 30d}\n  seats:", "cooldown: 60d}\n  seats:"
        ),
    }
    records = [record("1", "2026-11-01T00:00:00Z"), record("2", "2026-12-01T00:00:00Z", "ana")]

    first, second = ruleset_audit(records, texts.get)

    assert (first.previous, first.changes) == (None, ())
    assert first.as_view()["summary"] == "the first version recorded"
    assert second.previous == "1"
    assert second.changes == (TriggerChange("combined", "changed", ("cooldown: 30d → 60d",)),)
    assert str(second) == (
        "2 — deployed 2026-12-01T00:00:00Z by ana, first live\n"
        "  since 1: 1 trigger: 1 changed\n"
        "  - changed trigger combined\n"
        "      cooldown: 30d → 60d"
    )
