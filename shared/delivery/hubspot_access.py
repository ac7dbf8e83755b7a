"""A HubSpot client as every function that calls HubSpot builds it (the senders, the read-back
poller): the token read from its secret (and dropped when HubSpot refuses it), and the search
budget shared with every other process that searches the same HubSpot account."""

from __future__ import annotations

from typing import Any

from shared.delivery.hubspot import HubSpotClient, HubSpotSettings
from shared.delivery.secrets import CachedSecret
from shared.delivery.shared_pacer import hubspot_search_pacer


def hubspot_client(
    settings: HubSpotSettings, secret_id: str, deliveries_table: str, *, secrets: Any, dynamodb: Any
) -> tuple[HubSpotClient, CachedSecret]:
    """The client, and the token it reads (the sender also checks the secret while plays are held)."""
    token = CachedSecret(secrets, secret_id)
    client = HubSpotClient(
        settings,
        token,
        forget_token=token.forget,
        search_pacer=hubspot_search_pacer(dynamodb, deliveries_table, secret_id),
    )
    return client, token
