"""Account profiles in DynamoDB: one item per account, the profile stored as a JSON document.

Every write records who made it and which fields it changed (`StoredAccount.changes`). The item
carries a revision number, so two concurrent writers never lose each other's audit entry: the
second one's conditional put fails, re-reads and tries again.

A profile that names a HubSpot company also carries the id as a top-level `hubspot_company_id`,
written by the same put as the profile: the keys-only `hubspot_company` index (ACCOUNTS_COMPANY_INDEX)
answers "which accounts is this company?" for the deal read-back with a Query, never a scan. A put
without the company drops the attribute, and the index entry with it. A profile that names its
company by `hubspot.domain` only gets the id the HubSpot sender finds for it
(`record_resolved_company`), kept by later puts while the domain stays, and indexed the same way.
`put` replaces the profile (PUT /v1/accounts/{id}); `revise` changes part of it from what is
stored (a Segment `group` call's traits), in the same read → conditional write loop, so a revision
is never built on a profile another writer has replaced meanwhile. A revision from an outside source
carries a `SourceMark` (the message id and its time): the item keeps the last one applied per
source, so a redelivered message is recognised and an older one arriving late never undoes a newer.

A child account (`parent_account_id`) carries its parent's id the same way, in the keys-only
`parent` index (ACCOUNTS_PARENT_INDEX): `children_of` answers "which accounts make this family?"
with one Query. Families are one level deep and bounded (MAX_CHILDREN): a write that would make a
child of a child, a parent of a child, an account its own parent or a family of more than
MAX_CHILDREN children is refused (`HierarchyRefused`), with what to do instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
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
from shared.storage.dynamo import is_conditional_failure, unavailable_on_failure
from shared.timestamps import utc_stamp

_ATTEMPTS = 3
# A profile naming its company by domain only carries the domain here (the condition of
# record_resolved_company), and, once the HubSpot sender found it, {domain, company_id} there.
DOMAIN_ATTRIBUTE = "hubspot_domain"
RESOLVED_COMPANY_ATTRIBUTE = "resolved_company"
_PROFILE_FIELDS = set(AccountProfile.model_fields)


class ConcurrentProfileWrites(Exception):
    """Other writers kept changing the profile while this write was being made."""


@dataclass(frozen=True)
class SourceMark:
    """The message of an outside source a revision comes from: its id and its time (RFC 3339 UTC,
    so that text order is time order)."""

    source: str
    message_id: str
    at: str

    @property
    def attribute(self) -> str:
        return f"mark_{self.source}"


class Revision(StrEnum):
    CREATED = "created"  # the account had no profile
    CHANGED = "changed"  # fields changed (an audit entry names them)
    UNCHANGED = "unchanged"  # the profile already said so; only the mark moved
    DUPLICATE = "duplicate"  # this very message was applied already
    STALE = "stale"  # a newer message of the source was applied already: this one changes nothing


# Builds the next profile from the stored one (None: no profile yet); raises to refuse.
Reviser = Callable[[StoredAccount | None], AccountProfile]


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
        stamp = _stamp(now)
        if profile.parent_account_id is not None:
            self._check_family(account_id, profile.parent_account_id)
        for _ in range(_ATTEMPTS):
            item = self._read(account_id)
            previous = StoredAccount.model_validate_json(item["profile"]["S"]) if item else None
            stored = _next_version(account_id, profile, previous, writer, stamp)
            if self._replace(account_id, stored, item):
                return stored, item is None
        raise ConcurrentProfileWrites(account_id)

    def revise(
        self,
        account_id: str,
        reviser: Reviser,
        writer: Writer,
        mark: SourceMark,
        now: datetime | None = None,
    ) -> tuple[Revision, StoredAccount | None]:
        """Change the profile from what is stored, once per message of `mark`'s source, newest wins.

        Whatever `reviser` raises propagates with nothing written (a refused revision never
        half-writes). A profile the revision leaves as it was gets no audit entry.
        """
        stamp = _stamp(now)
        with unavailable_on_failure("account profile"):
            return self._revise(account_id, reviser, writer, mark, stamp)

    def _revise(
        self, account_id: str, reviser: Reviser, writer: Writer, mark: SourceMark, stamp: str
    ) -> tuple[Revision, StoredAccount | None]:
        for _ in range(_ATTEMPTS):
            item = self._read(account_id)
            previous = StoredAccount.model_validate_json(item["profile"]["S"]) if item else None
            last = _mark_of(item, mark)
            if last is not None and last.message_id == mark.message_id:
                return Revision.DUPLICATE, previous
            if last is not None and mark.at < last.at:
                return Revision.STALE, previous
            profile = reviser(previous)
            if previous is not None and not _changed_fields(profile, previous):
                outcome, stored = Revision.UNCHANGED, previous
            else:
                outcome = Revision.CREATED if previous is None else Revision.CHANGED
                stored = _next_version(account_id, profile, previous, writer, stamp)
            if self._replace(account_id, stored, item, mark):
                return outcome, stored
        raise ConcurrentProfileWrites(account_id)

    def _read(self, account_id: str) -> dict[str, Any] | None:
        item: dict[str, Any] | None = self._client.get_item(
            TableName=self._table, Key={"pk": {"S": account_id}}, ConsistentRead=True
        ).get("Item")
        return item

    def _replace(
        self,
        account_id: str,
        stored: StoredAccount,
        item_read: dict[str, Any] | None,
        mark: SourceMark | None = None,
    ) -> bool:
        """Write `stored` if the item is still at the revision read; False when another writer came first.

        Attributes other than the profile (the sources' marks) are kept; `mark` replaces its source's.
        """
        revision_read = int(item_read["revision"]["N"]) if item_read and "revision" in item_read else 0
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
        company_id = stored.hubspot.company_id or _resolved_company(item_read, stored.hubspot.domain)
        if company_id:
            item[ACCOUNTS_COMPANY_INDEX.partition_key] = {"S": company_id}
        if stored.hubspot.domain and not stored.hubspot.company_id:
            item[DOMAIN_ATTRIBUTE] = {"S": stored.hubspot.domain}
        if stored.parent_account_id:
            item[ACCOUNTS_PARENT_INDEX.partition_key] = {"S": stored.parent_account_id}
        try:
            # Attributes written beside the profile (a Segment source's mark) are kept; the index
            # keys follow the profile being written (dropped when it names no company or parent).
            index_keys = {
                ACCOUNTS_COMPANY_INDEX.partition_key,
                ACCOUNTS_PARENT_INDEX.partition_key,
                DOMAIN_ATTRIBUTE,
            }
            kept = {name: value for name, value in (item_read or {}).items() if name not in index_keys}
            mark_attribute = {mark.attribute: _mark_attribute(mark)} if mark else {}
            self._client.put_item(TableName=self._table, Item={**kept, **mark_attribute, **item}, **guard)
        except ClientError as error:
            if is_conditional_failure(error):
                return False
            raise
        return True

    def record_resolved_company(self, account_id: str, domain: str, company_id: str) -> bool:
        """The HubSpot sender found the company the profile names by `domain`: the item carries its id
        in the company index (as if the profile named it), so the deal read-back finds the account.
        Written only while the profile still names that domain and no company id (a put since that
        changed either wins); later puts keep it while the domain stays. False when not written."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": account_id}},
                UpdateExpression="SET #index = :id, #resolved = :resolved",
                ConditionExpression="#domain = :domain AND (attribute_not_exists(#index) OR #index <> :id)",
                ExpressionAttributeNames={
                    "#index": ACCOUNTS_COMPANY_INDEX.partition_key,
                    "#resolved": RESOLVED_COMPANY_ATTRIBUTE,
                    "#domain": DOMAIN_ATTRIBUTE,
                },
                ExpressionAttributeValues={
                    ":id": {"S": company_id},
                    ":domain": {"S": domain},
                    ":resolved": {"M": {"domain": {"S": domain}, "company_id": {"S": company_id}}},
                },
            )
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


def _resolved_company(item: dict[str, Any] | None, domain: str | None) -> str | None:
    """The company id found for `domain` (record_resolved_company), if the item holds one for it."""
    resolved = (item or {}).get(RESOLVED_COMPANY_ATTRIBUTE, {}).get("M")
    if not domain or not resolved or resolved["domain"]["S"] != domain:
        return None
    return str(resolved["company_id"]["S"])


def _stamp(now: datetime | None) -> str:
    return utc_stamp(now or datetime.now(UTC), "seconds")


def _mark_of(item: dict[str, Any] | None, mark: SourceMark) -> SourceMark | None:
    stored = (item or {}).get(mark.attribute, {}).get("M")
    if not stored:
        return None
    return SourceMark(source=mark.source, message_id=stored["message_id"]["S"], at=stored["at"]["S"])


def _mark_attribute(mark: SourceMark) -> dict[str, Any]:
    return {"M": {"message_id": {"S": mark.message_id}, "at": {"S": mark.at}}}


def _changed_fields(profile: AccountProfile, previous: StoredAccount) -> list[str]:
    before = _leaves(previous.model_dump(mode="json", include=_PROFILE_FIELDS))
    after = _leaves(profile.model_dump(mode="json"))
    return sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))


def _next_version(
    account_id: str, profile: AccountProfile, previous: StoredAccount | None, writer: Writer, stamp: str
) -> StoredAccount:
    changed = (
        _changed_fields(profile, previous) if previous else sorted(_leaves(profile.model_dump(mode="json")))
    )
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
