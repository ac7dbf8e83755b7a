"""A secret read from Secrets Manager once and kept for a few minutes, never logged.

The HubSpot token is read on the sender's first request and again after `max_age`, so a
rotated token is picked up within minutes without a redeploy; at once when HubSpot refuses the
cached one (`forget`). The same holds for the Slack bot token and signing secret and the webhooks'
signing secrets: each is stored bare, or as a JSON object with one named key.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any


class CachedSecret:
    def __init__(
        self,
        client: Any,
        secret_id: str,
        max_age: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        key: str = "token",
        what: str = "the HubSpot secret is empty: store the private-app token",
    ) -> None:
        self._client = client
        self._key = key
        self._what = what
        self._secret_id = secret_id
        self._max_age = max_age
        self._clock = clock
        self._value: str | None = None
        self._read_at = 0.0

    def __call__(self) -> str:
        if self._value is None or self._clock() - self._read_at > self._max_age:
            answer = self._client.get_secret_value(SecretId=self._secret_id)
            self._value = _token(answer.get("SecretString") or "", self._key, self._what)
            self._read_at = self._clock()
        return self._value

    def forget(self) -> None:
        """Drop the cached value: the next call reads the secret again."""
        self._value = None

    def __repr__(self) -> str:
        return f"CachedSecret(secret_id={self._secret_id!r})"


def _token(secret: str, key: str, what: str) -> str:
    """The secret as stored: the bare value, or a JSON object with the value under `key`."""
    text = secret.strip()
    if text.startswith("{"):
        try:
            text = str(json.loads(text).get(key) or "").strip()
        except (ValueError, AttributeError):
            text = ""
    if not text:
        raise ValueError(f'{what} (or {{"{key}": ...}})')
    return text
