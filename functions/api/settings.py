from pydantic import Field

from shared.events.contract import DEFAULT_RETENTION_DAYS
from shared.events.ingest import IngestSettings
from shared.horizon import DEFAULT_HORIZON_DAYS, HORIZON_ENV
from shared.resources import (
    ACCOUNTS_TABLE,
    COUNTERS_TABLE,
    FIRED_QUEUE,
    FIRINGS_TABLE,
    PLAYS_TABLE,
    SLACK_SIGNING_SECRET_ENV,
)
from shared.segment.mapping import DEFAULT_MAPPING_PATH, MAPPING_PATH_ENV
from shared.settings import RulesetPath, ShadowRulesets


class ApiSettings(IngestSettings):
    accounts_table: str = Field(min_length=1, validation_alias=ACCOUNTS_TABLE.env_var)
    counters_table: str = Field(min_length=1, validation_alias=COUNTERS_TABLE.env_var)
    firings_table: str = Field(min_length=1, validation_alias=FIRINGS_TABLE.env_var)
    plays_table: str = Field(min_length=1, validation_alias=PLAYS_TABLE.env_var)
    # POST /v1/imports/finish hands the go-live firings to the router, as the evaluator does.
    fired_queue_url: str = Field(min_length=1, validation_alias=FIRED_QUEUE.env_var)
    ruleset_path: RulesetPath
    # The shadow rulesets deployed beside it (GET /v1/rulesets says which versions run now).
    shadow_rulesets: ShadowRulesets
    # How long after a firing an expansion counts: plays' fates and the trigger metrics' maturity.
    horizon_days: int = Field(
        default=DEFAULT_HORIZON_DAYS, ge=1, le=DEFAULT_RETENTION_DAYS, validation_alias=HORIZON_ENV
    )
    segment_mapping_path: str = Field(default=DEFAULT_MAPPING_PATH, validation_alias=MAPPING_PATH_ENV)
    # The Slack app's signing secret (name or ARN), for POST /v1/slack/interactions; None: not set up.
    slack_signing_secret_id: str | None = Field(default=None, validation_alias=SLACK_SIGNING_SECRET_ENV)
