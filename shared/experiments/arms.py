"""A firing's arm: which group of its trigger's experiment the account is in, with the draw.

The rules engine asks this for every firing (pure: a hash, no state, no clock), so the evaluator
and the backtest assign the same accounts to the same groups. A trigger without `holdout` has no
experiment: its firings are `treated` and carry no `experiment` evidence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from shared.experiments.assignment import Arm, draw
from shared.rules.language import Trigger

EXPERIMENT_SALT = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")  # the rules language's Label


@dataclass(frozen=True)
class Assignment:
    """An account's group in one experiment, and what decided it (auditable: recompute the draw)."""

    arm: Arm
    salt: str
    draw: float
    holdout_percent: float

    def as_evidence(self) -> dict[str, Any]:
        return {"salt": self.salt, "draw": round(self.draw, 6), "holdout_percent": self.holdout_percent}


def experiment_salt(name: str, trigger: Trigger) -> str:
    """The salt of a trigger's experiment: its own, or the trigger's name."""
    return trigger.experiment.salt if trigger.experiment else name


def assign(name: str, trigger: Trigger, account_id: str) -> Assignment | None:
    """The account's group in the trigger's experiment (None: the trigger runs no experiment)."""
    if trigger.holdout is None:
        return None
    salt = experiment_salt(name, trigger)
    number = draw(salt, account_id)
    # The same comparison as assignment.held_out, on the number computed once for the evidence.
    arm = Arm.HOLDOUT if number < trigger.holdout_percent / 100 else Arm.TREATED
    return Assignment(arm, salt, number, trigger.holdout_percent)
