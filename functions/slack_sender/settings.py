from pydantic import BaseModel, Field

from shared.accounts.models import HubSpotId
from shared.delivery.slack import SLACK_API
from shared.resources import (
    DELIVERIES_TABLE,
    PLAYS_TABLE,
    SLACK_BOT_TOKEN_SECRET_ENV,
    SLACK_DLQ_ENV,
    SLACK_QUEUE,
)
from shared.settings import RetentionDays


class SlackSenderSettings(BaseModel):
    deliveries_table: str = Field(min_length=1, validation_alias=DELIVERIES_TABLE.env_var)
    plays_table: str = Field(min_length=1, validation_alias=PLAYS_TABLE.env_var)
    queue_url: str = Field(min_length=1, validation_alias=SLACK_QUEUE.env_var)
    dead_letter_queue_url: str = Field(min_length=1, validation_alias=SLACK_DLQ_ENV)
    bot_token_secret_id: str = Field(min_length=1, validation_alias=SLACK_BOT_TOKEN_SECRET_ENV)
    retention_days: RetentionDays
    # The local stack points this at its Slack sink.
    base_url: str = Field(default=SLACK_API, validation_alias="SLACK_BASE_URL")
    # For the "Open in HubSpot" button (the company's record page); without it, no button.
    hubspot_portal_id: HubSpotId | None = Field(default=None, validation_alias="HUBSPOT_PORTAL_ID")
