from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from shared.currencies import CurrencyCode
from shared.delivery.hubspot import DealSearch, HubSpotSettings
from shared.outcomes.models import OutcomeKind
from shared.readback.deals import NEW_BUSINESS, DealRules
from shared.resources import (
    ACCOUNTS_TABLE,
    DELIVERIES_TABLE,
    HUBSPOT_SECRET_ENV,
    OUTCOMES_TABLE,
    PLAYS_TABLE,
)
from shared.settings import RetentionDays
from shared.timezones import PORTAL_TIMEZONE_ENV

# The poller's share of the app's burst limit (batch reads only: searches have their own limit).
# Two senders take half of the limit each and pause on X-HubSpot-RateLimit-Remaining, which leaves
# room for these few requests.
POLLER_REQUESTS_PER_10S = 10
_PROPERTY_NAME = r"^[a-z][a-z0-9_]{0,99}$"
# A HubSpot internal value (a pipeline id, a deal stage id, a dealtype option): no commas or spaces.
_INTERNAL_VALUE = r"^[A-Za-z0-9_.:-]{1,100}$"


class HubSpotPollerSettings(BaseModel):
    plays_table: str = Field(min_length=1, validation_alias=PLAYS_TABLE.env_var)
    deliveries_table: str = Field(min_length=1, validation_alias=DELIVERIES_TABLE.env_var)
    secret_id: str = Field(min_length=1, validation_alias=HUBSPOT_SECRET_ENV)
    retention_days: RetentionDays
    base_url: str = Field(default=HubSpotSettings.base_url, validation_alias="HUBSPOT_BASE_URL")
    tasks_path: str = Field(default=HubSpotSettings.tasks_path, validation_alias="HUBSPOT_TASKS_PATH")
    portal_timezone: str = Field(default="UTC", validation_alias=PORTAL_TIMEZONE_ENV)
    play_id_property: str | None = Field(
        default=None, pattern=_PROPERTY_NAME, validation_alias="HUBSPOT_PLAY_ID_PROPERTY"
    )
    # An open task neither changed nor checked for this long is batch-read (is it deleted?).
    unseen_after_minutes: int = Field(default=360, ge=0, validation_alias="HUBSPOT_UNSEEN_AFTER_MINUTES")

    # Closed-won deals → outcomes (shared/readback/deals.py). Off: only tasks are read back (and the
    # app needs no deals / companies scope).
    read_deals: bool = Field(default=True, validation_alias="HUBSPOT_READ_DEALS")
    accounts_table: str | None = Field(default=None, min_length=1, validation_alias=ACCOUNTS_TABLE.env_var)
    outcomes_table: str | None = Field(default=None, min_length=1, validation_alias=OUTCOMES_TABLE.env_var)
    deals_path: str = Field(default=HubSpotSettings.deals_path, validation_alias="HUBSPOT_DEALS_PATH")
    associations_path: str = Field(
        default=HubSpotSettings.associations_path, validation_alias="HUBSPOT_ASSOCIATIONS_PATH"
    )
    # Comma-separated deal stage ids that mean closed-won (empty: HubSpot's own hs_is_closed_won).
    deal_closed_won_stages: tuple[str, ...] = Field(
        default=(), validation_alias="HUBSPOT_DEAL_CLOSED_WON_STAGES"
    )
    # Comma-separated pipeline ids whose deals are read (empty: every pipeline).
    deal_pipelines: tuple[str, ...] = Field(default=(), validation_alias="HUBSPOT_DEAL_PIPELINES")
    # A deal property naming the outcome kind; a deal without a value takes the default kind.
    deal_kind_property: str | None = Field(
        default=None, pattern=_PROPERTY_NAME, validation_alias="HUBSPOT_DEAL_KIND_PROPERTY"
    )
    deal_default_kind: OutcomeKind = Field(
        default=OutcomeKind.PLAN_UPGRADE, validation_alias="HUBSPOT_DEAL_DEFAULT_KIND"
    )
    # Comma-separated dealtype values that are not expansions (empty: none excluded).
    deal_excluded_types: tuple[str, ...] = Field(
        default=(NEW_BUSINESS,), validation_alias="HUBSPOT_DEAL_EXCLUDED_TYPES"
    )
    # The portal's company currency: the amount's currency for deals without deal_currency_code.
    company_currency: CurrencyCode = Field(default="USD", validation_alias="HUBSPOT_COMPANY_CURRENCY")

    @field_validator("play_id_property", "deal_kind_property", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return value or None

    @field_validator("deal_closed_won_stages", "deal_pipelines", "deal_excluded_types", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("deal_closed_won_stages", "deal_pipelines", "deal_excluded_types")
    @classmethod
    def _internal_values(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            if not re.fullmatch(_INTERNAL_VALUE, value):
                raise ValueError(
                    f"{value!r} is not a HubSpot internal value (an id like 'closedwon' or '1234567', "
                    "comma-separated, no spaces inside)"
                )
        return values

    @model_validator(mode="after")
    def _deal_tables(self) -> HubSpotPollerSettings:
        if self.read_deals and not (self.accounts_table and self.outcomes_table):
            raise ValueError(
                f"reading deals back needs {ACCOUNTS_TABLE.env_var} and {OUTCOMES_TABLE.env_var} "
                "(or HUBSPOT_READ_DEALS=false)"
            )
        return self

    def deal_rules(self) -> DealRules:
        return DealRules(
            default_kind=self.deal_default_kind,
            kind_property=self.deal_kind_property,
            excluded_types=frozenset(self.deal_excluded_types),
            default_currency=self.company_currency,
            search=DealSearch(
                closed_won_stages=self.deal_closed_won_stages,
                pipelines=self.deal_pipelines,
                properties=(self.deal_kind_property,) if self.deal_kind_property else (),
            ),
        )

    def client_settings(self) -> HubSpotSettings:
        return HubSpotSettings(
            base_url=self.base_url,
            tasks_path=self.tasks_path,
            deals_path=self.deals_path,
            associations_path=self.associations_path,
            requests_per_window=POLLER_REQUESTS_PER_10S,
            window_seconds=10.5,
            portal_timezone=self.portal_timezone,
            play_id_property=self.play_id_property,
        )
