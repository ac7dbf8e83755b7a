"""Instants as Upswing writes them: RFC 3339 in UTC, with a `Z`.

Every stored, answered and logged instant goes through `utc_stamp`, so `2026-11-23T12:00:00Z` and
`2026-11-23T12:00:00+00:00` never both appear (they sort and compare differently as text).
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc_stamp(moment: datetime, timespec: str = "auto") -> str:
    """`moment` in UTC, `timespec` as for `datetime.isoformat`, the offset written `Z`. A naive
    moment is written as it stands, without an offset: nothing here guesses its zone (and it is
    never converted from the machine's local time)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")
