"""Cold init of each handler: a fresh interpreter imports the handler and builds its first client.

That is what a Lambda cold start pays before the first event (the runtime's own start-up aside).
Tracing is left on, as in Lambda, so the X-Ray SDK's import is counted.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

from bench.environment import BENCH_TABLES
from shared.resources import EVENT_BUS_ENV, HUBSPOT_DLQ_ENV, HUBSPOT_SECRET_ENV, QUEUES, SENDER_EMAIL_ENV
from upswing.local.aws import FAKE_AWS_ENVIRONMENT

RUNS = 7
_BARE = "bare imports (boto3+powertools+pydantic+httpx)"
TARGET_SECONDS = 0.8
HANDLERS = {
    "api": ("functions.api.handler", "ingestor"),
    "authorizer": ("functions.authorizer.handler", "producer_keys"),
    "bus_ingest": ("functions.bus_ingest.handler", "ingestor"),
    "aggregator": ("functions.aggregator.handler", "counter_store"),
    "evaluator": ("functions.evaluator.handler", "evaluator"),  # includes loading the ruleset
    "router": ("functions.router.handler", "router"),  # loads the ruleset's plays too
    "scheduler": ("functions.router.scheduler", "router"),
    "hubspot_sender": ("functions.hubspot_sender.handler", "sender"),  # the token is read when first used
    "email_sender": ("functions.email_sender.handler", "sender"),
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
    with_bytecode, without_bytecode = _bundle_replicas()
    return {
        "as deployed (bytecode in the bundle)": _run_all(
            "as deployed (bytecode in the bundle)", with_bytecode
        ),
        "without bytecode (for contrast)": _run_all("without bytecode (for contrast)", without_bytecode),
    }


def _bundle_replicas() -> tuple[Path, Path]:
    """Two copies of what a function's bundle holds (the layer's packages, functions/, shared/),
    for this machine's CPU: one compiled the way the build compiles the real one, one not."""
    layer = Path("build/layer/python")
    if not layer.is_dir():
        raise SystemExit("run `make layer` first: the benchmark replicates what the layer holds")
    site = Path(sysconfig.get_paths()["purelib"])
    sources = [site / entry.name for entry in layer.iterdir() if (site / entry.name).exists()]
    sources += [Path("functions"), Path("shared"), Path("rules")]
    replicas = []
    for name in ("with-bytecode", "without-bytecode"):
        replica = Path("build/bench-bundle") / name
        shutil.rmtree(replica, ignore_errors=True)
        replica.mkdir(parents=True)
        for source in sources:
            if source.is_dir():
                shutil.copytree(source, replica / source.name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(source, replica / source.name)
        replicas.append(replica.resolve())
    subprocess.run([sys.executable, "-m", "infra.bytecode", str(replicas[0])], check=True)
    return replicas[0], replicas[1]


def _run_all(label: str, bundle: Path) -> dict[str, Any]:
    environment = {
        **os.environ,
        **FAKE_AWS_ENVIRONMENT,
        **BENCH_TABLES,
        **{spec.env_var: f"http://127.0.0.1:1/queue/{spec.construct_id}" for spec in QUEUES},
        HUBSPOT_DLQ_ENV: "http://127.0.0.1:1/queue/hubspot-dlq",
        HUBSPOT_SECRET_ENV: "upswing/bench/hubspot-token",
        EVENT_BUS_ENV: "upswing-bench",
        SENDER_EMAIL_ENV: "upswing@example.com",
        "AWS_LAMBDA_FUNCTION_NAME": "bench",  # so Powertools behaves as in Lambda (tracer on)
        "POWERTOOLS_METRICS_DISABLED": "true",
        # The bundle first on the path, and no bytecode written: like Lambda's read-only /var/task.
        "PYTHONPATH": str(bundle),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    environment.pop("AWS_ENDPOINT_URL", None)
    rows = {_BARE: _measure(_BASELINE, environment, bundle)}
    for name, (module, factory) in HANDLERS.items():
        rows[name] = _measure(_PROBE.format(module=module, factory=factory), environment, bundle)
    print(f"Cold init {label}: median of {RUNS} fresh interpreters, Python {sys.version.split()[0]}")
    bare = rows[_BARE]["ready_s"]
    print(f"{'':48} {'import':>8} {'+client':>8} {'vs bare':>8}")
    for name, row in rows.items():
        delta = "" if name == _BARE else f"{row['ready_s'] - bare:+.3f}s"
        print(f"{name:48} {row['import_s']:>7.3f}s {row['ready_s']:>7.3f}s {delta:>8}")
    print(f"target: ≤ {TARGET_SECONDS} s to ready (set where the bare imports took ~0.65 s)\n")
    return rows


def _measure(code: str, environment: dict[str, str], bundle: Path) -> dict[str, float]:
    imports, readies = [], []
    for _ in range(RUNS):
        answer = subprocess.run(
            # -S: no site-packages, only the bundle (PYTHONPATH) and the standard library, as in Lambda.
            # The dev environment's extras would otherwise be imported: httpx imports its CLI (click,
            # rich, pygments: ~0.07 s) whenever they are installed, and the layer does not have them.
            [sys.executable, "-S", "-c", code],
            env=environment,
            cwd=bundle,
            capture_output=True,
            text=True,
            check=True,
        )
        imported, ready = map(float, answer.stdout.split())
        imports.append(imported)
        readies.append(ready)
    return {"import_s": round(statistics.median(imports), 3), "ready_s": round(statistics.median(readies), 3)}
