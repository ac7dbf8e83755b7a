from pydantic import BaseModel, Field

from shared.events.contract import DEFAULT_RETENTION_DAYS
from shared.resources import (
    ACCOUNTS_TABLE,
    COUNTERS_TABLE,
    DEFAULT_RULESET_PATH,
    FIRED_QUEUE,
    FIRINGS_TABLE,
    REGISTRY_TABLE,
    RETENTION_DAYS_ENV,
    RULESET_DEPLOYER_ENV,
    RULESET_GIT_REVISION_ENV,
    RULESET_PATH_ENV,
    SHADOW_RULESETS_ENV,
)


class EvaluatorSettings(BaseModel):
    counters_table: str = Field(min_length=1, validation_alias=COUNTERS_TABLE.env_var)
    accounts_table: str = Field(min_length=1, validation_alias=ACCOUNTS_TABLE.env_var)
    firings_table: str = Field(min_length=1, validation_alias=FIRINGS_TABLE.env_var)
    fired_queue_url: str = Field(min_length=1, validation_alias=FIRED_QUEUE.env_var)
    ruleset_path: str = Field(default=DEFAULT_RULESET_PATH, validation_alias=RULESET_PATH_ENV)
    retention_days: int = Field(default=DEFAULT_RETENTION_DAYS, gt=0, validation_alias=RETENTION_DAYS_ENV)
    # Comma-separated files under rules/: evaluated and recorded, never routed.
    shadow_rulesets: str = Field(default="", validation_alias=SHADOW_RULESETS_ENV)
    # Where each version run is recorded once (shared/rules/versions.py), with who deployed it and from
    # which git revision, as the synth was told.
    registry_table: str = Field(min_length=1, validation_alias=REGISTRY_TABLE.env_var)
    deployer: str | None = Field(default=None, validation_alias=RULESET_DEPLOYER_ENV)
    git_revision: str | None = Field(default=None, validation_alias=RULESET_GIT_REVISION_ENV)
