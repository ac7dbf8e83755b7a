"""What changed between two ruleset versions, trigger by trigger, in plain words.

A structural diff of the two rule models, not of the files: comments, key order and formatting
never show; a trigger shows as changed when its own keys changed, or when something it depends on
did — the signals it reads (its `when`, the members of a composite, its score's weights, the
signals its `unless`/`requires` name, transitively) or its play. Each change is one line, e.g.
`cooldown: 30d → 14d`, `signal paywall_attempts: at_least: 3 → 2`, `unless: added
contacted_within: 14d`.

`ruleset_audit` walks the recorded versions (shared/rules/versions.py) oldest first and diffs each
with the one before it, with who deployed it and when.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from shared.rules.language import CompositeSignal, Ruleset, SignalHolds
from shared.rules.loading import parse_ruleset
from shared.rules.versions import VersionRecord

_LONGEST = 80  # characters of a value shown in a change line (messages are long)


@dataclass(frozen=True)
class TriggerChange:
    trigger: str
    change: str  # added | removed | changed
    details: tuple[str, ...] = ()

    def as_view(self) -> dict[str, Any]:
        return {"trigger": self.trigger, "change": self.change, "details": list(self.details)}

    def lines(self, indent: str = "  ") -> list[str]:
        """`- changed trigger x`, then one indented line per detail."""
        return [
            f"{indent}- {self.change} trigger {self.trigger}",
            *(f"{indent}    {d}" for d in self.details),
        ]


def ruleset_changes(old: Ruleset, new: Ruleset) -> list[TriggerChange]:
    """The triggers added, removed or changed from `old` to `new`, in the new file's order (removed
    ones last); an unchanged trigger is not listed."""
    changes = []
    for name, trigger in new.triggers.items():
        if name not in old.triggers:
            changes.append(TriggerChange(name, "added", (f"fires on {trigger.when}, play {trigger.play}",)))
            continue
        details = list(_differences(_plain(old.triggers[name]), _plain(trigger)))
        for signal in sorted(_signals_read(new, name) | _signals_read(old, name)):
            before, after = old.signals.get(signal), new.signals.get(signal)
            if before is None or after is None:
                continue  # a signal the trigger reads now or no longer: its `when`/checks line says so
            details += [f"signal {signal}: {line}" for line in _differences(_plain(before), _plain(after))]
        play_before, play_after = old.plays.get(old.triggers[name].play), new.plays.get(trigger.play)
        if trigger.play == old.triggers[name].play and play_before is not None and play_after is not None:
            details += [
                f"play {trigger.play}: {line}"
                for line in _differences(_plain(play_before), _plain(play_after))
            ]
        if details:
            changes.append(TriggerChange(name, "changed", tuple(details)))
    changes += [TriggerChange(name, "removed") for name in old.triggers if name not in new.triggers]
    return changes


def summary(changes: Sequence[TriggerChange]) -> str:
    """E.g. "1 trigger added, 2 changed" or "no trigger changed"."""
    counts = {kind: sum(1 for c in changes if c.change == kind) for kind in ("added", "removed", "changed")}
    parts = [f"{count} {kind}" for kind, count in counts.items() if count]
    if not parts:
        return "no trigger changed"
    noun = "trigger" if sum(counts.values()) == 1 else "triggers"
    return f"{sum(counts.values())} {noun}: " + ", ".join(parts)


@dataclass(frozen=True)
class VersionChanges:
    """One recorded version against the one recorded before it (None for the first)."""

    record: VersionRecord
    previous: str | None
    changes: tuple[TriggerChange, ...]

    def as_view(self) -> dict[str, Any]:
        return {
            "version": self.record.version,
            "previous": self.previous,
            "deployed_at": self.record.deployed_at,
            "deployer": self.record.deployer,
            "git_revision": self.record.git_revision,
            "first_role": self.record.first_role,
            "summary": summary(self.changes) if self.previous else "the first version recorded",
            "changes": [change.as_view() for change in self.changes],
        }

    def __str__(self) -> str:
        by = f" by {self.record.deployer}" if self.record.deployer else ""
        revision = f" (git {self.record.git_revision[:12]})" if self.record.git_revision else ""
        record = self.record
        head = f"{record.version} — deployed {record.deployed_at}{by}{revision}, first {record.first_role}"
        if self.previous is None:
            return f"{head}\n  the first version recorded"
        lines = [f"{head}\n  since {self.previous}: {summary(self.changes)}"]
        lines += [line for change in self.changes for line in change.lines()]
        return "\n".join(lines)


def ruleset_audit(
    records: Sequence[VersionRecord], text_of: Callable[[str], str | None]
) -> list[VersionChanges]:
    """Each recorded version (oldest first) against the one recorded before it."""
    models: dict[str, Ruleset] = {}

    def model(version: str) -> Ruleset:
        if version not in models:
            text = text_of(version)
            if text is None:
                raise LookupError(f"the file of ruleset version {version!r} was not recorded")
            models[version] = parse_ruleset(text, f"ruleset {version}")
        return models[version]

    audit = [VersionChanges(records[0], None, ())] if records else []
    for before, after in pairwise(records):
        audit.append(
            VersionChanges(
                after, before.version, tuple(ruleset_changes(model(before.version), model(after.version)))
            )
        )
    return audit


# ── helpers ─────────────────────────────────────────────────────────────────────────────────────


def _plain(model: Any) -> Any:
    """The model as plain JSON values, defaults filled in (a default made explicit is no change), unset
    options left out (shown as `none`)."""
    return model.model_dump(mode="json", exclude_none=True, by_alias=True)


def _signals_read(ruleset: Ruleset, trigger_name: str) -> set[str]:
    trigger = ruleset.triggers.get(trigger_name)
    if trigger is None:
        return set()
    pending = [trigger.when, *(trigger.score.weights if trigger.score else {})]
    pending += [
        check.signal for check in [*trigger.unless, *trigger.requires] if isinstance(check, SignalHolds)
    ]
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen or name not in ruleset.signals:
            continue
        seen.add(name)
        signal = ruleset.signals[name]
        if isinstance(signal, CompositeSignal):
            pending.extend(signal.signals)
    return seen


def _differences(before: Any, after: Any, at: str = "") -> Iterator[str]:
    """One line per changed leaf; lists say what was added and removed."""
    if isinstance(before, dict) and isinstance(after, dict):
        for key in [*before, *(k for k in after if k not in before)]:
            where = f"{at}.{key}" if at else str(key)
            if key not in after:
                yield f"{where}: {_shown(before[key])} → none"
            elif key not in before:
                yield f"{where}: none → {_shown(after[key])}"
            else:
                yield from _differences(before[key], after[key], where)
    elif isinstance(before, list) and isinstance(after, list) and before != after:
        old, new = [_shown(v) for v in before], [_shown(v) for v in after]
        added, removed = [v for v in new if v not in old], [v for v in old if v not in new]
        words = [f"added {', '.join(added)}"] * bool(added) + [f"removed {', '.join(removed)}"] * bool(
            removed
        )
        yield f"{at}: {'; '.join(words) or 'reordered'}"
    elif before != after:
        yield f"{at}: {_shown(before)} → {_shown(after)}"


def _shown(value: Any) -> str:
    if isinstance(value, dict) and len(value) == 1:
        ((key, inner),) = value.items()
        return f"{key}: {_shown(inner)}"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    text = " ".join(text.split())  # a message's lines on one line
    return text if len(text) <= _LONGEST else text[: _LONGEST - 1] + "…"
