from typing import Any

from pydantic import BaseModel, Field, field_validator

from shared.delivery.hubspot import HubSpotSettings
from shared.resources import (
    ACCOUNTS_TABLE,
    DELIVERIES_TABLE,
    HUBSPOT_DLQ_ENV,
    HUBSPOT_QUEUE,
    HUBSPOT_SECRET_ENV,
    PLAYS_TABLE,
)
from shared.settings import RetentionDays
from shared.timezones import PORTAL_TIMEZONE_ENV, portal_zone


class HubSpotSenderSettings(BaseModel):
    deliveries_table: str = Field(min_length=1, validation_alias=DELIVERIES_TABLE.env_var)
    # Companies found by domain are recorded on the account (for the deal read-back); None: not.
    accounts_table: str | None = Field(default=None, min_length=1, validation_alias=ACCOUNTS_TABLE.env_var)
    plays_table: str = Field(min_length=1, validation_alias=PLAYS_TABLE.env_var)
    queue_url: str = Field(min_length=1, validation_alias=HUBSPOT_QUEUE.env_var)
    dead_letter_queue_url: str = Field(min_length=1, validation_alias=HUBSPOT_DLQ_ENV)
    secret_id: str = Field(min_length=1, validation_alias=HUBSPOT_SECRET_ENV)
    retention_days: RetentionDays
    base_url: str = Field(default=HubSpotSettings.base_url, validation_alias="HUBSPOT_BASE_URL")
    tasks_path: str = Field(default=HubSpotSettings.tasks_path, validation_alias="HUBSPOT_TASKS_PATH")
    company_association_type: int = Field(default=192, gt=0, validation_alias="HUBSPOT_COMPANY_ASSOCIATION")
    contact_association_type: int = Field(default=204, gt=0, validation_alias="HUBSPOT_CONTACT_ASSOCIATION")
    deal_association_type: int = Field(default=216, gt=0, validation_alias="HUBSPOT_DEAL_ASSOCIATION")
    # The app's burst limit, shared by every concurrent sender (the event source caps them).
    requests_per_10s: int = Field(default=100, ge=1, validation_alias="HUBSPOT_REQUESTS_PER_10S")
    max_concurrency: int = Field(default=2, ge=1, validation_alias="HUBSPOT_SENDER_CONCURRENCY")
    portal_timezone: str = Field(default="UTC", validation_alias=PORTAL_TIMEZONE_ENV)
    # The hour (in the portal's time zone) a task falls due on its due day.
    due_hour: int = Field(default=17, ge=0, le=23, validation_alias="HUBSPOT_DUE_HOUR")
    # The task custom property holding the play id (`upswing hubspot create-property`); empty: none.
    play_id_property: str | None = Field(
        default=None, pattern=r"^[a-z][a-z0-9_]{0,99}$", validation_alias="HUBSPOT_PLAY_ID_PROPERTY"
    )

    @field_validator("portal_timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        portal_zone(name)
        return name

    @field_validator("play_id_property", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return value or None

    def client_settings(self) -> HubSpotSettings:
        return HubSpotSettings(
            base_url=self.base_url,
            tasks_path=self.tasks_path,
            company_association_type=self.company_association_type,
            contact_association_type=self.contact_association_type,
            deal_association_type=self.deal_association_type,
            requests_per_window=max(1, self.requests_per_10s // self.max_concurrency),
            # Half a second more than HubSpot's window: its clock and the network's jitter are not ours.
            window_seconds=10.5,
            portal_timezone=self.portal_timezone,
            due_hour=self.due_hour,
            play_id_property=self.play_id_property,
            rate_limit_reserve=self.max_concurrency,
        )
