"""The Segment mapping file: the repository's own loads, and a wrong one is refused with every problem
and its path (never a traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.events.models import EventKind
from shared.segment.mapping import (
    MappingError,
    Unmapped,
    load_mapping,
    lookup,
    parse_mapping,
    target_location,
)

REPO_MAPPING = Path(__file__).resolve().parents[2] / "segment" / "mapping.yaml"


def problems(text: str) -> list[str]:
    with pytest.raises(MappingError) as refused:
        parse_mapping(text, "mapping.yaml")
    return refused.value.problems


def test_given_the_repositorys_mapping_then_it_loads_with_its_gauges_and_traits():
    mapping = load_mapping(REPO_MAPPING)

    seats = mapping.track.events["Seats Updated"]
    assert (seats.metric, seats.kind, seats.value) == ("seats.active", EventKind.GAUGE, "properties.seats")
    assert mapping.track.account == ["context.groupId", "properties.account_id"]
    assert mapping.track.unmapped is Unmapped.IGNORE
    assert mapping.group.traits["seats"] == "plan.limits.seats"


def test_given_an_empty_mapping_then_the_defaults_read_context_group_id_and_ignore_every_event():
    mapping = parse_mapping("version: 1\n", "mapping.yaml")

    assert (mapping.track.account, mapping.track.events, mapping.group.traits) == (
        ["context.groupId"],
        {},
        {},
    )


def test_given_mistakes_everywhere_then_each_is_named_with_its_path():
    found = problems(
        """
version: 1
track:
  acount: [context.groupId]
  events:
    Seats Updated: {metric: seats.active, kind: gauge}
    Report Created: {metric: reports.created, value: "properties.the count"}
group:
  traits:
    seats: plan.limit.seats
    plan: plan.name
    tier_name: plan.name
"""
    )

    gauge = "track.events.Seats Updated: a gauge needs `value`: the property holding the level"
    path = "track.events.Report Created.value: 'properties.the count' is not a message path"
    target = "group.traits.seats: 'plan.limit.seats' is not a profile field a trait can set"
    assert len(found) == 4
    assert "track.acount: unknown key (did you mean 'account'?)" in found
    assert any(problem.startswith(gauge) for problem in found)
    assert any(problem.startswith(path) for problem in found)
    assert any(problem.startswith(target) and "plan.limits.<metric>" in problem for problem in found)


def test_given_two_traits_for_one_field_then_it_asks_to_map_one():
    found = problems("version: 1\ngroup:\n  traits: {plan: plan.name, tier_name: plan.name}\n")

    assert found == ["group: traits 'plan' and 'tier_name' both set plan.name; map one of them"]


def test_given_text_that_is_not_a_mapping_then_it_says_so():
    assert problems("- a list") == ["the mapping must be a YAML mapping with version, track and group"]
    assert problems("version: [1")[0].startswith("not valid YAML")


def test_given_a_metric_name_with_dots_as_a_plan_limit_then_it_is_one_key():
    assert target_location("plan.limits.api.calls") == ("plan", "limits", "api.calls")
    assert target_location("owners.csm.email") == ("owners", "csm", "email")


def test_given_a_path_then_lookup_walks_objects_and_stops_at_anything_else():
    call = {"context": {"groupId": "acme"}, "properties": {"seats": 4, "tags": ["a"]}}

    assert lookup(call, "context.groupId") == "acme"
    assert lookup(call, "properties.seats") == 4
    assert lookup(call, "properties.tags.0") is None
    assert lookup(call, "context.missing.deeper") is None
