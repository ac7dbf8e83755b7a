from pydantic import BaseModel, Field, field_validator

from shared.delivery.hubspot import HubSpotSettings
from shared.events.contract import DEFAULT_RETENTION_DAYS
from shared.resources import DELIVERIES_TABLE, HUBSPOT_SECRET_ENV, PLAYS_TABLE, RETENTION_DAYS_ENV
from shared.timezones import PORTAL_TIMEZONE_ENV

# The poller's share of the app's burst limit (batch reads only: searches have their own limit).
# Two senders take half of the limit each and pause on X-HubSpot-RateLimit-Remaining, which leaves
# room for these few requests.
POLLER_REQUESTS_PER_10S = 10


class HubSpotPollerSettings(BaseModel):
    plays_table: str = Field(min_length=1, validation_alias=PLAYS_TABLE.env_var)
    deliveries_table: str = Field(min_length=1, validation_alias=DELIVERIES_TABLE.env_var)
    secret_id: str = Field(min_length=1, validation_alias=HUBSPOT_SECRET_ENV)
    retention_days: int = Field(default=DEFAULT_RETENTION_DAYS, gt=0, validation_alias=RETENTION_DAYS_ENV)
    base_url: str = Field(default=HubSpotSettings.base_url, validation_alias="HUBSPOT_BASE_URL")
    tasks_path: str = Field(default=HubSpotSettings.tasks_path, validation_alias="HUBSPOT_TASKS_PATH")
    portal_timezone: str = Field(default="UTC", validation_alias=PORTAL_TIMEZONE_ENV)
    play_id_property: str | None = Field(
        default=None, pattern=r"^[a-z][a-z0-9_]{0,99}$", validation_alias="HUBSPOT_PLAY_ID_PROPERTY"
    )
    # An open task neither changed nor checked for this long is batch-read (is it deleted?).
    unseen_after_minutes: int = Field(default=360, ge=0, validation_alias="HUBSPOT_UNSEEN_AFTER_MINUTES")

    @field_validator("play_id_property", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return value or None

    def client_settings(self) -> HubSpotSettings:
        return HubSpotSettings(
            base_url=self.base_url,
            tasks_path=self.tasks_path,
            requests_per_window=POLLER_REQUESTS_PER_10S,
            window_seconds=10.5,
            portal_timezone=self.portal_timezone,
            play_id_property=self.play_id_property,
        )
