from pydantic import BaseModel, Field

from shared.accounts.models import Email
from shared.resources import DELIVERIES_TABLE, SENDER_EMAIL_ENV
from shared.settings import RetentionDays


class EmailSenderSettings(BaseModel):
    deliveries_table: str = Field(min_length=1, validation_alias=DELIVERIES_TABLE.env_var)
    sender_email: Email = Field(validation_alias=SENDER_EMAIL_ENV)
    retention_days: RetentionDays
