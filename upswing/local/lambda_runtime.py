"""Calling the real handlers the way Lambda would: one invocation at a time per function."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from shared.observability import metrics

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class LocalContext:
    function_name: str
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    @property
    def function_version(self) -> str:
        return "$LATEST"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


class LocalFunction:
    """A handler plus the lock that gives it Lambda's one-event-at-a-time execution model."""

    def __init__(self, name: str, handler: Handler) -> None:
        self.name = name
        self._handler = handler
        self._lock = threading.Lock()

    def invoke(self, event: dict[str, Any]) -> Any:
        with self._lock:
            try:
                return self._handler(event, LocalContext(self.name))
            finally:
                _drop_disabled_metrics()


def _drop_disabled_metrics() -> None:
    """Discard the invocation's metrics when metrics are disabled (the local stack's default).

    Powertools' flush keeps the buffer then, instead of printing and clearing it, so it grows from
    one invocation to the next, and a metric that reaches 100 data points is printed after all.
    Every function shares the one buffer; with nothing published, dropping it loses nothing.
    """
    if is_metrics_disabled():
        metrics.clear_metrics()
