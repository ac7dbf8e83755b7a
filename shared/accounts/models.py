"""The account profile that rules and routing need, as PUT /v1/accounts/{account_id} takes it."""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    WithJsonSchema,
)

from shared.events.contract import MAX_ABS_VALUE
from shared.events.models import AccountId, MetricName

Label = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
# Deliberately loose: the mail system is the judge of deliverability, we only catch obvious slips.
# Whitespace is spelled out rather than written \s, which means three things: Python counts
# \x1c-\x1f, Rust (pydantic) and Python count \x85, ECMA-262 (JSON Schema) counts \ufeff. The
# document's pattern must mean the same to every engine that reads it: this is their union.
_WHITESPACE = r"\t\n\v\f\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_NOT_AT_OR_SPACE = rf"[^@{_WHITESPACE}]"
Email = Annotated[
    str,
    StringConstraints(
        pattern=rf"^{_NOT_AT_OR_SPACE}+@{_NOT_AT_OR_SPACE}+\.{_NOT_AT_OR_SPACE}+$", max_length=254
    ),
]
HubSpotId = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,20}$")]
# A company's web domain as HubSpot keeps it in the company's `domain` property: a host name, no
# scheme, path or port ("acme.com", "eu.acme.co.uk"). Letters of either case are accepted (the
# document's pattern says so, for every reader); it is stored in lower case, as HubSpot compares it.
DOMAIN_PATTERN = r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"


def _domain(value: Any) -> Any:
    """Say what a domain looks like rather than quote the pattern (the constraints still check it)."""
    if isinstance(value, str) and not re.fullmatch(DOMAIN_PATTERN, value):
        raise ValueError("must be a web domain like acme.com: no scheme (https://), path, port or spaces")
    return value


Domain = Annotated[
    str,
    StringConstraints(pattern=DOMAIN_PATTERN, max_length=253),
    BeforeValidator(_domain),
    AfterValidator(str.lower),
]


# Bounds no real account reaches (the largest employer has about 2.3 million people): a number
# beyond them is a unit or encoding mistake, caught here rather than silently calibrating rules.
MAX_EMPLOYEES = 10_000_000
MAX_PLAN_TIER = 1_000
# Writes remembered per profile (the audit trail stays inside one DynamoDB item).
MAX_CHANGES_KEPT = 50
# Children per parent account (`parent_account_id`): a family is read whole by every evaluation of a
# family-scope trigger (docs/rules.md, "Account families"), so its size is the read's bound.
MAX_CHILDREN = 100


def _iso_day(value: Any) -> Any:
    """A date as "YYYY-MM-DD" only: pydantic would also read 0 as 1970-01-01."""
    if isinstance(value, date) and not isinstance(value, datetime):  # already a day (a stored profile)
        return value
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise ValueError("must be a date string like 2027-03-31")
    return value


Day = Annotated[date, BeforeValidator(_iso_day)]


def _whole(value: Any) -> Any:
    """A JSON integer, also written 12.0 (JSON Schema's integer); never a string or a boolean."""
    if isinstance(value, bool | str):
        raise ValueError("must be a whole number (a JSON number, not a string or a boolean)")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# The bounds go inside, before the validator: outside it, pydantic writes them into the JSON
# Schema as "ge"/"le", which no JSON Schema reader knows.
Employees = Annotated[int, Field(ge=0, le=MAX_EMPLOYEES), BeforeValidator(_whole)]
PlanTier = Annotated[int, Field(ge=0, le=MAX_PLAN_TIER), BeforeValidator(_whole)]


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
    if abs(float(value)) > MAX_ARR:  # before rounding: a cent of 1e30 has more digits than Decimal keeps
        raise ValueError(f"must be at most {MAX_ARR:g} in magnitude")
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
    tier: PlanTier | None = Field(default=None, description="Rank among plans; the highest is the top tier.")
    top_tier: StrictBool = Field(default=False, description="True when no upgrade exists above this plan.")
    limits: dict[
        MetricName, Annotated[float, Field(strict=True, ge=0, le=MAX_ABS_VALUE, allow_inf_nan=False)]
    ] = Field(
        default_factory=dict,
        max_length=100,
        description="Plan limits by metric, e.g. {seats: 50, api_calls: 1000000}.",
    )


class Owner(_Strict):
    name: str | None = Field(default=None, max_length=256)
    email: Email | None = Field(
        default=None,
        description="Enough for a HubSpot task too: without hubspot_owner_id, the HubSpot sender finds the "
        "owner by this e-mail address (HubSpot's Owners API) before the first task.",
    )
    hubspot_owner_id: HubSpotId | None = Field(
        default=None, description="The HubSpot owner id; when given, it wins over the e-mail address."
    )


class HubSpotRefs(_Strict):
    company_id: HubSpotId | None = Field(
        default=None, description="The HubSpot company id; when given, it wins over the domain."
    )
    domain: Domain | None = Field(
        default=None,
        description="The company's web domain (e.g. acme.com: no scheme, path or port), instead of "
        "company_id: the HubSpot sender finds the one company with this domain before the first task "
        "(none or several: the task is not associated, and the play says why).",
    )
    contact_id: HubSpotId | None = None
    deal_id: HubSpotId | None = None


class Flags(_Strict):
    # JSON true or false only: a flag that mutes or re-routes plays is never guessed from 0 or "yes".
    do_not_contact: StrictBool = False
    open_expansion_opportunity: StrictBool = False
    renewal_in_negotiation: StrictBool = False
    churn_risk: StrictBool = False


class AccountProfile(_Strict):
    """Everything is optional but the name: a partial profile still lets rules run."""

    name: str = Field(min_length=1, max_length=256)
    segment: Label | None = Field(default=None, description="e.g. smb, mid-market, enterprise.")
    industry: Label | None = None
    employees: Employees | None = None
    plan: Plan | None = None
    arr: Money | None = Field(
        default=None,
        description="Annual revenue: a number (kept to the cent) or a decimal string like '48000.50'.",
    )
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = "USD"
    renewal_date: Day | None = None
    created_at: Day | None = Field(
        default=None, description="The day the account became a customer (YYYY-MM-DD): account_age in rules."
    )
    owners: dict[Label, Owner] = Field(
        default_factory=dict, max_length=20, description="Owners by role: csm, ae, ..."
    )
    hubspot: HubSpotRefs = Field(default_factory=HubSpotRefs)
    flags: Flags = Field(default_factory=Flags)
    parent_account_id: AccountId | None = Field(
        default=None,
        description="The parent account (one level: a parent has no parent), for rules with scope: family; "
        f"at most {MAX_CHILDREN} children per parent.",
    )


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
    account_id: AccountId
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
