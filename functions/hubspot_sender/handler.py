"""HubSpot deliveries (SQS) → one HubSpot task per play, never two.

Each delivery is claimed in the deliveries ledger, created through the paced HubSpot client and
recorded with its task id; a redelivered message finds the task id and stops. After an attempt
that stopped mid-send (or failed so that HubSpot may have created the task) the task is looked up
by the play id it carries before another is created — on a redelivery, once HubSpot's search index
shows every task that attempt could have created.

What HubSpot answers decides what happens to the message:
- 401 / 403 (the token is revoked or rotated, a scope is missing), still so once the secret was
  read again: nothing can be delivered until someone fixes the token, so the message and the rest
  of the batch are held (visibility) and come back every AUTH_HOLD; they are never dead-lettered
  (near the queue's receive limit a fresh copy replaces the message), and the HubSpotTokenRejected
  / HubSpotScopeMissing alarm says what to fix. Once a new token is in the secret, delivery resumes;
- a 400 naming the owner or an associated record HubSpot does not know (any more): the task is
  created without it, with a note saying so, and the play records the problem (GET .../signals,
  the HubSpotFallbacks metric);
- an owner given by e-mail or a company by domain only is resolved first (shared/delivery/
  hubspot_resolve.py); one that resolves to nobody, an archived owner or several companies leaves the
  task unassigned or unassociated, with a note, and the play records why (the HubSpotUnresolved
  metric); a lookup HubSpot cannot answer now (429, 5xx) puts the message back, nothing created;
- any other permanent 4xx (validation, unknown association target): straight to the DLQ with
  HubSpot's message, correlationId, context and errors[], so the rest of the batch goes on;
- 429, 423 Locked and 477 Migration in Progress beyond what the client could wait out: the message
  goes back to the queue, invisible for as long as HubSpot asks; the daily limit and a migration
  hold back the rest of the batch too;
- a 5xx or a timeout once the request went out: back to the queue at once (HubSpot may have
  created the task; the redelivery looks first), then dead-lettered after the queue's retries;
- connection failures the client could not get past: retried by the queue likewise.
A message that is not a valid delivery is dead-lettered with the validation error.

The same queue carries `task.close` messages (shared/routing/autoclose.py): the play's task is
completed with a note saying why, at most once (the deliveries ledger, channel `hubspot_close`; the
close re-reads the task first, so repeating it is harmless), and left alone when a person completed
or deleted it (shared/delivery/task_close.py). HubSpot's answers are handled as above: 401 / 403 hold
it, 429 puts it back, another 4xx dead-letters it (the play records the failure).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError
from pydantic import ValidationError

from shared.accounts.store import AccountStore
from shared.delivery.hubspot import (
    DAILY,
    MIGRATION,
    SEARCH_INDEX_LAG,
    HubSpotAuthFailed,
    HubSpotClient,
    HubSpotRejected,
    HubSpotThrottled,
    StaleReferences,
    stale_references,
    without_stale_references,
)
from shared.delivery.hubspot_access import hubspot_client
from shared.delivery.hubspot_resolve import (
    HubSpotResolver,
    Resolution,
    ResolutionCache,
    ResolutionUnavailable,
)
from shared.delivery.ledger import Claim, DeliveryLedger, deliver_once
from shared.delivery.queue import DeliveryQueue
from shared.delivery.secrets import CachedSecret
from shared.delivery.task_close import CLOSE_CHANNEL, Closed, CloseResult, close_task
from shared.events.validation import describe_errors
from shared.observability import logger, metrics, traced
from shared.readback.tasks import TaskEntry, TaskRegistry
from shared.resources import HUBSPOT_QUEUE, HUBSPOT_SENDER_FUNCTION
from shared.routing.ledger import PlayLedger
from shared.routing.messages import CLOSE_TYPE, PlayDelivery, TaskClose
from shared.routing.models import TaskFacts, TaskStatus
from shared.rules.plays import Channel
from shared.settings import load_settings
from shared.storage.dynamo import aws_client, dynamodb_client, is_conditional_failure
from shared.wiring import Wiring

from .settings import HubSpotSenderSettings

wiring = Wiring()

processor = BatchProcessor(event_type=EventType.SQS)
FUNCTION_TIMEOUT = HUBSPOT_SENDER_FUNCTION.timeout  # the stack sets the same (one spec, shared/resources.py)
# While HubSpot refuses the token, held messages come back this often to try a token put in since.
AUTH_HOLD = timedelta(minutes=5)
# Stop starting HubSpot calls this long before Lambda's own deadline.
_DEADLINE_MARGIN_SECONDS = 5.0
_BATCH_WIDE_POLICIES = (DAILY, MIGRATION)  # limits of the whole portal, not of one request


@dataclass
class HubSpotSender:
    client: HubSpotClient
    ledger: DeliveryLedger
    queue: DeliveryQueue  # its own queue and DLQ: holds and dead letters
    plays: PlayLedger | None = None  # where a delivery's problems are recorded (GET .../signals)
    token: CachedSecret | None = None  # re-read while HubSpot refuses it
    # Where each created task is registered for the read-back (functions/hubspot_poller).
    tasks: TaskRegistry | None = None
    # Finds owner and company ids by e-mail and domain (None: uncached lookups with `client`).
    resolver: HubSpotResolver | None = None
    # Where a company found by domain is recorded for the deal read-back (None: not recorded).
    accounts: AccountStore | None = None
    clock: Callable[[], float] = field(default=time.monotonic)
    # The fingerprint of the token HubSpot refused last (never the token): while the secret still
    # holds it, batches are held without asking HubSpot again.
    _refused_token: str | None = None

    def deliver(self, delivery: PlayDelivery, now: datetime, deadline: float) -> Claim:
        if delivery.channel is not Channel.HUBSPOT_TASK:
            raise ValueError(f"play {delivery.play_id}: a {delivery.channel} delivery on the HubSpot queue")
        fallbacks: list[StaleReferences] = []
        resolutions: list[Resolution] = []
        claim = deliver_once(
            self.ledger,
            Channel.HUBSPOT_TASK.value,
            delivery.play_id,
            now,
            lambda: self._create(delivery, deadline, now, fallbacks, resolutions),
            # Refused for sure: no task was created (create_task stops at an ambiguous failure; a
            # failed lookup comes before any creation).
            definite_failure=lambda error: isinstance(
                error, HubSpotRejected | HubSpotThrottled | ResolutionUnavailable
            ),
            find=lambda: self.client.find_task(delivery.play_id, deadline),
            # The claiming attempt may send until it times out; its task shows in search only
            # SEARCH_INDEX_LAG later. A lookup any sooner could miss it and create a second task.
            stale_after=FUNCTION_TIMEOUT + SEARCH_INDEX_LAG,
        )
        if resolutions:
            self._record_resolution(delivery, resolutions[0], now)
            self._record_company(delivery, resolutions[0])
        if fallbacks:
            self._record_fallback(delivery, fallbacks, now)
        if claim.external_id:
            # Idempotent: a redelivery (or a retry after this write failed) writes the same again.
            sent = resolutions[0].delivery if resolutions else delivery
            owner = sent.owner.hubspot_owner_id if sent.owner else None
            if any(stale.owner_id for stale in fallbacks):
                owner = None  # created unassigned
            self._register_task(delivery, claim.external_id, owner, now)
        return claim

    def close(self, message: TaskClose, now: datetime, deadline: float) -> tuple[Closed, bool]:
        """Complete the play's stale task with a note, once (auto-close); what was done, and whether
        this attempt did it. The registry knows a close is in flight before HubSpot is asked, so the
        read-back never takes Upswing's completion for a person's."""
        if self.tasks is not None:
            self.tasks.mark_closing(message.task_id, now)
        claim = deliver_once(
            self.ledger,
            CLOSE_CHANNEL,
            message.play_id,
            now,
            lambda: close_task(self.client, message, deadline).ledger_id(),
            # close_task reads the task before changing it: any failed attempt can simply be repeated,
            # and an attempt that died mid-way is its own lookup.
            definite_failure=lambda error: True,
            find=lambda: None,
            stale_after=FUNCTION_TIMEOUT,
        )
        assert claim.external_id is not None
        closed = Closed.from_ledger(claim.external_id)
        # Idempotent: a redelivery (or a retry after one of these writes failed) writes the same again.
        if self.tasks is not None:
            if closed.result is CloseResult.CLOSED:
                self.tasks.closed_by_upswing(message.task_id, closed.modified_ms, now)
            else:
                self.tasks.settle_closing(message.task_id)
        if self.plays is not None:
            if closed.result is CloseResult.CLOSED:
                facts = TaskFacts(
                    task_id=message.task_id, status=TaskStatus.COMPLETED, modified_ms=closed.modified_ms
                )
                self.plays.record_task_change(message.account_id, message.play_id, facts)
            try:
                self.plays.record_auto_close_result(
                    message.account_id, message.play_id, closed.result.value, now
                )
            except ClientError as error:
                if not is_conditional_failure(error):
                    raise  # the message is retried; every write here is idempotent
                logger.warning(
                    "the play of a closed task is not in the ledger", extra={"play_id": message.play_id}
                )
        return closed, claim.fresh

    def record_close_failure(self, message: TaskClose, error: HubSpotRejected, now: datetime) -> None:
        """HubSpot refused the close for good (dead-lettered): the play says so, with HubSpot's reason."""
        try:
            if self.tasks is not None:
                self.tasks.settle_closing(message.task_id)
            if self.plays is not None:
                self.plays.record_auto_close_result(
                    message.account_id, message.play_id, f"failed: {error}"[:1000], now
                )
        except ClientError as failure:  # the DLQ and the log still tell
            logger.error(
                "could not record the close failure on the play",
                extra={"play_id": message.play_id, "error": failure.response.get("Error", {}).get("Code")},
            )

    def _register_task(self, delivery: PlayDelivery, task_id: str, owner: str | None, now: datetime) -> None:
        """The task → play mapping the read-back needs, and the task id on the play (GET .../signals)."""
        due = self.client.due_instant(delivery)
        if self.tasks is not None:
            entry = TaskEntry(task_id, delivery.account_id, delivery.play_id, owner_id=owner, due=due)
            # modified_ms 0: whatever HubSpot reports of the task later is newer.
            self.tasks.register(entry, now)
        if self.plays is None:
            return
        try:
            self.plays.record_task_created(delivery.account_id, delivery.play_id, task_id, owner, due, now)
        except ClientError as error:
            if not is_conditional_failure(error):
                raise  # the message is retried; both writes are idempotent
            logger.warning(
                "the play of a created task is not in the ledger", extra={"play_id": delivery.play_id}
            )

    def record_failure(self, delivery: PlayDelivery, error: HubSpotRejected, now: datetime) -> None:
        """A task HubSpot refused for good (dead-lettered): the play says so, with HubSpot's reason."""
        if self.plays is None:
            return
        try:
            self.plays.record_task_failure(
                delivery.account_id, delivery.play_id, str(error), error.correlation_id, now
            )
        except ClientError as failure:  # the DLQ and the log still tell
            logger.error(
                "could not record the task failure on the play",
                extra={"play_id": delivery.play_id, "error": failure.response.get("Error", {}).get("Code")},
            )

    def _create(
        self,
        delivery: PlayDelivery,
        deadline: float,
        now: datetime,
        fallbacks: list[StaleReferences],
        resolutions: list[Resolution],
    ) -> str:
        """Resolve the owner and company named by e-mail and domain (shared/delivery/hubspot_resolve.py),
        then create the task; when HubSpot refuses an owner or record it does not know, create it without
        them (each refusal is definite: no task was created), with a note saying so."""
        resolver = self.resolver or HubSpotResolver(self.client)
        resolution = resolver.resolve(delivery, deadline, now)
        resolutions.append(resolution)
        # Counted here, whatever becomes of the creation: these requests were made (or saved).
        if resolution.looked_up:
            metrics.add_metric(name="HubSpotLookups", unit=MetricUnit.Count, value=resolution.looked_up)
        if resolution.cached:
            metrics.add_metric(name="HubSpotLookupCacheHits", unit=MetricUnit.Count, value=resolution.cached)
        attempt = resolution.delivery
        for _ in range(3):  # the owner, then the records: HubSpot may name one problem at a time
            try:
                return self.client.create_task(attempt, deadline)
            except HubSpotAuthFailed:
                raise
            except HubSpotRejected as rejected:
                stale = stale_references(rejected, attempt)
                if stale is None:
                    raise
                logger.warning(
                    "HubSpot does not know the play's owner or record: creating the task without it",
                    extra={
                        "play_id": delivery.play_id,
                        "owner_id": stale.owner_id,
                        "record_ids": sorted(stale.record_ids),
                        **rejected.details.log_fields(),
                    },
                )
                fallbacks.append(stale)
                # An id found by e-mail or domain that HubSpot refuses now: ask HubSpot again next time.
                resolver.forget(delivery, attempt, stale)
                attempt = without_stale_references(attempt, stale)
        return self.client.create_task(attempt, deadline)

    def _record_resolution(self, delivery: PlayDelivery, resolution: Resolution, now: datetime) -> None:
        """What could not be resolved, once the task exists: on the play (GET .../signals), counted."""
        if not resolution.problems:
            return
        metrics.add_metric(name="HubSpotUnresolved", unit=MetricUnit.Count, value=len(resolution.problems))
        logger.warning(
            "HubSpot task created without an owner or company named by e-mail or domain",
            extra={"play_id": delivery.play_id, "problems": len(resolution.problems)},
        )
        if self.plays is None:
            return
        try:
            for problem in resolution.problems:
                self.plays.record_delivery_problem(
                    delivery.account_id, delivery.play_id, Channel.HUBSPOT_TASK.value, problem, now
                )
        except ClientError as error:  # the task exists and says so; the metric and the log still tell
            logger.error(
                "could not record the delivery problem on the play",
                extra={"play_id": delivery.play_id, "error": error.response.get("Error", {}).get("Code")},
            )

    def _record_company(self, delivery: PlayDelivery, resolution: Resolution) -> None:
        """A company found by domain goes on the account's item, so the deal read-back finds the
        account by it (shared/accounts/store.py). A failure here leaves the task as it is."""
        if self.accounts is None or resolution.company_by_domain is None:
            return
        domain, company_id = resolution.company_by_domain
        try:
            self.accounts.record_resolved_company(delivery.account_id, domain, company_id)
        except ClientError as error:  # the next task of the account records it again
            logger.error(
                "could not record the company found by domain on the account",
                extra={"play_id": delivery.play_id, "error": error.response.get("Error", {}).get("Code")},
            )

    def _record_fallback(
        self, delivery: PlayDelivery, fallbacks: list[StaleReferences], now: datetime
    ) -> None:
        metrics.add_metric(name="HubSpotFallbacks", unit=MetricUnit.Count, value=1)
        problem = "; ".join(stale.describe() for stale in fallbacks) + (
            ": the task was created without it, with a note (fix the account's owner or HubSpot ids)"
        )
        if self.plays is None:
            return
        try:
            self.plays.record_delivery_problem(
                delivery.account_id, delivery.play_id, Channel.HUBSPOT_TASK.value, problem, now
            )
        except ClientError as error:  # the task exists; the metric and the log still tell
            logger.error(
                "could not record the delivery problem on the play",
                extra={"play_id": delivery.play_id, "error": error.response.get("Error", {}).get("Code")},
            )

    def token_refused(self, error: HubSpotAuthFailed) -> None:
        """Remember which token HubSpot refused (its fingerprint), so later batches do not ask again."""
        self._refused_token = _fingerprint(self.token()) if self.token else None

    def still_refused(self) -> bool:
        """Whether the secret still holds the token HubSpot refused (read afresh)."""
        if self._refused_token is None or self.token is None:
            return False
        self.token.forget()
        if _fingerprint(self.token()) == self._refused_token:
            return True
        self._refused_token = None
        logger.info("a new HubSpot token is in the secret: delivering again")
        return False


class TokenRefused(Exception):
    """The message is held until the HubSpot token is fixed."""


@wiring.once
def sender() -> HubSpotSender:
    settings = load_settings(HubSpotSenderSettings)
    dynamodb = dynamodb_client()
    client, token = hubspot_client(
        settings.client_settings(),
        settings.secret_id,
        settings.deliveries_table,
        secrets=aws_client("secretsmanager"),
        dynamodb=dynamodb,
    )
    return HubSpotSender(
        client=client,
        ledger=DeliveryLedger(dynamodb, settings.deliveries_table, settings.retention_days),
        queue=DeliveryQueue(
            aws_client("sqs"),
            settings.queue_url,
            settings.dead_letter_queue_url,
            consumer=HUBSPOT_SENDER_FUNCTION,
            max_receives=HUBSPOT_QUEUE.max_receive_count,
        ),
        plays=PlayLedger(dynamodb, settings.plays_table, settings.retention_days),
        token=token,
        tasks=TaskRegistry(dynamodb, settings.plays_table, settings.retention_days),
        resolver=HubSpotResolver(client, ResolutionCache(dynamodb, settings.deliveries_table)),
        accounts=AccountStore(dynamodb, settings.accounts_table) if settings.accounts_table else None,
    )


@logger.inject_lambda_context
@metrics.log_metrics
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    remaining = context.get_remaining_time_in_millis() / 1000
    return send_tasks(event, sender(), deadline=time.monotonic() + remaining - _DEADLINE_MARGIN_SECONDS)


def send_tasks(event: dict[str, Any], hubspot: HubSpotSender, deadline: float) -> dict[str, Any]:
    portal_limit: HubSpotThrottled | None = None
    refused: HubSpotAuthFailed | None = None
    token_still_refused = hubspot.still_refused()

    def send_record(record: SQSRecord) -> None:
        nonlocal portal_limit, refused
        if portal_limit is not None:  # no point asking again before it ends
            hubspot.queue.hold(record, portal_limit.wait_seconds)
            raise portal_limit
        if token_still_refused or refused is not None:
            _held_for_token(hubspot, record, refused)
            return
        model = TaskClose if _message_type(record) == CLOSE_TYPE else PlayDelivery
        try:
            delivery = model.model_validate_json(record.body)
        except ValidationError as error:
            reason = f"not a {'task close' if model is TaskClose else 'play delivery'}: " + "; ".join(
                describe_errors(error, model, noun="message" if model is TaskClose else "delivery")
            )
            _dead_lettered(hubspot, record, reason, kind="invalid message")
            return
        try:
            if isinstance(delivery, TaskClose):
                _close(hubspot, delivery, deadline)
                return
            claim = hubspot.deliver(delivery, datetime.now(UTC), deadline)
        except HubSpotAuthFailed as error:
            refused = error
            hubspot.token_refused(error)
            metrics.add_metric(
                name="HubSpotTokenRejected" if error.status == 401 else "HubSpotScopeMissing",
                unit=MetricUnit.Count,
                value=1,
            )
            logger.error(error.what_to_fix, extra={"play_id": delivery.play_id, **error.details.log_fields()})
            _held_for_token(hubspot, record, error)
            return
        except HubSpotRejected as error:
            kind = f"HubSpot {error.status} {error.category}"
            if isinstance(delivery, TaskClose):
                hubspot.record_close_failure(delivery, error, datetime.now(UTC))
            else:
                hubspot.record_failure(delivery, error, datetime.now(UTC))
            _dead_lettered(
                hubspot,
                record,
                str(error),
                kind=kind,
                play_id=delivery.play_id,
                correlation_id=error.correlation_id,
                details=error.details.log_fields(),
            )
            return
        except HubSpotThrottled as error:
            hubspot.queue.hold(record, error.wait_seconds)
            if error.policy in _BATCH_WIDE_POLICIES:
                portal_limit = error
            metrics.add_metric(name="HubSpotThrottled", unit=MetricUnit.Count, value=1)
            raise
        metrics.add_metric(
            name="HubSpotTasksCreated" if claim.fresh else "HubSpotRedeliveries",
            unit=MetricUnit.Count,
            value=1,
        )
        logger.info("hubspot task", extra={"play_id": delivery.play_id, "task_id": claim.external_id})

    answer = process_partial_response(event=event, record_handler=send_record, processor=processor)
    return dict(answer)


def _message_type(record: SQSRecord) -> str | None:
    """The body's `type` (`play.deliver` or `task.close`): the body, not the message attribute, since a
    fresh copy put back by hold_without_dead_lettering carries no attributes."""
    try:
        document = json.loads(record.body)
    except ValueError:
        return None  # not JSON: the delivery parser says so, and it goes to the DLQ
    return str(document.get("type")) if isinstance(document, dict) else None


def _close(hubspot: HubSpotSender, message: TaskClose, deadline: float) -> None:
    closed, fresh = hubspot.close(message, datetime.now(UTC), deadline)
    if fresh:
        metrics.add_metric(
            name="TasksAutoClosed" if closed.result is CloseResult.CLOSED else "TasksAutoCloseLeftAlone",
            unit=MetricUnit.Count,
            value=1,
        )
    logger.info(
        "hubspot task auto-close",
        extra={"play_id": message.play_id, "task_id": message.task_id, "result": closed.result.value},
    )


def _held_for_token(hubspot: HubSpotSender, record: SQSRecord, error: HubSpotAuthFailed | None) -> None:
    """Hold the message until a working token is in the secret (never to the DLQ)."""
    metrics.add_metric(name="HubSpotHeldForToken", unit=MetricUnit.Count, value=1)
    if hubspot.queue.hold_without_dead_lettering(record, AUTH_HOLD.total_seconds()):
        raise TokenRefused(error.what_to_fix if error else "HubSpot refuses the token in the secret")


def _dead_lettered(
    hubspot: HubSpotSender,
    record: SQSRecord,
    reason: str,
    *,
    kind: str,
    play_id: str | None = None,
    correlation_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """To the DLQ with the full reason; the log gets its kind and HubSpot's ids, codes and context,
    not its messages (they can quote property values, which may be personal data)."""
    hubspot.queue.dead_letter(record, reason, hubspot_correlation_id=correlation_id or "")
    metrics.add_metric(name="HubSpotDeadLettered", unit=MetricUnit.Count, value=1)
    logger.error("delivery dead-lettered", extra={"play_id": play_id, "kind": kind, **(details or {})})


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
