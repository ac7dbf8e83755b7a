"""Write capacity per accepted event: a 100-event batch over 25 accounts, ingest + counting."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.dynamo_meter import Meter
from bench.environment import BENCH_TABLES, fake_aws
from shared.resources import EVENTS_TABLE
from shared.timestamps import utc_stamp

ACCOUNTS = 25
TARGET_WCU_PER_EVENT = 1.6


def run() -> dict[str, Any]:
    with fake_aws():
        from functions.aggregator import handler as aggregator
        from functions.api import handler as api
        from shared.storage.dynamo import aws_client, dynamodb_client

        # UpdateItem metered: the aggregator's first_seen marker (shared/counters/store.py) is one.
        meter = Meter(count_updates=True)
        meter.attach(dynamodb_client(), aws_client("dynamodb"))
        streams = StreamReader(aws_client("dynamodb"), aws_client("dynamodbstreams"))
        now = datetime.now(UTC).replace(microsecond=0)
        rows = {}
        for label, batch_number in (
            ("first batch (new buckets, cold caches)", 0),
            ("next batch (warm)", 1),
            ("retry of the next batch", 1),
        ):
            before = (dict(meter.requests), meter.write_units, meter.read_units)
            answer = api.handler(_proxy_event(_batch(now, batch_number)), _Context())
            accepted = json.loads(answer["body"])["accepted"]
            aggregator.process_stream_batch({"Records": streams.new_records()}, aggregator.counter_store())
            rows[label] = _row(meter, before, accepted)
    _print(rows)
    return rows


class StreamReader:
    def __init__(self, dynamodb: Any, streams: Any) -> None:
        self._streams = streams
        arn = dynamodb.describe_table(TableName=BENCH_TABLES[EVENTS_TABLE.env_var])["Table"][
            "LatestStreamArn"
        ]
        shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
        self._iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]

    def new_records(self) -> list[dict[str, Any]]:
        answer = self._streams.get_records(ShardIterator=self._iterator, Limit=1000)
        self._iterator = answer["NextShardIterator"]
        return answer["Records"]


def _batch(now: datetime, batch_number: int) -> list[dict[str, Any]]:
    events = []
    for account in range(ACCOUNTS):
        stamp = utc_stamp(now - timedelta(minutes=account))
        base = {"account_id": f"bench-account-{account:02d}", "occurred_at": stamp}
        prefix = f"b{batch_number}-a{account}"
        events += [
            {
                **base,
                "event_id": f"{prefix}-seats",
                "name": "seats.active",
                "kind": "gauge",
                "value": 40 + account,
            },
            {**base, "event_id": f"{prefix}-api", "name": "api.calls", "value": 1200},
            {**base, "event_id": f"{prefix}-dash", "name": "dashboard.created"},
            {
                **base,
                "event_id": f"{prefix}-an",
                "name": "feature.analytics.used",
                "dimensions": {"team": f"t-{account % 5}", "user": f"u-{account}-{batch_number}"},
                "properties": {"page": "/reports/usage", "client": "web"},
            },
        ]
    return events


def _row(meter: Meter, before: tuple[dict[str, int], float, float], accepted: int) -> dict[str, Any]:
    requests, write_units, read_units = before
    spent = {name: count - requests.get(name, 0) for name, count in meter.requests.items()}
    wcu = meter.write_units - write_units
    return {
        "accepted": accepted,
        "requests": {name: count for name, count in spent.items() if count},
        "write_units": wcu,
        "read_units": meter.read_units - read_units,
        "write_units_per_accepted_event": round(wcu / accepted, 3) if accepted else None,
    }


def _print(rows: dict[str, dict[str, Any]]) -> None:
    print(f"DynamoDB cost of a 100-event batch over {ACCOUNTS} accounts (ingest + counting)")
    print(f"{'':40} {'accepted':>8} {'requests':>9} {'WCU':>6} {'RCU':>6} {'WCU/event':>10}")
    for label, row in rows.items():
        per_event = row["write_units_per_accepted_event"]
        print(
            f"{label:40} {row['accepted']:>8} {sum(row['requests'].values()):>9} {row['write_units']:>6.0f} "
            f"{row['read_units']:>6.0f} {per_event if per_event is not None else '-':>10}"
        )
        print(f"{'':40} {json.dumps(row['requests'])}")
    print(f"target: ≤ {TARGET_WCU_PER_EVENT} WCU per accepted event, deduplication included\n")


def _proxy_event(events: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resource": "/v1/events",
        "path": "/v1/events",
        "httpMethod": "POST",
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {"Content-Type": ["application/json"]},
        "queryStringParameters": None,
        "requestContext": {
            "authorizer": {"producer_id": "bench", "scopes": "events:write"},
            "requestId": "bench",
            "stage": "api",
        },
        "body": json.dumps({"events": events}),
        "isBase64Encoded": False,
    }


class _Context:
    function_name = "bench"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "bench"
