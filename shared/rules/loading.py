"""Reading rules files: every problem reported with file, line, path and a plain message.

`load_ruleset` returns a checked `Ruleset` or raises `RulesetError` listing *all* problems found
(YAML syntax, the schema, then the references between signals, metrics and triggers), never a
traceback.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from shared.events.models import EventKind
from shared.model_fields import did_you_mean, fields_at
from shared.rules import language
from shared.rules.language import (
    GAUGE_MEASURES,
    MAX_LOOKBACK_DAYS,
    UNION_TAG_PREFIX,
    CompositeSignal,
    Measure,
    Ruleset,
    SignalHolds,
    lookback_days,
)
from shared.rules.plays import destination_of

# libyaml when PyYAML was built with it (the Lambda wheels are): about 10x faster than pure Python.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

Location = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}:{self.column}: {where}{self.message}"


class RulesetError(Exception):
    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("\n".join(map(str, problems)))
        self.problems = list(problems)


def rules_files(path: Path) -> list[Path]:
    """The file itself, or every .yaml/.yml file below a folder, in name order."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    return [path]


def load_ruleset(path: Path) -> Ruleset:
    text = path.read_text(encoding="utf-8")
    return parse_ruleset(text, str(path))


def parse_ruleset(text: str, file: str) -> Ruleset:
    loader = _LOADER(text)  # one parse gives both the node tree (for line numbers) and the data
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = getattr(error, "problem", None) or str(error)
        raise RulesetError([Problem(file, line, column, "", f"not valid YAML: {problem}")]) from None
    document = _Document(file, root)
    if not isinstance(root, yaml.MappingNode):
        raise RulesetError(
            [document.problem((), "a ruleset must be a mapping with version, metrics, signals, triggers")]
        )
    problems = list(document.duplicate_keys(root, ()))
    try:
        ruleset = Ruleset.model_validate(loader.construct_document(root))
    except ValidationError as error:
        raise RulesetError(
            problems + [document.problem(e["loc"], _message(e)) for e in error.errors()]
        ) from None
    problems += [document.problem(loc, message) for loc, message in check_references(ruleset)]
    if problems:
        raise RulesetError(problems)
    return ruleset


def check_references(ruleset: Ruleset) -> Iterator[tuple[Location, str]]:
    """What the schema cannot see: names that must exist, kinds that must fit, windows that must fit."""
    for name, signal in ruleset.signals.items():
        at: Location = ("signals", name)
        if isinstance(signal, CompositeSignal):
            for index, member in enumerate(signal.signals):
                if member not in ruleset.signals:
                    yield (
                        (*at, "signals", index),
                        f"no signal named {member!r}{did_you_mean(member, ruleset.signals)}",
                    )
            continue
        for inside, measure, metric in signal.measured():
            kind = ruleset.metrics.get(metric)
            if kind is None:
                yield (
                    (*at, *inside, "metric"),
                    f"metric {metric!r} is not declared under metrics"
                    + did_you_mean(metric, ruleset.metrics),
                )
            elif measure in GAUGE_MEASURES and kind is not EventKind.GAUGE:
                yield (
                    (*at, *inside, "measure"),
                    f"{measure.value} reads a gauge, but {metric!r} is a {kind.value}",
                )
            elif measure is Measure.SUM and kind is not EventKind.COUNT:
                yield (
                    (*at, *inside, "measure"),
                    f"sum adds up counts, but {metric!r} is a gauge (use latest, peak or low)",
                )
    yield from _cycles(ruleset)
    for name in ruleset.signals:
        lookback = lookback_days(ruleset, name)
        if lookback is not None and lookback > MAX_LOOKBACK_DAYS:
            yield (
                ("signals", name),
                (f"looks back {lookback} days, more than the {MAX_LOOKBACK_DAYS} days counters are kept"),
            )
    for name, trigger in ruleset.triggers.items():
        if trigger.when not in ruleset.signals:
            yield (
                ("triggers", name, "when"),
                f"no signal named {trigger.when!r}{did_you_mean(trigger.when, ruleset.signals)}",
            )
        for part, checks in (("unless", trigger.unless), ("requires", trigger.requires)):
            for index, check in enumerate(checks):
                if not isinstance(check, SignalHolds):
                    continue
                where: Location = ("triggers", name, part, index, "signal")
                named = check.signal
                if named not in ruleset.signals:
                    yield where, f"no signal named {named!r}{did_you_mean(named, ruleset.signals)}"
                elif named == trigger.when and part == "unless":
                    yield where, f"the trigger is excluded by its own signal {named!r}: it could never fire"
        for check in set(trigger.unless) & set(trigger.requires):
            yield (
                ("triggers", name, "requires"),
                f"{_named(check)} is both required and excluded: the trigger could never fire",
            )
        for weighted in trigger.score.weights if trigger.score else {}:
            if weighted not in ruleset.signals:
                yield ("triggers", name, "score", "weights", weighted), f"no signal named {weighted!r}"
        if trigger.play not in ruleset.plays:
            yield (
                ("triggers", name, "play"),
                f"no play named {trigger.play!r} under plays{did_you_mean(trigger.play, ruleset.plays)}",
            )
    yield from _webhook_references(ruleset)


def _webhook_references(ruleset: Ruleset) -> Iterator[tuple[Location, str]]:
    """Every `webhook:NAME` channel names a destination declared under destinations.webhooks."""
    declared = ruleset.destinations.webhooks
    for name, play in ruleset.plays.items():
        places: list[tuple[Location, list[str]]] = [(("plays", name, "channels"), play.channels)]
        places += [
            (("plays", name, "escalation", index, "channels"), tier.channels)
            for index, tier in enumerate(play.escalation)
        ]
        for at, channels in places:
            for index, channel in enumerate(channels):
                destination = destination_of(channel)
                if destination is not None and destination not in declared:
                    yield (
                        (*at, index),
                        f"no webhook destination named {destination!r} under destinations.webhooks"
                        + (did_you_mean(destination, declared) or " (declare its url and secret there)"),
                    )


def _named(check: language.Condition) -> str:
    """A check as written in the file, e.g. `renewal_within: 90d`."""
    if isinstance(check, language.Flag):
        return check.value
    ((key, value),) = check.model_dump(exclude_none=True).items()
    return f"{key}: {value}"


def _cycles(ruleset: Ruleset) -> Iterator[tuple[Location, str]]:
    reported: set[frozenset[str]] = set()

    def visit(name: str, trail: list[str]) -> Iterator[tuple[Location, str]]:
        signal = ruleset.signals.get(name)
        if not isinstance(signal, CompositeSignal):
            return
        for member in signal.signals:
            if member in trail:
                cycle = [*trail[trail.index(member) :], member]
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    yield (
                        ("signals", member),
                        f"composite signals refer to each other in a cycle: {' → '.join(cycle)}",
                    )
            else:
                yield from visit(member, [*trail, member])

    for name in ruleset.signals:
        yield from visit(name, [name])


class _Document:
    """The composed YAML, to find the line of a value from its path."""

    def __init__(self, file: str, root: yaml.Node | None) -> None:
        self.file = file
        self.root = root

    def problem(self, loc: Sequence[str | int], message: str) -> Problem:
        path = [part for part in loc if not (isinstance(part, str) and part.startswith(UNION_TAG_PREFIX))]
        node = self.root
        for part in path:
            child = self._child(node, part)
            if child is None:
                break
            node = child
        mark = node.start_mark if node is not None else None
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return Problem(self.file, line, column, _dotted(path), message)

    def duplicate_keys(self, node: yaml.Node, at: Location) -> Iterator[Problem]:
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                if key.value in seen:
                    yield Problem(
                        self.file,
                        key.start_mark.line + 1,
                        key.start_mark.column + 1,
                        _dotted((*at, key.value)),
                        f"{key.value!r} appears twice in this mapping (the later one would silently win)",
                    )
                seen.add(key.value)
                yield from self.duplicate_keys(value, (*at, key.value))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                yield from self.duplicate_keys(item, (*at, index))

    @staticmethod
    def _child(node: yaml.Node | None, part: str | int) -> yaml.Node | None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    # An unknown key is best shown at the key itself.
                    return value if not isinstance(value, yaml.ScalarNode) or value.value else key
        if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            return node.value[part]
        return None


def _dotted(path: Sequence[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _message(error: Any) -> str:
    kind, loc = error["type"], error["loc"]
    last = loc[-1] if loc else ""
    if kind == "extra_forbidden":
        return f"unknown key {last!r}{did_you_mean(str(last), fields_at(Ruleset, loc[:-1]))}"
    if kind == "missing":
        return "is required"
    if kind == "string_pattern_mismatch":
        pattern = error.get("ctx", {}).get("pattern", "")
        if pattern == language.DURATION_PATTERN:
            return (
                f"{error['input']!r} is not a duration: use whole days or weeks, at least one (14d, 30d, 13w)"
            )
        return f"{error['input']!r} is not a valid name here (expected the pattern {pattern})"
    if kind in ("enum", "literal_error"):
        expected = error.get("ctx", {}).get("expected", "")
        return f"{error['input']!r} is not one of {expected}"
    if kind in ("float_parsing", "float_type", "int_parsing", "int_type"):
        return f"must be a number, got {error['input']!r}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "must be a mapping"
    if kind == "list_type":
        return "must be a list"
    message = str(error["msg"]).removeprefix("Value error, ")
    return message[0].lower() + message[1:] if message else kind
