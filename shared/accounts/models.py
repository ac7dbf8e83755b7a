"""The account profile that rules and routing need, as PUT /v1/accounts/{account_id} takes it."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

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
    arr: Decimal | None = Field(
        default=None, ge=0, max_digits=20, decimal_places=2, description="Annual revenue."
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
    updated_at: str
    updated_by: Writer | None = Field(
        default=None, description="The last writer (absent before audit existed)."
    )
    changes: list[ProfileChange] = Field(
        default_factory=list,
        description=f"The last {MAX_CHANGES_KEPT} writes, newest first: who set do_not_contact, and when.",
    )
