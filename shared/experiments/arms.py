"""A firing's arm: which group of its trigger's experiment the account is in, with the draw.

The rules engine asks this for every firing (pure: a hash, no state, no clock), so the evaluator
and the backtest assign the same accounts to the same groups. A trigger without `holdout` or
`rollout` has no experiment: its firings are `treated` and carry no `experiment` evidence.

- Outside the `rollout` (a stable random share with its own draw, pilot accounts, or segments) the
  account is in **shadow**: its firings are recorded, never routed, and not compared.
- Inside it (or with no rollout), `holdout` draws the account into the **holdout** or **treated**.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from shared.experiments.assignment import Arm, draw, in_rollout
from shared.rules.language import Rollout, Trigger

EXPERIMENT_SALT = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")  # the rules language's Label


@dataclass(frozen=True)
class Assignment:
    """An account's group in one experiment, and what decided it (auditable: recompute the draw)."""

    arm: Arm
    salt: str
    draw: float
    holdout_percent: float  # 0: no holdout (nothing is compared)
    rollout: str | None = None  # how the rollout was decided, when the trigger has one

    @property
    def compared(self) -> bool:
        """Whether the firing is a trial of a treated-vs-held-out comparison."""
        return self.holdout_percent > 0 and self.arm is not Arm.SHADOW

    def as_evidence(self) -> dict[str, Any]:
        evidence: dict[str, Any] = {
            "salt": self.salt,
            "draw": round(self.draw, 6),
            "holdout_percent": self.holdout_percent,
        }
        if self.rollout is not None:
            evidence["rollout"] = self.rollout
        return evidence


def experiment_salt(name: str, trigger: Trigger) -> str:
    """The salt of a trigger's experiment: its own, or the trigger's name."""
    return trigger.experiment.salt if trigger.experiment else name


def assign(name: str, trigger: Trigger, account_id: str, segment: str | None = None) -> Assignment | None:
    """The account's group in the trigger's experiment (None: the trigger runs no experiment)."""
    if trigger.holdout is None and trigger.rollout is None:
        return None
    salt = experiment_salt(name, trigger)
    number = draw(salt, account_id)
    percent = trigger.holdout_percent
    rollout = None
    if trigger.rollout is not None:
        inside, rollout = _rollout(trigger.rollout, salt, account_id, segment)
        if not inside:
            return Assignment(Arm.SHADOW, salt, number, percent, rollout)
    # The same comparison as assignment.held_out, on the number computed once for the evidence.
    arm = Arm.HOLDOUT if number < percent / 100 else Arm.TREATED
    return Assignment(arm, salt, number, percent, rollout)


def _rollout(rollout: Rollout, salt: str, account_id: str, segment: str | None) -> tuple[bool, str]:
    """Whether the account is inside the rollout, and how that was decided (for the evidence)."""
    if rollout.percent is not None:
        inside = in_rollout(salt, account_id, rollout.percent)
        return inside, f"{rollout.percent:g}% of accounts: {'inside' if inside else 'outside'}"
    if rollout.accounts is not None:
        inside = account_id in rollout.accounts
        return inside, f"pilot accounts: {'listed' if inside else 'not listed'}"
    assert rollout.segments is not None
    inside = segment in rollout.segments
    return inside, f"segments {', '.join(rollout.segments)}: {'inside' if inside else f'segment {segment}'}"
