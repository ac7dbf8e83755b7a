"""What Lambda's event-source mappings do in AWS, done by threads: poll, invoke, honour failures."""

from __future__ import annotations

import threading
import time
from typing import Any

from shared.observability import logger
from shared.storage.dynamo import aws_client
from upswing.local.lambda_runtime import LocalFunction

_IDLE_POLL_SECONDS = 0.05
_MAX_STREAM_RETRIES = 3


class Pump(threading.Thread):
    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._stopping = threading.Event()
        self.idle = threading.Event()
        self.failures: list[dict[str, Any]] = []

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                worked = self.poll_once()
            except Exception as error:  # a pump must outlive one bad poll, as Lambda's poller does
                logger.exception(
                    "local pump poll failed", extra={"pump": self.name, "error": type(error).__name__}
                )
                worked = False
            if worked:
                self.idle.clear()
            else:
                self.idle.set()
                time.sleep(_IDLE_POLL_SECONDS)

    def poll_once(self) -> bool:
        raise NotImplementedError


class StreamPump(Pump):
    """DynamoDB stream → handler, as an event-source mapping with INSERT filtering and retries."""

    def __init__(
        self, stream_arn: str, function: LocalFunction, event_names: tuple[str, ...] = ("INSERT",)
    ) -> None:
        super().__init__(f"stream→{function.name}")
        self._streams = aws_client("dynamodbstreams")
        self._stream_arn = stream_arn
        self._function = function
        self._event_names = event_names
        self._iterators: dict[str, str] = {}

    def poll_once(self) -> bool:
        shards = self._streams.describe_stream(StreamArn=self._stream_arn)["StreamDescription"]["Shards"]
        worked = False
        for shard in shards:
            shard_id = shard["ShardId"]
            if shard_id not in self._iterators:
                self._iterators[shard_id] = self._streams.get_shard_iterator(
                    StreamArn=self._stream_arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
            answer = self._streams.get_records(ShardIterator=self._iterators[shard_id], Limit=500)
            self._iterators[shard_id] = answer["NextShardIterator"]
            records = [
                {**record, "eventSourceARN": self._stream_arn}
                for record in answer.get("Records", [])
                if record["eventName"] in self._event_names
            ]
            if records:
                self._deliver(records)
                worked = True
        return worked

    def _deliver(self, records: list[dict[str, Any]]) -> None:
        for _ in range(_MAX_STREAM_RETRIES + 1):
            answer = self._function.invoke({"Records": records}) or {}
            failures = answer.get("batchItemFailures", [])
            if not failures:
                return
            first_failed = failures[0]["itemIdentifier"]
            records = [r for r in records if int(r["dynamodb"]["SequenceNumber"]) >= int(first_failed)]
        self.failures.extend(records)  # the local stand-in for the on-failure destination


class QueuePump(Pump):
    """SQS → handler, deleting what succeeded and leaving batch item failures for redelivery."""

    def __init__(self, queue_url: str, function: LocalFunction) -> None:
        super().__init__(f"queue→{function.name}")
        self._sqs = aws_client("sqs")
        self._queue_url = queue_url
        self._function = function

    def poll_once(self) -> bool:
        messages = self._sqs.receive_message(
            QueueUrl=self._queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, AttributeNames=["All"]
        ).get("Messages", [])
        if not messages:
            return False
        event = {
            "Records": [
                {
                    "messageId": message["MessageId"],
                    "receiptHandle": message["ReceiptHandle"],
                    "body": message["Body"],
                    "attributes": message.get("Attributes", {}),
                    "messageAttributes": {},
                    "eventSource": "aws:sqs",
                }
                for message in messages
            ]
        }
        answer = self._function.invoke(event) or {}
        failed = {failure["itemIdentifier"] for failure in answer.get("batchItemFailures", [])}
        done = [
            {"Id": str(position), "ReceiptHandle": message["ReceiptHandle"]}
            for position, message in enumerate(messages)
            if message["MessageId"] not in failed
        ]
        if done:
            self._sqs.delete_message_batch(QueueUrl=self._queue_url, Entries=done)
        return True


class SchedulePump(Pump):
    """An EventBridge schedule: invoke the function every `every_seconds` (first after one period)."""

    def __init__(self, function: LocalFunction, every_seconds: float) -> None:
        super().__init__(f"schedule→{function.name}")
        self._function = function
        self._every = every_seconds
        self._next = time.monotonic() + every_seconds

    def poll_once(self) -> bool:
        if time.monotonic() < self._next:
            return False
        self._next = time.monotonic() + self._every
        self._function.invoke({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}})
        return False  # a tick is not a backlog: settle() must not wait for the schedule
