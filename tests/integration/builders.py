"""Realistic Lambda events for the handlers: API Gateway REST proxy, SQS-from-EventBridge, streams."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.accounts.models import Writer
from shared.counters.store import FIRST_SEEN_KEY
from shared.delivery.queue import DeliveryQueue
from shared.producers import Scope, scopes_text
from shared.resources import HUBSPOT_QUEUE, HUBSPOT_SENDER_FUNCTION
from upswing.local.lambda_runtime import LocalContext

API_ID = "a1b2c3d4e5"
STAGE = "prod"
PRODUCER = "checkout-service"
# What the authorizer puts in the context for a key holding every scope (tests of one scope narrow it).
ALL_SCOPES = scopes_text(Scope)
# Who a test's direct profile write is recorded as (the API records the calling key's producer).
TEST_WRITER = Writer(producer_id="tests", key_id="direct")


def an_hour(day_offset: int, hour: int) -> datetime:
    """A moment safely in the past: `hour`:00 UTC on (yesterday + day_offset)."""
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    return datetime.combine(yesterday + timedelta(days=day_offset), datetime.min.time(), UTC).replace(
        hour=hour
    )


def rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def usage_event(**overrides: Any) -> dict[str, Any]:
    """An event as a producer would send it; every field can be overridden (None removes it)."""
    event = {
        "event_id": f"evt-{uuid.uuid4().hex[:12]}",
        "account_id": "acct-northwind",
        "name": "feature.analytics.used",
        "occurred_at": rfc3339(an_hour(0, 10)),
        "value": 1,
        "kind": "count",
        "dimensions": {"team": "t-42", "user": "u-7"},
        "properties": {"dashboard": "revenue", "source": "web"},
    }
    event.update(overrides)
    return {key: value for key, value in event.items() if value is not None}


def an_outcome(**overrides: Any) -> dict[str, Any]:
    """An outcome as billing would send it; every field can be overridden (None removes it)."""
    outcome = {
        "outcome_id": f"out-{uuid.uuid4().hex[:12]}",
        "account_id": "acct-northwind",
        "kind": "seat_expansion",
        "occurred_at": rfc3339(an_hour(0, 9)),
        "amount": 4800,
        "currency": "USD",
        "source": "billing",
        "deal_id": "9001",
    }
    outcome.update(overrides)
    return {key: value for key, value in outcome.items() if value is not None}


def proxy_event(
    method: str,
    path: str,
    body: str | None = None,
    *,
    content_type: str | None = "application/json",
    query: dict[str, str] | None = None,
    producer: str = PRODUCER,
    resource: str | None = None,
    scopes: str = ALL_SCOPES,
) -> dict[str, Any]:
    """An API Gateway REST proxy event, as API Gateway sends it after the authorizer allowed the call."""
    headers = {
        "Accept": "application/json",
        "Authorization": "Bearer upk_redacted-by-api-gateway-logs",
        "Host": f"{API_ID}.execute-api.us-east-1.amazonaws.com",
        "User-Agent": "checkout-service/2.3 httpx/0.28",
        "X-Amzn-Trace-Id": "Root=1-67a0c5e1-0123456789abcdef01234567",
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
    }
    if content_type is not None:
        headers["Content-Type"] = content_type
    request_id = str(uuid.uuid4())
    return {
        "resource": resource or path,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": API_ID,
            "authorizer": {
                "principalId": producer,
                "producer_id": producer,
                "key_id": "0123456789abcdef",
                "scopes": scopes,
                "integrationLatency": 12,
            },
            "domainName": f"{API_ID}.execute-api.us-east-1.amazonaws.com",
            "extendedRequestId": request_id[:16],
            "httpMethod": method,
            "identity": {"sourceIp": "203.0.113.7", "userAgent": "checkout-service/2.3"},
            "path": f"/{STAGE}{path}",
            "protocol": "HTTP/1.1",
            "requestId": request_id,
            "requestTime": datetime.now(UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "requestTimeEpoch": int(datetime.now(UTC).timestamp() * 1000),
            "resourcePath": resource or path,
            "stage": STAGE,
        },
        "body": body,
        "isBase64Encoded": False,
    }


def post_events(events: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
    return proxy_event("POST", "/v1/events", json.dumps({"events": events}), **options)


def post_outcomes(outcomes: list[Any], **options: Any) -> dict[str, Any]:
    return proxy_event("POST", "/v1/outcomes", json.dumps({"outcomes": outcomes}), **options)


def account_path(account_id: str, suffix: str = "") -> str:
    return f"/v1/accounts/{account_id}{suffix}"


def call_api(event: dict[str, Any]) -> tuple[int, Any]:
    """Invoke the API function as Lambda would; the status and the decoded JSON body."""
    from functions.api.handler import handler

    answer = handler(event, LocalContext("api"))
    headers = {name.lower(): value for name, value in (answer.get("headers") or {}).items()}
    multi = {name.lower(): values for name, values in (answer.get("multiValueHeaders") or {}).items()}
    content_type = headers.get("content-type") or (multi.get("content-type") or [""])[0]
    assert content_type.startswith("application/json"), f"answer is not JSON: {answer}"
    return answer["statusCode"], json.loads(answer["body"])


def eventbridge_envelope(detail: Any, source: str = "billing", detail_type: str = "usage.event") -> dict:
    """What EventBridge delivers to the bus-ingest queue for a `usage.event` put on the bus."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": "123456789012",
        "time": rfc3339(datetime.now(UTC).replace(microsecond=0)),
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }


def sqs_event(bodies: list[str]) -> dict[str, Any]:
    """A Lambda SQS event carrying the given message bodies."""
    now_ms = str(int(datetime.now(UTC).timestamp() * 1000))
    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": f"AQEB{uuid.uuid4().hex}",
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": now_ms,
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "ApproximateFirstReceiveTimestamp": now_ms,
                },
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:upswing-test-busingestqueue",
                "awsRegion": "us-east-1",
            }
            for body in bodies
        ]
    }


def bus_event(
    details: list[Any], source: str = "billing", detail_type: str = "usage.event"
) -> dict[str, Any]:
    return sqs_event([json.dumps(eventbridge_envelope(detail, source, detail_type)) for detail in details])


def stream_event(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Records": records}


def hubspot_queue(sqs: Any, url: str, dead_letter_url: str) -> DeliveryQueue:
    """The HubSpot sender's queue as the stack declares it (its consumer's timeout, its receive count)."""
    return DeliveryQueue(
        sqs,
        url,
        dead_letter_url,
        consumer=HUBSPOT_SENDER_FUNCTION,
        max_receives=HUBSPOT_QUEUE.max_receive_count,
    )


def is_marker(record: dict[str, Any]) -> bool:
    """A counters stream record of the first_seen marker, which the evaluator's event-source filter
    drops (only day buckets reach it)."""
    return record["dynamodb"]["Keys"]["sk"]["S"] == FIRST_SEEN_KEY


def received_from(aws: Any, queue: Any, body: str) -> dict[str, Any]:
    """The Lambda event for one message put on `queue` (a QueueSpec) and received from it: a real
    receipt handle, so a sender's hold really changes its visibility."""
    url = aws.queues[queue.env_var]
    aws.sqs.send_message(QueueUrl=url, MessageBody=body)
    [message] = aws.sqs.receive_message(QueueUrl=url, AttributeNames=["All"], VisibilityTimeout=30)[
        "Messages"
    ]
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message["Attributes"],
                "messageAttributes": {},
                "md5OfBody": message["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{url.rsplit('/', 1)[-1]}",
                "awsRegion": "us-east-1",
            }
        ]
    }
