from pydantic import BaseModel, Field

from shared.resources import (
    ACCOUNTS_TABLE,
    COUNTERS_TABLE,
    FIRED_QUEUE,
    FIRINGS_TABLE,
    REGISTRY_TABLE,
    RULESET_DEPLOYER_ENV,
    RULESET_GIT_REVISION_ENV,
)
from shared.settings import RetentionDays, RulesetPath, ShadowRulesets


class EvaluatorSettings(BaseModel):
    counters_table: str = Field(min_length=1, validation_alias=COUNTERS_TABLE.env_var)
    accounts_table: str = Field(min_length=1, validation_alias=ACCOUNTS_TABLE.env_var)
    firings_table: str = Field(min_length=1, validation_alias=FIRINGS_TABLE.env_var)
    fired_queue_url: str = Field(min_length=1, validation_alias=FIRED_QUEUE.env_var)
    ruleset_path: RulesetPath
    retention_days: RetentionDays
    # Evaluated and recorded, never routed.
    shadow_rulesets: ShadowRulesets
    # Where each version run is recorded once (shared/rules/versions.py), with who deployed it and from
    # which git revision, as the synth was told.
    registry_table: str = Field(min_length=1, validation_alias=REGISTRY_TABLE.env_var)
    deployer: str | None = Field(default=None, validation_alias=RULESET_DEPLOYER_ENV)
    git_revision: str | None = Field(default=None, validation_alias=RULESET_GIT_REVISION_ENV)
