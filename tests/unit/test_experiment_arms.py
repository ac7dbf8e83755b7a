"""Holdouts in the rules language and in the engine's firings: `holdout: 10%` parses (and bad values
are refused with a plain message), every firing carries its arm, and the arm is the stable draw."""

from __future__ import annotations

import pytest

from shared.experiments.arms import assign
from shared.experiments.assignment import Arm, held_out
from shared.rules.loading import RulesetError, parse_ruleset

RULES = """\
version: arms-1
metrics: {seats.active: gauge}
signals:
  busy: {measure: latest, metric: seats.active, window: 1d, at_least: 10}
triggers:
  seats: {category: commercial, owner_role: csm, play: seats, when: busy, cooldown: 30d TAIL}
plays:
  seats: {channels: [hubspot_task]}
"""


def trigger_with(tail: str):  # type: ignore[no-untyped-def]
    return parse_ruleset(RULES.replace(" TAIL", tail), "rules/arms.yaml").triggers["seats"]


def problems(tail: str) -> list[str]:
    with pytest.raises(RulesetError) as caught:
        parse_ruleset(RULES.replace(" TAIL", tail), "rules/arms.yaml")
    return [str(problem) for problem in caught.value.problems]


def test_given_a_holdout_then_it_is_read_as_a_percentage_with_the_trigger_name_as_salt():
    trigger = trigger_with(", holdout: 12.5%")

    assert trigger.holdout_percent == 12.5
    assignment = assign("seats", trigger, "acme")
    assert assignment is not None
    assert assignment.salt == "seats"
    assert assignment.holdout_percent == 12.5
    assert (assignment.arm is Arm.HOLDOUT) == held_out("seats", "acme", 12.5)


def test_given_an_experiment_salt_then_the_draw_uses_it():
    trigger = trigger_with(", holdout: 10%, experiment: {salt: seats-2027}")

    accounts = [f"a{n}" for n in range(2000)]
    arms = {account: assign("seats", trigger, account).arm for account in accounts}  # type: ignore[union-attr]

    assert {a for a, arm in arms.items() if arm is Arm.HOLDOUT} == {
        a for a in accounts if held_out("seats-2027", a, 10)
    }
    assert {a for a in accounts if held_out("seats-2027", a, 10)} != {
        a for a in accounts if held_out("seats", a, 10)
    }


def test_given_no_holdout_then_there_is_no_experiment():
    assert trigger_with("").holdout_percent == 0
    assert assign("seats", trigger_with(""), "acme") is None


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        (", holdout: 0%", "holdout must be above 0% and at most 50%, not 0%"),
        (", holdout: 60%", "holdout must be above 0% and at most 50%, not 60%"),
        (", holdout: 10", "triggers.seats.holdout"),
        (", holdout: ten", "triggers.seats.holdout"),
        (
            ", experiment: {salt: s1}",
            "give one of them too",
        ),
        (", holdout: 10%, experiment: {salt: 'Has Spaces'}", "triggers.seats.experiment.salt"),
    ],
    ids=["zero", "over half", "no percent sign", "not a number", "salt without holdout", "bad salt"],
)
def test_given_a_bad_holdout_then_the_message_says_what_is_wrong(tail: str, expected: str):
    assert any(expected in problem for problem in problems(tail)), problems(tail)


def test_raising_the_holdout_moves_accounts_only_from_treated_to_held_out():
    """Why changing the percentage reshuffles nobody: the draw is fixed, only the line moves."""
    accounts = [f"acct-{n}" for n in range(5000)]
    at_10 = {a for a in accounts if assign("seats", trigger_with(", holdout: 10%"), a).arm is Arm.HOLDOUT}  # type: ignore[union-attr]
    at_20 = {a for a in accounts if assign("seats", trigger_with(", holdout: 20%"), a).arm is Arm.HOLDOUT}  # type: ignore[union-attr]

    assert at_10 < at_20
    assert 0.08 < len(at_10) / len(accounts) < 0.12
    assert 0.18 < len(at_20) / len(accounts) < 0.22


# ── rollout ────────────────────────────────────────────────────────────────────────────────────


def test_a_percentage_rollout_puts_the_others_in_shadow_with_a_draw_independent_of_the_holdout():
    trigger = trigger_with(", rollout: {percent: 25}, holdout: 20%")
    accounts = [f"acct-{n}" for n in range(8000)]
    arms = {account: assign("seats", trigger, account).arm for account in accounts}  # type: ignore[union-attr]

    shadow = {a for a, arm in arms.items() if arm is Arm.SHADOW}
    assert 0.73 < len(shadow) / len(accounts) < 0.77
    inside = [a for a in accounts if a not in shadow]
    held = [a for a in inside if arms[a] is Arm.HOLDOUT]
    assert 0.17 < len(held) / len(inside) < 0.23  # the holdout's share inside the rollout: independent
    evidence = assign("seats", trigger, inside[0]).as_evidence()  # type: ignore[union-attr]
    assert evidence["rollout"] == "25% of accounts: inside"


def test_pilot_accounts_and_segments_decide_the_rollout_without_a_draw():
    pilots = trigger_with(", rollout: {accounts: [acme, globex]}")
    segments = trigger_with(", rollout: {segments: [smb]}")

    assert assign("seats", pilots, "acme").arm is Arm.TREATED  # type: ignore[union-attr]
    assert assign("seats", pilots, "initech").arm is Arm.SHADOW  # type: ignore[union-attr]
    assert assign("seats", segments, "initech", "smb").arm is Arm.TREATED  # type: ignore[union-attr]
    outside = assign("seats", segments, "initech", "enterprise")
    assert outside is not None
    assert outside.arm is Arm.SHADOW
    assert outside.as_evidence()["rollout"] == "segments smb: segment enterprise"
    assert outside.compared is False
    assert assign("seats", pilots, "acme").compared is False  # type: ignore[union-attr]  # no holdout


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        (", rollout: {}", "give one of percent, accounts or segments, not none"),
        (", rollout: {percent: 10, segments: [smb]}", "not percent and segments"),
        (", rollout: {percent: 100}", "triggers.seats.rollout.percent"),
        (", rollout: {accounts: []}", "triggers.seats.rollout.accounts"),
    ],
    ids=["empty", "two kinds", "everyone", "no accounts"],
)
def test_given_a_bad_rollout_then_the_message_says_what_is_wrong(tail: str, expected: str):
    assert any(expected in problem for problem in problems(tail)), problems(tail)
