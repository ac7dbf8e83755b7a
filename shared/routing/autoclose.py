"""Auto-closing stale HubSpot tasks: the scheduler's half (deciding); the HubSpot sender acts.

A play with `auto_close: {after: 7d}` (docs/rules.md, "Auto-closing stale tasks") has each of its
HubSpot tasks watched (shared/routing/watches.py). Every run, the scheduler takes a bounded page of
the watches whose check is due and, for each, asks the rules whether the trigger's signal holds now
(the same question as before an escalation tier). Holding clears `not_holding_since`; not holding
sets it at the first such check, and once `not_holding_since + after` has come, the close is decided:
one conditional write on the play (only while its task is open and not worked, only once), then a
`task.close` message to the HubSpot sender's queue, which completes the task with a note (at most
once: its deliveries ledger). Should the hand-over fail after the decision, the watch is still due
and the next run hands the decided close over again; the sender recognises it.

The check before the deadline is moved to the deadline, so "after 7 days" means 7 days (plus the
scheduler's period) after the first check that found the signal not holding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from shared.observability import logger
from shared.routing.ledger import PlayLedger
from shared.routing.messages import TaskClose
from shared.routing.models import PlayRecord, TaskStatus
from shared.routing.router import SignalCheck
from shared.routing.watches import AUTO_CLOSE_PER_RUN, AutoCloseWatches, Watch
from shared.rules.durations import days
from shared.rules.language import Ruleset


class CloseSender(Protocol):
    def close_task(self, message: TaskClose) -> None:
        """Put a `task.close` on the HubSpot queue (raises when it could not be sent)."""


@dataclass
class AutoCloser:
    ruleset: Ruleset
    plays: PlayLedger
    watches: AutoCloseWatches
    signal_holds: SignalCheck
    sender: CloseSender

    def run(
        self, now: datetime, time_left: Callable[[], bool], limit: int = AUTO_CLOSE_PER_RUN
    ) -> dict[str, int]:
        """Check the due watches (one page, at most `limit`); counts by outcome. One watch failing is
        logged and checked again next run; the others go on."""
        tally: dict[str, int] = {}
        for watch in self.watches.due(now, limit):
            if not time_left():
                break
            try:
                outcome = self.check(watch, now)
            except Exception:  # one play's failure must not hold up the others; it is due again next run
                logger.exception("auto-close check failed", extra={"play_id": watch.play_id})
                outcome = "failed"
            tally[outcome] = tally.get(outcome, 0) + 1
        return tally

    def check(self, due: Watch, now: datetime) -> str:
        """One watched task: `closing` (decided now or before: handed to the sender), `holds`, `not
        holding` (the clock runs), `waiting` (no task yet), `ended` (nothing to close any more) or
        `not due` (the index was behind)."""
        watch = self.watches.get(due.account_id, due.play_id)
        if watch is None or watch.check_at > now:
            return "not due"
        record = self.plays.get(watch.account_id, watch.play_id)
        if record is None:
            self.watches.end(watch, "the play expired", now)
            return "ended"
        if record.auto_close:  # decided by an earlier run whose hand-over did not finish
            self._hand_over(record)
            self.watches.end(watch, "closing", now)
            return "closing"
        ended = _nothing_to_close(record)
        play = self.ruleset.plays.get(record.play)
        if ended is None and (play is None or play.auto_close is None):
            ended = "auto_close is no longer set on the play"
        if ended:
            self.watches.end(watch, ended, now)
            return "ended"
        assert play is not None
        assert play.auto_close is not None
        if record.task is None or record.task.task_id is None:
            self.watches.reschedule(watch, now + self.watches.check_every, watch.not_holding_since)
            return "waiting"
        # A trigger the active ruleset no longer has cannot hold (it was retired).
        if record.trigger in self.ruleset.triggers and self.signal_holds(
            record.account_id, record.trigger, now
        ):
            self.watches.reschedule(watch, now + self.watches.check_every, None)
            return "holds"
        since = watch.not_holding_since or now
        deadline = since + timedelta(days=days(play.auto_close.after))
        if now < deadline:
            self.watches.reschedule(watch, min(now + self.watches.check_every, deadline), since)
            return "not holding"
        decision = {
            "decided_at": _stamp(now),
            "not_holding_since": _stamp(since),
            "after": play.auto_close.after,
        }
        if self.plays.decide_auto_close(record.account_id, record.play_id, decision):
            record = replace(record, auto_close=decision)
            logger.info("auto-close decided", extra={"play_id": record.play_id, "trigger": record.trigger})
        else:
            current = self.plays.get(record.account_id, record.play_id)
            if current is None or not current.auto_close:
                self.watches.end(watch, "the task was worked or deleted first", now)
                return "ended"
            record = current  # decided by a concurrent run: hand it over (the sender acts once)
        self._hand_over(record)
        self.watches.end(watch, "closing", now)
        return "closing"

    def _hand_over(self, record: PlayRecord) -> None:
        assert record.auto_close is not None
        assert record.task is not None
        assert record.task.task_id is not None
        decision = record.auto_close
        self.sender.close_task(
            TaskClose(
                play_id=record.play_id,
                account_id=record.account_id,
                task_id=record.task.task_id,
                trigger=record.trigger,
                play=record.play,
                tier=record.tier,
                not_holding_since=datetime.fromisoformat(decision["not_holding_since"]),
                after=decision["after"],
                decided_at=datetime.fromisoformat(decision["decided_at"]),
            )
        )


def _nothing_to_close(record: PlayRecord) -> str | None:
    """Why the play's task needs no closing any more (None: it may)."""
    task = record.task
    if task is None:
        return None
    if task.status is TaskStatus.DELETED:
        return "the task was deleted"
    if task.status is TaskStatus.COMPLETED or task.worked:
        return "the task was completed"
    if task.failed and not task.task_id:
        return "HubSpot refused the task"
    return None


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
