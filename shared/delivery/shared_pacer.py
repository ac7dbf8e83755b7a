"""A sliding-window pacer shared by every process, kept in one DynamoDB item.

HubSpot's search endpoints allow 5 requests per second per HubSpot account, counted across every
caller. A process-local pacer (shared/delivery/pacing.py) cannot see the other senders, so the
search pacer keeps the grants in the deliveries table: one item per HubSpot account
(`pacer#<key>`) holding the wall-clock instants (epoch ms) of the last `limit` grants and a version.
A grant is an optimistic write: read the item (consistent), and if fewer than `limit` grants fall
inside the window, write the list with this one added, on condition that the version is unchanged.
A writer that lost the race reads again. So at most `limit` searches start in any window, whatever
the number of senders; each costs one consistent read and one write (searches are rare: lookups
after an attempt whose outcome was lost).

The window is a little longer than HubSpot's second: the senders' clocks are NTP-synchronised but
not identical, and the request reaches HubSpot a little after its grant.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from shared.delivery.pacing import wait_for_slot
from shared.storage.dynamo import is_conditional_failure

# HubSpot's search limit: 5 requests per second per HubSpot account, every sender and the poller
# together. The shared window is a little longer than a second (clock skew, network delay).
HUBSPOT_SEARCHES_PER_WINDOW = 5
HUBSPOT_SEARCH_WINDOW_SECONDS = 1.2
_SLACK_SECONDS = 0.001
_ITEM_LIFETIME_SECONDS = 24 * 3600  # the item expires (TTL) once no sender has used it for a day


class SharedPacer:
    """At most `limit` acquisitions in any `window_seconds`, across every process using `key`."""

    def __init__(
        self,
        client: Any,
        table: str,
        key: str,
        *,
        limit: int,
        window_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if limit < 1 or window_seconds <= 0:
            raise ValueError("a pacer needs a limit of at least 1 and a positive window")
        self._client = client
        self._table = table
        self._key = {"pk": {"S": f"pacer#{key}"}}
        self.limit = limit
        self.window_seconds = window_seconds
        self._clock = clock
        self._sleep = sleep
        self._wall_clock = wall_clock

    def acquire(self, deadline: float | None = None) -> None:
        """Take a slot, waiting for one if the window is full; PacingDeadlineExceeded, without
        waiting, when the slot would come after `deadline` (a clock() value)."""
        wait_for_slot(self.try_acquire, self._clock, self._sleep, deadline)

    def try_acquire(self) -> float:
        """Take a slot if one is free and return 0; otherwise the wait until one frees up (a lost
        race returns a tiny wait: read again)."""
        now_ms = int(self._wall_clock() * 1000)
        window_ms = int(self.window_seconds * 1000)
        item = self._client.get_item(TableName=self._table, Key=self._key, ConsistentRead=True).get(
            "Item", {}
        )
        version = int(item.get("version", {}).get("N", "0"))
        granted = sorted(
            int(value["N"])
            for value in item.get("grants", {}).get("L", [])
            if int(value["N"]) > now_ms - window_ms
        )
        if len(granted) >= self.limit:
            return (granted[-self.limit] + window_ms - now_ms) / 1000 + _SLACK_SECONDS
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key,
                UpdateExpression="SET grants = :grants, version = :next, expires_at = :expires",
                ConditionExpression="attribute_not_exists(pk) OR version = :version",
                ExpressionAttributeValues={
                    ":grants": {"L": [{"N": str(value)} for value in [*granted, now_ms]]},
                    ":next": {"N": str(version + 1)},
                    ":version": {"N": str(version)},
                    ":expires": {"N": str(now_ms // 1000 + _ITEM_LIFETIME_SECONDS)},
                },
            )
        except ClientError as error:
            if not is_conditional_failure(error):
                raise
            return _SLACK_SECONDS  # another sender wrote first: read again
        return 0.0

    def __repr__(self) -> str:
        return f"SharedPacer(key={self._key['pk']['S']!r}, limit={self.limit}, window={self.window_seconds})"


def hubspot_search_pacer(client: Any, table: str, secret_id: str) -> SharedPacer:
    """The search budget of the HubSpot account whose token the secret holds, shared by every
    process that searches it (the senders and the read-back poller)."""
    return SharedPacer(
        client,
        table,
        f"hubspot-search#{secret_id}",
        limit=HUBSPOT_SEARCHES_PER_WINDOW,
        window_seconds=HUBSPOT_SEARCH_WINDOW_SECONDS,
    )
