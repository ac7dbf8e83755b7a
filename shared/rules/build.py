"""The online evaluator as the functions build it: one recipe for the three that run the rules.

The evaluator function fires (it publishes `trigger.fired`); the API's signals route and the
router's scheduler only ask what the rules say now, so they get a read-only evaluator whose
publisher refuses. The tables, the ruleset file and the retention come from each function's
settings, which all have the fields of `EvaluatorSettings` below.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from shared.accounts.store import AccountStore
from shared.counters.store import CounterStore
from shared.rules.dynamo_aggregates import DynamoAggregates
from shared.rules.firings import FiringStore
from shared.rules.language import Ruleset
from shared.rules.online import OnlineEvaluator, Publisher, ShadowRuleset, active_ruleset
from shared.storage.dynamo import dynamodb_client


class EvaluatorSettings(Protocol):
    @property
    def ruleset_path(self) -> str: ...
    @property
    def counters_table(self) -> str: ...
    @property
    def accounts_table(self) -> str: ...
    @property
    def firings_table(self) -> str: ...
    @property
    def retention_days(self) -> int: ...


def read_only(messages: list[dict[str, Any]]) -> set[str]:
    """The publisher of an evaluator that previews: it never fires, so it never hands off."""
    raise RuntimeError("a read-only evaluator previews the rules; firing is the evaluator function's job")


def build_online_evaluator(
    settings: EvaluatorSettings,
    publish: Publisher = read_only,
    *,
    consistent_reads: bool = True,
    shadows: Sequence[Ruleset] = (),
) -> OnlineEvaluator:
    """`consistent_reads=False` for previews (GET .../signals): eventual reads cost half. `shadows`:
    rulesets evaluated beside the live one, recorded, never handed off (the evaluator function's)."""
    ruleset, plan = active_ruleset(settings.ruleset_path)
    client = dynamodb_client()
    accounts = AccountStore(client, settings.accounts_table)
    counters = CounterStore(client, settings.counters_table, settings.retention_days)
    return OnlineEvaluator(
        ruleset=ruleset,
        plan=plan,
        aggregates=DynamoAggregates(counters, consistent=consistent_reads, children=accounts.children_of),
        accounts=accounts,
        firings=FiringStore(client, settings.firings_table, settings.retention_days),
        publish=publish,
        shadows=tuple(ShadowRuleset.of(shadow) for shadow in shadows),
    )
