"""Decoding untrusted JSON (request bodies, bus messages) with limits a hostile document cannot pass.

Python's json module has no limits of its own that fail politely: a document nested a few
thousand levels deep raises RecursionError, and an integer literal of thousands of digits raises
ValueError (the int-string conversion limit) — both escaped the handlers as crashes. Here every
such document is a `JsonInputError` with a sentence the sender can act on, decided before any
model sees the document.
"""

from __future__ import annotations

import json
from typing import Any

from shared.events.contract import MAX_INTEGER_DIGITS, MAX_NESTING_DEPTH, MAX_NUMBER_LITERAL_CHARS


class JsonInputError(ValueError):
    """The bytes are not a JSON document we accept; the message says why, for the sender."""


def decode_json(raw: bytes | str, subject: str = "The body") -> Any:
    """The JSON document in `raw`, within the contract's nesting and number-literal limits.

    `subject` names the document in messages: "The body", "The message", "properties".
    """
    try:
        document = json.loads(raw, parse_int=_bounded_int, parse_float=_bounded_float)
    except _LiteralTooLong as error:
        raise JsonInputError(f"{subject} {error}") from None
    except RecursionError:
        raise JsonInputError(_too_deep(subject)) from None
    except UnicodeDecodeError:
        raise JsonInputError(f"{subject} is not valid JSON: it is not UTF-8 text.") from None
    except json.JSONDecodeError as error:
        raise JsonInputError(f"{subject} is not valid JSON: {error}.") from None
    if nesting_depth(document) > MAX_NESTING_DEPTH:
        raise JsonInputError(_too_deep(subject))
    return document


def nesting_depth(document: Any) -> int:
    """How many arrays and objects deep `document` goes (a scalar is 0), without recursion."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(document, 0)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        depth += 1
        if depth > deepest:
            deepest = depth
            if deepest > MAX_NESTING_DEPTH:  # the answer is known: stop walking a hostile document
                return deepest
        pending.extend((child, depth) for child in children)
    return deepest


class _LiteralTooLong(Exception):
    """Raised from inside json.loads; the text completes the sentence "<subject> ..."."""


def _bounded_int(literal: str) -> int:
    digits = len(literal.lstrip("-"))
    if digits > MAX_INTEGER_DIGITS:
        raise _LiteralTooLong(
            f"holds an integer of {digits:,} digits; numbers may have at most {MAX_INTEGER_DIGITS} digits."
        )
    return int(literal)


def _bounded_float(literal: str) -> float:
    if len(literal) > MAX_NUMBER_LITERAL_CHARS:
        raise _LiteralTooLong(
            f"holds a number written with {len(literal):,} characters; "
            f"write numbers in at most {MAX_NUMBER_LITERAL_CHARS} (e.g. 1.5e-3)."
        )
    return float(literal)


def _too_deep(subject: str) -> str:
    return (
        f"{subject} nests arrays and objects more than {MAX_NESTING_DEPTH} levels deep; "
        "flatten event properties (they are context, not a tree)."
    )
