"""`upswing backtest`: would these triggers have found the accounts that expanded, and how early?

Historical events are replayed through the same engine the evaluator runs (in-memory counters
folded by the aggregator's own code, cooldowns and arming as online), and the firings are scored
against an outcomes file: per trigger, firings, accounts fired, precision, recall, lift over the
base rate and the time from firing to expansion (upswing/backtest/scoring.py). `--compare` runs a
second ruleset on the same replay; `--signals` also scores each signal no trigger uses, as if it
were a trigger, to find which are worth one — and which are vanity.

The pieces: events.py reads and judges input lines, pipeline.py splits them by account and
replays the parts in parallel, replay.py replays one account, truth.py reads profiles and
outcomes, scoring.py scores, output.py writes JSON, CSV and the HTML report (html.py).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.events.contract import DEFAULT_RETENTION_DAYS
from shared.horizon import DEFAULT_HORIZON_DAYS
from shared.rules.durations import days
from shared.rules.engine import read_plan
from shared.rules.language import Category, Ruleset, Trigger, lookback_days
from shared.rules.loading import RulesetError, load_ruleset
from shared.timestamps import utc_stamp
from upswing.backtest.events import InputError, check_files
from upswing.backtest.flood import flood
from upswing.backtest.pipeline import Progress, default_workers, run
from upswing.backtest.replay import Contender, FiredAt, StrictStop
from upswing.backtest.scoring import Outcomes, Score, Subject, monday_of, overlap, rank, score
from upswing.backtest.truth import read_outcomes, read_profiles

DEFAULT_PARTITIONS = 64
ENGINES = ("auto", "columnar", "scalar")  # docs/backtest.md, "Engines"
SIGNAL_COOLDOWN = "30d"  # a signal scored as a trigger fires at most monthly
SIGNAL_PREFIX = "signal:"


class BacktestError(Exception):
    """Something a person must fix before the backtest can run; the message says what."""


@dataclass(frozen=True)
class BacktestConfig:
    events: tuple[Path, ...]
    outcomes: Path
    rules: Path = Path("rules/reference.yaml")
    compare: Path | None = None
    accounts: Path | None = None
    horizon_days: int = DEFAULT_HORIZON_DAYS
    signals: bool = False
    strict: bool = False
    workers: int = field(default_factory=default_workers)
    partitions: int = DEFAULT_PARTITIONS
    retention_days: int = DEFAULT_RETENTION_DAYS
    spill_dir: Path | None = None
    command: str = ""
    # scalar: every account on the online engine; columnar: the columnar engine for every account
    # it models (an error if a ruleset uses a capability it lacks); auto: columnar where it can.
    engine: str = "auto"

    def __post_init__(self) -> None:
        if not self.events:
            raise BacktestError("no events file given (--events FILE ...)")
        if self.horizon_days < 1:
            raise BacktestError(f"--horizon must be at least 1 day (got {self.horizon_days})")
        if self.workers < 1 or self.partitions < 1:
            raise BacktestError("--workers and the number of partitions must be at least 1")
        if self.engine not in ENGINES:
            raise BacktestError(f"--engine must be one of {', '.join(ENGINES)}, not {self.engine!r}")


@dataclass(frozen=True)
class BacktestRun:
    result: dict[str, Any]  # the result document (docs/backtest.md, "The result")
    firings: list[tuple[str, str, str, str, float]]  # (ruleset label, trigger, account, evaluated at, score)


def backtest(config: BacktestConfig, progress: Progress | None = None) -> BacktestRun:
    """Replay, score, and return the result document and every firing."""
    started = time.perf_counter()
    rulesets = [_load(config.rules, config.signals)]
    if config.compare:
        rulesets.append(_load(config.compare, config.signals))
    labels = ["A", "B"] if config.compare else ["A"]
    contenders = [
        Contender(label, ruleset, read_plan(ruleset)) for label, ruleset in zip(labels, rulesets, strict=True)
    ]
    engine, scalar_triggers = _engine(config, contenders)
    try:
        check_files(config.events)
        profiles = read_profiles(config.accounts) if config.accounts else {}
        expansions = read_outcomes(config.outcomes)
        replayed = run(
            config.events,
            contenders,
            profiles,
            retention_days=config.retention_days,
            strict=config.strict,
            workers=config.workers,
            partitions=config.partitions,
            spill_dir=config.spill_dir,
            progress=progress,
            engine=engine,
        )
    except InputError as error:
        raise BacktestError(str(error)) from None
    except StrictStop as stop:
        problem = stop.problem
        raise BacktestError(
            f"{config.events[problem.file]}:{problem.line}: {problem.message}\n"
            "(--strict stops at the first bad line; without it, bad lines are skipped and counted)"
        ) from None
    stats = replayed.stats
    outcomes = Outcomes(expansions, stats.spans, config.horizon_days)
    firings_of: dict[int, list[FiredAt]] = defaultdict(list)
    for fired in replayed.firings:
        firings_of[fired.contender].append(fired)
    known = set(stats.spans) | set(profiles)
    segments = {account: profile.segment for account, profile in profiles.items() if profile.segment}
    result = {
        "tool": "upswing backtest",
        "version": _version(),
        "generated_at": utc_stamp(datetime.now(UTC), "seconds"),
        "command": config.command,
        "period": {"first_day": _iso(outcomes.first_day), "last_day": _iso(outcomes.last_day)},
        "horizon_days": config.horizon_days,
        "seconds": round(time.perf_counter() - started, 2),
        "input": {
            "files": [str(path) for path in config.events],
            "lines": stats.lines,
            "events": stats.accepted,
            "duplicates": stats.duplicates,
            "rejected": stats.rejected,
            "malformed": stats.malformed,
            "late": stats.late,
            "accounts": len(stats.spans),
            "accounts_without_profile": len(set(stats.spans) - set(profiles))
            if config.accounts
            else len(stats.spans),
            "outcomes": len(expansions),
            "outcomes_unknown_accounts": sum(
                1 for expansion in expansions if expansion.account_id not in known
            ),
            "engine": {
                "requested": config.engine,
                "used": engine,
                "columnar_accounts": stats.columnar_accounts,
                "scalar_accounts": stats.scalar_accounts,
                "scalar_reasons": dict(sorted(stats.scalar_reasons.items())),
                "scalar_triggers": scalar_triggers,
            },
            "problems": [
                {"file": str(config.events[problem.file]), "line": problem.line, "message": problem.message}
                for problem in stats.problems
            ],
        },
        "rulesets": [
            _ruleset_result(index, contender, path, firings_of[index], outcomes, stats.evaluations, segments)
            for index, (contender, path) in enumerate(
                zip(contenders, [config.rules, config.compare], strict=False)
            )
        ],
    }
    firings = [
        (contenders[fired.contender].label, fired.trigger, fired.account_id, _stamp(fired.at), fired.score)
        for fired in replayed.firings
    ]
    return BacktestRun(result, firings)


def _engine(config: BacktestConfig, contenders: Sequence[Contender]) -> tuple[str, dict[str, str]]:
    """The engine the replay uses, and each trigger that keeps a ruleset on the scalar engine
    ("A/trigger" → the capability the columnar engine lacks)."""
    if config.engine == "scalar":
        return "scalar", {}
    from upswing.columnar import unsupported_triggers  # numpy: only when the columnar engine may run

    gaps = {
        f"{contender.label}/{trigger}": reason
        for contender in contenders
        for trigger, reason in unsupported_triggers(contender.ruleset).items()
    }
    if not gaps:
        return "columnar", {}
    if config.engine == "columnar":
        named = "; ".join(f"{trigger}: {reason}" for trigger, reason in gaps.items())
        raise BacktestError(
            f"--engine columnar: the columnar engine does not compute {named} yet; "
            "use --engine auto (the scalar engine for such rulesets) or --engine scalar"
        )
    return "scalar", gaps


def _load(path: Path, signals: bool) -> Ruleset:
    try:
        ruleset = load_ruleset(path)
    except RulesetError as error:
        raise BacktestError(str(error)) from None
    except OSError as error:
        raise BacktestError(f"{path}: {error.strerror or error}") from None
    return with_signal_triggers(ruleset) if signals else ruleset


def with_signal_triggers(ruleset: Ruleset) -> Ruleset:
    """The ruleset plus a trigger per signal no trigger fires on: no exclusions, a 30-day cooldown."""
    used = {trigger.when for trigger in ruleset.triggers.values()}
    extra = {
        f"{SIGNAL_PREFIX}{name}": Trigger.model_construct(
            description=f"the signal {name}, scored as if it were a trigger",
            category=Category.ADOPTION,
            owner_role="csm",
            play="-",
            when=name,
            unless=[],
            segments=None,
            cooldown=SIGNAL_COOLDOWN,
            score=None,
        )
        for name in ruleset.signals
        if name not in used
    }
    return ruleset.model_copy(update={"triggers": {**ruleset.triggers, **extra}})


def _ruleset_result(
    index: int,
    contender: Contender,
    path: Path | None,
    firings: list[FiredAt],
    outcomes: Outcomes,
    evaluations: int,
    segments: dict[str, str],
) -> dict[str, Any]:
    ruleset = contender.ruleset
    by_trigger: dict[str, list[FiredAt]] = defaultdict(list)
    for fired in firings:
        by_trigger[fired.trigger].append(fired)
    subjects = [_subject(ruleset, name) for name in ruleset.triggers]
    scores = [score(subject, by_trigger[subject.trigger], outcomes, segments) for subject in subjects]
    overlap(scores)
    # The ruleset as a whole is its real triggers: signals scored as triggers would never route.
    routed = {subject.trigger for subject in subjects if subject.kind == "trigger"}
    overall = score(
        Subject("any trigger", "ruleset", None, None, contender.plan.lookback_days),
        [fired for fired in firings if fired.trigger in routed],
        outcomes,
        segments,
    )
    return {
        "label": contender.label,
        "path": str(path),
        "version": ruleset.version,
        "evaluations": evaluations,
        "firings": len(firings),
        "overall": overall.as_dict(),
        "triggers": [row.as_dict() for row in rank(scores)],
        "firings_by_week": _by_week(firings, {subject.trigger: subject for subject in subjects}, outcomes),
        # The busiest day per trigger and what the ruleset's daily cap would hold back (flood.py).
        "flood": flood(firings, list(routed), ruleset.budgets.plays_per_trigger_per_day),
    }


def _subject(ruleset: Ruleset, name: str) -> Subject:
    trigger = ruleset.triggers[name]
    signal = name.startswith(SIGNAL_PREFIX) and trigger.play == "-"
    return Subject(
        name,
        "signal" if signal else "trigger",
        None if signal else str(trigger.category),
        None if signal else trigger.play,
        lookback_days(ruleset, trigger.when) or 1,
        days(trigger.cooldown),
    )


def _by_week(firings: Sequence[FiredAt], subjects: dict[str, Subject], outcomes: Outcomes) -> dict[str, Any]:
    """Scored and censored firings per ISO week and trigger. Warm-up firings are left out (and
    counted in `warm_up_left_out`): a trigger that sees half its lookback fires on everyone at the
    start of the data, and that spike would flatten every line drawn after it."""
    if not outcomes.first_day:
        return {"weeks": [], "counts": {name: [] for name in subjects}, "warm_up_left_out": {}}
    first = monday_of(date.fromordinal(outcomes.first_day))
    weeks = (outcomes.last_day - first.toordinal()) // 7 + 1
    counts = {name: [0] * weeks for name in subjects}
    left_out = dict.fromkeys(subjects, 0)
    for fired in firings:
        day = fired.at.toordinal()
        if day < outcomes.first_day + subjects[fired.trigger].lookback_days - 1:
            left_out[fired.trigger] += 1
            continue
        counts[fired.trigger][(day - first.toordinal()) // 7] += 1
    return {
        "weeks": [(first + timedelta(weeks=week)).isoformat() for week in range(weeks)],
        "counts": counts,
        "warm_up_left_out": {name: count for name, count in left_out.items() if count},
    }


def _stamp(moment: datetime) -> str:
    return utc_stamp(moment)


def _iso(ordinal: int) -> str | None:
    return date.fromordinal(ordinal).isoformat() if ordinal else None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("upswing")
    except PackageNotFoundError:
        return "unknown"


__all__ = ["BacktestConfig", "BacktestError", "BacktestRun", "Score", "backtest", "with_signal_triggers"]
