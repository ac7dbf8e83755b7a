from pydantic import BaseModel, Field

from shared.accounts.models import Email
from shared.events.contract import DEFAULT_RETENTION_DAYS
from shared.resources import DELIVERIES_TABLE, RETENTION_DAYS_ENV, SENDER_EMAIL_ENV


class EmailSenderSettings(BaseModel):
    deliveries_table: str = Field(min_length=1, validation_alias=DELIVERIES_TABLE.env_var)
    sender_email: Email = Field(validation_alias=SENDER_EMAIL_ENV)
    retention_days: int = Field(default=DEFAULT_RETENTION_DAYS, gt=0, validation_alias=RETENTION_DAYS_ENV)
