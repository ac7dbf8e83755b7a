"""The local stack in its own process (`upswing local --serve`), for the end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from upswing.local.aws import FAKE_AWS_ENVIRONMENT


@dataclass
class RunningStack:
    api: str
    aws: str
    key: str
    slack: str  # the Slack sink: GET {slack}/__sink/requests

    def client(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.api, headers={"Authorization": f"Bearer {key or self.key}"}, timeout=30
        )

    def cli(self, *args: str, environment: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        environment = {
            **os.environ,
            **FAKE_AWS_ENVIRONMENT,
            "AWS_ENDPOINT_URL": self.aws,
            **(environment or {}),
        }
        return subprocess.run(
            [sys.executable, "-m", "upswing.cli", *args],
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture(scope="module")
def stack() -> Iterator[RunningStack]:
    with running_stack() as running:
        yield running


@contextlib.contextmanager
def running_stack(environment: dict[str, str] | None = None) -> Iterator[RunningStack]:
    """`upswing local --serve` in its own process; `environment` adds to (or overrides) ours, e.g. the
    ruleset it runs (RULESET_PATH)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "upswing.cli", "local", "--serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**{k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}, **(environment or {})},
    )
    try:
        banner = _read_until(process, "Serving until Ctrl-C.", timeout=60)
        # Keep reading what the stack prints so a full pipe can never stall it.
        threading.Thread(target=process.stdout.read, daemon=True).start()
        yield RunningStack(
            api=re.search(r"API\s+(http://127\.0\.0\.1:\d+)", banner).group(1),
            aws=re.search(r"AWS\s+(http://127\.0\.0\.1:\d+)", banner).group(1),
            key=re.search(r"key\s+(upk_\S+)", banner).group(1),
            slack=re.search(r"Slack\s+(http://127\.0\.0\.1:\d+)", banner).group(1),
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a stuck shutdown must not hang or fail the suite
            process.kill()
            process.wait(timeout=10)


def _read_until(process: subprocess.Popen[str], marker: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    assert process.stdout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise RuntimeError("the local stack did not start:\n" + "".join(seen))
