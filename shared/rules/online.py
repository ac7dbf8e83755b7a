"""Evaluating an account online: read, evaluate, commit once, hand off — safe to run twice.

Used by the evaluator function (on counter changes) and by the API's signals route (read-only).

Shadow rulesets (shared/rules/versions.py) are evaluated in the same pass, after the live one, and
committed in the same transaction: their firings are stored with their evidence (arm `shadow`)
but never put in the outbox, so they never reach the router. Each keeps its own trigger state
(cooldowns, arming) in the account's state item under `shadow:<version>:<trigger>`, so a shadow
trigger of the same name never cools down or disarms the live one; they see the live contacts
(`contacted_within`) and never add one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from shared.accounts.models import AccountProfile
from shared.observability import logger
from shared.rules.aggregates import Aggregates
from shared.rules.engine import (
    AccountState,
    Evaluation,
    Firing,
    ReadPlan,
    TriggerOutcome,
    compiled_ruleset,
    evaluate_account,
    read_plan,
)
from shared.rules.firings import fired_message, firing_id
from shared.rules.golive import WentLive, decide
from shared.rules.language import Ruleset
from shared.rules.loading import load_ruleset
from shared.rules.ports import ConcurrentEvaluation, FiringLedger, Profiles
from shared.rules.versions import DeployedRuleset, deployment
from shared.sqs import Outgoing, send_batch

BUNDLE_ROOT = Path(__file__).resolve().parents[2]  # functions/, shared/ and rules/ live here
_COMMIT_ATTEMPTS = 3
SHADOW_STATE_PREFIX = "shadow:"

# Sends `trigger.fired` messages; returns the firing ids it could send.
Publisher = Callable[[list[dict[str, Any]]], set[str]]


@cache
def active_ruleset(path: str) -> tuple[Ruleset, ReadPlan]:
    """The ruleset the deployment runs (validated again at load: a bad file fails loudly, at once)."""
    ruleset = load_ruleset(BUNDLE_ROOT / path)
    return ruleset, read_plan(ruleset)


@cache
def active_deployment(live_path: str, shadow_paths: tuple[str, ...]) -> tuple[DeployedRuleset, ...]:
    """The live ruleset and the shadow ones the deployment runs, as deployed (checked at synth)."""
    return tuple(deployment(BUNDLE_ROOT, live_path, shadow_paths))


@dataclass(frozen=True)
class ShadowRuleset:
    ruleset: Ruleset
    plan: ReadPlan

    @classmethod
    def of(cls, ruleset: Ruleset) -> ShadowRuleset:
        return cls(ruleset, read_plan(ruleset))

    @property
    def state_prefix(self) -> str:
        return f"{SHADOW_STATE_PREFIX}{self.ruleset.version}:"


@dataclass
class OnlineEvaluator:
    ruleset: Ruleset
    plan: ReadPlan
    aggregates: Aggregates
    accounts: Profiles
    firings: FiringLedger
    publish: Publisher
    shadows: tuple[ShadowRuleset, ...] = ()

    def evaluate(self, account_id: str, at: datetime) -> Evaluation:
        """Evaluate, commit the state and firings once, then hand the firings off."""
        for _ in range(_COMMIT_ATTEMPTS):
            stored = self.firings.load(account_id)
            sent = self._hand_off(account_id, self.firings.pending_firings(account_id, stored.pending))
            profile = self.accounts.get(account_id)
            evaluation = self._evaluate(account_id, at, stored.state, profile, explain=False)
            state, shadow_firings = self._evaluate_shadows(account_id, at, stored.state, evaluation, profile)
            try:
                self.firings.commit(
                    account_id,
                    stored,
                    state,
                    evaluation.firings,
                    handed_off=sent,
                    shadow_firings=shadow_firings,
                )
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
            # The live ruleset only: shadow rulesets' states carry over untouched (never routed anyway).
            profile = self.accounts.get(account_id)
            evaluation = self._evaluate(account_id, at, stored.state, profile, explain=False)
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
        state = self.firings.load(account_id).state
        return self._evaluate(account_id, at, state, self.accounts.get(account_id), explain=True)

    def _evaluate(
        self,
        account_id: str,
        at: datetime,
        state: AccountState,
        profile: AccountProfile | None,
        *,
        explain: bool,
    ) -> Evaluation:
        return evaluate_account(
            self.ruleset, self.aggregates, account_id, profile, state, at, self.plan, explain=explain
        )

    def _evaluate_shadows(
        self,
        account_id: str,
        at: datetime,
        before: AccountState,
        live: Evaluation,
        profile: AccountProfile | None,
    ) -> tuple[AccountState, list[Firing]]:
        """The live evaluation's state with each shadow ruleset's trigger states, and their firings."""
        if not self.shadows:
            return live.state, []
        triggers = dict(live.state.triggers)
        firings = []
        for shadow in self.shadows:
            prefix = shadow.state_prefix
            own = {k.removeprefix(prefix): v for k, v in before.triggers.items() if k.startswith(prefix)}
            evaluation = evaluate_account(
                shadow.ruleset,
                self.aggregates,
                account_id,
                profile,
                AccountState(own, before.last_contacted_at),
                at,
                shadow.plan,
                explain=False,
            )
            triggers.update({prefix + name: value for name, value in evaluation.state.triggers.items()})
            firings += [replace(firing, shadow_ruleset=True) for firing in evaluation.firings]
        return AccountState(triggers, live.state.last_contacted_at), firings

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
    "ShadowRuleset",
    "active_deployment",
    "active_ruleset",
    "firing_id",
    "sqs_publisher",
    "trigger_view",
]
