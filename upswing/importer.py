"""`upswing import`: post history before go-live, resumably, then finish the import.

The files' events go to POST /v1/events in batches of 500 flagged `"backfill": true` (counted like
live events, never evaluated batch by batch), then POST /v1/imports/finish evaluates each imported
account once (docs/operations.md, "Going live"). Both calls are idempotent on the server: an event
sent twice is a duplicate, an account finished twice answers the same. On top of that a progress
file records how many batches the API acknowledged and which accounts went live, so a run that
stopped (a crash, Ctrl-C, a network outage) resumes where it was instead of resending everything;
a progress file that names other files is refused rather than trusted.

The files are read twice (once to count, for the progress bar), streamed, never held in memory;
only the set of account ids is.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from shared.events.contract import MAX_EVENTS_PER_REQUEST
from shared.events.imports import MAX_ACCOUNTS_PER_FINISH
from upswing.backtest.events import BrokenRow, InputError, format_of, read_csv_objects, read_lines

Progress = Callable[[int, int, str], None]
_ATTEMPTS = 6  # per request: 503, 429 and transport errors are retried with a growing pause
_FIRST_PAUSE = 0.5
_KEPT_REJECTIONS = 20
_COUNTING_PAUSE = 2.0  # seconds between finish calls for accounts whose events are still being counted


class ImportFailed(Exception):
    """The import cannot go on; the message says what to do (the progress file keeps what was done)."""


@dataclass
class ImportState:
    """The progress file: what the API has acknowledged so far (written after every request)."""

    files: str  # a digest of the files' paths and sizes: a resume must read the same input
    batches_done: int = 0
    events_read: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejections: list[str] = field(default_factory=list)  # the first few, "file:line: reason"
    accounts: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)  # accounts that went live
    went_live: list[dict[str, Any]] = field(default_factory=list)  # their answers

    def save(self, path: Path) -> None:
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")
        os.replace(temporary, path)  # atomic: a crash leaves the old file or the new, never half

    @classmethod
    def load(cls, path: Path, files: str) -> ImportState:
        if not path.exists():
            return cls(files=files)
        try:
            state = cls(**json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as error:
            raise ImportFailed(
                f"{path}: not a progress file of upswing import ({error}); remove it"
            ) from None
        if state.files != files:
            raise ImportFailed(
                f"{path} records an import of other files (or files that changed since); "
                "finish that one, or remove the file to start this import from the beginning"
            )
        return state


@dataclass(frozen=True)
class Line:
    where: str  # file:line
    event: Any  # the decoded object (validated by the API), or why it could not be read


def files_digest(files: Sequence[Path]) -> str:
    parts = [f"{path.resolve()}\n{path.stat().st_size}" for path in files]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def default_progress_file(files: Sequence[Path]) -> Path:
    return Path(f".upswing-import-{files_digest(files)[:12]}.json")


def check_files(files: Sequence[Path]) -> None:
    for path in files:
        if format_of(path) not in ("jsonl", "csv"):
            raise InputError(f"{path}: upswing import reads JSONL and CSV (export Parquet as JSONL)")
        if not path.is_file():
            raise InputError(f"{path}: no such file")


def read_events(files: Sequence[Path]) -> Iterator[Line]:
    """Every event line of the files, in order; an undecodable line as a string saying why."""
    for path in files:
        if format_of(path) == "csv":
            for number, raw in read_csv_objects(path):
                reason = raw.reason if isinstance(raw, BrokenRow) else None
                yield Line(f"{path}:{number}", reason or raw)
            continue
        for number, line in read_lines(path):
            if not line.strip():
                continue
            try:
                yield Line(f"{path}:{number}", json.loads(line))
            except ValueError as error:
                yield Line(f"{path}:{number}", f"not JSON: {error}")


def batches(lines: Iterator[Line], size: int = MAX_EVENTS_PER_REQUEST) -> Iterator[list[Line]]:
    batch: list[Line] = []
    for line in lines:
        batch.append(line)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class Importer:
    def __init__(
        self,
        http: httpx.Client,
        endpoint: str,
        key: str,
        state: ImportState,
        progress_file: Path,
        progress: Progress | None = None,
        sleep: Callable[[float], None] = time.sleep,
        batch_size: int = MAX_EVENTS_PER_REQUEST,
        counting_wait: float = 600.0,
    ) -> None:
        self._http = http
        self._base = endpoint.rstrip("/")
        self._headers = {"Authorization": f"Bearer {key}"}
        self._state = state
        self._file = progress_file
        self._progress = progress
        self._sleep = sleep
        self._batch_size = batch_size
        self._counting_wait = counting_wait

    @property
    def state(self) -> ImportState:
        return self._state

    def send(self, files: Sequence[Path]) -> None:
        """Post every batch the progress file does not record as acknowledged."""
        total = sum(1 for _ in read_events(files))
        accounts = set(self._state.accounts)
        done_events = 0
        for number, batch in enumerate(batches(read_events(files), self._batch_size)):
            if number < self._state.batches_done:
                done_events += len(batch)
                continue
            self._post_batch(batch, accounts)
            done_events += len(batch)
            if self._progress:
                self._progress(done_events, total, "importing events")
        if self._progress:
            self._progress(total, total, "importing events")

    def finish(self) -> None:
        """Each imported account goes live once (the API's POST /v1/imports/finish). An account whose
        last events are not counted yet comes back as `still_counting` and is sent again after a
        pause, until `counting_wait` seconds have passed."""
        total = len(self._state.accounts)
        waited = 0.0
        while True:
            live = set(self._state.finished)
            pending = [account for account in self._state.accounts if account not in live]
            if not pending:
                return
            if waited > self._counting_wait:
                raise ImportFailed(
                    f"{len(pending):,} accounts still have events being counted after "
                    f"{self._counting_wait:.0f} s; run the same command again to finish them"
                )
            for start in range(0, len(pending), MAX_ACCOUNTS_PER_FINISH):
                chunk = pending[start : start + MAX_ACCOUNTS_PER_FINISH]
                answer = self._post("/v1/imports/finish", {"account_ids": chunk})
                self._state.went_live.extend(answer["accounts"])
                self._state.finished.extend(account["account_id"] for account in answer["accounts"])
                self._state.save(self._file)
                if self._progress:
                    self._progress(len(self._state.finished), total, "going live")
            if len(self._state.finished) < total:
                self._sleep(_COUNTING_PAUSE)
                waited += _COUNTING_PAUSE

    def _post_batch(self, batch: list[Line], accounts: set[str]) -> None:
        sendable = [line for line in batch if isinstance(line.event, dict)]
        state = self._state
        for line in batch:
            if not isinstance(line.event, dict):
                self._reject(line.where, line.event if isinstance(line.event, str) else "not a JSON object")
        if sendable:
            answer = self._post("/v1/events", {"events": [line.event for line in sendable], "backfill": True})
            state.accepted += int(answer["accepted"])
            state.duplicates += int(answer["duplicates"])
            rejected = {item["index"] for item in answer["rejected"]}
            for item in answer["rejected"]:
                self._reject(sendable[item["index"]].where, "; ".join(item["errors"]))
            for index, line in enumerate(sendable):
                account = line.event.get("account_id")
                if index not in rejected and isinstance(account, str) and account not in accounts:
                    accounts.add(account)
                    state.accounts.append(account)
        state.events_read += len(batch)
        state.batches_done += 1
        state.save(self._file)

    def _reject(self, where: str, reason: str) -> None:
        self._state.rejected += 1
        if len(self._state.rejections) < _KEPT_REJECTIONS:
            self._state.rejections.append(f"{where}: {reason}")

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        pause = _FIRST_PAUSE
        problem = ""
        for attempt in range(_ATTEMPTS):
            if attempt:
                self._sleep(pause)
                pause *= 2
            try:
                answer = self._http.post(f"{self._base}{path}", json=body, headers=self._headers)
            except httpx.HTTPError as error:
                problem = f"could not reach the API at {self._base}: {type(error).__name__}"
                continue
            if answer.status_code in (429, 500, 502, 503, 504):
                problem = f"the API answered {answer.status_code}: {_message(answer)}"
                continue
            if answer.status_code >= 400:
                raise ImportFailed(f"POST {path}: the API answered {answer.status_code}: {_message(answer)}")
            result: dict[str, Any] = answer.json()
            return result
        raise ImportFailed(
            f"POST {path}: {problem} (after {_ATTEMPTS} attempts); run the same command to resume"
        )


def summary(state: ImportState) -> str:
    """What the import did, and what going live did with the triggers that already held."""
    lines = [
        f"Events: {state.events_read:,} read — {state.accepted:,} accepted, "
        f"{state.duplicates:,} duplicate (already stored), {state.rejected:,} rejected",
        *(f"  rejected {text}" for text in state.rejections),
        f"Accounts: {len(state.accounts):,} imported, {len(state.finished):,} live",
    ]
    if not state.went_live:
        lines.append("Not finished: run the same command without --no-finish to go live.")
        return "\n".join(lines)
    modes = sorted({account["pre_existing"] for account in state.went_live})
    per_trigger: dict[str, list[str | None]] = {}
    for account in state.went_live:
        for trigger in account["triggers"]:
            per_trigger.setdefault(trigger["trigger"], []).append(trigger["release_at"])
    lines.append(f"Pre-existing triggers (held before go-live; go_live.pre_existing: {', '.join(modes)}):")
    if not per_trigger:
        lines.append("  none: every play from now on starts after go-live")
    for trigger, releases in sorted(per_trigger.items()):
        lines.append(f"  {trigger:<32}{len(releases):>6,} accounts  {_fate(releases)}")
    return "\n".join(lines)


def _fate(releases: list[str | None]) -> str:
    days = sorted({release[:10] for release in releases if release})
    if not days:
        return "skipped: fires only when the signal starts again after go-live"
    if len(days) == 1:
        return f"routed on {days[0]} (within the budgets)"
    return f"spread from {days[0]} to {days[-1]} (within the budgets)"


def _message(answer: httpx.Response) -> str:
    try:
        return str(answer.json().get("message", ""))
    except ValueError:
        return answer.text[:200]
