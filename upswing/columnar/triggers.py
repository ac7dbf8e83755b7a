"""Triggers over the signal matrices: the one sequential part, visiting candidate cells only.

A trigger's state (armed, last fired) and the account's last contact change only where a
trigger's signal holds on an evaluation: everywhere else the reference's outcome is "not held",
whose one effect — re-arming — is implied by a gap between two held evaluations. So the pass
walks, account by account, only the evaluations where some trigger's signal holds, and there
applies the reference's rules in the reference's order (shared/rules/engine.py,
`_evaluate_quietly`): excluded, not re-armed, cooling down, else fired; the contact made by a
firing is seen by the next evaluation's exclusions. Exclusions and requirements are the
reference's own compiled tests, asked of a view that reads the matrices; the score is the
reference's formula over "held within" matrices. What the compiled ruleset knows (cooldowns,
weights, score windows, exclusion indexes) is read from `compiled_ruleset`, never restated.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from shared.accounts.models import AccountProfile
from shared.rules.engine import compiled_ruleset
from shared.rules.language import Ruleset
from upswing.backtest.replay import FiredAt
from upswing.columnar.frame import Frame
from upswing.columnar.signals import Bools, SignalGrid


@dataclass(frozen=True)
class Evaluated:
    """A ruleset over a frame: its firings, and per trigger whether its signal held at each
    evaluation (the frame's eval_rows / eval_cols order; False for another segment)."""

    firings: list[FiredAt]
    held: dict[str, Bools]


class _View:
    """What an exclusion test may read of the account (shared/rules/conditions.py, AccountView)."""

    __slots__ = ("base", "grid", "profile", "row")

    def __init__(self, grid: SignalGrid, row: int, profile: AccountProfile | None) -> None:
        self.grid, self.row, self.profile, self.base = grid, row, profile, grid.frame.base

    def held(self, name: str, day: int) -> bool:
        return bool(self.grid.held(name)[self.row, day - self.base])

    def observe_detail(self, name: str, day: int) -> str:
        raise NotImplementedError("evidence is the scalar engine's (upswing/columnar/__init__.py)")


def evaluate_frame(frame: Frame, ruleset: Ruleset, contender: int = 0) -> Evaluated:
    compiled = compiled_ruleset(ruleset)
    grid = SignalGrid(frame, ruleset)
    rows, cols = frame.eval_rows, frame.eval_cols
    triggers = compiled.triggers
    held: dict[str, Bools] = {}
    for trigger in triggers:
        at_evaluations = grid.held(trigger.when)[rows, cols]
        if trigger.segments is not None:
            ours = np.asarray([segment in trigger.segments for segment in grid.segments], dtype=bool)
            at_evaluations = at_evaluations & ours[rows]
        held[trigger.name] = at_evaluations
    firings: list[FiredAt] = []
    if not len(rows):
        return Evaluated(firings, held)
    candidates = np.flatnonzero(np.logical_or.reduce([held[trigger.name] for trigger in triggers]))
    # Evaluations are grouped by row, in time order: the first evaluation of each row.
    row_starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    first_of_row = dict(zip(rows[row_starts].tolist(), row_starts.tolist(), strict=True))
    held_rows = {trigger.name: held[trigger.name] for trigger in triggers}
    tests = compiled.exclusion_tests
    scored = [
        (trigger, [(grid.held_within(signal, trigger.within), weight) for signal, weight in trigger.weights])
        for trigger in triggers
    ]
    row = -1
    view: _View | None = None
    previous: dict[str, int] = {}
    armed: dict[str, bool] = {}
    last_fired: dict[str, datetime] = {}
    last_contacted: datetime | None = None
    for index in candidates.tolist():
        if rows[index] != row:
            row = int(rows[index])
            view = _View(grid, row, frame.profiles[row])
            previous, armed, last_fired, last_contacted = {}, {}, {}, None
        assert view is not None
        at = datetime.fromisoformat(frame.eval_stamps[index])
        col = int(cols[index])
        known: dict[int, bool] = {}
        fired = False
        for trigger, weights in scored:
            name = trigger.name
            if not held_rows[name][index]:
                continue
            # A not-held evaluation between two held ones re-armed the trigger.
            if previous.get(name, first_of_row[row] - 2) != index - 1:
                armed[name] = True
            previous[name] = index
            excluded = False
            for exclusion in trigger.exclusions:
                applies = known.get(exclusion)
                if applies is None:
                    applies = known[exclusion] = tests[exclusion](view, last_contacted, at)
                if applies:
                    excluded = True
                    break
            if excluded or not armed.get(name, True):
                continue
            fired_at = last_fired.get(name)
            if fired_at is not None and at - fired_at < trigger.cooldown:
                continue
            # The reference's score (_CompiledTrigger._score), the same sum in the same order.
            counted = [bool(within[row, col]) for within, _ in weights]
            total = trigger.base + sum(
                weight for (_, weight), count in zip(weights, counted, strict=True) if count
            )
            firings.append(FiredAt(contender, frame.accounts[row], name, at, round(min(100.0, total), 2)))
            armed[name] = False
            last_fired[name] = at
            fired = True
        if fired:
            last_contacted = at
    return Evaluated(firings, held)
