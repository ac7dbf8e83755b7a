"""The one write path for outcomes, shared by POST /v1/outcomes and `outcome` on the bus.

validate (the contract, then the acceptance window: at most 5 minutes ahead, no older than the
retention) → drop repeats inside the batch → conditional put of each outcome (shared/intake.py).
An outcome for an account without a profile is accepted and kept (docs/decisions.md): outcomes
often come from billing before the CRM sync writes the profile.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from shared.events.contract import DEFAULT_RETENTION_DAYS
from shared.events.validation import check_item, window_problem
from shared.intake import Channel, Invalid, ItemResult, Noun, ParallelPuts, Tally, first_of_each, in_order
from shared.outcomes.models import AccountOutcome, OutcomeRejection, OutcomesResponse
from shared.outcomes.store import OutcomeStore, outcome_item

OUTCOME = Noun(singular="outcome", plural="outcomes", id_field="outcome_id")


class OutcomeIntake:
    noun = OUTCOME

    def __init__(self, store: OutcomeStore, retention_days: int = DEFAULT_RETENTION_DAYS) -> None:
        self._retention_days = retention_days
        self._puts = ParallelPuts(store, OUTCOME)

    def ingest(
        self, raw_outcomes: Sequence[Any], producer: str, channel: Channel, now: datetime
    ) -> list[ItemResult]:
        results: dict[int, ItemResult] = {}
        candidates = first_of_each(
            (
                (index, validate_outcome(raw, now, self._retention_days))
                for index, raw in enumerate(raw_outcomes)
            ),
            OUTCOME,
            results,
        )
        self._puts.put_all(
            candidates,
            lambda outcome: outcome_item(outcome, producer, channel, now, self._retention_days),
            results,
        )
        return in_order(results, len(raw_outcomes))


def validate_outcome(raw: Any, now: datetime, retention_days: int) -> AccountOutcome | Invalid:
    """One outcome against the contract and the acceptance window around `now` (as for events)."""
    checked = check_item(raw, AccountOutcome, id_field="outcome_id", noun="outcome")
    if isinstance(checked, Invalid):
        return checked
    problem = window_problem(checked.occurred_at, now, retention_days)
    return checked if problem is None else Invalid(checked.outcome_id, [problem])


def summarize_outcomes(results: Sequence[ItemResult]) -> OutcomesResponse:
    tally = Tally.of(results)
    return OutcomesResponse(
        accepted=tally.accepted,
        duplicates=tally.duplicates,
        rejected=[
            OutcomeRejection(index=r.index, outcome_id=r.item_id, errors=r.errors) for r in tally.rejected
        ],
    )


def outcome_intake_for(client: Any, table: str, retention_days: int) -> OutcomeIntake:
    return OutcomeIntake(OutcomeStore(client, table), retention_days)
