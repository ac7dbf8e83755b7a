from pydantic import BaseModel, Field

from shared.events.contract import DEFAULT_RETENTION_DAYS
from shared.horizon import DEFAULT_HORIZON_DAYS, HORIZON_ENV
from shared.resources import PLAYS_TABLE
from shared.settings import RetentionDays


class AttributorSettings(BaseModel):
    plays_table: str = Field(min_length=1, validation_alias=PLAYS_TABLE.env_var)
    retention_days: RetentionDays
    # How long after a firing an expansion is its result (docs/operations.md, "Trigger metrics").
    horizon_days: int = Field(
        default=DEFAULT_HORIZON_DAYS, ge=1, le=DEFAULT_RETENTION_DAYS, validation_alias=HORIZON_ENV
    )
