"""AWS emulated on loopback (moto's server) and the resources Upswing needs, from shared/resources."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from typing import Any

from shared.resources import (
    BUS_INGEST_QUEUE,
    BUS_INTAKE_DETAIL_TYPES,
    EVENT_BUS_ENV,
    HUBSPOT_DLQ_ENV,
    HUBSPOT_QUEUE,
    QUEUES,
    SLACK_DLQ_ENV,
    SLACK_QUEUE,
    TABLES,
    WEBHOOK_DLQ_ENV,
    WEBHOOK_QUEUE,
    QueueSpec,
    TableSpec,
)
from shared.storage.dynamo import aws_client

LOCAL_REGION = "us-east-1"
LOCAL_PREFIX = "upswing-local"
BUS_NAME = f"{LOCAL_PREFIX}-bus"

# Fake credentials and no account-id endpoints: nothing local can reach real AWS.
FAKE_AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_REGION": LOCAL_REGION,
    "AWS_DEFAULT_REGION": LOCAL_REGION,
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
}


def number_moto_stream_records_uniquely() -> None:
    """Make moto give every stream record its own sequence number, as DynamoDB does.

    moto numbers a record `len(records) + start` and then appends it, without a lock, so the
    ingest's parallel ledger writes can share a number (seen: 591 distinct for 600 records) and the
    aggregator then rightly skips the "replay". Patched once per process, for the local stack,
    the tests and the benchmarks alike.
    """
    from moto.dynamodb.models.table import StreamShard

    if getattr(StreamShard.add, "upswing_serialized", False):
        return
    unlocked_add = StreamShard.add
    lock = threading.Lock()

    def add(self: Any, old: Any, new: Any) -> None:
        with lock:
            unlocked_add(self, old, new)

    add.upswing_serialized = True  # type: ignore[attr-defined]
    StreamShard.add = add  # type: ignore[method-assign]


class EmulatedAws:
    """moto's threaded server on 127.0.0.1 at a free port."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.endpoint = ""

    def start(self) -> str:
        number_moto_stream_records_uniquely()
        os.environ.update(FAKE_AWS_ENVIRONMENT)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        os.environ["AWS_ENDPOINT_URL"] = self.endpoint
        return self.endpoint

    def stop(self) -> None:
        self._server.stop()


@dataclass(frozen=True)
class LocalResources:
    tables: dict[str, str]  # env var → table name
    stream_arns: dict[str, str]  # env var → stream ARN
    queues: dict[str, str]  # env var → queue URL
    dead_letter_queues: dict[str, str]  # the queue's env var → its DLQ's URL
    bus_name: str

    def environment(self) -> dict[str, str]:
        return {
            **self.tables,
            **self.queues,
            EVENT_BUS_ENV: self.bus_name,
            HUBSPOT_DLQ_ENV: self.dead_letter_queues[HUBSPOT_QUEUE.env_var],
            SLACK_DLQ_ENV: self.dead_letter_queues[SLACK_QUEUE.env_var],
            WEBHOOK_DLQ_ENV: self.dead_letter_queues[WEBHOOK_QUEUE.env_var],
        }


def create_resources() -> LocalResources:
    dynamodb, sqs, events = aws_client("dynamodb"), aws_client("sqs"), aws_client("events")
    tables, streams = {}, {}
    for spec in TABLES:
        name = spec.local_name(LOCAL_PREFIX)
        description = dynamodb.create_table(**table_definition(spec, name))["TableDescription"]
        tables[spec.env_var] = name
        if spec.ttl_attribute:
            dynamodb.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": spec.ttl_attribute}
            )
        if spec.stream:
            streams[spec.env_var] = description["LatestStreamArn"]
    created = {spec.env_var: _create_queue(sqs, spec) for spec in QUEUES}
    queues = {env_var: urls[0] for env_var, urls in created.items()}
    events.create_event_bus(Name=BUS_NAME)
    events.put_rule(
        Name=f"{LOCAL_PREFIX}-usage-events",
        EventBusName=BUS_NAME,
        EventPattern=json.dumps({"detail-type": list(BUS_INTAKE_DETAIL_TYPES)}),
    )
    ingest_arn = sqs.get_queue_attributes(
        QueueUrl=queues[BUS_INGEST_QUEUE.env_var], AttributeNames=["QueueArn"]
    )
    events.put_targets(
        Rule=f"{LOCAL_PREFIX}-usage-events",
        EventBusName=BUS_NAME,
        Targets=[{"Id": "bus-ingest", "Arn": ingest_arn["Attributes"]["QueueArn"]}],
    )
    return LocalResources(
        tables=tables,
        stream_arns=streams,
        queues=queues,
        dead_letter_queues={env_var: urls[1] for env_var, urls in created.items()},
        bus_name=BUS_NAME,
    )


def table_definition(spec: TableSpec, name: str) -> dict[str, Any]:
    keys = [(spec.partition_key, "HASH")] + ([(spec.sort_key, "RANGE")] if spec.sort_key else [])
    attributes = [key for key, _ in keys]
    for index in spec.indexes:
        attributes += [key for key in (index.partition_key, index.sort_key) if key not in attributes]
    definition: dict[str, Any] = {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": [{"AttributeName": key, "KeyType": kind} for key, kind in keys],
        "AttributeDefinitions": [{"AttributeName": key, "AttributeType": "S"} for key in attributes],
    }
    if spec.indexes:
        definition["GlobalSecondaryIndexes"] = [
            {
                "IndexName": index.name,
                "KeySchema": [
                    {"AttributeName": index.partition_key, "KeyType": "HASH"},
                    {"AttributeName": index.sort_key, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY" if index.keys_only else "ALL"},
            }
            for index in spec.indexes
        ]
    if spec.stream:
        definition["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": spec.stream.value}
    return definition


def _create_queue(sqs: Any, spec: QueueSpec) -> tuple[str, str]:
    """The queue's URL and its DLQ's."""
    name = spec.local_name(LOCAL_PREFIX)
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = f'{{"deadLetterTargetArn": "{dlq_arn}", "maxReceiveCount": "{spec.max_receive_count}"}}'
    attributes = {"RedrivePolicy": redrive, "VisibilityTimeout": "5"}
    return sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"], dlq_url
