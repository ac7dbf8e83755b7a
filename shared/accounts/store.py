"""Account profiles in DynamoDB: one item per account, the profile stored as a JSON document.

Every write records who made it and which fields it changed (`StoredAccount.changes`). The item
carries a revision number, so two concurrent writers never lose each other's audit entry: the
second one's conditional put fails, re-reads and tries again.

A profile that names a HubSpot company also carries the id as a top-level `hubspot_company_id`,
written by the same put as the profile: the keys-only `hubspot_company` index (ACCOUNTS_COMPANY_INDEX)
answers "which accounts is this company?" for the deal read-back with a Query, never a scan. A put
without the company drops the attribute, and the index entry with it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from shared.accounts.models import MAX_CHANGES_KEPT, AccountProfile, ProfileChange, StoredAccount, Writer
from shared.resources import ACCOUNTS_COMPANY_INDEX
from shared.storage.dynamo import is_conditional_failure

_ATTEMPTS = 3
_PROFILE_FIELDS = set(AccountProfile.model_fields)


class ConcurrentProfileWrites(Exception):
    """Other writers kept changing the profile while this write was being made."""


class AccountStore:
    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def put(
        self, account_id: str, profile: AccountProfile, writer: Writer, now: datetime | None = None
    ) -> tuple[StoredAccount, bool]:
        """Replace the account's profile, recording the writer; True when the account is new."""
        stamp = (now or datetime.now(UTC)).isoformat(timespec="seconds").replace("+00:00", "Z")
        for _ in range(_ATTEMPTS):
            item = self._client.get_item(
                TableName=self._table, Key={"pk": {"S": account_id}}, ConsistentRead=True
            ).get("Item")
            previous = StoredAccount.model_validate_json(item["profile"]["S"]) if item else None
            stored = _next_version(account_id, profile, previous, writer, stamp)
            if self._replace(
                account_id, stored, int(item["revision"]["N"]) if item and "revision" in item else 0
            ):
                return stored, item is None
        raise ConcurrentProfileWrites(account_id)

    def _replace(self, account_id: str, stored: StoredAccount, revision_read: int) -> bool:
        """Write `stored` if the item is still at the revision read; False when another writer came first."""
        guard: dict[str, Any] = (
            {
                "ConditionExpression": "revision = :read",
                "ExpressionAttributeValues": {":read": {"N": str(revision_read)}},
            }
            if revision_read
            # No revision yet: a new account, or one written before audit existed.
            else {"ConditionExpression": "attribute_not_exists(revision)"}
        )
        item = {
            "pk": {"S": account_id},
            "profile": {"S": stored.model_dump_json()},
            "revision": {"N": str(revision_read + 1)},
        }
        if stored.hubspot.company_id:
            item[ACCOUNTS_COMPANY_INDEX.partition_key] = {"S": stored.hubspot.company_id}
        try:
            self._client.put_item(TableName=self._table, Item=item, **guard)
        except ClientError as error:
            if is_conditional_failure(error):
                return False
            raise
        return True

    def get(self, account_id: str) -> StoredAccount | None:
        item = self._client.get_item(TableName=self._table, Key={"pk": {"S": account_id}}).get("Item")
        if not item:
            return None
        return StoredAccount.model_validate_json(item["profile"]["S"])

    def accounts_of_company(self, company_id: str) -> list[str]:
        """The ids of the accounts whose profile names this HubSpot company (usually one; none when no
        profile does). One Query of the keys-only index: 0.5 read unit, eventually consistent, so a
        profile written in the last second may not be found yet."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": ACCOUNTS_COMPANY_INDEX.name,
            "KeyConditionExpression": "#company = :company",
            "ExpressionAttributeNames": {"#company": ACCOUNTS_COMPANY_INDEX.partition_key},
            "ExpressionAttributeValues": {":company": {"S": company_id}},
        }
        found: list[str] = []
        while True:
            page = self._client.query(**request)
            found.extend(item["pk"]["S"] for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return sorted(found)
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _next_version(
    account_id: str, profile: AccountProfile, previous: StoredAccount | None, writer: Writer, stamp: str
) -> StoredAccount:
    before = _leaves(previous.model_dump(mode="json", include=_PROFILE_FIELDS)) if previous else {}
    after = _leaves(profile.model_dump(mode="json"))
    changed = sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))
    change = ProfileChange(at=stamp, producer_id=writer.producer_id, key_id=writer.key_id, fields=changed)
    history = [change, *(previous.changes if previous else [])][:MAX_CHANGES_KEPT]
    return StoredAccount(
        account_id=account_id, updated_at=stamp, updated_by=writer, changes=history, **profile.model_dump()
    )


def _leaves(document: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"flags": {"churn_risk": true}} → {"flags.churn_risk": true}; lists and scalars are leaves."""
    flat: dict[str, Any] = {}
    for key, value in document.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat |= _leaves(value, f"{path}.")
        elif value is not None and value != {}:
            flat[path] = value
    return flat
