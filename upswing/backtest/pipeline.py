"""Ten million events without holding them: split by account, then replay the parts in parallel.

Families are independent (an evaluation reads one account's counters and state, a family-scope
rule its family's: a parent and its children, from the profiles), so the backtest is a map over
families — most of them one account. The input is time-ordered, not account-ordered, so:

1. **Split** (one streaming pass): each line goes, untouched, to one of `partitions` spill
   folders chosen by a stable hash of its account id, tagged with its file and line. A plain
   JSONL file is cut into byte ranges at line ends and the ranges are split in parallel, each
   into its own spill file per partition; reading a partition's files in (file, range) order
   gives back the arrival order. CSV rows and Parquet records are written as JSON lines, so what
   follows is the same for every format.
2. **Replay** (in `workers` processes): a worker takes a whole spill file, judges its lines
   (upswing/backtest/events.py), groups them by account in arrival order, and replays each
   account (upswing/backtest/replay.py), then lets it go. Memory is one spill file's accounts a
   worker, whatever the length of the input.

Only firings and counts come back to the parent.
"""

from __future__ import annotations

import os
import tempfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import IO

import msgspec

from shared.accounts.models import AccountProfile
from shared.events.metric_kinds import kind_conflict
from shared.events.models import EventKind
from shared.rules.language import Ruleset
from upswing.backtest.events import (
    Accepted,
    Arrival,
    BrokenRow,
    Rejected,
    account_of_line,
    check_files,
    format_of,
    judge_line,
    judge_object,
    location,
    plain_field,
    read_csv_objects,
    read_lines,
    read_parquet_objects,
)
from upswing.backtest.replay import Contender, FiredAt, ReplayStats, replay_family

_BROKEN = b"B"  # a CSV row that could not be read: its spill line carries the reason
_EVENT = b"E"
_encode = msgspec.json.encode

# (done, total, what): called as the work advances
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Replayed:
    firings: list[FiredAt]
    stats: ReplayStats


@dataclass(frozen=True)
class _Job:
    """What a worker needs besides the spill file (sent once per worker)."""

    rules: tuple[tuple[str, Ruleset], ...]  # (label, ruleset) — compiled again in each worker
    profiles: dict[str, AccountProfile]
    retention_days: int
    strict: bool
    kinds: dict[str, EventKind] = field(default_factory=dict)  # the kind each metric name registered
    # columnar: accounts the columnar engine models take it (upswing/columnar/), the rest replay here.
    engine: str = "scalar"


def run(
    files: Sequence[Path],
    contenders: Sequence[Contender],
    profiles: dict[str, AccountProfile],
    *,
    retention_days: int,
    strict: bool,
    workers: int,
    partitions: int,
    spill_dir: Path | None = None,
    progress: Progress | None = None,
    engine: str = "scalar",
) -> Replayed:
    """engine: "scalar" replays every account with the online engine; "columnar" routes each account
    whose input the columnar engine models to it (the rulesets must be columnar throughout:
    upswing/columnar/support.py)."""
    check_files(files)
    job = _Job(
        tuple((contender.label, contender.ruleset) for contender in contenders),
        profiles,
        retention_days,
        strict,
        engine=engine,
    )
    with tempfile.TemporaryDirectory(prefix="upswing-backtest-", dir=spill_dir) as folder:
        parents = {
            account: profile.parent_account_id
            for account, profile in profiles.items()
            if profile.parent_account_id is not None
        }
        spills, kinds = split(files, Path(folder), partitions, workers, progress, parents)
        return _replay_all(spills, replace(job, kinds=kinds), workers, progress)


@dataclass(frozen=True)
class _Piece:
    """What one process splits: a byte range of a plain JSONL file, cut at line ends, with the
    number of its first line; or a whole file that cannot be cut (gzip, CSV, Parquet)."""

    file: int
    path: Path
    start: int = 0
    end: int | None = None  # None: to the end of the file
    first_line: int = 1


# The first valid event of each metric name in a piece: name → ((file, line), kind).
_FirstKinds = dict[str, tuple[tuple[int, int], EventKind]]


def split(
    files: Sequence[Path],
    folder: Path,
    partitions: int,
    workers: int = 1,
    progress: Progress | None = None,
    parents: dict[str, str] | None = None,
) -> tuple[list[Path], dict[str, EventKind]]:
    """Pass 1: every input line into its account's partition folder; the partition folders that
    got lines (a family's lines all in its root's partition: `parents`, child → parent), and the kind
    each metric name registers — as online, the kind of its first valid
    event in arrival order (only the first line of each name in a piece is judged here)."""
    pieces = [piece for number, path in enumerate(files) for piece in _pieces(number, path, workers)]
    for index in range(partitions):
        (folder / f"part-{index:04d}").mkdir()
    firsts: _FirstKinds = {}

    def absorb(done: int, found: _FirstKinds) -> None:
        for name, first in found.items():
            if name not in firsts or first[0] < firsts[name][0]:
                firsts[name] = first
        if progress:
            progress(done, len(pieces), "splitting by account")

    tasks = [(piece, folder, partitions, parents or {}) for piece in pieces]
    if workers <= 1 or len(pieces) <= 1:
        for done, task in enumerate(tasks, 1):
            absorb(done, _split_piece(task))
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            for done, found in enumerate(pool.map(_split_piece, tasks), 1):
                absorb(done, found)
    spills = sorted(path for path in folder.iterdir() if any(path.iterdir()))
    return spills, {name: kind for name, (_, kind) in firsts.items()}


def _pieces(number: int, path: Path, count: int, smallest: int = 1 << 20) -> list[_Piece]:
    """A plain JSONL file of `smallest` bytes or more in `count` byte ranges cut at line ends (one
    read of all but the last); any other file whole."""
    size = path.stat().st_size
    if count <= 1 or format_of(path) != "jsonl" or path.suffix.lower() == ".gz" or size < smallest:
        return [_Piece(number, path)]
    pieces: list[_Piece] = []
    start, first_line = 0, 1
    with path.open("rb") as stream:
        for target in [size * part // count for part in range(1, count)]:
            stream.seek(max(target - 1, start))
            stream.readline()  # to the start of the next line
            end = stream.tell()
            if end <= start or end >= size:
                continue
            pieces.append(_Piece(number, path, start, end, first_line))
            first_line += _newlines(stream, start, end)
            start = end
    pieces.append(_Piece(number, path, start, None, first_line))
    return pieces


def _newlines(stream: IO[bytes], start: int, end: int) -> int:
    stream.seek(start)
    count, left = 0, end - start
    while left > 0:
        block = stream.read(min(left, 1 << 24))
        if not block:
            break
        count += block.count(b"\n")
        left -= len(block)
    return count


def _split_piece(task: tuple[_Piece, Path, int, dict[str, str]]) -> _FirstKinds:
    """Split one piece into `partition folder / <file>-<start>.spill` files (a worker's job)."""
    piece, folder, partitions, parents = task
    name_of_spill = f"{piece.file:04d}-{piece.start:016d}.spill"
    paths = [folder / f"part-{index:04d}" / name_of_spill for index in range(partitions)]
    firsts: _FirstKinds = {}
    with ExitStack() as stack:
        outs: list[IO[bytes]] = [stack.enter_context(path.open("wb", buffering=1 << 18)) for path in paths]
        for line, tag, payload, account, name in _spill_lines(piece):
            root = parents.get(account, account) if account is not None else None
            outs[_partition(root, partitions)].write(b"%s\t%d\t%d\t%s" % (tag, piece.file, line, payload))
            if tag == _EVENT and (name is None or name not in firsts):
                first = judge_line(piece.file, line, payload)
                if isinstance(first, Accepted) and first.event.name not in firsts:
                    firsts[first.event.name] = ((piece.file, line), first.event.kind)
    for path in paths:
        if not path.stat().st_size:
            path.unlink()
    return firsts


def _spill_lines(piece: _Piece) -> Iterator[tuple[int, bytes, bytes, str | None, str | None]]:
    """(line, tag, payload ending in a newline, account id, metric name) of one piece; the
    account and the name are None when they cannot be read cheaply."""
    path = piece.path
    kind = format_of(path)
    if kind == "jsonl":
        for line, raw in read_lines(path, piece.start, piece.end, piece.first_line):
            payload = raw if raw.endswith(b"\n") else raw + b"\n"
            yield line, _EVENT, payload, account_of_line(raw), plain_field(raw, b"name")
        return
    objects = read_csv_objects(path) if kind == "csv" else read_parquet_objects(path)
    for line, event in objects:
        if isinstance(event, BrokenRow):
            yield line, _BROKEN, event.reason.encode() + b"\n", None, None
            continue
        account, name = event.get("account_id"), event.get("name")
        yield (
            line,
            _EVENT,
            _encode(event) + b"\n",
            account if isinstance(account, str) else None,
            name if isinstance(name, str) else None,
        )


def _partition(account: str | None, partitions: int) -> int:
    # crc32, not hash(): stable across processes and runs (hash() of a str is salted per process).
    return 0 if account is None else zlib.crc32(account.encode()) % partitions


# ── pass 2 ────────────────────────────────────────────────────────────────────────────────────

_worker_job: _Job | None = None
_worker_contenders: list[Contender] = []


def _start_worker(job: _Job) -> None:
    from shared.rules.engine import read_plan

    global _worker_job, _worker_contenders
    _worker_job = job
    _worker_contenders = [Contender(label, ruleset, read_plan(ruleset)) for label, ruleset in job.rules]


def _replay_all(spills: list[Path], job: _Job, workers: int, progress: Progress | None) -> Replayed:
    firings: list[FiredAt] = []
    stats = ReplayStats()

    def absorb(done: int, part: Replayed) -> None:
        firings.extend(part.firings)
        stats.merge(part.stats)
        if progress:
            progress(done, len(spills), "replaying accounts")

    if workers <= 1 or len(spills) <= 1:
        _start_worker(job)
        for done, path in enumerate(spills, 1):
            absorb(done, replay_spill(path))
    else:
        # spawn, not fork: forking a process that runs threads (boto3's, a test runner's) can
        # deadlock the child. Each worker imports the engine once and gets the job once.
        with ProcessPoolExecutor(
            max_workers=workers, mp_context=get_context("spawn"), initializer=_start_worker, initargs=(job,)
        ) as pool:
            for done, part in enumerate(pool.map(replay_spill, spills), 1):
                absorb(done, part)
    firings.sort(key=lambda fired: (fired.contender, fired.at, fired.account_id, fired.trigger))
    return Replayed(firings, stats)


def replay_spill(partition: Path) -> Replayed:
    """Pass 2 for one partition (in a worker): judge, group by account, replay each account."""
    job = _worker_job
    assert job is not None, "_start_worker first"
    stats = ReplayStats(strict=job.strict)
    by_account: dict[str, list[Accepted]] = {}
    for path in sorted(partition.iterdir()):  # (file, start) order: arrival order
        with path.open("rb") as stream:
            for record in stream:
                tag, file, line, payload = record.split(b"\t", 3)
                stats.lines += 1
                if tag == _BROKEN:
                    arrival = judge_object(int(file), int(line), BrokenRow(payload.decode().rstrip("\n")))
                else:
                    arrival = _registered_kind(judge_line(int(file), int(line), payload), job.kinds)
                if isinstance(arrival, Rejected):
                    stats.reject(arrival)
                else:
                    by_account.setdefault(arrival.event.account_id, []).append(arrival)
    firings: list[FiredAt] = []
    if job.engine == "columnar":
        from upswing.columnar import replay_columnar, split_accounts

        rulesets = [contender.ruleset for contender in _worker_contenders]
        columnar, by_account = split_accounts(by_account, job.profiles, rulesets, stats)
        firings.extend(replay_columnar(columnar, _worker_contenders, stats))
    else:
        stats.scalar_accounts += len(by_account)
    # A family (its root's partition holds every member's lines) is replayed together.
    families: dict[str, dict[str, list[Accepted]]] = {}
    for account_id, arrivals in by_account.items():
        profile = job.profiles.get(account_id)
        root = profile.parent_account_id if profile and profile.parent_account_id else account_id
        families.setdefault(root, {})[account_id] = arrivals
    for members in families.values():
        profiles = {account: job.profiles[account] for account in members if account in job.profiles}
        for account in members:
            parent = profiles[account].parent_account_id if account in profiles else None
            if parent is not None and parent in job.profiles:
                profiles[parent] = job.profiles[parent]
        firings.extend(replay_family(members, profiles, _worker_contenders, job.retention_days, stats))
    return Replayed(firings, stats)


def _registered_kind(arrival: Arrival, kinds: dict[str, EventKind]) -> Arrival:
    """An event whose kind is not its name's registered kind is rejected, as the API rejects it."""
    if isinstance(arrival, Rejected):
        return arrival
    event = arrival.event
    registered = kinds.get(event.name, event.kind)
    if registered is event.kind:
        return arrival
    file, line = location(event)
    return Rejected(
        file, line, event.event_id, event.account_id, kind_conflict(event.name, registered, event.kind), False
    )


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))
