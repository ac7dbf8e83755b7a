"""Injected failures for tests on moto, through botocore's own event hooks (no private code patched).

- `fail_calls`: chosen calls of one operation fail with an AWS error code, as the caller sees
  them once the SDK's own retries are spent (a `before-call` answer: the request never reaches
  moto), or after the call went through (`after_call=True`: the write happened, the answer was
  lost).
- `fail_entries`: a batch operation (SQS `SendMessageBatch`) answers some entries as `Failed`;
  the others are really sent.
- `kill_after`: a Lambda timeout. After `n` AWS calls across the given clients the invocation
  stops dead (`LambdaTimedOut` is a BaseException: no `except Exception` in the handler can catch
  it, just as nothing runs in a killed sandbox), and Lambda delivers the whole batch again.
- `SimulatedQueue`: an SQS queue as Lambda's poller sees it, on a fake clock: visibility timeouts,
  partial batch responses, `ChangeMessageVisibility`, redrive to a DLQ after `max_receive_count`.
- `FIGURES`: what each fault test measured (plays lost, duplicates), printed at the end of the
  session (tests/conftest.py).
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

Calls = Collection[int] | Callable[[int], bool]  # 1-based call numbers that fail, or a predicate


class LambdaTimedOut(BaseException):
    """The function reached its timeout: the invocation stops where it is."""


@dataclass
class FaultLog:
    """How many calls an injected fault saw, and how many it failed."""

    calls: int = 0
    failed: int = 0


def fail_calls(
    client: Any,
    operation: str,
    code: str,
    *,
    calls: Calls | None = None,
    where: Callable[[dict[str, Any]], bool] | None = None,
    message: str = "injected fault",
    status: int = 400,
    cancellation_reasons: list[str] | None = None,
    after_call: bool = False,
) -> FaultLog:
    """Make the chosen calls of `operation` on `client` raise `ClientError(code)`: of the calls whose
    parameters `where` accepts (all, by default), those numbered in `calls` (all, by default).

    `cancellation_reasons` (for TransactionCanceledException): one code per transaction item, as
    DynamoDB reports them ("None" for an item that was fine).
    """
    log = FaultLog()
    service = client.meta.service_model.service_id.hyphenize()
    numbered = (
        (lambda _: True) if calls is None else calls if callable(calls) else frozenset(calls).__contains__
    )
    matching: list[bool] = [False]  # whether the call in progress is one `where` accepts

    def chosen(number: int) -> bool:
        return matching[0] and numbered(number)

    def inspect(params: dict[str, Any], **_: Any) -> None:
        matching[0] = where is None or where(params)

    response: dict[str, Any] = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": "injected"},
    }
    if cancellation_reasons is not None:
        response["CancellationReasons"] = [
            {"Code": reason} if reason == "None" else {"Code": reason, "Message": message}
            for reason in cancellation_reasons
        ]

    def before_call(**_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        if not matching[0]:
            return None
        log.calls += 1
        if after_call or not chosen(log.calls):
            return None
        log.failed += 1
        http = AWSResponse("https://injected.invalid/", status, {}, None)
        return http, json.loads(json.dumps(response))

    def after_call_hook(**_: Any) -> None:
        if after_call and chosen(log.calls):
            log.failed += 1
            raise ClientError(json.loads(json.dumps(response)), operation)

    client.meta.events.register(f"before-parameter-build.{service}.{operation}", inspect)
    client.meta.events.register(f"before-call.{service}.{operation}", before_call)
    client.meta.events.register(f"after-call.{service}.{operation}", after_call_hook)
    return log


def fail_entries(
    client: Any,
    operation: str,
    failing: Callable[[dict[str, Any]], bool],
    *,
    code: str = "InternalError",
) -> FaultLog:
    """Answer the batch entries `failing` picks as `Failed` (sender fault: no); send the others."""
    log = FaultLog()
    service = client.meta.service_model.service_id.hyphenize()
    dropped: list[dict[str, Any]] = []

    def drop(params: dict[str, Any], **_: Any) -> None:
        log.calls += 1
        verdicts = [(entry, failing(entry)) for entry in params.get("Entries", [])]  # asked once each
        dropped[:] = [entry for entry, fails in verdicts if fails]
        params["Entries"] = [entry for entry, fails in verdicts if not fails]
        log.failed += len(dropped)

    def report(parsed: dict[str, Any], **_: Any) -> None:
        parsed.setdefault("Failed", []).extend(
            {"Id": entry["Id"], "SenderFault": False, "Code": code, "Message": "injected fault"}
            for entry in dropped
        )
        dropped.clear()

    client.meta.events.register(f"before-parameter-build.{service}.{operation}", drop)
    client.meta.events.register(f"after-call.{service}.{operation}", report)
    return log


@contextmanager
def kill_after(calls: int | None, *clients: Any) -> Iterator[list[str]]:
    """Within the block, the AWS call after the first `calls` ones (across `clients`) never
    happens: LambdaTimedOut is raised instead. `None` kills nothing and only counts. Yields the
    names of the calls made, in order."""
    made: list[str] = []

    def before_call(model: Any, **_: Any) -> None:
        if calls is not None and len(made) >= calls:
            raise LambdaTimedOut(f"timed out before call {len(made) + 1} ({model.name})")
        made.append(model.name)

    for client in clients:
        client.meta.events.register_first("before-call", before_call)
    try:
        yield made
    finally:
        for client in clients:
            client.meta.events.unregister("before-call", before_call)


# ── SQS as Lambda's poller sees it, on a fake clock ────────────────────────────────────────────


class Clock:
    """A fake monotonic clock (seconds); `sleep` moves it on."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


@dataclass
class _Message:
    message_id: str
    body: str
    visible_at: float = 0.0
    receive_count: int = 0
    receipt_handle: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)


class SimulatedQueue:
    """One queue and its DLQ. Also stands in for the botocore SQS client a handler holds (it answers
    `change_message_visibility` for this queue and `send_message` to its DLQ URL)."""

    def __init__(
        self, clock: Clock, *, visibility_timeout: float, max_receive_count: int, url: str = "sim://queue"
    ) -> None:
        self.clock = clock
        self.visibility_timeout = visibility_timeout
        self.max_receive_count = max_receive_count
        self.url = url
        self.dead_letter_url = url + "-dlq"
        self._messages: dict[str, _Message] = {}
        self.dead_letters: list[dict[str, Any]] = []  # redriven, or sent to the DLQ by the handler
        self.receives = 0

    def send(self, body: str) -> None:
        message_id = str(uuid.uuid4())
        self._messages[message_id] = _Message(message_id, body, visible_at=self.clock())

    def __len__(self) -> int:
        return len(self._messages)

    def next_visible_at(self) -> float | None:
        return min((message.visible_at for message in self._messages.values()), default=None)

    def receive(self, max_messages: int = 10) -> dict[str, Any] | None:
        """A Lambda SQS event of up to `max_messages` visible messages, or None."""
        now = self.clock()
        batch: list[_Message] = []
        for message in sorted(self._messages.values(), key=lambda m: m.visible_at):
            if message.visible_at > now or len(batch) == max_messages:
                continue
            if message.receive_count >= self.max_receive_count:  # SQS's redrive policy
                del self._messages[message.message_id]
                self.dead_letters.append({"body": message.body, "redriven": True})
                continue
            message.receive_count += 1
            message.visible_at = now + self.visibility_timeout
            message.receipt_handle = f"rh-{uuid.uuid4().hex}"
            batch.append(message)
        if not batch:
            return None
        self.receives += 1
        return {
            "Records": [
                {
                    "messageId": message.message_id,
                    "receiptHandle": message.receipt_handle,
                    "body": message.body,
                    "attributes": {
                        "ApproximateReceiveCount": str(message.receive_count),
                        "SentTimestamp": "0",
                        "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                        "ApproximateFirstReceiveTimestamp": "0",
                    },
                    "messageAttributes": {},
                    "md5OfBody": "",
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:simulated",
                    "awsRegion": "us-east-1",
                }
                for message in batch
            ]
        }

    def settle(self, event: dict[str, Any], answer: dict[str, Any] | None) -> None:
        """What Lambda does with the function's answer: delete every message but the failures.
        `None` (the function raised or timed out): delete nothing."""
        if answer is None:
            return
        failed = {failure["itemIdentifier"] for failure in answer.get("batchItemFailures", [])}
        for record in event["Records"]:
            if record["messageId"] not in failed:
                self._messages.pop(record["messageId"], None)

    # ── the client calls a handler makes ──────────────────────────────────────────────────────

    def change_message_visibility(self, QueueUrl: str, ReceiptHandle: str, VisibilityTimeout: int) -> None:
        assert QueueUrl == self.url, QueueUrl
        for message in self._messages.values():
            if message.receipt_handle == ReceiptHandle:
                message.visible_at = self.clock() + VisibilityTimeout
                return
        raise ClientError(
            {"Error": {"Code": "ReceiptHandleIsInvalid", "Message": ReceiptHandle}}, "ChangeMessageVisibility"
        )

    def send_message(self, QueueUrl: str, MessageBody: str, **options: Any) -> dict[str, Any]:
        assert QueueUrl == self.dead_letter_url, QueueUrl
        self.dead_letters.append({"body": MessageBody, "redriven": False, **options})
        return {"MessageId": str(uuid.uuid4())}


# ── the figures ────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Figures:
    fault: str
    expected: int  # plays that had to reach their owner (or events that had to be counted)
    delivered: int  # of them, delivered (a HubSpot task) or counted
    lost: int
    duplicates: int  # deliveries beyond one per play (tasks, counts)
    note: str = ""


FIGURES: list[Figures] = []


def record_figures(
    fault: str, expected: Collection[str], delivered: list[str], note: str = "", unit: str = "HubSpot tasks"
) -> Figures:
    """`expected`: the play ids that must arrive; `delivered`: one entry per delivery seen (a task
    carrying the play id), in `unit`."""
    counts: dict[str, int] = {}
    for play in delivered:
        counts[play] = counts.get(play, 0) + 1
    figures = Figures(
        fault=fault,
        expected=len(expected),
        delivered=sum(1 for play in expected if counts.get(play)),
        lost=sum(1 for play in expected if not counts.get(play)),
        duplicates=sum(count - 1 for count in counts.values()) + sum(1 for p in counts if p not in expected),
        note=f"{unit}; {note}" if note else unit,
    )
    FIGURES.append(figures)
    return figures


def figures_table() -> list[str]:
    rows = [("fault", "expected", "delivered", "lost", "duplicates", "measured as")]
    rows += [
        (f.fault, str(f.expected), str(f.delivered), str(f.lost), str(f.duplicates), f.note) for f in FIGURES
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(5)]
    return [
        "  ".join(
            itertools.chain(
                (row[0].ljust(widths[0]),),
                (cell.rjust(width) for cell, width in zip(row[1:5], widths[1:5], strict=True)),
                (row[5],),
            )
        ).rstrip()
        for row in rows
    ]
