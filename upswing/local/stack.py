"""The whole of Upswing on one machine: emulated AWS, the real handlers, HTTP on 127.0.0.1."""

from __future__ import annotations

import logging
import os
import time
import warnings
from types import ModuleType
from typing import Any

from shared.events.contract import DEFAULT_RETENTION_DAYS
from shared.producers import ProducerKeys
from shared.resources import (
    BUS_INGEST_QUEUE,
    COUNTERS_TABLE,
    EVENTS_TABLE,
    REGISTRY_TABLE,
    RETENTION_DAYS_ENV,
)
from shared.storage import dynamo
from upswing.local.aws import EmulatedAws, LocalResources, create_resources
from upswing.local.gateway import LocalGateway
from upswing.local.lambda_runtime import LocalFunction
from upswing.local.pumps import Pump, QueuePump, StreamPump

# Locally, traces and EMF metrics would only be noise on the terminal.
QUIET_POWERTOOLS = {
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "POWERTOOLS_DEV": "false",
}
DEV_PRODUCER = "local-dev"


class LocalStack:
    def __init__(self, port: int = 0, retention_days: int = DEFAULT_RETENTION_DAYS) -> None:
        self._port = port
        self._retention_days = retention_days
        self._aws = EmulatedAws()
        self._pumps: list[Pump] = []
        self._gateway: LocalGateway | None = None
        self.resources: LocalResources | None = None
        self.aws_endpoint = ""
        self.producer_key = ""

    @property
    def endpoint(self) -> str:
        assert self._gateway, "start() the stack first"
        return self._gateway.endpoint

    def start(self) -> LocalStack:
        for name, value in QUIET_POWERTOOLS.items():
            os.environ.setdefault(name, value)
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        self.aws_endpoint = self._aws.start()
        self.resources = create_resources()
        os.environ.update(self.resources.environment())
        os.environ[RETENTION_DAYS_ENV] = str(self._retention_days)

        from functions.aggregator import handler as aggregator
        from functions.api import handler as api
        from functions.authorizer import handler as authorizer
        from functions.bus_ingest import handler as bus_ingest
        from functions.evaluator import handler as evaluator

        _forget_cached_clients(aggregator, api, authorizer, bus_ingest, evaluator)
        self._gateway = LocalGateway(
            LocalFunction("authorizer", authorizer.handler), LocalFunction("api", api.handler), self._port
        )
        self._pumps = [
            StreamPump(
                self.resources.stream_arns[EVENTS_TABLE.env_var],
                LocalFunction("aggregator", aggregator.handler),
            ),
            QueuePump(
                self.resources.queues[BUS_INGEST_QUEUE.env_var],
                LocalFunction("bus_ingest", bus_ingest.handler),
            ),
            # Counter changes → the rules (the CDK filter passes INSERT and MODIFY only, too).
            StreamPump(
                self.resources.stream_arns[COUNTERS_TABLE.env_var],
                LocalFunction("evaluator", evaluator.handler),
                event_names=("INSERT", "MODIFY"),
            ),
        ]
        self._gateway.start()
        for pump in self._pumps:
            pump.start()
        self.producer_key = self.producer_keys().issue(DEV_PRODUCER).key
        return self

    def producer_keys(self) -> ProducerKeys:
        assert self.resources, "start() the stack first"
        return ProducerKeys(dynamo.dynamodb_client(), self.resources.tables[REGISTRY_TABLE.env_var])

    def settle(self, timeout: float = 30.0, quiet_for: float = 0.3) -> None:
        """Wait until every pump has found nothing to do for `quiet_for` seconds in a row."""
        deadline = time.monotonic() + timeout
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            if all(pump.idle.is_set() for pump in self._pumps):
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= quiet_for:
                    return
            else:
                quiet_since = None
            time.sleep(0.02)
        raise TimeoutError(f"the local stack was still busy after {timeout} s")

    def pump_failures(self) -> list[dict[str, Any]]:
        return [failure for pump in self._pumps for failure in pump.failures]

    def stop(self) -> None:
        for pump in self._pumps:
            pump.stop()
        for pump in self._pumps:
            pump.join(timeout=5)
        if self._gateway:
            self._gateway.stop()
        self._aws.stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def _forget_cached_clients(*modules: ModuleType) -> None:
    """Handlers cache clients per process; a new local stack has a new endpoint."""
    dynamo.dynamodb_client.cache_clear()
    for module in modules:
        for value in vars(module).values():
            if callable(getattr(value, "cache_clear", None)):
                value.cache_clear()
