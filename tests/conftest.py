"""Session-wide test set-up: a fake AWS environment, and AWS emulated in-process by moto.

Nothing in the test suite may reach a real AWS endpoint. The fake credentials are in place
before any test module is imported (Powertools reads its settings when `shared.observability`
is imported, at collection time), and every test that needs AWS gets a fresh `mock_aws()` with
the tables and queues built from the same specs as the CDK and local stacks.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from shared.resources import ACCOUNTS_TABLE, COUNTERS_TABLE, EVENTS_TABLE, REGISTRY_TABLE

FAKE_AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    # botocore 1.44 would send DynamoDB calls to account-id endpoints that moto does not intercept.
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_METRICS_NAMESPACE": "UpswingTests",
    "POWERTOOLS_DEV": "false",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
}
# Either would send clients somewhere else than moto: a server left over, or real credentials.
UNWANTED_AWS_ENVIRONMENT = ("AWS_ENDPOINT_URL", "AWS_PROFILE")

TEST_PREFIX = "upswing-test"
TEST_RETENTION_DAYS = 400


def _apply_fake_aws_environment(environ: Any) -> None:
    for name, value in FAKE_AWS_ENVIRONMENT.items():
        environ[name] = value
    for name in UNWANTED_AWS_ENVIRONMENT:
        environ.pop(name, None)


def pytest_configure(config: pytest.Config) -> None:
    # Handlers flush Powertools metrics on every call; a call that adds none is not a problem here.
    config.addinivalue_line("filterwarnings", "ignore:No application metrics to publish:UserWarning")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The fault tests' figures (tests/integration/test_faults.py): plays lost, duplicates."""
    import sys

    faults = sys.modules.get("tests.integration.faults")
    if faults is None or not faults.FIGURES:
        return
    terminalreporter.section("faults: plays lost and duplicates")
    for line in faults.figures_table():
        terminalreporter.write_line(line)


# At import of this conftest, i.e. before any test module (and so any client or Powertools object).
_apply_fake_aws_environment(os.environ)


@pytest.fixture(scope="session", autouse=True)
def fake_aws_environment() -> Iterator[None]:
    """The fake AWS environment for the whole session, restored afterwards."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in FAKE_AWS_ENVIRONMENT.items():
            patch.setenv(name, value)
        for name in UNWANTED_AWS_ENVIRONMENT:
            patch.delenv(name, raising=False)
        yield


@dataclass
class StreamReader:
    """Reads a table's stream the way Lambda's poller does: each record once, in order, per shard."""

    client: Any
    stream_arn: str
    _iterators: dict[str, str] = field(default_factory=dict)

    def new_records(self, event_names: tuple[str, ...] = ("INSERT",)) -> list[dict[str, Any]]:
        """Records written since the last call, shaped as in a Lambda DynamoDB-stream event."""
        records: list[dict[str, Any]] = []
        shards = self.client.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"]
        for shard in shards:
            shard_id = shard["ShardId"]
            if shard_id not in self._iterators:
                self._iterators[shard_id] = self.client.get_shard_iterator(
                    StreamArn=self.stream_arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
            answer = self.client.get_records(ShardIterator=self._iterators[shard_id], Limit=1000)
            self._iterators[shard_id] = answer["NextShardIterator"]
            records.extend(
                {**record, "eventSourceARN": self.stream_arn}
                for record in answer.get("Records", [])
                if record["eventName"] in event_names
            )
        return records


@dataclass
class Aws:
    """The emulated resources of one test, with clients made inside the mock."""

    dynamodb: Any
    sqs: Any
    tables: dict[str, str]  # env var → table name
    stream_arns: dict[str, str]  # env var → stream ARN
    rejects_queue_url: str
    fired_queue_url: str
    queues: dict[str, str]  # env var → queue URL
    streams_client: Any

    @property
    def events_table(self) -> str:
        return self.tables[EVENTS_TABLE.env_var]

    @property
    def counters_table(self) -> str:
        return self.tables[COUNTERS_TABLE.env_var]

    @property
    def accounts_table(self) -> str:
        return self.tables[ACCOUNTS_TABLE.env_var]

    @property
    def registry_table(self) -> str:
        return self.tables[REGISTRY_TABLE.env_var]

    def events_stream(self) -> StreamReader:
        return StreamReader(self.streams_client, self.stream_arns[EVENTS_TABLE.env_var])

    def scan(self, table: str) -> list[dict[str, Any]]:
        from shared.storage.dynamo import deserialize

        items: list[dict[str, Any]] = []
        request: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
        while True:
            page = self.dynamodb.scan(**request)
            items.extend(deserialize(raw) for raw in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def queue_messages(self, queue_url: str) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        while True:
            batch = self.sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=60
            ).get("Messages", [])
            if not batch:
                return messages
            messages.extend(batch)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    """A fresh in-process moto with all four tables and the queues; handlers see them via the env."""
    from moto import mock_aws

    from shared.resources import FIRED_QUEUE, QUEUES, REJECTS_QUEUE, RETENTION_DAYS_ENV, TABLES
    from upswing.local.aws import number_moto_stream_records_uniquely, table_definition

    for name, value in FAKE_AWS_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    for name in UNWANTED_AWS_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)

    number_moto_stream_records_uniquely()
    with mock_aws():
        _forget_cached_handler_clients()
        dynamodb, sqs = _test_client("dynamodb"), _test_client("sqs")
        tables: dict[str, str] = {}
        stream_arns: dict[str, str] = {}
        for spec in TABLES:
            name = spec.local_name(TEST_PREFIX)
            description = dynamodb.create_table(**table_definition(spec, name))["TableDescription"]
            tables[spec.env_var] = name
            if spec.stream:
                stream_arns[spec.env_var] = description["LatestStreamArn"]
            monkeypatch.setenv(spec.env_var, name)
        queues = {
            spec.env_var: sqs.create_queue(QueueName=spec.local_name(TEST_PREFIX))["QueueUrl"]
            for spec in QUEUES
        }
        for env_var, url in queues.items():
            monkeypatch.setenv(env_var, url)
        monkeypatch.setenv(RETENTION_DAYS_ENV, str(TEST_RETENTION_DAYS))
        yield Aws(
            dynamodb=dynamodb,
            sqs=sqs,
            tables=tables,
            stream_arns=stream_arns,
            rejects_queue_url=queues[REJECTS_QUEUE.env_var],
            fired_queue_url=queues[FIRED_QUEUE.env_var],
            queues=queues,
            streams_client=_test_client("dynamodbstreams"),
        )
        _forget_cached_handler_clients()


@functools.cache
def _botocore_session() -> Any:
    import botocore.session

    return botocore.session.get_session()


def _test_client(service: str) -> Any:
    """A client for the tests' own calls. One botocore session for all of them: a fresh session
    reloads the service models (~70 ms a client), while the handlers' clients stay fresh per test."""
    from shared.storage.dynamo import CLIENT_CONFIG

    return _botocore_session().create_client(
        service, region_name=FAKE_AWS_ENVIRONMENT["AWS_REGION"], config=CLIENT_CONFIG
    )


def _forget_cached_handler_clients() -> None:
    """Handlers build clients and settings once per process; each test gets its own mock and tables."""
    from upswing.local.stack import forget_handler_dependencies

    forget_handler_dependencies()
