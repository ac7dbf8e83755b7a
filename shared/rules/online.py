"""Evaluating an account online: read, evaluate, commit once, hand off — safe to run twice.

Used by the evaluator function (on counter changes) and by the API's signals route (read-only).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from shared.accounts.store import AccountStore
from shared.observability import logger
from shared.rules.aggregates import Aggregates
from shared.rules.engine import (
    AccountState,
    Evaluation,
    ReadPlan,
    TriggerOutcome,
    compiled_ruleset,
    evaluate_account,
    read_plan,
)
from shared.rules.firings import ConcurrentEvaluation, FiringStore, fired_message, firing_id
from shared.rules.golive import WentLive, decide
from shared.rules.language import Ruleset
from shared.rules.loading import load_ruleset
from shared.sqs import Outgoing, send_batch

BUNDLE_ROOT = Path(__file__).resolve().parents[2]  # functions/, shared/ and rules/ live here
_COMMIT_ATTEMPTS = 3

# Sends `trigger.fired` messages; returns the firing ids it could send.
Publisher = Callable[[list[dict[str, Any]]], set[str]]


@cache
def active_ruleset(path: str) -> tuple[Ruleset, ReadPlan]:
    """The ruleset the deployment runs (validated again at load: a bad file fails loudly, at once)."""
    ruleset = load_ruleset(BUNDLE_ROOT / path)
    return ruleset, read_plan(ruleset)


@dataclass
class OnlineEvaluator:
    ruleset: Ruleset
    plan: ReadPlan
    aggregates: Aggregates
    accounts: AccountStore
    firings: FiringStore
    publish: Publisher

    def evaluate(self, account_id: str, at: datetime) -> Evaluation:
        """Evaluate, commit the state and firings once, then hand the firings off."""
        for _ in range(_COMMIT_ATTEMPTS):
            stored = self.firings.load(account_id)
            sent = self._hand_off(account_id, self.firings.pending_firings(account_id, stored.pending))
            evaluation = self._evaluate(account_id, at, stored.state, explain=False)
            try:
                self.firings.commit(account_id, stored, evaluation.state, evaluation.firings, handed_off=sent)
            except ConcurrentEvaluation:
                logger.info("concurrent evaluation: evaluating again", extra={"attempt": _})
                continue
            self._hand_off(account_id, [fired_message(firing) for firing in evaluation.firings])
            return evaluation
        raise ConcurrentEvaluation(account_id)

    def go_live(self, account_id: str, at: datetime) -> WentLive:
        """The end of a history import for the account: evaluate it once with its whole history,
        commit per the ruleset's `go_live` setting (shared/rules/golive.py), hand off what it routes.
        Once per account: a second call answers what the first decided and changes nothing."""
        for _ in range(_COMMIT_ATTEMPTS):
            stored = self.firings.load(account_id)
            if stored.went_live:
                self._hand_off(account_id, self.firings.pending_firings(account_id, stored.pending))
                return WentLive.from_item(account_id, stored.went_live)
            sent = self._hand_off(account_id, self.firings.pending_firings(account_id, stored.pending))
            evaluation = self._evaluate(account_id, at, stored.state, explain=False)
            decision = decide(evaluation, stored.state, self.ruleset.go_live)
            try:
                self.firings.commit(
                    account_id,
                    stored,
                    decision.state,
                    decision.firings,
                    handed_off=sent,
                    went_live=decision.went_live.as_item(),
                    marks=decision.marks,
                )
            except ConcurrentEvaluation:
                logger.info("concurrent evaluation: going live again", extra={"attempt": _})
                continue
            self._hand_off(
                account_id,
                [fired_message(firing, decision.marks.get(firing.trigger)) for firing in decision.firings],
            )
            return decision.went_live
        raise ConcurrentEvaluation(account_id)

    def went_live(self, account_id: str) -> WentLive | None:
        """What going live decided for the account, if it went live already."""
        stored = self.firings.load(account_id)
        return WentLive.from_item(account_id, stored.went_live) if stored.went_live else None

    def family_parent(self, account_id: str) -> str | None:
        """The parent to evaluate too when this account's counters changed: its family's roll-up moved.
        None without family-scope rules (no read then) or for an account without a parent."""
        if not compiled_ruleset(self.ruleset).family_metrics:
            return None
        profile = self.accounts.get(account_id)
        return profile.parent_account_id if profile else None

    def preview(self, account_id: str, at: datetime) -> Evaluation:
        """What the rules say now, every condition explained, committing nothing (GET .../signals)."""
        return self._evaluate(account_id, at, self.firings.load(account_id).state, explain=True)

    def _evaluate(self, account_id: str, at: datetime, state: AccountState, *, explain: bool) -> Evaluation:
        profile = self.accounts.get(account_id)
        return evaluate_account(
            self.ruleset, self.aggregates, account_id, profile, state, at, self.plan, explain=explain
        )

    def _hand_off(self, account_id: str, messages: list[dict[str, Any]]) -> set[str]:
        """Send the messages; the ids of those sent (all of them, or HandOffFailed)."""
        if not messages:
            return set()
        sent = self.publish(messages)
        self.firings.mark_handed_off(account_id, sent)
        if len(sent) < len(messages):
            # Committed but not sent: the next evaluation of the account sends them again.
            raise HandOffFailed(f"{len(messages) - len(sent)} of {len(messages)} firings not handed off yet")
        return sent


def trigger_view(outcome: TriggerOutcome) -> dict[str, Any]:
    """One trigger as GET .../signals shows it; an excluded one names the exclusions that applied."""
    view: dict[str, Any] = {
        "trigger": outcome.trigger,
        "held": outcome.held,
        "status": outcome.reason,
        "condition": outcome.condition.as_evidence() if outcome.condition else None,
    }
    if outcome.exclusions:
        view["exclusions_checked"] = [check.as_evidence() for check in outcome.exclusions]
        view["excluded_by"] = [check.exclusion for check in outcome.exclusions if check.applies]
    return view


class HandOffFailed(Exception):
    pass


def sqs_publisher(sqs: Any, queue_url: str) -> Publisher:
    def publish(messages: list[dict[str, Any]]) -> set[str]:
        outgoing = [
            Outgoing(
                message["firing_id"],
                json.dumps(message, separators=(",", ":"), ensure_ascii=False),
                message["type"],
            )
            for message in messages
        ]
        unsent = set(send_batch(sqs, queue_url, outgoing))
        return {message.key for message in outgoing if message.key not in unsent}

    return publish


__all__ = [
    "ConcurrentEvaluation",
    "HandOffFailed",
    "OnlineEvaluator",
    "active_ruleset",
    "firing_id",
    "sqs_publisher",
    "trigger_view",
]
