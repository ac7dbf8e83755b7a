"""Which accounts a trigger's experiment treats, holds out, or leaves in shadow: a stable draw.

Each account gets a number in [0, 1) from a hash of (experiment salt, account id) — the same
number on every deploy, in every function, in the backtest, with no state stored. The salt is the
trigger's name unless the experiment names its own: a new salt is a new experiment, with a new
draw.

- **Holdout p %**: the account is held out when its number is below p / 100. Raising p from 10 to
  20 keeps every held-out account held out and moves the accounts between 0.10 and 0.20 from
  treated to held out; lowering it moves the top of the held-out range back. No account that stays
  on the same side of the line ever changes group, so existing comparisons are not reshuffled.
- **Rollout q %**: the same rule with an independent number (the salt with `#rollout`), so being
  in the rollout says nothing about being held out. An explicit list of pilot accounts or segments
  needs no draw.

SHA-256 is used for its uniformity, not its secrecy: anyone with the account id and the salt can
recompute an account's group, which makes every assignment auditable after the fact.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum

_SCALE = float(1 << 64)


class Arm(StrEnum):
    TREATED = "treated"  # fired and routed
    HOLDOUT = "holdout"  # fired and recorded with its evidence, never routed: the comparison group
    SHADOW = "shadow"  # outside the rollout: evaluated and recorded, never routed, not compared


def draw(salt: str, account_id: str) -> float:
    """The account's number in [0, 1) for this salt: uniform over accounts, the same forever."""
    digest = hashlib.sha256(f"{salt}\x00{account_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def held_out(salt: str, account_id: str, percent: float) -> bool:
    return draw(salt, account_id) < percent / 100


def in_rollout(salt: str, account_id: str, percent: float) -> bool:
    return draw(f"{salt}#rollout", account_id) < percent / 100
