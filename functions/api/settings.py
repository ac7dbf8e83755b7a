from pydantic import BaseModel, Field

from shared.events.contract import DEFAULT_RETENTION_DAYS
from shared.resources import ACCOUNTS_TABLE, COUNTERS_TABLE, EVENTS_TABLE, REGISTRY_TABLE, RETENTION_DAYS_ENV


class ApiSettings(BaseModel):
    events_table: str = Field(min_length=1, validation_alias=EVENTS_TABLE.env_var)
    registry_table: str = Field(min_length=1, validation_alias=REGISTRY_TABLE.env_var)
    accounts_table: str = Field(min_length=1, validation_alias=ACCOUNTS_TABLE.env_var)
    counters_table: str = Field(min_length=1, validation_alias=COUNTERS_TABLE.env_var)
    retention_days: int = Field(default=DEFAULT_RETENTION_DAYS, gt=0, validation_alias=RETENTION_DAYS_ENV)
