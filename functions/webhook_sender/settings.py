from pydantic import BaseModel, Field

from shared.resources import DELIVERIES_TABLE, WEBHOOK_DLQ_ENV, WEBHOOK_QUEUE
from shared.settings import RetentionDays


class WebhookSenderSettings(BaseModel):
    deliveries_table: str = Field(min_length=1, validation_alias=DELIVERIES_TABLE.env_var)
    queue_url: str = Field(min_length=1, validation_alias=WEBHOOK_QUEUE.env_var)
    dead_letter_queue_url: str = Field(min_length=1, validation_alias=WEBHOOK_DLQ_ENV)
    retention_days: RetentionDays
