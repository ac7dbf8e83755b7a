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


ENGINES = ("scalar", "columnar")
FORMATS = ("jsonl", "parquet")


def run() -> dict[str, Any]:
    """One simulated history; the backtest of it by each engine from each format, side by side."""
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
                ",".join(FORMATS),
                "--out",
                str(history),
            ]
        )
        runs: dict[str, dict[str, Any]] = {}
        firings: dict[str, list[str]] = {}
        for form in FORMATS:
            for engine in ENGINES:
                report = Path(folder) / f"report-{engine}-{form}"
                timed = _timed(
                    [
                        "backtest",
                        "--events",
                        str(history / f"events.{form}"),
                        "--outcomes",
                        str(history / "outcomes.csv"),
                        "--accounts",
                        str(history / "accounts.jsonl"),
                        "--engine",
                        engine,
                        "--out",
                        str(report),
                    ]
                )
                result = json.loads((report / "backtest.json").read_text())
                routed = result["input"]["engine"]
                timed |= {
                    "events": result["input"]["events"],
                    "evaluations": result["rulesets"][0]["evaluations"],
                    "firings": result["rulesets"][0]["firings"],
                    "columnar_accounts": routed["columnar_accounts"],
                    "scalar_accounts": routed["scalar_accounts"],
                }
                runs[f"{engine}-{form}"] = timed
                firings[f"{engine}-{form}"] = (report / "firings.csv").read_text().splitlines()
    reference = firings["scalar-jsonl"]
    result = {
        "accounts": ACCOUNTS,
        "days": DAYS,
        "events": runs["scalar-jsonl"]["events"],
        "cores": os.cpu_count(),
        "simulate": simulated,
        "backtests": runs,
        # Firings (firings.csv lines) of each run not in the scalar JSONL run's, and the reverse.
        "differences": {
            name: len(set(lines) ^ set(reference))
            for name, lines in firings.items()
            if name != "scalar-jsonl"
        },
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
    simulated = result["simulate"]
    print(
        f"\nBacktest, reference ruleset: {result['accounts']:,} accounts x {result['days']} days, "
        f"{result['events']:,} events, {result['cores']} cores"
    )
    print(
        f"  simulate: {simulated['wall_seconds']} s wall, {simulated['cpu_seconds']} s CPU, "
        f"peak {simulated['peak_bytes'] / 1024**2:,.0f} MB"
    )
    runs = result["backtests"]
    for name, timed in runs.items():
        engine, form = name.split("-")
        scalar = runs[f"scalar-{form}"]["wall_seconds"]
        print(
            f"  backtest {engine:<8} {form:<7}: {timed['wall_seconds']} s wall ({TARGET_SECONDS} s target), "
            f"{timed['cpu_seconds']} s CPU, peak {timed['peak_bytes'] / 1024**2:,.0f} MB "
            f"({TARGET_PEAK_BYTES / 1024**3:.0f} GB target); "
            f"x{scalar / timed['wall_seconds']:.1f} vs scalar; "
            f"{timed['evaluations']:,} evaluations, {timed['firings']:,} firings; accounts "
            f"{timed['columnar_accounts']:,} columnar, {timed['scalar_accounts']:,} scalar"
        )
    differences = result["differences"]
    print(
        "  differences from the scalar JSONL run's firings: "
        + ", ".join(f"{name} {count}" for name, count in differences.items())
        + (" (none)" if not any(differences.values()) else " — THE ENGINES DIFFER")
    )
