"""Which keys a pydantic model accepts at a given place, for "unknown key" messages.

An `extra_forbidden` error carries the location of the stray key (`owners.csm.emial`); the
helpful answer names the keys valid *there* (those of `Owner`), not those of the top-level model.
Pydantic's locations walk fields, dict keys, list indexes and tagged-union tags; so does this.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, Tag


def fields_at(model: type[BaseModel], location: Sequence[str | int]) -> tuple[str, ...]:
    """The field names of the model found at `location` inside `model` (empty if none is there)."""
    found = _model_at(model, list(location))
    return tuple(found.model_fields) if found is not None else ()


def did_you_mean(name: str, valid_here: Iterable[str]) -> str:
    """ " (did you mean 'x'?)" with the closest of the names valid there, or "" when none is close."""
    close = difflib.get_close_matches(name, [valid for valid in valid_here if valid != name], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _model_at(annotation: Any, location: list[str | int]) -> type[BaseModel] | None:
    annotation, _ = _unwrap(annotation)
    if not location:
        return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    step, rest = location[0], location[1:]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(str(step))
        if field is None:
            return None
        return _model_at(field.annotation, rest)
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return _union_member_at(get_args(annotation), step, rest)
    if origin is dict:
        return _model_at(get_args(annotation)[1], rest)
    if origin in (list, tuple, set, frozenset) and isinstance(step, int):
        return _model_at(get_args(annotation)[0], rest)
    return None


def _union_member_at(
    members: tuple[Any, ...], step: str | int, rest: list[str | int]
) -> type[BaseModel] | None:
    # A tagged union puts the member's tag in the location; an untagged one names the member's type.
    for member in members:
        inner, tag = _unwrap(member)
        if step == tag or (isinstance(inner, type) and step == inner.__name__):
            return _model_at(inner, rest)
    return None


def _unwrap(annotation: Any) -> tuple[Any, str | None]:
    """Strip Annotated (and Optional's None) off a type, keeping a union tag if there is one."""
    tag = None
    while True:
        if get_origin(annotation) is Annotated:
            args = get_args(annotation)
            annotation = args[0]
            tag = next((meta.tag for meta in args[1:] if isinstance(meta, Tag)), tag)
            continue
        if get_origin(annotation) in (Union, types.UnionType):
            members = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(members) == 1:
                annotation = members[0]
                continue
        return annotation, tag
