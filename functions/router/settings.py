from pydantic import BaseModel, Field, field_validator

from shared.resources import (
    ACCOUNTS_TABLE,
    COUNTERS_TABLE,
    EMAIL_QUEUE,
    EVENT_BUS_ENV,
    FIRINGS_TABLE,
    HUBSPOT_QUEUE,
    PLAYS_TABLE,
    SLACK_QUEUE,
    WEBHOOK_QUEUE,
)
from shared.routing.watches import AUTO_CLOSE_PER_RUN
from shared.settings import RetentionDays, RulesetPath
from shared.timezones import PORTAL_TIMEZONE_ENV, portal_zone


class RouterSettings(BaseModel):
    plays_table: str = Field(min_length=1, validation_alias=PLAYS_TABLE.env_var)
    accounts_table: str = Field(min_length=1, validation_alias=ACCOUNTS_TABLE.env_var)
    hubspot_queue_url: str = Field(min_length=1, validation_alias=HUBSPOT_QUEUE.env_var)
    email_queue_url: str = Field(min_length=1, validation_alias=EMAIL_QUEUE.env_var)
    slack_queue_url: str = Field(min_length=1, validation_alias=SLACK_QUEUE.env_var)
    webhook_queue_url: str = Field(min_length=1, validation_alias=WEBHOOK_QUEUE.env_var)
    event_bus_name: str = Field(min_length=1, validation_alias=EVENT_BUS_ENV)
    ruleset_path: RulesetPath
    retention_days: RetentionDays
    # SLAs count business days from the date in the HubSpot portal's zone, not from UTC's.
    business_timezone: str = Field(default="UTC", validation_alias=PORTAL_TIMEZONE_ENV)
    # How often a HubSpot task of a play with auto_close is checked (a rules evaluation each time).
    auto_close_check_minutes: int = Field(
        default=360, ge=5, le=7 * 24 * 60, validation_alias="AUTO_CLOSE_CHECK_MINUTES"
    )

    @field_validator("business_timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        portal_zone(name)
        return name


class SchedulerSettings(RouterSettings):
    """The scheduler also asks the rules whether an escalation's signal still holds."""

    counters_table: str = Field(min_length=1, validation_alias=COUNTERS_TABLE.env_var)
    firings_table: str = Field(min_length=1, validation_alias=FIRINGS_TABLE.env_var)
    # Auto-close checks per run, at most (each is one rules evaluation of an account).
    auto_close_per_run: int = Field(
        default=AUTO_CLOSE_PER_RUN, ge=1, le=1000, validation_alias="AUTO_CLOSE_PER_RUN"
    )
