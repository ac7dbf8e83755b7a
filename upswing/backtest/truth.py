"""What the backtest scores against: account profiles (optional) and expansion outcomes.

Both are small next to the events (one line an account, one row an expansion) and read whole.
A bad line is an error with file and line: these files are short and hand-made often enough that
skipping a line silently would change the score without anyone noticing.

- Profiles: JSONL, `{"account_id": ..., "profile": {...}}` a line — the shape `upswing simulate`
  writes and PUT /v1/accounts/{account_id} takes as its body. An account without a profile is
  evaluated as online: no segment, no plan limits, no flags.
- Outcomes: CSV with a header; `account_id` and `expansion_date` (YYYY-MM-DD) are required, `kind`,
  `amount` and `currency` are kept for the report. An account may expand more than once.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from pydantic import ValidationError

from shared.accounts.models import AccountProfile
from upswing.backtest.events import InputError

OUTCOME_REQUIRED = ("account_id", "expansion_date")


@dataclass(frozen=True, slots=True)
class Expansion:
    account_id: str
    day: date
    kind: str
    amount: str
    currency: str


def read_profiles(path: Path) -> dict[str, AccountProfile]:
    profiles: dict[str, AccountProfile] = {}
    for number, line in _lines(path):
        if not line.strip():
            continue
        try:
            document = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(f"{path}:{number}: not valid JSON: {error}") from None
        if not isinstance(document, dict) or set(document) != {"account_id", "profile"}:
            raise InputError(f'{path}:{number}: expected {{"account_id": ..., "profile": {{...}}}}')
        account_id = document["account_id"]
        if not isinstance(account_id, str) or not account_id:
            raise InputError(f"{path}:{number}: account_id must be a non-empty string")
        if account_id in profiles:
            raise InputError(f"{path}:{number}: a second profile for {account_id!r}")
        try:
            profiles[account_id] = AccountProfile.model_validate(document["profile"])
        except ValidationError as error:
            first = error.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"])
            raise InputError(f"{path}:{number}: profile.{where}: {first['msg']}") from None
    return profiles


def read_outcomes(path: Path) -> list[Expansion]:
    try:
        stream = path.open(encoding="utf-8", newline="")
    except OSError as error:
        raise InputError(f"{path}: {error.strerror or error}") from None
    with stream:
        reader = csv.DictReader(stream)
        missing = [column for column in OUTCOME_REQUIRED if column not in (reader.fieldnames or [])]
        if missing:
            raise InputError(
                f"{path}:1: the header lacks {', '.join(missing)} "
                f"(columns: {', '.join(OUTCOME_REQUIRED)}, kind, amount, currency)"
            )
        expansions = []
        for row in reader:
            line = reader.line_num
            account_id = (row.get("account_id") or "").strip()
            if not account_id:
                raise InputError(f"{path}:{line}: account_id is empty")
            text = (row.get("expansion_date") or "").strip()
            try:
                day = date.fromisoformat(text)
            except ValueError:
                raise InputError(
                    f"{path}:{line}: expansion_date {text!r} is not a date (YYYY-MM-DD)"
                ) from None
            expansions.append(
                Expansion(
                    account_id,
                    day,
                    (row.get("kind") or "").strip(),
                    (row.get("amount") or "").strip(),
                    (row.get("currency") or "").strip(),
                )
            )
    return expansions


def _lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise InputError(f"{path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text ({error.reason})") from None
    return list(enumerate(text.splitlines(), 1))
