"""The end of a history import: POST /v1/imports/finish, its request and its answer.

History goes in as ordinary event batches flagged `"backfill": true` (counted, not evaluated per
batch); this call then evaluates each imported account once with its whole history and applies the
ruleset's `go_live` setting to what already held (shared/rules/golive.py). `upswing import` makes
both calls; a caller of its own sends the account ids it imported, in requests of up to 25.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from shared.events.models import AccountId

# Each account is a few reads and one commit, 8 at a time: 25 stay well inside the API's 10 s.
MAX_ACCOUNTS_PER_FINISH = 25


class ImportFinish(BaseModel):
    """The request body of POST /v1/imports/finish."""

    model_config = ConfigDict(extra="forbid")

    account_ids: list[AccountId] = Field(
        min_length=1,
        max_length=MAX_ACCOUNTS_PER_FINISH,
        description="The accounts whose history was imported: each goes live once (again: no change).",
    )


class PreExistingTrigger(BaseModel):
    trigger: str
    release_at: str | None = Field(
        description="When its play may be routed (RFC 3339 UTC); null: skipped, never routed."
    )


class AccountWentLive(BaseModel):
    account_id: str
    went_live_at: str = Field(description="When the account went live (the first finish call).")
    pre_existing: str = Field(description="The go_live setting applied then: fire, spread or skip.")
    triggers: list[PreExistingTrigger] = Field(
        description="The triggers that already held in the imported history."
    )


class ImportFinished(BaseModel):
    """The answer of POST /v1/imports/finish."""

    accounts: list[AccountWentLive] = Field(description="The accounts that are live (now or before).")
    still_counting: list[str] = Field(
        description="Accounts not evaluated yet: some of their stored events are not counted yet (the "
        "aggregator is seconds behind). Send them again in a few seconds."
    )
    pre_existing_by_trigger: dict[str, int] = Field(
        description="How many of these accounts each trigger already held for."
    )
