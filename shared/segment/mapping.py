"""The Segment mapping file: which `track` events become which usage events, where a call's account
comes from, and which `group` traits set which profile fields (segment/mapping.yaml, docs/api.md).

Segment event names are free text ("Report Created") and carry no kind or value; Upswing's rules
need a metric name, a kind (count / gauge) and a value. The mapping says, per event name, what the
event measures, so RevOps reviews it like the rules file. It is checked as a whole when loaded:
every problem with its path, never a traceback; a bad file fails the function at once.
"""

from __future__ import annotations

import re
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from shared.accounts.models import AccountProfile, Flags, HubSpotRefs, Owner, Plan
from shared.events.models import DimensionKey, EventKind, MetricName
from shared.model_fields import did_you_mean, fields_at

# libyaml when PyYAML was built with it (the Lambda wheels are).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
BUNDLE_ROOT = Path(__file__).resolve().parents[2]  # shared/ and segment/ live here
DEFAULT_MAPPING_PATH = "segment/mapping.yaml"
MAPPING_PATH_ENV = "SEGMENT_MAPPING_PATH"

# A place in a Segment message: dotted keys from the message's top level (properties.seats,
# context.groupId, userId). Keys with dots or spaces cannot be named, which Segment's own
# reserved fields never need.
_PATH = r"^[A-Za-z_$][A-Za-z0-9_$-]*(\.[A-Za-z0-9_$-]+)*$"
MessagePath = Annotated[str, StringConstraints(pattern=_PATH, max_length=256)]


class MappingError(Exception):
    """The mapping file cannot be used; `problems` lists every reason, each with its path."""

    def __init__(self, file: str, problems: list[str]) -> None:
        super().__init__(f"{file}: " + f"\n{file}: ".join(problems))
        self.problems = problems


class Unmapped(StrEnum):
    IGNORE = "ignore"  # answered as ignored with the reason, and counted (SegmentIgnored)
    REJECT = "reject"  # answered as rejected with the reason (a 400 on /v1/track)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventMapping(_Strict):
    """What one Segment event name measures."""

    metric: MetricName = Field(description="The usage event's name, as rules read it (e.g. reports.created).")
    kind: EventKind = Field(default=EventKind.COUNT, description="count (added up) or gauge (a level).")
    value: MessagePath | None = Field(
        default=None,
        description="Where the value is, e.g. properties.seats (a JSON number there); "
        "none: each call counts 1.",
    )
    dimensions: dict[DimensionKey, MessagePath] = Field(
        default_factory=dict,
        max_length=16,
        description="Dimension name → where its value is, e.g. {team: properties.team_id, user: userId}.",
    )

    @model_validator(mode="after")
    def _gauge_needs_value(self) -> EventMapping:
        if self.kind is EventKind.GAUGE and self.value is None:
            raise ValueError("a gauge needs `value`: the property holding the level (e.g. properties.seats)")
        return self


class TrackMapping(_Strict):
    account: list[MessagePath] = Field(
        default_factory=lambda: ["context.groupId"],
        min_length=1,
        max_length=8,
        description="Where a track call's account id is, first found wins (e.g. context.groupId, "
        "properties.account_id).",
    )
    unmapped: Unmapped = Field(
        default=Unmapped.IGNORE, description="What to do with an event name the mapping does not list."
    )
    events: dict[Annotated[str, StringConstraints(min_length=1, max_length=256)], EventMapping] = Field(
        default_factory=dict, description="Segment event name (exact, case-sensitive) → what it measures."
    )


def target_location(target: str) -> tuple[str, ...]:
    """A profile field as keys into the profile document.

    Metric names hold dots: plan.limits.api.calls is (plan, limits, api.calls)."""
    if target.startswith("plan.limits."):
        return ("plan", "limits", target.removeprefix("plan.limits."))
    return tuple(target.split("."))


def _profile_target(path: str) -> str:
    if not any(pattern.fullmatch(path) for pattern in _profile_targets()):
        raise ValueError(
            f"{path!r} is not a profile field a trait can set; fields are: {', '.join(_target_examples())}"
        )
    return path


ProfileTarget = Annotated[str, AfterValidator(_profile_target)]


class GroupMapping(_Strict):
    traits: dict[Annotated[str, StringConstraints(min_length=1, max_length=256)], ProfileTarget] = Field(
        default_factory=dict,
        description="Group trait name (exact) → profile field (name, plan.name, plan.limits.seats, arr, "
        "owners.csm.email, hubspot.company_id, flags.churn_risk, ...). Unlisted traits are ignored.",
    )

    @model_validator(mode="after")
    def _one_trait_per_field(self) -> GroupMapping:
        seen: dict[str, str] = {}
        for trait, target in self.traits.items():
            if target in seen:
                raise ValueError(f"traits {seen[target]!r} and {trait!r} both set {target}; map one of them")
            seen[target] = trait
        return self


class SegmentMapping(_Strict):
    version: int = Field(ge=1, le=1, description="The mapping file format: 1.")
    track: TrackMapping = Field(default_factory=TrackMapping)
    group: GroupMapping = Field(default_factory=GroupMapping)


@cache
def active_mapping(path: str = DEFAULT_MAPPING_PATH) -> SegmentMapping:
    """The mapping the deployment runs, relative to the bundle (checked at load: a bad file fails loudly)."""
    return load_mapping(BUNDLE_ROOT / path)


def load_mapping(path: Path) -> SegmentMapping:
    return parse_mapping(path.read_text(encoding="utf-8"), str(path))


def parse_mapping(text: str, file: str) -> SegmentMapping:
    try:
        document = yaml.load(text, Loader=_LOADER)  # noqa: S506 (a safe loader: CSafeLoader or SafeLoader)
    except yaml.YAMLError as error:
        raise MappingError(file, [f"not valid YAML: {error}"]) from None
    if not isinstance(document, dict):
        raise MappingError(file, ["the mapping must be a YAML mapping with version, track and group"])
    try:
        return SegmentMapping.model_validate(document)
    except ValidationError as error:
        raise MappingError(file, [_problem(item) for item in error.errors(include_url=False)]) from None


def lookup(message: dict[str, Any], path: str) -> Any:
    """The value at a dotted path of a Segment message, or None when any step is missing."""
    node: Any = message
    for key in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _problem(item: Any) -> str:
    loc = ".".join(str(part) for part in item["loc"])
    kind = item["type"]
    if kind == "extra_forbidden":
        valid_here = fields_at(SegmentMapping, item["loc"][:-1])
        return f"{loc}: unknown key{did_you_mean(str(item['loc'][-1]), valid_here)}"
    if kind == "missing":
        return f"{loc}: is required"
    if kind == "string_pattern_mismatch" and item["ctx"].get("pattern") == _PATH:
        return f"{loc}: {item['input']!r} is not a message path like properties.seats or context.groupId"
    message = item["msg"].removeprefix("Value error, ")
    return f"{loc}: {message}" if loc else message


@cache
def _profile_targets() -> tuple[re.Pattern[str], ...]:
    """The profile fields a trait may set, from the profile models themselves (so they cannot drift)."""
    leaves = [
        name for name, field in AccountProfile.model_fields.items() if not _is_composite(field.annotation)
    ]
    plan = [f"plan\\.{name}" for name in Plan.model_fields if name != "limits"] + [r"plan\.limits\..+"]
    owners = [rf"owners\.[^.]+\.{name}" for name in Owner.model_fields]
    refs = [f"hubspot\\.{name}" for name in HubSpotRefs.model_fields]
    flags = [f"flags\\.{name}" for name in Flags.model_fields]
    return tuple(re.compile(pattern) for pattern in [*leaves, *plan, *owners, *refs, *flags])


def _target_examples() -> list[str]:
    leaves = [
        name for name, field in AccountProfile.model_fields.items() if not _is_composite(field.annotation)
    ]
    return [
        *leaves,
        *(f"plan.{name}" for name in Plan.model_fields if name != "limits"),
        "plan.limits.<metric>",
        *(f"owners.<role>.{name}" for name in Owner.model_fields),
        *(f"hubspot.{name}" for name in HubSpotRefs.model_fields),
        *(f"flags.{name}" for name in Flags.model_fields),
    ]


def _plain_fields() -> list[str]:
    return [name for name, info in AccountProfile.model_fields.items() if not _is_composite(info.annotation)]


def _is_composite(annotation: Any) -> bool:
    """A model or a map (plan, owners, hubspot, flags): set through its own fields, never whole."""
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return True
        if get_origin(candidate) is dict:
            return True
    return False
