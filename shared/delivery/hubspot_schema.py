"""The task custom property that carries a play's id, created once per HubSpot portal.

`upswing hubspot create-property` calls this. With the property, the sender looks a task up with
an EQ filter on it, which does not depend on how HubSpot's search tokenizes the task body (the body
marker stays as the fallback). Creating a property needs a token whose app has the schema write
scope HubSpot asks for on POST /crm/v3/properties/tasks; the sender's own token does not need it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from shared.delivery.hubspot import PLAY_ID_PROPERTY

PROPERTIES_PATH = "/crm/v3/properties/tasks"


def play_id_property_definition(name: str = PLAY_ID_PROPERTY) -> dict[str, Any]:
    """The property as HubSpot's properties API takes it: a single-line text, hidden from forms."""
    return {
        "name": name,
        "label": "Upswing play id",
        "description": "Set by Upswing on the tasks it creates: the play's id, so a retry finds the task.",
        "groupName": "task_information",
        "type": "string",
        "fieldType": "text",
        "formField": False,
    }


@dataclass(frozen=True)
class PropertyOutcome:
    created: bool  # False: it existed already
    status: int
    message: str


class PropertyError(Exception):
    """HubSpot refused to create the property; its message (and correlationId) say why."""


def create_play_id_property(
    http: httpx.Client, base_url: str, token: str, name: str = PLAY_ID_PROPERTY
) -> PropertyOutcome:
    """Create the property; an existing one (409) is fine. Anything else raises PropertyError."""
    response = http.post(
        base_url.rstrip("/") + PROPERTIES_PATH,
        json=play_id_property_definition(name),
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
    )
    if response.status_code in (200, 201):
        return PropertyOutcome(True, response.status_code, f"created the task property {name!r}")
    if response.status_code == 409:
        return PropertyOutcome(False, 409, f"the task property {name!r} exists already")
    try:
        document = response.json()
    except ValueError:
        document = {}
    details = document if isinstance(document, dict) else {}
    text = str(details.get("message") or response.text or "")[:1000].replace(token, "[redacted]")
    hint = ""
    if response.status_code in (401, 403):
        hint = " (the token needs the schema write scope for tasks: HubSpot's answer names the missing scope)"
    where = details.get("context") or details.get("errors")
    raise PropertyError(
        f"HubSpot answered {response.status_code} {details.get('category', '')}: {text}{hint} "
        f"[correlationId {details.get('correlationId')}, context {where}]"
    )
