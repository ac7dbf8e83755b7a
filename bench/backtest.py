"""The backtest at the issue's scale: 10,000 accounts x 365 days, about ten million events.

Times `upswing simulate` (writing the history) and `upswing backtest` (reading, replaying and
scoring it with the reference ruleset) as a user runs them, in child processes: wall time, CPU
time, and peak memory — the largest sum of resident memory over the backtest and its workers,
sampled every 100 ms from /proc. Smaller runs: BENCH_BACKTEST_ACCOUNTS=1000 make bench.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ACCOUNTS = int(os.environ.get("BENCH_BACKTEST_ACCOUNTS", "10000"))
DAYS = 365
TARGET_SECONDS = 60
TARGET_PEAK_BYTES = 2 * 1024**3


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="upswing-bench-") as folder:
        history = Path(folder) / "history"
        simulated = _timed(
            [
                "simulate",
                "--accounts",
                str(ACCOUNTS),
                "--days",
                str(DAYS),
                "--format",
                "jsonl",
                "--out",
                str(history),
            ]
        )
        replayed = _timed(
            [
                "backtest",
                "--events",
                str(history / "events.jsonl"),
                "--outcomes",
                str(history / "outcomes.csv"),
                "--accounts",
                str(history / "accounts.jsonl"),
                "--out",
                str(Path(folder) / "report"),
            ]
        )
        report = json.loads((Path(folder) / "report" / "backtest.json").read_text())
    source = report["input"]
    result = {
        "accounts": ACCOUNTS,
        "days": DAYS,
        "events": source["events"],
        "cores": os.cpu_count(),
        "simulate": simulated,
        "backtest": replayed,
        "evaluations": report["rulesets"][0]["evaluations"],
        "firings": report["rulesets"][0]["firings"],
        "target_seconds": TARGET_SECONDS,
        "target_peak_bytes": TARGET_PEAK_BYTES,
    }
    _print(result)
    return result


def _timed(arguments: list[str]) -> dict[str, Any]:
    """Run `upswing <arguments>` in a child process: wall and CPU seconds, peak memory of its tree."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "upswing.cli", *arguments], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    peak = _PeakMemory(process.pid)
    peak.start()
    _, errors = process.communicate()
    wall = time.perf_counter() - started
    peak.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode:
        raise RuntimeError(f"upswing {arguments[0]} failed: {errors.decode(errors='replace')}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1), "peak_bytes": peak.bytes}


class _PeakMemory(threading.Thread):
    """The largest total resident memory of a process and its descendants, sampled every 100 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self._pid = pid
        self._done = threading.Event()
        self.bytes = 0

    def run(self) -> None:
        while not self._done.wait(0.1):
            self.bytes = max(self.bytes, sum(_rss(pid) for pid in _tree(self._pid)))

    def stop(self) -> None:
        self._done.set()
        self.join()


def _tree(pid: int) -> list[int]:
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                children = Path(f"/proc/{current}/task/{task}/children").read_text().split()
                queue.extend(int(child) for child in children)
        except OSError:
            continue  # gone already
    return found


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _print(result: dict[str, Any]) -> None:
    simulated, replayed = result["simulate"], result["backtest"]
    print(
        f"\nBacktest, reference ruleset: {result['accounts']:,} accounts x {result['days']} days, "
        f"{result['events']:,} events, {result['cores']} cores"
    )
    print(
        f"  simulate: {simulated['wall_seconds']} s wall, {simulated['cpu_seconds']} s CPU, "
        f"peak {simulated['peak_bytes'] / 1024**2:,.0f} MB"
    )
    print(
        f"  backtest: {replayed['wall_seconds']} s wall ({TARGET_SECONDS} s target), "
        f"{replayed['cpu_seconds']} s CPU, peak {replayed['peak_bytes'] / 1024**2:,.0f} MB "
        f"({TARGET_PEAK_BYTES / 1024**3:.0f} GB target); {result['evaluations']:,} evaluations, "
        f"{result['firings']:,} firings; {result['events'] / replayed['wall_seconds']:,.0f} events/s"
    )
