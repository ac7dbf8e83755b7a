"""What a routed play says and when it is due: business days, priority, the rendered narrative."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from shared.accounts.models import AccountProfile, Owner
from shared.routing.narrative import due_date, evidence_lines, priority, render
from shared.rules.loading import load_ruleset
from shared.rules.plays import Play, Priority

REPO = Path(__file__).resolve().parents[2]
REFERENCE = load_ruleset(REPO / "rules" / "reference.yaml")

FIRING: dict[str, Any] = {
    "ruleset_version": "2026-11-23.1",
    "trigger": "upgrade",
    "account_id": "acme",
    "evaluated_at": "2026-11-20T09:00:00Z",
    "category": "commercial",
    "owner_role": "ae",
    "play": "upgrade-proposal",
    "score": {"total": 45.0, "base": 10.0, "parts": []},
    "condition": {
        "signal": "upgrade_intent",
        "held": True,
        "observed": 2.0,
        "comparison": "at_least",
        "threshold": 2.0,
        "window": {"from": "2026-10-22", "to": "2026-11-20"},
        "detail": "2 of 5 signals held within 30d",
        "members": [
            {
                "signal": "seat_saturation",
                "held": True,
                "observed": 0.91,
                "comparison": "at_least",
                "threshold": 0.9,
                "window": {"from": "2026-10-22", "to": "2026-11-20"},
                "detail": "latest seats.active / plan limit seats = 0.91",
            }
        ],
    },
    "exclusions_checked": [{"exclusion": "do_not_contact", "applies": False, "detail": "flag not set"}],
}
ACME = AccountProfile.model_validate(
    {"name": "Acme Corp", "segment": "enterprise", "plan": {"name": "Growth"}, "arr": "300000"}
)


@pytest.mark.parametrize(
    ("routed", "business_days", "due"),
    [
        (datetime(2026, 11, 18, 15, tzinfo=UTC), 0, date(2026, 11, 18)),  # a Wednesday: that day
        (datetime(2026, 11, 18, 15, tzinfo=UTC), 2, date(2026, 11, 20)),
        (datetime(2026, 11, 20, 15, tzinfo=UTC), 1, date(2026, 11, 23)),  # Friday + 1: Monday
        (datetime(2026, 11, 20, 23, 59, tzinfo=UTC), 3, date(2026, 11, 25)),
        (datetime(2026, 11, 21, 8, tzinfo=UTC), 0, date(2026, 11, 23)),  # a Saturday: Monday
        (datetime(2026, 11, 22, 8, tzinfo=UTC), 1, date(2026, 11, 24)),  # a Sunday + 1: Tuesday
        (datetime(2026, 11, 18, 15, tzinfo=UTC), 10, date(2026, 12, 2)),  # two weeks
    ],
)
def test_given_a_routing_time_and_an_sla_then_the_due_date_counts_business_days(routed, business_days, due):
    assert due_date(routed, business_days) == due


@pytest.mark.parametrize(
    ("routed", "business_days", "due"),
    [
        # Monday 20:00 UTC is Tuesday 07:00 in Sydney: one business day later is Wednesday there.
        (datetime(2026, 11, 23, 20, tzinfo=UTC), 1, date(2026, 11, 25)),
        # Friday 14:00 UTC is already Saturday in Sydney: that day counts as the next Monday.
        (datetime(2026, 11, 20, 14, tzinfo=UTC), 0, date(2026, 11, 23)),
    ],
)
def test_given_the_portals_zone_then_business_days_count_from_the_date_there(routed, business_days, due):
    sydney = ZoneInfo("Australia/Sydney")

    assert due_date(routed, business_days, sydney) == due
    assert due_date(routed, business_days) != due  # counted from UTC's date it would differ


@pytest.mark.parametrize(
    ("score", "arr", "expected"),
    [
        (70, None, "HIGH"),  # at the threshold: included
        (69.99, None, "MEDIUM"),
        (40, None, "MEDIUM"),
        (39.9, None, "LOW"),
        (39.9, Decimal("100000"), "MEDIUM"),  # a valuable account: one level more
        (80, Decimal("1000000"), "HIGH"),  # never above HIGH
        (39.9, Decimal("99999.99"), "LOW"),
    ],
)
def test_given_a_score_and_an_arr_then_the_priority_follows_the_play(score, arr, expected):
    rule = Priority(high_at=70, medium_at=40, valuable_arr=100000)

    assert priority(score, arr, rule) == expected


def test_given_the_reference_upgrade_play_when_rendered_then_the_narrative_has_the_account_and_evidence():
    subject, body = render(
        REFERENCE.plays["upgrade-proposal"], FIRING, "acme", ACME, Owner(name="Dana"), date(2026, 11, 25)
    )

    assert subject == "Upgrade: Acme Corp shows several growth signals"
    assert body.startswith("Current state: Acme Corp (enterprise, plan Growth) shows 2 of 5 signals held")
    assert "Risk of waiting:" in body
    assert "(ruleset 2026-11-23.1, score 45)" in body
    assert (
        "- upgrade_intent: 2 of 5 signals held within 30d (held, at least 2, 2026-10-22..2026-11-20)" in body
    )
    assert "  - seat_saturation: latest seats.active / plan limit seats = 0.91 (held, at least 0.9," in body
    assert body.endswith("- checked, not applying: do_not_contact\n")


def test_given_no_profile_when_rendered_then_the_account_id_and_unknowns_stand_in():
    play = Play.model_validate(
        {"message": {"subject": "$account.name for $owner.name", "body": "$plan.name $$5"}}
    )

    subject, body = render(play, FIRING, "acme", None, None, date(2026, 11, 25))

    assert (subject, body) == ("acme for the account team", "unknown $5\n")


def test_given_a_long_multiline_subject_value_when_rendered_then_the_subject_is_one_bounded_line():
    play = Play.model_validate(
        {"message": {"subject": "$detail $detail $detail $detail $detail $detail $detail"}}
    )
    firing = {**FIRING, "condition": {**FIRING["condition"], "detail": "x" * 60 + "\nsecond line"}}

    subject, _ = render(play, firing, "acme", ACME, None, date(2026, 11, 25))

    assert "\n" not in subject
    assert len(subject) <= 250


def test_given_a_firing_then_the_evidence_lines_list_condition_members_and_exclusions():
    assert evidence_lines(FIRING)[0].startswith("- upgrade_intent:")
    assert len(evidence_lines(FIRING)) == 3
