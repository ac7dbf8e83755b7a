from pydantic import BaseModel, Field

from shared.resources import (
    ACCOUNTS_TABLE,
    COUNTERS_TABLE,
    FIRED_QUEUE,
    FIRINGS_TABLE,
)
from shared.settings import RetentionDays, RulesetPath


class EvaluatorSettings(BaseModel):
    counters_table: str = Field(min_length=1, validation_alias=COUNTERS_TABLE.env_var)
    accounts_table: str = Field(min_length=1, validation_alias=ACCOUNTS_TABLE.env_var)
    firings_table: str = Field(min_length=1, validation_alias=FIRINGS_TABLE.env_var)
    fired_queue_url: str = Field(min_length=1, validation_alias=FIRED_QUEUE.env_var)
    ruleset_path: RulesetPath
    retention_days: RetentionDays
