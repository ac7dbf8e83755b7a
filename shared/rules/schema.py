"""The JSON Schema of a rules file, generated from the language's models (docs/rules.schema.json)."""

from __future__ import annotations

from typing import Any

from shared.rules.language import Ruleset


def rules_json_schema() -> dict[str, Any]:
    schema = Ruleset.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Upswing ruleset"
    schema["description"] = "A file under rules/: see docs/rules.md."
    return schema
