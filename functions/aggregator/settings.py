from pydantic import BaseModel, Field

from shared.events.contract import DEFAULT_RETENTION_DAYS
from shared.resources import (
    COUNTERS_TABLE,
    DEFAULT_RULESET_PATH,
    RETENTION_DAYS_ENV,
    RULESET_PATH_ENV,
    SHADOW_RULESETS_ENV,
)


class AggregatorSettings(BaseModel):
    counters_table: str = Field(min_length=1, validation_alias=COUNTERS_TABLE.env_var)
    retention_days: int = Field(default=DEFAULT_RETENTION_DAYS, gt=0, validation_alias=RETENTION_DAYS_ENV)
    # The slices the rules filter or group by are counted too (shared/counters/slices.py).
    ruleset_path: str = Field(default=DEFAULT_RULESET_PATH, validation_alias=RULESET_PATH_ENV)
    # ...and those the shadow rulesets read (comma-separated files under rules/).
    shadow_rulesets: str = Field(default="", validation_alias=SHADOW_RULESETS_ENV)
