"""The play router: a firing in, plays out — to the right owner, within budget, exactly once.

For each `trigger.fired` message the router looks up the trigger's play, schedules its later
escalation tiers, and routes the first: do-not-contact suppresses it; otherwise the owner is
resolved (the account's owner for the tier's role, or the play's fallback pool), the fatigue
budgets are charged, and one `PlayDelivery` per channel goes to that channel's queue, with a
`play.routed` event on the bus. A play over budget is deferred to the end of the budget's period
and the scheduler routes it then. Every step is recorded in the play ledger, so a redelivered
message finds its play and does not route it twice.

A pre-existing firing (go-live after a history import, shared/rules/golive.py) whose `release_at`
is still to come is deferred to it, and its escalation tiers count from it: `spread` this way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints

from shared.accounts.models import AccountProfile, HubSpotRefs, Owner
from shared.experiments.assignment import Arm
from shared.observability import logger
from shared.routing.budgets import charges, owner_counter, period_of
from shared.routing.dispatch import routed_event
from shared.routing.ledger import hand_off_overdue_at
from shared.routing.messages import DeliveryOwner, PlayDelivery, WebhookTarget
from shared.routing.models import FINAL, WAITING, AlreadyTaken, OverBudget, PlayRecord, PlayStatus
from shared.routing.narrative import due_date, priority, render
from shared.routing.ports import Accounts, Dispatcher, Plays, Watches
from shared.rules.durations import days
from shared.rules.golive import go_live_mark
from shared.rules.language import Ruleset
from shared.rules.plays import Channel, Period, Pick, Play, Tier, channel_kind, destination_of

# Whether a trigger's condition still holds for an account now (before an escalation tier).
SignalCheck = Callable[[str, str, datetime], bool]


class FiringEvidence(BaseModel):
    """The fields of a firing the router relies on (the rest travels along untouched)."""

    model_config = ConfigDict(extra="allow")

    ruleset_version: str
    trigger: str
    account_id: str
    evaluated_at: datetime
    owner_role: str
    play: str
    score: dict[str, Any]
    condition: dict[str, Any]


class FiredMessage(BaseModel):
    """A `trigger.fired` message (docs/rules.md, "Hand-off")."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["trigger.fired"]
    firing_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{24}$")]
    firing: FiringEvidence


def play_id(firing_id: str, tier: int) -> str:
    return hashlib.sha256(f"{firing_id}\n{tier}".encode()).hexdigest()[:24]


@dataclass
class Router:
    ruleset: Ruleset
    accounts: Accounts
    ledger: Plays
    dispatcher: Dispatcher
    signal_holds: SignalCheck
    # The business calendar (the HubSpot portal's zone): SLAs count business days from its date.
    business_zone: tzinfo = UTC
    # Where HubSpot tasks of plays with `auto_close` are watched (shared/routing/autoclose.py).
    watches: Watches | None = None

    def route_firing(self, message: FiredMessage, now: datetime) -> PlayRecord:
        """Schedule the play's escalation tiers and route its first; the first tier's record."""
        firing = message.firing.model_dump(mode="json")
        arm = firing.get("arm")
        unrouted = arm in (Arm.HOLDOUT, Arm.SHADOW)
        tiers = [] if unrouted else self._play(firing).tiers()  # held out or shadow: escalates to no one
        fired_at = message.firing.evaluated_at
        mark = go_live_mark(firing)
        release = datetime.fromisoformat(mark["release_at"]) if mark else None
        if release is not None and release > fired_at:
            fired_at = release  # a spread pre-existing play: its tiers follow its own first day
        for number, tier in enumerate(tiers[1:], start=1):
            due_at = fired_at + timedelta(days=days(tier.after))
            self.ledger.schedule(self._new_record(message.firing_id, number, firing, now, due_at=due_at))
        existing = self.ledger.get(message.firing.account_id, play_id(message.firing_id, 0))
        if existing:
            return self._route(existing, now)
        record = self._new_record(message.firing_id, 0, firing, now, due_at=now)
        salt = record.experiment_salt
        if salt and not self.ledger.in_experiment(record.account_id, record.trigger, salt):
            record = replace(record, trial=True)
        if unrouted:
            # Recorded and counted like any firing (a held-out one in its arm's comparison group),
            # never routed.
            experiment = firing["experiment"]
            if arm == Arm.HOLDOUT:
                status = PlayStatus.HELD_OUT
                reason = (
                    f"held out: experiment {experiment['salt']}, draw {experiment['draw']} "
                    f"< {experiment['holdout_percent']}%"
                )
            else:
                status = PlayStatus.SHADOW
                reason = f"shadow: outside the rollout ({experiment.get('rollout')})"
            return self._settle(record.moved(status, now, due_at=None, reason=reason))
        if release is not None and release > now:
            reason = f"go-live: pre-existing trigger, spread to {release.date().isoformat()}"
            return self._settle(record.moved(PlayStatus.DEFERRED, now, due_at=release, reason=reason))
        return self._route(record, now)

    def release(self, record: PlayRecord, now: datetime) -> PlayRecord:
        """Route a deferred play, or an escalation tier whose day has come (if its signal holds);
        finish the hand-off of a play accepted long enough ago but never handed over."""
        # The due index is eventually consistent: decide on the ledger's current word.
        current = self.ledger.get(record.account_id, record.play_id) or record
        if current.status is PlayStatus.ACCEPTED:
            # Its hand-off failed or its invocation died after the accept; a release has no
            # message that would come back to retry it, so this is the retry.
            return current if hand_off_overdue_at(current) > now else self._dispatch(current)
        if current.status not in WAITING or (current.due_at and current.due_at > now):
            return current
        record = current
        if record.status is PlayStatus.SCHEDULED and record.tier > 0:
            stop = self._escalation_stop(record)
            if stop:
                return self._settle(record.moved(PlayStatus.STOPPED, now, due_at=None, reason=stop))
        if record.status is PlayStatus.SCHEDULED and not self.signal_holds(
            record.account_id, record.trigger, now
        ):
            return self._settle(
                record.moved(PlayStatus.LAPSED, now, due_at=None, reason="the signal cleared")
            )
        return self._route(record, now)

    def _escalation_stop(self, record: PlayRecord) -> str | None:
        """Why an escalation tier must not go out although its day has come: the play did its work
        (an earlier tier's HubSpot task was completed, as the read-back recorded it), the account
        expanded after the firing (an expansion attributed to its first tier), an earlier tier's task
        was auto-closed (an escalation presumes the signal persisted; it had not held for the play's
        auto_close.after), or the account now has an open expansion opportunity. None: escalate (if
        the signal still holds)."""
        profile = self.accounts.get(record.account_id)
        if profile and profile.flags.open_expansion_opportunity:
            return "the account has an open expansion opportunity"
        for tier in range(record.tier):
            earlier = self.ledger.get(record.account_id, play_id(record.firing_id, tier))
            if earlier and earlier.expanded:
                grew = earlier.expanded
                return (
                    f"the account expanded after the firing: {grew['kind']} of {grew['amount']} "
                    f"{grew['currency']} on {grew['at']} (outcome {grew['outcome_id']})"
                )
            if earlier and earlier.task and earlier.task.worked:
                worked = earlier.task.worked
                return f"tier {tier}'s task was completed (worked) at {worked['at']} by owner {worked['by']}"
            if earlier and earlier.auto_close:
                since = earlier.auto_close["not_holding_since"]
                return f"tier {tier}'s task was auto-closed: the signal has not held since {since}"
        return None

    # ── routing one play tier ─────────────────────────────────────────────────────────────────

    def _route(self, record: PlayRecord, now: datetime) -> PlayRecord:
        if record.status in FINAL:
            return record  # a redelivery: done already
        if record.status is PlayStatus.ACCEPTED:
            return self._dispatch(record)  # accepted, but the hand-off did not finish
        if record.due_at and record.due_at > now:
            return record  # waiting: the scheduler releases it

        profile = self.accounts.get(record.account_id)
        if profile and profile.flags.do_not_contact:
            return self._settle(
                record.moved(PlayStatus.SUPPRESSED, now, due_at=None, reason="do not contact")
            )

        play = self._play(record.firing)
        tier = play.tiers()[record.tier]
        owner = self._owner(record, play, tier, profile, now)
        deliveries, skipped = self._deliveries(record, play, tier, profile, owner, now)
        accepted = record.moved(
            PlayStatus.ACCEPTED,
            now,
            due_at=None,
            reason=None,
            owner=owner,
            deliveries=tuple(deliveries),
            skipped=skipped,
        )
        creates_task = any(delivery.channel is Channel.HUBSPOT_TASK for delivery in deliveries)
        try:
            self.ledger.accept(
                accepted,
                charges(
                    self.ruleset.budgets,
                    record.account_id,
                    owner,
                    creates_task,
                    now,
                    trigger=record.trigger if record.tier == 0 else None,
                ),
            )
        except OverBudget as over:
            logger.info("play deferred", extra={"play_id": record.play_id, "budget": str(over)})
            return self._settle(record.moved(PlayStatus.DEFERRED, now, due_at=over.until, reason=str(over)))
        except AlreadyTaken:
            return self.ledger.get(record.account_id, record.play_id) or record
        return self._dispatch(accepted)

    def _dispatch(self, record: PlayRecord) -> PlayRecord:
        self._watch_for_auto_close(record)
        routed = record.moved(PlayStatus.ROUTED, record.updated_at)
        # A webhook POSTs the `play.routed` detail itself: the same document the bus gets, the same
        # on every hand-over of this play (it depends only on the accepted record).
        event = routed_event(routed)
        self.dispatcher.deliver(
            [
                delivery.model_copy(update={"event": event})
                if delivery.channel is Channel.WEBHOOK
                else delivery
                for delivery in record.deliveries
            ]
        )
        self.dispatcher.announce(routed)
        self.ledger.mark_routed(routed)
        return routed

    def _watch_for_auto_close(self, record: PlayRecord) -> None:
        """Before the task can exist: watch it if the play closes stale tasks (idempotent)."""
        play = self.ruleset.plays.get(record.play)
        if self.watches is None or play is None or play.auto_close is None:
            return
        if any(delivery.channel is Channel.HUBSPOT_TASK for delivery in record.deliveries):
            self.watches.watch(record, record.updated_at + self.watches.check_every)

    def _settle(self, record: PlayRecord) -> PlayRecord:
        try:
            self.ledger.settle(record)
        except AlreadyTaken:
            return self.ledger.get(record.account_id, record.play_id) or record
        return record

    # ── owners and deliveries ─────────────────────────────────────────────────────────────────

    def _owner(
        self, record: PlayRecord, play: Play, tier: Tier, profile: AccountProfile | None, now: datetime
    ) -> DeliveryOwner | None:
        """The account's owner for the tier's role when one of the tier's channels reaches them
        (a channel that cannot is skipped, visibly), else one from the play's fallback pool for the
        account's segment."""
        role = tier.role or str(record.firing["owner_role"])
        own = profile.owners.get(role) if profile else None
        slack_channel = play.slack.channel_for(profile.segment if profile else None, role)
        if own and _reachable(own, tier.channels, slack_channel is not None):
            return _delivery_owner(role, own, from_pool=False)
        pool_name, pool = _pool(play, profile)
        if pool:
            return _delivery_owner(role, self._pick(record.play, pool_name, pool, play, now), from_pool=True)
        return _delivery_owner(role, own, from_pool=False) if own else None

    def _pick(self, play_name: str, pool_name: str, pool: list[Owner], play: Play, now: datetime) -> Owner:
        assert play.fallback
        if play.fallback.pick is Pick.ROUND_ROBIN:
            return pool[self.ledger.next_turn(f"pool#{play_name}#{pool_name}") % len(pool)]
        # Least loaded: the fewest new tasks today (the owners' daily budget counters); ties go to
        # the first in the pool's order.
        counters = [owner_counter(_delivery_owner("pool", owner, from_pool=True)) for owner in pool]
        loads = self.ledger.counts(counters, period_of(Period.DAY, now)[0])
        return min(zip(pool, counters, strict=True), key=lambda candidate: loads[candidate[1]])[0]

    def _deliveries(
        self,
        record: PlayRecord,
        play: Play,
        tier: Tier,
        profile: AccountProfile | None,
        owner: DeliveryOwner | None,
        now: datetime,
    ) -> tuple[list[PlayDelivery], dict[str, str]]:
        due = due_date(now, play.sla_business_days, self.business_zone)
        owner_model = Owner(name=owner.name, email=owner.email) if owner else None
        subject, body = render(play, record.firing, record.account_id, profile, owner_model, due)
        deliveries, skipped = [], {}
        role = tier.role or str(record.firing["owner_role"])
        for name in dict.fromkeys(tier.channels):
            channel = channel_kind(name)
            targets: dict[str, Any] = {}
            if channel is Channel.EVENT:
                continue  # every routed play is published as `play.routed` anyway
            if channel is Channel.EMAIL and not (owner and owner.email):
                skipped[name] = "nobody to email: the owner has no e-mail address"
                continue
            if channel is Channel.SLACK:
                targets["slack_channel"] = play.slack.channel_for(profile.segment if profile else None, role)
                if targets["slack_channel"] is None and not (owner and owner.email):
                    skipped[name] = (
                        "nobody to message on Slack: the owner has no e-mail address to find them by, "
                        "and the play names no Slack channel for this account's segment or role"
                    )
                    continue
            if channel is Channel.WEBHOOK:
                destination = str(destination_of(name))
                declared = self.ruleset.destinations.webhooks.get(destination)
                if declared is None:  # fired by an older ruleset that declared it
                    skipped[name] = f"no webhook destination {destination!r} in the active ruleset"
                    continue
                targets["webhook"] = WebhookTarget(name=destination, **declared.model_dump())
            deliveries.append(
                PlayDelivery(
                    play_id=record.play_id,
                    channel=channel,
                    firing_id=record.firing_id,
                    account_id=record.account_id,
                    account_name=profile.name if profile else record.account_id,
                    trigger=record.trigger,
                    play=record.play,
                    tier=record.tier,
                    ruleset_version=str(record.firing["ruleset_version"]),
                    subject=subject,
                    body=body,
                    due=due,
                    priority=priority(
                        float(record.firing["score"]["total"]),
                        profile.arr if profile else None,
                        play.priority,
                    ),
                    task_type=play.task_type,
                    owner=owner,
                    hubspot=profile.hubspot if profile else HubSpotRefs(),
                    routed_at=now,
                    **targets,
                )
            )
        return deliveries, skipped

    def _play(self, firing: dict[str, Any]) -> Play:
        play = self.ruleset.plays.get(str(firing["play"]))
        if play is None:
            # Fired by an older ruleset whose play this one no longer defines: route it plainly.
            logger.warning("play not in the active ruleset", extra={"play": firing["play"]})
            return Play()
        return play

    def _new_record(
        self, firing_id: str, tier: int, firing: dict[str, Any], now: datetime, *, due_at: datetime
    ) -> PlayRecord:
        """A play tier not yet in the ledger: scheduled for `due_at` (now, for the first tier)."""
        return PlayRecord(
            account_id=str(firing["account_id"]),
            play_id=play_id(firing_id, tier),
            firing_id=firing_id,
            tier=tier,
            firing=firing,
            status=PlayStatus.SCHEDULED,
            updated_at=now,
            due_at=due_at,
        )


def _reachable(owner: Owner, channels: list[str], slack_channel: bool) -> bool:
    """Whether any of the channels reaches the owner (an event or webhook tier reaches anyone, and so
    does Slack when the play posts in a channel; a Slack DM finds the owner by e-mail address). An
    e-mail address reaches a HubSpot owner too: the HubSpot sender finds the owner's id by it."""
    kinds = {channel_kind(name) for name in channels}
    return (
        bool(kinds & {Channel.EVENT, Channel.WEBHOOK})
        or (Channel.HUBSPOT_TASK in kinds and (owner.hubspot_owner_id or owner.email) is not None)
        or (Channel.EMAIL in kinds and owner.email is not None)
        or (Channel.SLACK in kinds and (slack_channel or owner.email is not None))
    )


def _pool(play: Play, profile: AccountProfile | None) -> tuple[str, list[Owner]]:
    if not play.fallback:
        return "", []
    segment = profile.segment if profile and profile.segment in play.fallback.pools else "default"
    return segment or "default", play.fallback.pools.get(segment or "default", [])


def _delivery_owner(role: str, owner: Owner, *, from_pool: bool) -> DeliveryOwner:
    return DeliveryOwner(
        role=role,
        name=owner.name,
        email=owner.email,
        hubspot_owner_id=owner.hubspot_owner_id,
        from_pool=from_pool,
    )
