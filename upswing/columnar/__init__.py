"""The columnar backtest engine: the same rules, computed for a partition's accounts at once.

The online engine (shared/rules/engine.py, fed by upswing/backtest/replay.py in the backtest) is
the reference semantics: one account, one evaluation at a time. This engine is a second one,
compiled from the same `Ruleset` models into account x day matrices (upswing/columnar/signals.py)
and one sequential pass over the cells where a trigger's signal holds
(upswing/columnar/triggers.py). tests/unit/test_columnar_equality.py proves the two equal:
random rulesets and histories, held at every evaluation, every firing and its score.

The backtest routes by account (`split_accounts`): an account whose input the matrices model
exactly (upswing/columnar/frame.py, `why_scalar`) takes this engine, any other the scalar replay;
a ruleset using a capability this engine lacks (upswing/columnar/support.py) replays whole on the
scalar engine. Both counts, and every reason, are in the backtest's result (docs/backtest.md).

CLI-side only: never imported by functions/ or the Lambda layer (numpy is a `backtest` extra).
The backtest needs firings and scores; a firing's evidence is the scalar engine's to explain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from shared.accounts.models import AccountProfile
from shared.rules.language import Ruleset
from upswing.backtest.events import Accepted
from upswing.backtest.replay import Contender, FiredAt, ReplayStats
from upswing.columnar.frame import build_frame, why_scalar
from upswing.columnar.signals import needs_of
from upswing.columnar.support import unsupported_triggers
from upswing.columnar.triggers import evaluate_frame

__all__ = ["replay_columnar", "split_accounts", "unsupported_triggers"]

AccountInput = tuple[str, Sequence[Accepted], AccountProfile | None]


def split_accounts(
    by_account: Mapping[str, list[Accepted]],
    profiles: Mapping[str, AccountProfile],
    rulesets: Sequence[Ruleset],
    stats: ReplayStats,
) -> tuple[list[AccountInput], dict[str, list[Accepted]]]:
    """The accounts the columnar engine takes, and the rest (for the scalar replay), counted in
    `stats` with the reason each went to the scalar replay."""
    slices = len(needs_of(*rulesets).slices)
    columnar: list[AccountInput] = []
    scalar: dict[str, list[Accepted]] = {}
    for account_id, arrivals in by_account.items():
        reason = why_scalar(arrivals, slices)
        if reason is None:
            columnar.append((account_id, arrivals, profiles.get(account_id)))
        else:
            scalar[account_id] = arrivals
            stats.scalar_reasons[reason] = stats.scalar_reasons.get(reason, 0) + 1
    stats.columnar_accounts += len(columnar)
    stats.scalar_accounts += len(scalar)
    return columnar, scalar


def replay_columnar(
    accounts: Sequence[AccountInput], contenders: Sequence[Contender], stats: ReplayStats
) -> list[FiredAt]:
    """What `replay_account` would give for each account (each passed `why_scalar`): the firings,
    with the accepted events, evaluations and spans counted in `stats`."""
    if not accounts:
        return []
    pad = max(contender.plan.lookback_days for contender in contenders)
    frame = build_frame(accounts, needs_of(*(contender.ruleset for contender in contenders)), pad)
    firings: list[FiredAt] = []
    for index, contender in enumerate(contenders):
        firings.extend(evaluate_frame(frame, contender.ruleset, index).firings)
    stats.accepted += frame.events
    stats.evaluations += len(frame.eval_rows)
    stats.spans.update(frame.spans)
    return firings
