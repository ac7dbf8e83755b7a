"""Function settings come from the environment, validated once, with an error that says what is wrong."""

from __future__ import annotations

import os
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from shared.events.validation import describe_errors

SettingsT = TypeVar("SettingsT", bound=BaseModel)


def load_settings(model: type[SettingsT]) -> SettingsT:
    try:
        return model.model_validate(dict(os.environ))
    except ValidationError as error:
        raise RuntimeError(
            f"{model.__name__}: {'; '.join(describe_errors(error, model, noun='setting'))}"
        ) from None
