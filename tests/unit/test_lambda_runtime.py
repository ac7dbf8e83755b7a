"""The local runtime calls handlers as Lambda would; with metrics disabled it prints none of them."""

from __future__ import annotations

from typing import Any

import pytest
from aws_lambda_powertools.metrics import MetricUnit

from shared.observability import metrics
from upswing.local.lambda_runtime import LocalFunction


@metrics.log_metrics
def counting_handler(event: dict[str, Any], context: Any) -> str:
    metrics.add_metric(name="Things", unit=MetricUnit.Count, value=1)
    return f"{context.function_name}:{event['n']}"


def test_given_disabled_metrics_when_a_metric_passes_100_points_over_invocations_then_nothing_prints(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    function = LocalFunction("counter", counting_handler)

    answers = [function.invoke({"n": n}) for n in range(150)]

    assert answers[-1] == "counter:149"
    assert capsys.readouterr().out == ""  # Powertools alone prints the buffer at the 100th point
    assert metrics.metric_set == {}
