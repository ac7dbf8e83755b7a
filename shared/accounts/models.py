"""The account profile that rules and routing need, as PUT /v1/accounts/{account_id} takes it."""

from __future__ import annotations

import math
import re
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, WithJsonSchema

from shared.events.contract import MAX_ABS_VALUE
from shared.events.models import Identifier, MetricName

Label = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
# Deliberately loose: the mail system is the judge of deliverability, we only catch obvious slips.
Email = Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)]
HubSpotId = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,20}$")]


# Bounds no real account reaches (the largest employer has about 2.3 million people): a number
# beyond them is a unit or encoding mistake, caught here rather than silently calibrating rules.
MAX_EMPLOYEES = 10_000_000
MAX_PLAN_TIER = 1_000
# Writes remembered per profile (the audit trail stays inside one DynamoDB item).
MAX_CHANGES_KEPT = 50


MAX_ARR = 1e15


MONEY_PATTERN = r"^[0-9]{1,15}(\.[0-9]{1,2})?$"


def _money(value: Any) -> Any:
    """A JSON number rounded to the cent, or a decimal string with at most two decimals."""
    if isinstance(value, str):
        if not re.fullmatch(MONEY_PATTERN, value):
            raise ValueError("as a string must be a plain decimal like '48000.50' (at most 2 decimals)")
        return Decimal(value)
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError("must be a number, e.g. 120000 or 120000.50, or a decimal string")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number")
    return Decimal(str(value)).quantize(_CENT, rounding=ROUND_HALF_EVEN)


_CENT = Decimal("0.01")
Money = Annotated[
    Decimal,
    BeforeValidator(_money),
    Field(ge=0, le=MAX_ARR),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": MAX_ARR},
                {"type": "string", "pattern": MONEY_PATTERN},
            ]
        },
        mode="validation",
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Plan(_Strict):
    name: str = Field(min_length=1, max_length=128, description="The plan's name, e.g. Growth.")
    tier: int | None = Field(
        default=None, ge=0, le=MAX_PLAN_TIER, description="Rank among plans; the highest is the top tier."
    )
    top_tier: bool = Field(default=False, description="True when no upgrade exists above this plan.")
    limits: dict[MetricName, Annotated[float, Field(ge=0, le=MAX_ABS_VALUE, allow_inf_nan=False)]] = Field(
        default_factory=dict,
        max_length=100,
        description="Plan limits by metric, e.g. {seats: 50, api_calls: 1000000}.",
    )


class Owner(_Strict):
    name: str | None = Field(default=None, max_length=256)
    email: Email | None = None
    hubspot_owner_id: HubSpotId | None = None


class HubSpotRefs(_Strict):
    company_id: HubSpotId | None = None
    contact_id: HubSpotId | None = None
    deal_id: HubSpotId | None = None


class Flags(_Strict):
    do_not_contact: bool = False
    open_expansion_opportunity: bool = False
    renewal_in_negotiation: bool = False
    churn_risk: bool = False


class AccountProfile(_Strict):
    """Everything is optional but the name: a partial profile still lets rules run."""

    name: str = Field(min_length=1, max_length=256)
    segment: Label | None = Field(default=None, description="e.g. smb, mid-market, enterprise.")
    industry: Label | None = None
    employees: int | None = Field(default=None, ge=0, le=MAX_EMPLOYEES)
    plan: Plan | None = None
    arr: Money | None = Field(
        default=None,
        description="Annual revenue: a number (kept to the cent) or a decimal string like '48000.50'.",
    )
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = "USD"
    renewal_date: date | None = None
    owners: dict[Label, Owner] = Field(
        default_factory=dict, max_length=20, description="Owners by role: csm, ae, ..."
    )
    hubspot: HubSpotRefs = Field(default_factory=HubSpotRefs)
    flags: Flags = Field(default_factory=Flags)


class Writer(BaseModel):
    """Who wrote a profile: the producer and the key the authorizer verified."""

    producer_id: str
    key_id: str


class ProfileChange(BaseModel):
    """One write of the profile. Field paths only: the values may be personal data (e-mail addresses)."""

    at: str = Field(description="When, RFC 3339 UTC.")
    producer_id: str
    key_id: str
    fields: list[str] = Field(
        description="What this write changed, e.g. flags.do_not_contact, owners.csm.email."
    )


class StoredAccount(AccountProfile):
    account_id: Identifier
    # Stored and answered as a decimal string ("120000.50"), read back as such: the input rule
    # (a JSON number) is for what producers send.
    arr: Decimal | None = Field(default=None, description="Annual revenue, to the cent, as a decimal string.")
    updated_at: str
    updated_by: Writer | None = Field(
        default=None, description="The last writer (absent before audit existed)."
    )
    changes: list[ProfileChange] = Field(
        default_factory=list,
        description=f"The last {MAX_CHANGES_KEPT} writes, newest first: who set do_not_contact, and when.",
    )
