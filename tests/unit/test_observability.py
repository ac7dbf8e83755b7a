"""Tracing: Lambda traces every function; Powertools' Tracer (and the X-Ray SDK) only when asked."""

import subprocess
import sys

from shared.observability import traced
from shared.resources import DETAILED_TRACING_ENV


def test_given_detailed_tracing_off_when_a_handler_is_wrapped_then_the_xray_sdk_is_not_loaded():
    probe = "import sys, functions.aggregator.handler; print('aws_xray_sdk' in sys.modules)"
    environment = {"AWS_REGION": "us-east-1", "UPSWING_DETAILED_TRACING": "false", "PATH": ""}
    loaded = subprocess.run([sys.executable, "-c", probe], env=environment, capture_output=True, text=True)

    assert loaded.stdout.strip() == "False", loaded.stderr


def test_given_detailed_tracing_on_when_a_handler_is_wrapped_then_powertools_tracer_wraps_it(monkeypatch):
    def handler(event, context):
        return "answer"

    monkeypatch.setenv(DETAILED_TRACING_ENV, "false")
    assert traced(handler) is handler
    monkeypatch.setenv(DETAILED_TRACING_ENV, "true")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")  # no X-Ray daemon here
    wrapped = traced(handler)
    assert wrapped is not handler
    assert wrapped({}, None) == "answer"


def test_instants_are_written_in_utc_with_a_z() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    from shared.timestamps import utc_stamp

    noon = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert utc_stamp(noon) == "2026-11-23T12:00:00Z"
    assert utc_stamp(noon, "milliseconds") == "2026-11-23T12:00:00.000Z"
    # Another offset is converted, not relabelled; a naive moment is written as it stands.
    assert utc_stamp(noon.astimezone(timezone(timedelta(hours=2)))) == "2026-11-23T12:00:00Z"
    assert utc_stamp(noon.replace(tzinfo=None)) == "2026-11-23T12:00:00"
