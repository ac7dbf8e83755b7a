"""Schemathesis hooks for Upswing's OpenAPI document (loaded through tests/e2e/schemathesis.toml).

The document marks ids with the `printable-id` format: 1-128 printable Unicode characters, no
whitespace at either end (JSON Schema's patterns cannot state Unicode's printable classes). This
teaches schemathesis to generate such ids, so a "schema-valid" id is one the API accepts.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import strategies as st

from shared.events.models import PRINTABLE_ID_FORMAT


def _is_printable_id(text: str) -> bool:
    return text.isprintable() and text == text.strip() and text not in (".", "..")


schemathesis.openapi.format(
    PRINTABLE_ID_FORMAT,
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=128).filter(_is_printable_id),
)


# Hypothesis reads a pattern's `$` as Python does, where it also matches before a final newline;
# in the document's own dialect (JSON Schema uses ECMA-262) and in the API (pydantic's Rust regex)
# it does not. So "smb\n" looks schema-valid to the generator and is not: such cases are dropped.
def _ends_a_line(value: Any) -> bool:
    if isinstance(value, str):
        return value.endswith("\n")
    if isinstance(value, dict):
        return any(_ends_a_line(key) or _ends_a_line(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_ends_a_line(item) for item in value)
    return False


@schemathesis.hook
def filter_body(context: schemathesis.HookContext, body: Any) -> bool:
    return not _ends_a_line(body)


@schemathesis.hook
def filter_query(context: schemathesis.HookContext, query: Any) -> bool:
    return not _ends_a_line(query)


@schemathesis.hook
def filter_path_parameters(context: schemathesis.HookContext, path_parameters: Any) -> bool:
    return not _ends_a_line(path_parameters)
