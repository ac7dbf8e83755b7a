"""Which rules the columnar engine computes, and why the others replay on the scalar engine.

The columnar engine is a second implementation of the reference semantics (shared/rules/engine.py),
so it takes only what tests/unit/test_columnar_equality.py proves equal. Anything else is named
here, trigger by trigger, and the backtest replays that ruleset with the scalar engine: never a
silent difference. Routing is by ruleset, not by trigger: a contact made by one trigger excludes
others (`contacted_within`), so splitting a ruleset's triggers between engines would split that
state too; and the fold, which the scalar replay pays either way, is most of its cost.
"""

from __future__ import annotations

from shared.rules.language import CompositeSignal, Measure, MetricSignal, Ruleset, SignalHolds

# The measures computed as matrices (a ratio's sides: any of these but share).
COLUMNAR_MEASURES = frozenset(
    {
        Measure.SUM,
        Measure.COUNT,
        Measure.ACTIVE_DAYS,
        Measure.LATEST,
        Measure.PEAK,
        Measure.LOW,
        Measure.DISTINCT,
        Measure.NEW_DISTINCT,
        Measure.SHARE,
        Measure.RATIO,
    }
)


def signal_gap(signal: MetricSignal | CompositeSignal) -> str | None:
    """Why the columnar engine cannot compute the signal itself (None: it can)."""
    if isinstance(signal, CompositeSignal):
        return None
    if signal.measure not in COLUMNAR_MEASURES:
        return f"measure {signal.measure.value}"
    if signal.group_by is not None:
        return "group_by"
    if signal.scope == "family":
        return "scope: family"
    return None


def unsupported_triggers(ruleset: Ruleset) -> dict[str, str]:
    """trigger → the first capability it uses that the columnar engine lacks (empty: all columnar).
    A trigger reads its `when`, the signals its score weighs and the signals its checks name."""
    gaps: dict[str, str] = {}
    for name, trigger in ruleset.triggers.items():
        reads = [trigger.when]
        if trigger.score is not None:
            reads += list(trigger.score.weights)
        reads += [
            check.signal for check in [*trigger.unless, *trigger.requires] if isinstance(check, SignalHolds)
        ]
        for signal_name in reads:
            gap = _gap_within(ruleset, signal_name, frozenset())
            if gap is not None:
                gaps[name] = f"signal {gap[0]}: {gap[1]}"
                break
    return gaps


def _gap_within(ruleset: Ruleset, name: str, seen: frozenset[str]) -> tuple[str, str] | None:
    signal = ruleset.signals[name]
    if isinstance(signal, CompositeSignal):
        for member in signal.signals:
            if member not in seen:
                gap = _gap_within(ruleset, member, seen | {name})
                if gap is not None:
                    return gap
        return None
    reason = signal_gap(signal)
    return None if reason is None else (name, reason)
