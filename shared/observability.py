"""The Powertools logger and metrics every function shares, and the tracing switch.

Logs carry ids and counts, never event properties, dimension values, owner emails or keys.

Tracing: every function runs with X-Ray active tracing (set in infra/), so each invocation, its
cold start and the API Gateway hop are traced without any SDK in the function. Powertools'
Tracer adds subsegments for each AWS call, but importing the X-Ray SDK it needs costs about
0.2 s of every cold start (a quarter of it, measured by `make bench`), so it is loaded only when
DETAILED_TRACING_ENV is "true" (CDK context `detailed_tracing`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics

from shared.resources import DETAILED_TRACING_ENV, METRICS_NAMESPACE, SERVICE_NAME

logger = Logger(service=SERVICE_NAME)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE_NAME)

HandlerT = TypeVar("HandlerT", bound=Callable[..., Any])


def traced(handler: HandlerT) -> HandlerT:
    """Wrap a Lambda handler in Powertools' Tracer when detailed tracing is on; else leave it be."""
    if os.environ.get(DETAILED_TRACING_ENV, "").lower() != "true":
        return handler
    from aws_lambda_powertools import Tracer

    tracer = Tracer(service=SERVICE_NAME)  # patches botocore: every AWS call becomes a subsegment
    return tracer.capture_lambda_handler(handler)  # type: ignore[return-value]
