"""An outcome as producers send it (POST /v1/outcomes, or `outcome` on the bus), and the answers.

An outcome is what became of an account commercially: it expanded (more seats, a higher plan, an
add-on, a cross-sell) or shrank (a contraction, churn). Outcomes are what triggers are measured
against (docs/api.md, "Outcomes").
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from shared.accounts.models import Label, Money
from shared.currencies import CurrencyCode
from shared.events.contract import MAX_EVENTS_PER_REQUEST
from shared.events.models import AccountId, EventTime, Identifier


class OutcomeKind(StrEnum):
    SEAT_EXPANSION = "seat_expansion"
    PLAN_UPGRADE = "plan_upgrade"
    ADD_ON = "add_on"
    CROSS_SELL = "cross_sell"
    CONTRACTION = "contraction"
    CHURN = "churn"

    @property
    def is_expansion(self) -> bool:
        return self not in (OutcomeKind.CONTRACTION, OutcomeKind.CHURN)


def _not_negative(value: Any) -> Any:
    """A loss is stated by its kind, not by a sign: say so instead of a bare "must be >= 0"."""
    negative = (isinstance(value, int | float) and not isinstance(value, bool) and value < 0) or (
        isinstance(value, str) and value.lstrip().startswith("-")
    )
    if negative:
        raise ValueError(
            "must be 0 or more: a contraction or churn is sent as the positive size of the loss "
            "(the kind says which way it went)"
        )
    return value


def _to_the_cent(value: Decimal) -> Decimal:
    # "12.5" and 12.5 are one amount: stored, answered and fingerprinted as "12.50".
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)


# Money: a JSON number (rounded to the cent) or a decimal string with at most two decimals, 0 to 1e15.
Amount = Annotated[Money, AfterValidator(_to_the_cent), BeforeValidator(_not_negative)]


class AccountOutcome(BaseModel):
    """One commercial outcome of an account. Unknown fields are rejected, as for events."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    outcome_id: Identifier = Field(
        description="Producer-unique id (a billing change id, a CRM deal id...): the deduplication key "
        "within an account."
    )
    account_id: AccountId = Field(
        description="The account the outcome belongs to. Need not have a profile yet (docs/api.md)."
    )
    kind: OutcomeKind = Field(
        description="seat_expansion, plan_upgrade, add_on, cross_sell (expansions); contraction, churn."
    )
    occurred_at: EventTime = Field(description="RFC 3339 time with a timezone: when the outcome took effect.")
    amount: Amount = Field(
        description="The change in recurring revenue, 0 or more: a number (kept to the cent) or a decimal "
        "string like '4800.50'. A contraction or churn gives the positive size of the loss."
    )
    currency: CurrencyCode = Field(description="ISO 4217 code of the amount's currency, e.g. USD.")
    source: Label = Field(
        description="Where the outcome was recorded, a lower-case label: billing, stripe, hubspot, manual..."
    )
    deal_id: Identifier | None = Field(default=None, description="The CRM deal behind the outcome, if any.")

    @property
    def item_id(self) -> str:
        return self.outcome_id

    def fingerprint(self) -> str:
        """A short digest of the content: tells a true resend from a reused outcome id."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]


class StoredOutcome(BaseModel):
    """An outcome as kept (read back without the input rules, which may tighten later)."""

    outcome_id: str
    account_id: str
    kind: str
    occurred_at: datetime
    amount: Decimal
    currency: str
    source: str
    deal_id: str | None = None
    producer: str = Field(description="Who sent it: the key's producer, or eventbridge:<source>.")
    channel: str
    received_at: str


class OutcomeRejection(BaseModel):
    index: int = Field(description="Position of the outcome in the request's outcomes array.")
    outcome_id: str | None = Field(description="The outcome's id when it could be read.")
    errors: list[str] = Field(description="What is wrong, one plain sentence per problem.")


class OutcomesResponse(BaseModel):
    accepted: int = Field(description="Outcomes stored for the first time.")
    duplicates: int = Field(
        description="Outcomes whose outcome_id was already accepted with the same content."
    )
    rejected: list[OutcomeRejection] = Field(description="Outcomes not stored, with the reasons.")


class OutcomeBatch(BaseModel):
    """The request body of POST /v1/outcomes (documentation model: outcomes are validated one by one)."""

    model_config = ConfigDict(extra="forbid")

    outcomes: list[AccountOutcome] = Field(min_length=1, max_length=MAX_EVENTS_PER_REQUEST)


class AccountOutcomes(BaseModel):
    """GET /v1/accounts/{account_id}/outcomes."""

    account_id: str
    outcomes: list[StoredOutcome] = Field(description="Every outcome kept, the most recent first.")
