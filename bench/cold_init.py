"""Cold init of each handler: a fresh interpreter imports the handler and builds its first client.

That is what a Lambda cold start pays before the first event (the runtime's own start-up aside).
Tracing is left on, as in Lambda, so the X-Ray SDK's import is counted.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from typing import Any

from bench.environment import BENCH_TABLES
from upswing.local.aws import FAKE_AWS_ENVIRONMENT

RUNS = 7
TARGET_SECONDS = 0.8
HANDLERS = {
    "api": ("functions.api.handler", "ingestor"),
    "authorizer": ("functions.authorizer.handler", "producer_keys"),
    "bus_ingest": ("functions.bus_ingest.handler", "ingestor"),
    "aggregator": ("functions.aggregator.handler", "counter_store"),
}
_PROBE = """
import time
started = time.perf_counter()
import {module} as handler
imported = time.perf_counter()
handler.{factory}()
ready = time.perf_counter()
print(imported - started, ready - started)
"""
_BASELINE = """
import time
started = time.perf_counter()
import boto3, pydantic, httpx, aws_lambda_powertools
print(time.perf_counter() - started, time.perf_counter() - started)
"""


def run() -> dict[str, Any]:
    environment = {
        **os.environ,
        **FAKE_AWS_ENVIRONMENT,
        **BENCH_TABLES,
        "REJECTS_QUEUE_URL": "http://127.0.0.1:1/queue/rejects",
        "AWS_LAMBDA_FUNCTION_NAME": "bench",  # so Powertools behaves as in Lambda (tracer on)
        "POWERTOOLS_METRICS_DISABLED": "true",
    }
    environment.pop("AWS_ENDPOINT_URL", None)
    rows = {"bare imports (boto3+powertools+pydantic+httpx)": _measure(_BASELINE, environment)}
    for name, (module, factory) in HANDLERS.items():
        rows[name] = _measure(_PROBE.format(module=module, factory=factory), environment)
    print(f"Cold init on this machine, median of {RUNS} fresh interpreters ({sys.version.split()[0]})")
    print(f"{'':48} {'import':>8} {'+client':>8}")
    for name, row in rows.items():
        print(f"{name:48} {row['import_s']:>7.3f}s {row['ready_s']:>7.3f}s")
    print(f"target: ≤ {TARGET_SECONDS} s to ready\n")
    return rows


def _measure(code: str, environment: dict[str, str]) -> dict[str, float]:
    imports, readies = [], []
    for _ in range(RUNS):
        answer = subprocess.run(
            [sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True
        )
        imported, ready = map(float, answer.stdout.split())
        imports.append(imported)
        readies.append(ready)
    return {"import_s": round(statistics.median(imports), 3), "ready_s": round(statistics.median(readies), 3)}
