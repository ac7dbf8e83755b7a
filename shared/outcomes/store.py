"""Outcomes in DynamoDB: one item per (account_id, outcome_id), written once.

The write is the same conditional put as the event ledger's (shared/intake.py), so a resend, an
overlapping batch or the other channel finds the item there and is a duplicate; a reused id with
other content is told apart by the fingerprint. Keys: pk = account_id, sk = "outcome#<outcome_id>"
(the prefix leaves room for per-account summaries in the same partition).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from shared.intake import Channel, ConditionalLedger
from shared.outcomes.models import AccountOutcome, StoredOutcome
from shared.storage.dynamo import deserialize
from shared.timestamps import utc_stamp

SORT_KEY_PREFIX = "outcome#"


def outcome_item(
    outcome: AccountOutcome, producer: str, channel: Channel, received_at: datetime, retention_days: int
) -> dict[str, Any]:
    expires = outcome.occurred_at + timedelta(days=retention_days + 1)
    item: dict[str, Any] = {
        "pk": outcome.account_id,
        "sk": SORT_KEY_PREFIX + outcome.outcome_id,
        "outcome_id": outcome.outcome_id,
        "kind": outcome.kind.value,
        "occurred_at": utc_stamp(outcome.occurred_at, "microseconds"),
        "amount": outcome.amount,
        "currency": outcome.currency,
        "source": outcome.source,
        "producer": producer,
        "channel": channel.value,
        "received_at": utc_stamp(received_at, "milliseconds"),
        "fingerprint": outcome.fingerprint(),
        "expires_at": int(expires.timestamp()),
    }
    if outcome.deal_id is not None:
        item["deal_id"] = outcome.deal_id
    return item


class OutcomeStore(ConditionalLedger):
    """The outcomes table: written by the intake (put_new), read per account."""

    def outcomes(self, account_id: str) -> list[StoredOutcome]:
        """Every outcome kept for the account, the most recent (by occurred_at) first.

        One Query (1 read unit per 4 KB, eventually consistent: ~0.5 unit per 20 outcomes); an
        account has a handful of outcomes a year, so the whole partition is read and sorted here.
        """
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :account AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":account": {"S": account_id}, ":prefix": {"S": SORT_KEY_PREFIX}},
        }
        found: list[StoredOutcome] = []
        while True:
            page = self._client.query(**request)
            for raw in page.get("Items", []):
                item = deserialize(raw)
                found.append(StoredOutcome.model_validate({**item, "account_id": item["pk"]}))
            if "LastEvaluatedKey" not in page:
                break
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return sorted(found, key=lambda outcome: (outcome.occurred_at, outcome.outcome_id), reverse=True)
