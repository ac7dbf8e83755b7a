"""Attribution: plays learn that their account expanded.

When an expansion outcome is stored (any source: POST /v1/outcomes, the bus, the HubSpot deal
read-back — they all write the outcomes table, whose stream drives functions/attributor), every
firing of that account that fired within the horizon before it (fired_at ≤ occurred_at ≤
fired_at + horizon, both ends included) gets `expanded` on its own play (tier 0: one per firing):
{outcome_id, at, kind, amount, currency}, with the trigger's `expanded` count and amount in the
same transaction (PlayLedger.record_expansion).

Written once: the write is conditional on the play having no `expanded` yet, so a redelivered
stream record changes nothing, and **the first expansion stored wins**: a second expansion within
the same firing's horizon is neither attributed nor added to its amount (a firing is one trial of
the trigger; what came after its first expansion is the account's next motion, not its echo).
Contractions and churn are not attributed (they are outcomes, not expansions). An outcome for an
account with no plays attributes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from shared.horizon import within_horizon
from shared.observability import logger
from shared.outcomes.models import OutcomeKind
from shared.routing.ledger import PlayLedger
from shared.routing.models import Expansion
from shared.timestamps import utc_stamp
from shared.trigger_metrics.counters import fired_at


@dataclass(frozen=True)
class StoredOutcomeFacts:
    """What attribution reads of an outcome item (as the outcomes table's stream carries it)."""

    account_id: str
    outcome_id: str
    kind: OutcomeKind
    occurred_at: datetime
    amount: Decimal
    currency: str

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> StoredOutcomeFacts:
        occurred = datetime.fromisoformat(str(item["occurred_at"]).replace("Z", "+00:00"))
        return cls(
            account_id=str(item["pk"]),
            outcome_id=str(item["outcome_id"]),
            kind=OutcomeKind(item["kind"]),
            occurred_at=occurred if occurred.tzinfo else occurred.replace(tzinfo=UTC),
            amount=Decimal(item["amount"]),
            currency=str(item["currency"]),
        )


@dataclass
class Attribution:
    """What one outcome did: the firings it was attributed to, and those that had expanded already."""

    attributed: int = 0
    already_expanded: int = 0
    ignored: bool = False  # not an expansion


@dataclass
class Attributor:
    plays: PlayLedger
    horizon_days: int

    def attribute(self, outcome: StoredOutcomeFacts) -> Attribution:
        result = Attribution()
        if not outcome.kind.is_expansion:
            result.ignored = True
            return result
        expansion = Expansion(
            outcome_id=outcome.outcome_id,
            at=utc_stamp(outcome.occurred_at),
            kind=outcome.kind.value,
            amount=outcome.amount,
            currency=outcome.currency,
        )
        for play in self.plays.plays(outcome.account_id):
            if play.tier != 0 or not within_horizon(
                fired_at(play.firing), outcome.occurred_at, self.horizon_days
            ):
                continue
            if play.expanded is None and self.plays.record_expansion(play, expansion):
                result.attributed += 1
                logger.info(
                    "expansion attributed",
                    extra={
                        "play_id": play.play_id,
                        "trigger": play.trigger,
                        "outcome_id": outcome.outcome_id,
                    },
                )
            else:
                result.already_expanded += 1
        return result
