"""Fake AWS for benchmarks: moto in-process, Upswing's tables, the handlers' caches cleared."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from shared.resources import TABLES
from upswing.local.aws import FAKE_AWS_ENVIRONMENT, number_moto_stream_records_uniquely, table_definition

BENCH_TABLES = {spec.env_var: f"bench-{spec.construct_id.lower()}" for spec in TABLES}
QUIET = {
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "ERROR",
}


@contextmanager
def fake_aws() -> Iterator[None]:
    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ.update(FAKE_AWS_ENVIRONMENT | BENCH_TABLES | QUIET)
    from moto import mock_aws

    from shared.storage.dynamo import aws_client

    number_moto_stream_records_uniquely()
    with mock_aws():
        dynamodb = aws_client("dynamodb")
        for spec in TABLES:
            dynamodb.create_table(**table_definition(spec, BENCH_TABLES[spec.env_var]))
        yield
