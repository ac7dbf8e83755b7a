"""Putting archive rows on a Firehose delivery stream: batches within its limits, retries of the
records it refused, and the rows it never took, so the caller can fail their stream records."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

MAX_RECORDS_PER_CALL = 500  # PutRecordBatch limits
MAX_BYTES_PER_CALL = 4 * 1024 * 1024
_ATTEMPTS = 3


def put_rows(client: Any, stream: str, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Put each row as one JSON record; return the indexes of the rows not taken after retries."""
    encoded = [(json.dumps(row, separators=(",", ":"), ensure_ascii=False) + "\n").encode() for row in rows]
    failed: list[int] = []
    for batch in _batches(encoded):
        pending = batch
        for _ in range(_ATTEMPTS):
            answer = client.put_record_batch(
                DeliveryStreamName=stream, Records=[{"Data": encoded[index]} for index in pending]
            )
            if not answer.get("FailedPutCount"):
                pending = []
                break
            # Throttled or refused records come back with an ErrorCode, in order: put those again.
            pending = [
                index
                for index, result in zip(pending, answer["RequestResponses"], strict=True)
                if result.get("ErrorCode")
            ]
        failed.extend(pending)
    return failed


def _batches(encoded: list[bytes]) -> list[list[int]]:
    batches: list[list[int]] = [[]]
    size = 0
    for index, data in enumerate(encoded):
        if batches[-1] and (
            len(batches[-1]) == MAX_RECORDS_PER_CALL or size + len(data) > MAX_BYTES_PER_CALL
        ):
            batches.append([])
            size = 0
        batches[-1].append(index)
        size += len(data)
    return [batch for batch in batches if batch]
