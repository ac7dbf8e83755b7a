from pydantic import BaseModel, Field

from shared.events.contract import DEFAULT_RETENTION_DAYS
from shared.resources import DELIVERIES_TABLE, RETENTION_DAYS_ENV, WEBHOOK_DLQ_ENV, WEBHOOK_QUEUE


class WebhookSenderSettings(BaseModel):
    deliveries_table: str = Field(min_length=1, validation_alias=DELIVERIES_TABLE.env_var)
    queue_url: str = Field(min_length=1, validation_alias=WEBHOOK_QUEUE.env_var)
    dead_letter_queue_url: str = Field(min_length=1, validation_alias=WEBHOOK_DLQ_ENV)
    retention_days: int = Field(default=DEFAULT_RETENTION_DAYS, gt=0, validation_alias=RETENTION_DAYS_ENV)
