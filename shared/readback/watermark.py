"""Reading HubSpot records changed since a watermark, page by page: what the task and the deal
read-backs (shared/readback/tasks.py, deals.py) have in common.

- *The watermark is HubSpot's clock.* It is the `hs_lastmodifieddate` (epoch ms) of the newest
  change recorded, one item per reader in the plays table (`hubspot#poller` / `state` for tasks,
  `deals` for deals), so our Lambdas' clock skew never moves it.
- *Page by page.* It moves only once a whole page is recorded, and never backwards (a conditional
  update: a slower concurrent run cannot undo a faster one's). A page that fails mid-way leaves it
  where it was; the next run reads the page again, and the readers make a re-read harmless.
- *Overlap.* Each search starts `OVERLAP` (2 minutes) before the watermark: HubSpot's search shows a
  change a few seconds late, so a change modified just before the watermark is still found.
- *Bounds.* One search query pages through at most 10,000 results: the reader then starts a new
  query from the watermark it has reached. It stops before its deadline (`time_left`); the next run
  continues from the stored watermark.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from shared.delivery.hubspot import SEARCH_RESULT_LIMIT, TaskPage
from shared.storage.dynamo import deserialize, is_conditional_failure, serialize
from shared.timestamps import utc_stamp

POLLER_PARTITION = "hubspot#poller"
TASKS_STATE_KEY = {"pk": {"S": POLLER_PARTITION}, "sk": {"S": "state"}}
DEALS_STATE_KEY = {"pk": {"S": POLLER_PARTITION}, "sk": {"S": "deals"}}
# Re-read this much before the watermark: HubSpot's search shows a change a few seconds late.
OVERLAP = timedelta(minutes=2)
# Where a first run starts: changes older than this are not read back.
FIRST_LOOK_BACK = timedelta(hours=1)


@dataclass
class PollerState:
    watermark_ms: int
    sweep_after: str | None = None


class PollerStateStore:
    """One reader's watermark (and, for tasks, the deletion sweep's position), by `key`."""

    def __init__(self, client: Any, table: str, key: dict[str, Any] | None = None) -> None:
        self._client = client
        self._table = table
        self._key = key or TASKS_STATE_KEY

    def load(self, now: datetime) -> PollerState:
        item = self._client.get_item(TableName=self._table, Key=self._key, ConsistentRead=True).get("Item")
        if not item:
            return PollerState(watermark_ms=epoch_ms(stamp(now - FIRST_LOOK_BACK)))
        state = deserialize(item)
        return PollerState(int(state["watermark_ms"]), state.get("sweep_after") or None)

    def save(self, state: PollerState, at: datetime) -> None:
        """Store the watermark (never backwards: a slower concurrent run cannot undo a faster one's)."""
        values = serialize({":w": state.watermark_ms, ":at": stamp(at), ":sweep": state.sweep_after or ""})
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key,
                UpdateExpression="SET watermark_ms = :w, updated_at = :at, sweep_after = :sweep",
                ConditionExpression="attribute_not_exists(watermark_ms) OR watermark_ms <= :w",
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if not is_conditional_failure(error):
                raise


@dataclass
class ChangesRead:
    pages: int
    watermark_ms: int
    stopped_early: bool  # the deadline came first: the next run continues


def read_changes(
    state: PollerState,
    *,
    search: Callable[[int, str | None], TaskPage],
    record: Callable[[Sequence[dict[str, Any]]], None],
    save: Callable[[PollerState], None],
    overlap: timedelta,
    time_left: Callable[[], bool],
) -> ChangesRead:
    """Search from the watermark (minus the overlap), `record` each page, then move the watermark to
    the page's newest modification and `save` it. What `record` raises propagates: the page's
    watermark is not saved."""
    overlap_ms = int(overlap.total_seconds() * 1000)
    read = ChangesRead(pages=0, watermark_ms=state.watermark_ms, stopped_early=False)
    since, after = state.watermark_ms - overlap_ms, None
    while True:
        if not time_left():
            read.stopped_early = True
            return read
        page = search(since, after)
        read.pages += 1
        record(page.results)
        newest = max((modified_ms(result) for result in page.results), default=0)
        if newest > state.watermark_ms:
            state.watermark_ms = newest
            save(state)
            read.watermark_ms = newest
        if page.after is None:
            return read
        if int(page.after) >= SEARCH_RESULT_LIMIT:
            # HubSpot pages no further than 10,000 results: a new query from where we are.
            since, after = state.watermark_ms - overlap_ms, None
            continue
        after = page.after


def modified_ms(result: dict[str, Any]) -> int:
    """A search result's last modification (HubSpot's clock), epoch ms; 0 when it says none."""
    properties = result.get("properties") or {}
    modified = properties.get("hs_lastmodifieddate") or result.get("updatedAt")
    return epoch_ms(modified) if modified else 0


def epoch_ms(value: str | int) -> int:
    """HubSpot's instants: epoch milliseconds (as a number or digits) or ISO 8601 in UTC."""
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def iso_ms(ms: int) -> str:
    return utc_stamp(datetime.fromtimestamp(ms / 1000, UTC), "milliseconds")


def stamp(moment: datetime) -> str:
    return utc_stamp(moment, "milliseconds")
