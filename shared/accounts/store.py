"""Account profiles in DynamoDB: one item per account, the profile stored as a JSON document."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.accounts.models import AccountProfile, StoredAccount


class AccountStore:
    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def put(
        self, account_id: str, profile: AccountProfile, now: datetime | None = None
    ) -> tuple[StoredAccount, bool]:
        """Replace the account's profile; True when the account is new."""
        stored = StoredAccount(
            account_id=account_id,
            updated_at=(now or datetime.now(UTC)).isoformat(timespec="seconds").replace("+00:00", "Z"),
            **profile.model_dump(),
        )
        answer = self._client.put_item(
            TableName=self._table,
            Item={"pk": {"S": account_id}, "profile": {"S": stored.model_dump_json()}},
            ReturnValues="ALL_OLD",
        )
        return stored, "Attributes" not in answer

    def get(self, account_id: str) -> StoredAccount | None:
        item = self._client.get_item(TableName=self._table, Key={"pk": {"S": account_id}}).get("Item")
        if not item:
            return None
        return StoredAccount.model_validate_json(item["profile"]["S"])
