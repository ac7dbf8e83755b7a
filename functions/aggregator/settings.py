from pydantic import BaseModel, Field

from shared.resources import COUNTERS_TABLE
from shared.settings import RetentionDays, RulesetPath, ShadowRulesets


class AggregatorSettings(BaseModel):
    counters_table: str = Field(min_length=1, validation_alias=COUNTERS_TABLE.env_var)
    retention_days: RetentionDays
    # The slices the rules filter or group by are counted too (shared/counters/slices.py)...
    ruleset_path: RulesetPath
    # ...and those the shadow rulesets read.
    shadow_rulesets: ShadowRulesets
