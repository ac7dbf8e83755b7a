"""Account profiles in DynamoDB: one item per account, the profile stored as a JSON document.

Every write records who made it and which fields it changed (`StoredAccount.changes`). The item
carries a revision number, so two concurrent writers never lose each other's audit entry: the
second one's conditional put fails, re-reads and tries again.

A profile that names a HubSpot company also carries the id as a top-level `hubspot_company_id`,
written by the same put as the profile: the keys-only `hubspot_company` index (ACCOUNTS_COMPANY_INDEX)
answers "which accounts is this company?" for the deal read-back with a Query, never a scan. A put
without the company drops the attribute, and the index entry with it.

A child account (`parent_account_id`) carries its parent's id the same way, in the keys-only
`parent` index (ACCOUNTS_PARENT_INDEX): `children_of` answers "which accounts make this family?"
with one Query. Families are one level deep and bounded (MAX_CHILDREN): a write that would make a
child of a child, a parent of a child, an account its own parent or a family of more than
MAX_CHILDREN children is refused (`HierarchyRefused`), with what to do instead.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from shared.accounts.models import (
    MAX_CHANGES_KEPT,
    MAX_CHILDREN,
    AccountProfile,
    ProfileChange,
    StoredAccount,
    Writer,
)
from shared.resources import ACCOUNTS_COMPANY_INDEX, ACCOUNTS_PARENT_INDEX, IndexSpec
from shared.storage.dynamo import is_conditional_failure

_ATTEMPTS = 3
_PROFILE_FIELDS = set(AccountProfile.model_fields)


class ConcurrentProfileWrites(Exception):
    """Other writers kept changing the profile while this write was being made."""


class HierarchyRefused(Exception):
    """The profile's parent_account_id would make a family the rules cannot read (the message says why)."""


class AccountStore:
    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def put(
        self, account_id: str, profile: AccountProfile, writer: Writer, now: datetime | None = None
    ) -> tuple[StoredAccount, bool]:
        """Replace the account's profile, recording the writer; True when the account is new."""
        stamp = (now or datetime.now(UTC)).isoformat(timespec="seconds").replace("+00:00", "Z")
        if profile.parent_account_id is not None:
            self._check_family(account_id, profile.parent_account_id)
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
        if stored.parent_account_id:
            item[ACCOUNTS_PARENT_INDEX.partition_key] = {"S": stored.parent_account_id}
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
        return self._keys_of(ACCOUNTS_COMPANY_INDEX, company_id)

    def children_of(self, parent_id: str) -> list[str]:
        """The ids of the accounts whose profile names this parent, sorted (none for a standalone
        account). One Query of the keys-only `parent` index: 0.5 read unit for up to ~1,000 children
        (keys only), eventually consistent like accounts_of_company."""
        return self._keys_of(ACCOUNTS_PARENT_INDEX, parent_id)

    def _check_family(self, account_id: str, parent_id: str) -> None:
        """Refuse a parent that would make the family deeper than one level or larger than the bound."""
        if parent_id == account_id:
            raise HierarchyRefused("parent_account_id names the account itself: leave it out for a parent")
        parent = self.get(parent_id)
        if parent is not None and parent.parent_account_id is not None:
            raise HierarchyRefused(
                f"parent_account_id {parent_id!r} is itself a child of {parent.parent_account_id!r}: "
                f"families are one level deep; name {parent.parent_account_id!r} as the parent instead"
            )
        own = self.children_of(account_id)
        if own:
            raise HierarchyRefused(
                f"the account is the parent of {len(own)} accounts (e.g. {own[0]!r}): families are one level "
                "deep; clear their parent_account_id first, or give this account none"
            )
        siblings = [child for child in self.children_of(parent_id) if child != account_id]
        if len(siblings) >= MAX_CHILDREN:
            raise HierarchyRefused(
                f"{parent_id!r} already has {len(siblings)} children, the most a family may have "
                f"({MAX_CHILDREN}): a family-scope rule reads every member at each evaluation"
            )

    def _keys_of(self, index: IndexSpec, value: str) -> list[str]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": index.name,
            "KeyConditionExpression": "#key = :value",
            "ExpressionAttributeNames": {"#key": index.partition_key},
            "ExpressionAttributeValues": {":value": {"S": value}},
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
