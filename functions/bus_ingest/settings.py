from pydantic import BaseModel, Field

from shared.events.contract import DEFAULT_RETENTION_DAYS
from shared.resources import EVENTS_TABLE, REGISTRY_TABLE, REJECTS_QUEUE, RETENTION_DAYS_ENV


class BusIngestSettings(BaseModel):
    events_table: str = Field(min_length=1, validation_alias=EVENTS_TABLE.env_var)
    registry_table: str = Field(min_length=1, validation_alias=REGISTRY_TABLE.env_var)
    rejects_queue_url: str = Field(min_length=1, validation_alias=REJECTS_QUEUE.env_var)
    retention_days: int = Field(default=DEFAULT_RETENTION_DAYS, gt=0, validation_alias=RETENTION_DAYS_ENV)
