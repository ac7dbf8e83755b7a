"""The business calendar's time zone: the HubSpot portal's (Settings, Account defaults).

Tasks fall due at an hour there, HubSpot's daily limit resets at its midnight, and the router counts
an SLA's business days from the date there, so a play routed on Sunday evening UTC counts from
Monday in Sydney.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# The environment variable every function that needs the calendar reads (infra sets it from the
# `hubspot_portal_timezone` context value).
PORTAL_TIMEZONE_ENV = "HUBSPOT_PORTAL_TIMEZONE"


def portal_zone(name: str) -> ZoneInfo:
    """The portal's time zone by its IANA name ("Europe/Paris"), or a ValueError that says what to set."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}: give the HubSpot portal's time zone as an IANA name, "
            "such as 'America/New_York' or 'Europe/Paris' (or 'UTC')"
        ) from None
