"""Function settings come from the environment, validated once, with an error that says what is wrong."""

from __future__ import annotations

import os
from typing import Annotated, TypeVar

from pydantic import BaseModel, Field, ValidationError

from shared.events.contract import DEFAULT_RETENTION_DAYS
from shared.events.validation import describe_errors
from shared.resources import DEFAULT_RULESET_PATH, RETENTION_DAYS_ENV, RULESET_PATH_ENV, SHADOW_RULESETS_ENV

# Settings several functions share, declared once: the ledger's and counters' retention (the
# counters' TTL and the firings' are derived from it) and the bundled ruleset file.
RetentionDays = Annotated[
    int, Field(default=DEFAULT_RETENTION_DAYS, gt=0, validation_alias=RETENTION_DAYS_ENV)
]
RulesetPath = Annotated[str, Field(default=DEFAULT_RULESET_PATH, validation_alias=RULESET_PATH_ENV)]
# The shadow rulesets beside it: comma-separated files under rules/ (shared/rules/versions.py).
ShadowRulesets = Annotated[str, Field(default="", validation_alias=SHADOW_RULESETS_ENV)]

SettingsT = TypeVar("SettingsT", bound=BaseModel)


def load_settings(model: type[SettingsT]) -> SettingsT:
    try:
        return model.model_validate(dict(os.environ))
    except ValidationError as error:
        raise RuntimeError(
            f"{model.__name__}: {'; '.join(describe_errors(error, model, noun='setting'))}"
        ) from None
