"""HubSpot CRM tasks: the request a `PlayDelivery` becomes, and a client that sends it politely.

Politely means: every request is paced under the app's burst limit first (shared/delivery/pacing.py);
a 429 is waited out as HubSpot asks (Retry-After, else its policy name), a 5xx or a transport error
is retried with exponential backoff, and nothing ever sleeps past the caller's deadline (a Lambda
has only so much time left). What cannot be settled in time becomes a typed error the handler maps
to a queue action: HubSpotRejected → dead-letter queue, HubSpotThrottled → back to the queue for
`wait_seconds`, HubSpotUnavailable → back to the queue for a later attempt.

HubSpot has no idempotency key. The caller keeps a ledger per play id; this client writes the play
id into the task body (a marker line, `Upswing play <play_id>`) so `find_task` can find a task whose
creation outcome was lost. After an ambiguous failure (a timeout after the request went out, a 5xx)
`create_task` does not try again: HubSpot's search index lags creation by a few seconds, so a lookup
made now could miss the task and a second one would be created. It raises HubSpotUnavailable at
once; the message goes back to the queue and its redelivery looks the task up when the index has
caught up (`SEARCH_INDEX_LAG`, used by the sender's ledger). Failures that cannot have created a task
(429s, a connection never made) are retried here as usual.

HubSpot's other answers: 401 / 403 (a revoked or rotated token, a missing scope) raise
HubSpotAuthFailed once the token has been read again (`forget_token`, then `token`) and a fresh one,
if any, was tried too; 423 Locked and 477 Migration in Progress are waited out like a 429 (nothing was
done) and become HubSpotThrottled when the wait is too long; the `X-HubSpot-RateLimit-*` headers of
every answer pace the next request before HubSpot has to refuse it. Every rejection keeps HubSpot's
`correlationId`, `category`, `context` and `errors[]` (HubSpotErrorDetails).

The private-app token is fetched from the `token` callable for every request (the caller caches it)
and never reaches a log line, an exception or a repr.
"""

from __future__ import annotations

import json
import random
import re
import time as _time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import httpx

from shared.accounts.models import HubSpotRefs
from shared.delivery.html import text_to_html
from shared.delivery.pacing import Pacer, PacingDeadlineExceeded
from shared.observability import logger
from shared.routing.messages import PlayDelivery
from shared.timezones import portal_zone

PLAY_MARKER = "Upswing play"  # the body's last line: "Upswing play <play_id>", found by CONTAINS_TOKEN
# The optional task custom property holding the play id (`upswing hubspot create-property`): found by
# EQ, which does not depend on how HubSpot's search tokenizes a body.
PLAY_ID_PROPERTY = "upswing_play_id"
TASK_BODY_LIMIT = 65_536  # HubSpot's limit for hs_task_body, in characters
TEN_SECONDLY_ROLLING = "TEN_SECONDLY_ROLLING"
DAILY = "DAILY"
LOCAL_PACER = "LOCAL_PACER"  # HubSpotThrottled.policy when our own pacer has no slot before the deadline
LOCKED = "LOCKED"  # 423: HubSpot holds a lock on the records; it lasts about 2 s
MIGRATION = "MIGRATION_IN_PROGRESS"  # 477: the portal moves between data centres (Retry-After, up to a day)
UNKNOWN = "UNKNOWN"
# Reading tasks back (shared/readback/): what a search or a batch read asks for, and HubSpot's bounds.
READBACK_PROPERTIES = (
    "hs_task_status",
    "hubspot_owner_id",
    "hs_timestamp",
    "hs_task_completion_date",
    "hs_lastmodifieddate",
)
SEARCH_PAGE_LIMIT = 200  # results per search page
SEARCH_RESULT_LIMIT = 10_000  # results one search query can page through (`after` stops there)
BATCH_READ_LIMIT = 100  # inputs per batch read
# Reading closed-won deals back (shared/readback/deals.py): what a deal search asks for.
DEAL_READBACK_PROPERTIES = (
    "amount",
    "deal_currency_code",
    "closedate",
    "pipeline",
    "dealstage",
    "dealtype",
    "hs_is_closed_won",
    "hs_lastmodifieddate",
)
ASSOCIATIONS_READ_LIMIT = 1000  # ids per associations batch read (HubSpot's limit since 2025-02-10)
# deal → company, the "Primary" label (HUBSPOT_DEFINED); 341 is the unlabelled deal → company type.
PRIMARY_COMPANY_ASSOCIATION_TYPE = 5
# Companies read per domain search: one is the answer, a second says the domain is ambiguous.
COMPANY_MATCHES_READ = 5
# How long after a creation HubSpot's search surely finds the task. HubSpot documents no figure and
# a lag of a few seconds is what is seen; the margin costs only a later lookup of a lost attempt.
SEARCH_INDEX_LAG = timedelta(seconds=30)

_HUBSPOT_WINDOW_SECONDS = 10.0  # the rolling window HubSpot counts TEN_SECONDLY_ROLLING over
_SHORT_POLICY_WAIT_SECONDS = 1.0  # other 429 policies (the search endpoints' per-second limit)
_LOCK_WAIT_SECONDS = 2.0  # HubSpot: "locks last for 2 seconds"
_MIGRATION_WAIT_SECONDS = 300.0  # a 477 without Retry-After (HubSpot says it sends one)
_TRUNCATED_NOTE = "\n\n[Truncated: HubSpot keeps at most 65,536 characters of a task body.]"
_BACKOFF_BASE_SECONDS = 0.2
_BACKOFF_CAP_SECONDS = 10.0
_MESSAGE_LIMIT = 1000  # HubSpot's messages are short; a proxy's HTML error page is not
# The request never left this process: re-sending cannot create a second task.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class HubSpotSettings:
    """Where HubSpot is and how hard we may push it; defaults fit a Free/Starter portal."""

    base_url: str = "https://api.hubapi.com"
    tasks_path: str = "/crm/v3/objects/tasks"  # configurable: date-versioned paths exist
    deals_path: str = "/crm/v3/objects/deals"
    associations_path: str = "/crm/v4/associations"
    owners_path: str = "/crm/v3/owners"  # owners by e-mail (shared/delivery/hubspot_resolve.py)
    companies_path: str = "/crm/v3/objects/companies"  # companies by domain (a search)
    company_association_type: int = 192
    contact_association_type: int = 204
    deal_association_type: int = 216
    requests_per_window: int = 100  # per process: divide the app's limit by the sender's concurrency
    window_seconds: float = 10.0
    timeout_seconds: float = 10.0
    max_attempts: int = 5  # for 429 / 5xx / timeouts
    # The search endpoints have their own, lower limit (5 requests / s per account, every sender
    # together): a process-local pacer unless the caller passes a shared one (`search_pacer`).
    search_requests_per_window: int = 4
    search_window_seconds: float = 1.0
    # The hour of the due day, in the portal's time zone, a task falls due (hs_timestamp is an instant).
    due_hour: int = 17
    # The portal's time zone (HubSpot: Settings > Account defaults): due dates fall in it, and its
    # DAILY limit resets at its midnight. An IANA name; see portal_zone.
    portal_timezone: str = "UTC"
    # The task custom property that carries the play id (None: the body marker only).
    play_id_property: str | None = None
    # Pause when HubSpot says fewer requests than this remain in its window (the other senders').
    rate_limit_reserve: int = 2

    def __post_init__(self) -> None:
        if not 0 <= self.due_hour <= 23:
            raise ValueError(f"the due hour must be 0-23 (an hour of the day), got {self.due_hour}")


class HubSpotError(Exception):
    """Every error the client raises. None of them carries the token.

    From create_task, HubSpotRejected and HubSpotThrottled mean no task was created; after a
    HubSpotUnavailable the task may exist (look it up, after SEARCH_INDEX_LAG, before creating it).
    """


@dataclass(frozen=True)
class HubSpotErrorDetails:
    """What HubSpot says about a refused request. `context` and `errors[]` name the property or the
    record id at fault; `correlationId` is what HubSpot support asks for."""

    status: int
    category: str
    message: str
    correlation_id: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    errors: tuple[dict[str, Any], ...] = ()

    def describe(self) -> str:
        """Everything, for the DLQ's `error` attribute (HubSpot's message may quote a value)."""
        text = f"HubSpot rejected the request: {self.status} {self.category}: {self.message}"
        extras = {
            "correlationId": self.correlation_id,
            "context": self.context or None,
            "errors": list(self.errors) or None,
        }
        shown = {name: value for name, value in extras.items() if value is not None}
        return f"{text} {json.dumps(shown, separators=(',', ':'), default=str)}" if shown else text

    def log_fields(self) -> dict[str, Any]:
        """For logs: ids, codes and the names HubSpot points at, never its free-text messages."""
        return {
            "status": self.status,
            "category": self.category,
            "correlation_id": self.correlation_id,
            "hubspot_context": self.context,
            "hubspot_errors": [
                {key: error[key] for key in ("code", "in", "context", "error", "name") if key in error}
                for error in self.errors
            ],
        }


class HubSpotRejected(HubSpotError):
    """A permanent 4xx: sending the same request again cannot succeed. HubSpot's message says why."""

    def __init__(self, details: HubSpotErrorDetails) -> None:
        super().__init__(details.describe())
        self.details = details
        self.status = details.status
        self.category = details.category
        self.message = details.message
        self.correlation_id = details.correlation_id


class HubSpotAuthFailed(HubSpotRejected):
    """401 (the token is revoked, rotated or wrong) or 403 (the app lacks a scope), still so after the
    secret was read again. No play can be delivered until someone fixes the token: hold, do not drop."""

    @property
    def what_to_fix(self) -> str:
        if self.status == 401:
            return (
                "HubSpot refused the private-app token (401): put a valid token in the HubSpot secret; "
                "held plays are delivered once it is there"
            )
        return (
            "HubSpot refused the private-app token's scopes (403): grant the app the missing scope "
            f"(HubSpot's context: {json.dumps(self.details.context or None)}), then store its token "
            "in the HubSpot secret"
        )


class HubSpotThrottled(HubSpotError):
    """Rate limited for longer than we may wait: try again in `wait_seconds` (`policy` says which limit)."""

    def __init__(self, wait_seconds: float, policy: str) -> None:
        super().__init__(f"HubSpot rate limit {policy}: retry in {wait_seconds:.1f} s")
        self.wait_seconds = wait_seconds
        self.policy = policy


class HubSpotUnavailable(HubSpotError):
    """5xx, timeouts or transport errors still failing after every attempt or at the deadline."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class TaskPage:
    """A page of a task search: HubSpot's results (id, properties, ...) and the next page's cursor."""

    results: tuple[dict[str, Any], ...]
    after: str | None


@dataclass(frozen=True)
class DealSearch:
    """Which deals a closed-won search returns: HubSpot's own `hs_is_closed_won`, or (when the portal's
    closed-won stages are named) `dealstage` IN those stage ids (stage ids are unique across pipelines,
    so one list serves every pipeline); optionally only some pipelines. `properties`: more deal
    properties to read (the one naming the outcome kind)."""

    closed_won_stages: tuple[str, ...] = ()
    pipelines: tuple[str, ...] = ()
    properties: tuple[str, ...] = ()


@dataclass(frozen=True)
class DealCompany:
    """A company a deal is associated with; `primary`: the association carries the Primary label."""

    company_id: str
    primary: bool


class SearchPacer(Protocol):
    """Grants search requests under HubSpot's per-account search limit (a local Pacer, or one shared
    by every sender: shared/delivery/shared_pacer.py). Raises PacingDeadlineExceeded."""

    def acquire(self, deadline: float | None = None) -> None: ...


class HubSpotClient:
    """Creates and finds Upswing's tasks. Create one per process and reuse it: the pacer lives here.

    `deadline` arguments are `clock()` values. `jitter` (uniform in [0, 1)) and `wall_clock` (for
    the DAILY limit's reset at the portal's midnight) are injectable so tests are deterministic.
    `forget_token` drops the caller's cached token, so the next `token()` reads the secret again.
    """

    def __init__(
        self,
        settings: HubSpotSettings,
        token: Callable[[], str],
        http: httpx.Client | None = None,
        pacer: Pacer | None = None,
        sleep: Callable[[float], None] = _time.sleep,
        clock: Callable[[], float] = _time.monotonic,
        *,
        jitter: Callable[[], float] = random.random,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        forget_token: Callable[[], None] = lambda: None,
        search_pacer: SearchPacer | None = None,
    ) -> None:
        self._settings = settings
        self._token = token
        self._forget_token = forget_token
        self._owns_http = http is None
        self._http = http or httpx.Client(timeout=settings.timeout_seconds)
        self._pacer = pacer or Pacer(settings.requests_per_window, settings.window_seconds, clock, sleep)
        self._search_pacer: SearchPacer = search_pacer or Pacer(
            settings.search_requests_per_window, settings.search_window_seconds, clock, sleep
        )
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter
        self._wall_clock = wall_clock
        self._portal_zone = portal_zone(settings.portal_timezone)
        # What HubSpot's rate-limit headers said: no request before these instants.
        self._paused_until = 0.0  # clock(): the ten-secondly window is (nearly) spent
        self._daily_spent_until: datetime | None = None  # wall clock: the daily limit is spent
        self._sent_with = ""  # the token of the last request (to tell whether re-reading changed it)

    def create_task(self, delivery: PlayDelivery, deadline: float) -> str:
        """Create the delivery's task and return its HubSpot id."""
        if not (delivery.owner and delivery.owner.hubspot_owner_id):
            logger.warning("HubSpot task without an owner", extra={"play_id": delivery.play_id})
        if not delivery.hubspot.company_id:
            logger.warning("HubSpot task without a company association", extra={"play_id": delivery.play_id})
        call = _Call(
            "create_task", delivery.play_id, self._settings.tasks_path, task_request(delivery, self._settings)
        )
        document = self._call(call, deadline, creates=True)
        return _object_id(document)

    def find_task(self, play_id: str, deadline: float) -> str | None:
        """The id of the (oldest) task carrying the play's id (property or body marker), or None."""
        body = search_request(play_id, self._settings.play_id_property)
        call = _Call("find_task", play_id, f"{self._settings.tasks_path}/search", body)
        results = self._call(call, deadline, search=True).get("results") or []
        return _object_id(results[0]) if results else None

    def owners_by_email(self, email: str, deadline: float, *, archived: bool, play_id: str = "") -> list[str]:
        """The ids of the HubSpot owners with this e-mail address (usually one, or none): the active
        ones, or with `archived` the archived ones only (HubSpot's Owners API answers one or the other).
        A plain GET, paced like every request; the address travels in the query, never in a log line."""
        query = urlencode({"email": email, "archived": "true" if archived else "false", "limit": 10})
        call = _Call("owners_by_email", play_id, f"{self._settings.owners_path}?{query}", None, method="GET")
        document = self._call(call, deadline)
        return [
            str(owner["id"])
            for owner in document.get("results") or []
            if isinstance(owner, dict) and owner.get("id") is not None
        ]

    def companies_by_domain(self, domain: str, deadline: float, play_id: str = "") -> tuple[list[str], int]:
        """The ids of (at most COMPANY_MATCHES_READ) companies whose `domain` is EQ `domain`, oldest
        first, and how many HubSpot says match in all: a search, paced by the shared search pacer."""
        body = {
            "filterGroups": [{"filters": [{"propertyName": "domain", "operator": "EQ", "value": domain}]}],
            "sorts": [{"propertyName": "createdate", "direction": "ASCENDING"}],
            "properties": ["domain", "name"],
            "limit": COMPANY_MATCHES_READ,
        }
        call = _Call("companies_by_domain", play_id, f"{self._settings.companies_path}/search", body)
        document = self._call(call, deadline, search=True)
        ids = [
            str(company["id"])
            for company in document.get("results") or []
            if isinstance(company, dict) and company.get("id") is not None
        ]
        total = document.get("total")
        return ids, total if isinstance(total, int) and total >= len(ids) else len(ids)

    def due_instant(self, delivery: PlayDelivery) -> str:
        """The task's hs_timestamp for this delivery (the instant it falls due), as create_task sends it."""
        return due_timestamp(delivery.due, self._settings.due_hour, self._portal_zone)

    def search_modified_tasks(self, since_ms: int, after: str | None, deadline: float) -> TaskPage:
        """One page of the tasks modified at or after `since_ms` (HubSpot's hs_lastmodifieddate, epoch
        ms), oldest change first: a search, so paced by the shared search pacer (5 / s per account)."""
        body = modified_tasks_request(since_ms, after, self._settings.play_id_property)
        call = _Call("search_modified_tasks", "", f"{self._settings.tasks_path}/search", body)
        document = self._call(call, deadline, search=True)
        results = [result for result in document.get("results") or [] if isinstance(result, dict)]
        next_after = ((document.get("paging") or {}).get("next") or {}).get("after")
        return TaskPage(tuple(results), str(next_after) if next_after else None)

    def search_closed_won_deals(
        self, since_ms: int, after: str | None, deadline: float, search: DealSearch
    ) -> TaskPage:
        """One page of the closed-won deals modified at or after `since_ms` (hs_lastmodifieddate, epoch
        ms), oldest change first: a search, so paced by the shared search pacer like the task search."""
        body = closed_won_deals_request(since_ms, after, search)
        call = _Call("search_closed_won_deals", "", f"{self._settings.deals_path}/search", body)
        document = self._call(call, deadline, search=True)
        results = [result for result in document.get("results") or [] if isinstance(result, dict)]
        next_after = ((document.get("paging") or {}).get("next") or {}).get("after")
        return TaskPage(tuple(results), str(next_after) if next_after else None)

    def deal_companies(self, deal_ids: list[str], deadline: float) -> dict[str, tuple[DealCompany, ...]]:
        """The companies of each deal (at most 1,000 deals): one associations batch read (v4), not a
        search. A deal without a company is absent (HubSpot answers 207 with an error for it, or 404
        when no deal has one); only the first page of a deal's companies is read (500 by default)."""
        if not 0 < len(deal_ids) <= ASSOCIATIONS_READ_LIMIT:
            raise ValueError(
                f"read 1 to {ASSOCIATIONS_READ_LIMIT} deals' companies at a time, not {len(deal_ids)}"
            )
        path = f"{self._settings.associations_path}/deals/companies/batch/read"
        body = {"inputs": [{"id": deal_id} for deal_id in deal_ids]}
        try:
            document = self._call(_Call("deal_companies", "", path, body), deadline)
        except HubSpotRejected as rejected:
            if rejected.status == 404:
                return {}
            raise
        found: dict[str, tuple[DealCompany, ...]] = {}
        for result in document.get("results") or []:
            if not isinstance(result, dict) or not isinstance(result.get("from"), dict):
                continue
            companies = tuple(
                DealCompany(
                    company_id=str(target["toObjectId"]),
                    primary=any(
                        kind.get("typeId") == PRIMARY_COMPANY_ASSOCIATION_TYPE
                        and kind.get("category") == "HUBSPOT_DEFINED"
                        for kind in target.get("associationTypes") or []
                        if isinstance(kind, dict)
                    ),
                )
                for target in result.get("to") or []
                if isinstance(target, dict) and target.get("toObjectId") is not None
            )
            if companies:
                found[str(result["from"].get("id"))] = companies
        return found

    def read_tasks(self, task_ids: list[str], deadline: float, *, archived: bool = False) -> dict[str, Any]:
        """The tasks HubSpot still has among `task_ids` (at most 100), by id: a batch read (not a
        search), of the live tasks or, with `archived`, of the deleted ones (with `archivedAt`). Ids
        HubSpot does not have are simply absent."""
        if not 0 < len(task_ids) <= BATCH_READ_LIMIT:
            raise ValueError(f"read 1 to {BATCH_READ_LIMIT} tasks at a time, not {len(task_ids)}")
        body = {"properties": list(READBACK_PROPERTIES), "inputs": [{"id": task_id} for task_id in task_ids]}
        path = f"{self._settings.tasks_path}/batch/read?archived={'true' if archived else 'false'}"
        try:
            document = self._call(_Call("read_tasks", "", path, body), deadline)
        except HubSpotRejected as rejected:
            if rejected.status == 404:  # none of them exists (HubSpot answers 207 when some do)
                return {}
            raise
        return {
            str(result["id"]): result
            for result in document.get("results") or []
            if isinstance(result, dict) and result.get("id") is not None
        }

    def read_task(self, task_id: str, properties: tuple[str, ...], deadline: float) -> dict[str, Any] | None:
        """GET one task with these properties; None when HubSpot has no such task (404: deleted)."""
        path = f"{self._settings.tasks_path}/{task_id}?properties={','.join(properties)}&archived=false"
        try:
            return self._call(_Call("read_task", "", path, None, method="GET"), deadline)
        except HubSpotRejected as rejected:
            if rejected.status == 404 and not isinstance(rejected, HubSpotAuthFailed):
                return None
            raise

    def update_task(self, task_id: str, properties: dict[str, str], deadline: float) -> dict[str, Any]:
        """PATCH one task's properties; the task as HubSpot answers it (with hs_lastmodifieddate).
        Sending the same values again changes nothing more, so 5xx and timeouts are retried here.
        HubSpotRejected with status 404 when the task is gone (deleted)."""
        call = _Call(
            "update_task", "", f"{self._settings.tasks_path}/{task_id}", {"properties": properties}, "PATCH"
        )
        return self._call(call, deadline)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> HubSpotClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __repr__(self) -> str:
        settings = self._settings
        return f"HubSpotClient(base_url={settings.base_url!r}, tasks_path={settings.tasks_path!r})"

    def _call(
        self, call: _Call, deadline: float, search: bool = False, creates: bool = False
    ) -> dict[str, Any]:
        """Send until HubSpot answers 2xx, waiting between attempts; raise what cannot be settled.

        A request that `creates` is not sent again once HubSpot may have acted on it (see the module's
        docstring): that failure is raised at once, as HubSpotUnavailable.
        """
        retry: _Retry | None = None
        refused: HubSpotAuthFailed | None = None
        for attempt in range(1, self._settings.max_attempts + 1):
            if retry is not None:
                self._wait(call, retry, attempt - 1, deadline)
            try:
                outcome = self._attempt(call, attempt, deadline, search)
            except HubSpotAuthFailed as error:
                # A rotated token may be in the secret already: read it again, once, and try it.
                failed_with, self._sent_with = self._sent_with, ""
                self._forget_token()
                if refused is not None or self._token() == failed_with:
                    logger.error(
                        "HubSpot refused the token", extra={**call.log_fields(), **error.details.log_fields()}
                    )
                    raise
                refused, retry = error, None
                continue
            if not isinstance(outcome, _Retry):
                return outcome
            if creates and outcome.outcome_unknown:
                logger.warning(
                    "HubSpot may have created the task; left for a later lookup", extra=call.log_fields()
                )
                raise HubSpotUnavailable(
                    f"HubSpot may have created the task ({outcome.reason}); the redelivery looks it up "
                    "before creating it"
                )
            retry = outcome
        if retry is None:  # no attempt left for the token read again
            assert refused is not None
            raise refused
        raise retry.give_up(self._settings.max_attempts)

    def _attempt(self, call: _Call, attempt: int, deadline: float, search: bool) -> dict[str, Any] | _Retry:
        self._pace(deadline, search)
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise HubSpotUnavailable("no time left before the deadline to send the request")
        token = self._token()
        self._sent_with = token
        try:
            response = self._http.request(
                call.method,
                self._settings.base_url.rstrip("/") + call.path,
                json=call.body,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                # A request must not outlive the deadline either.
                timeout=min(self._settings.timeout_seconds, remaining),
            )
        except httpx.TransportError as error:
            reason = _redacted(f"{type(error).__name__}: {error}", token)
            return _Retry(self._backoff(attempt), reason, outcome_unknown=not isinstance(error, _NOT_SENT))
        self._read_rate_limit_headers(response)
        return self._verdict(response, attempt, token, call)

    def _verdict(
        self, response: httpx.Response, attempt: int, token: str, call: _Call
    ) -> dict[str, Any] | _Retry:
        status = response.status_code
        document = _json_object(response)
        if 200 <= status < 300:
            if document is None:
                raise HubSpotUnavailable(f"HubSpot answered {status} without a JSON object")
            return document
        if status == 429:
            return self._rate_limited(response, document or {}, attempt)
        if status == 423:  # refused, nothing done: wait out the lock
            wait = max(_retry_after(response) or 0.0, _LOCK_WAIT_SECONDS) * (1 + self._jitter() / 2)
            return _Retry(wait, "HTTP 423 Locked", status=status, policy=LOCKED)
        if status == 477:  # refused, nothing done: the portal is moving between data centres
            wait = _retry_after(response) or _MIGRATION_WAIT_SECONDS
            return _Retry(wait, "HTTP 477 Migration in Progress", status=status, policy=MIGRATION)
        if status >= 500:
            return _Retry(self._backoff(attempt), f"HTTP {status}", status=status, outcome_unknown=True)
        details = _error_details(status, document or {}, response.text, token)
        if status in (401, 403):
            raise HubSpotAuthFailed(details)
        logger.warning("HubSpot rejected the request", extra={**call.log_fields(), **details.log_fields()})
        raise HubSpotRejected(details)

    def _rate_limited(self, response: httpx.Response, document: dict[str, Any], attempt: int) -> _Retry:
        policy = str(document.get("policyName") or UNKNOWN)
        if policy == DAILY:
            raise HubSpotThrottled(_seconds_until_midnight(self._wall_clock(), self._portal_zone), DAILY)
        wait = _retry_after(response)
        if wait is None and policy == TEN_SECONDLY_ROLLING:
            # Once a full window has passed, every request counted before the 429 has left it;
            # waiting longer on later attempts (the Node SDK's 10 s x attempt) buys nothing. The
            # jitter keeps concurrent senders from all coming back at the same instant.
            wait = _HUBSPOT_WINDOW_SECONDS + self._jitter()
        elif wait is None:
            wait = _SHORT_POLICY_WAIT_SECONDS * attempt
        return _Retry(wait, "HTTP 429", status=429, policy=policy)

    def _read_rate_limit_headers(self, response: httpx.Response) -> None:
        """Pause before HubSpot has to refuse: its headers say what is left of the app's window and
        of the portal's day (`X-HubSpot-RateLimit-Remaining`, `-Interval-Milliseconds`,
        `-Daily-Remaining`). Not every answer carries them (search answers never do)."""
        headers = response.headers
        remaining = _int_header(headers, "X-HubSpot-RateLimit-Remaining")
        if remaining is not None and remaining < self._settings.rate_limit_reserve:
            # The oldest requests leave the rolling window at some point within one interval.
            interval = _int_header(headers, "X-HubSpot-RateLimit-Interval-Milliseconds")
            seconds = interval / 1000 if interval else _HUBSPOT_WINDOW_SECONDS
            self._paused_until = max(self._paused_until, self._clock() + seconds)
        daily_remaining = _int_header(headers, "X-HubSpot-RateLimit-Daily-Remaining")
        if daily_remaining is not None and daily_remaining <= 0:
            now = self._wall_clock()
            self._daily_spent_until = now + timedelta(seconds=_seconds_until_midnight(now, self._portal_zone))

    def _backoff(self, attempt: int) -> float:
        """0.2 s, 0.4 s, 0.8 s... each stretched by up to 2x at random (jitter)."""
        wait = _BACKOFF_BASE_SECONDS * 2 ** (attempt - 1) * (1 + self._jitter())
        return min(wait, _BACKOFF_CAP_SECONDS)

    def _pace(self, deadline: float, search: bool) -> None:
        if self._daily_spent_until is not None:
            left = (self._daily_spent_until - self._wall_clock()).total_seconds()
            if left > 0:
                raise HubSpotThrottled(left, DAILY)
            self._daily_spent_until = None
        pause = self._paused_until - self._clock()
        if pause > 0:
            if self._clock() + pause > deadline:
                raise HubSpotThrottled(pause, TEN_SECONDLY_ROLLING)
            self._sleep(pause)
        try:
            self._pacer.acquire(deadline)
            if search:
                self._search_pacer.acquire(deadline)
        except PacingDeadlineExceeded as exceeded:
            raise HubSpotThrottled(exceeded.wait_seconds, LOCAL_PACER) from None

    def _wait(self, call: _Call, retry: _Retry, attempts: int, deadline: float) -> None:
        if self._clock() + retry.wait > deadline:
            raise retry.give_up(attempts)
        logger.warning(
            "HubSpot request failed; retrying",
            extra={
                **call.log_fields(),
                "status": retry.status,
                "error": retry.reason,
                "policy": retry.policy,
                "wait_seconds": round(retry.wait, 3),
                "attempt": attempts,
            },
        )
        self._sleep(retry.wait)


def task_request(delivery: PlayDelivery, settings: HubSpotSettings) -> dict[str, Any]:
    """The JSON body of POST {tasks_path} for one delivery."""
    properties = {
        "hs_timestamp": due_timestamp(delivery.due, settings.due_hour, portal_zone(settings.portal_timezone)),
        "hs_task_subject": delivery.subject,
        "hs_task_body": task_body_html(delivery.body, delivery.play_id),
        "hs_task_status": "NOT_STARTED",
        "hs_task_priority": delivery.priority,
        "hs_task_type": delivery.task_type,
    }
    if delivery.owner and delivery.owner.hubspot_owner_id:
        properties["hubspot_owner_id"] = delivery.owner.hubspot_owner_id
    if settings.play_id_property:
        properties[settings.play_id_property] = delivery.play_id
    return {"properties": properties, "associations": associations(delivery.hubspot, settings)}


def search_request(play_id: str, play_id_property: str | None = None) -> dict[str, Any]:
    """The body of POST {tasks_path}/search for the task carrying a play's id.

    With the custom property, its EQ filter comes first and the body marker stays as the other
    (ORed) filter group, for tasks created before the property existed. Oldest first, one result:
    should a duplicate exist, every lookup names the same, original task.
    """
    groups = [{"filters": [{"propertyName": "hs_task_body", "operator": "CONTAINS_TOKEN", "value": play_id}]}]
    if play_id_property:
        groups.insert(
            0, {"filters": [{"propertyName": play_id_property, "operator": "EQ", "value": play_id}]}
        )
    return {
        "filterGroups": groups,
        "sorts": [{"propertyName": "hs_createdate", "direction": "ASCENDING"}],
        "properties": ["hs_task_subject"],
        "limit": 1,
    }


def modified_tasks_request(since_ms: int, after: str | None, play_id_property: str | None) -> dict[str, Any]:
    """The body of POST {tasks_path}/search for the tasks changed since a watermark: GTE the
    watermark on hs_lastmodifieddate, oldest change first, a full page, the properties read back."""
    properties = list(READBACK_PROPERTIES)
    if play_id_property:
        properties.append(play_id_property)
    body: dict[str, Any] = {
        "filterGroups": [
            {"filters": [{"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": str(since_ms)}]}
        ],
        "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
        "properties": properties,
        "limit": SEARCH_PAGE_LIMIT,
    }
    if after:
        body["after"] = after
    return body


def closed_won_deals_request(since_ms: int, after: str | None, search: DealSearch) -> dict[str, Any]:
    """The body of POST {deals_path}/search for the closed-won deals changed since a watermark: one
    filter group (modified GTE the watermark, closed-won, the pipelines), oldest change first."""
    filters: list[dict[str, Any]] = [
        {"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": str(since_ms)}
    ]
    if search.closed_won_stages:
        stages = list(search.closed_won_stages)
        filters.append({"propertyName": "dealstage", "operator": "IN", "values": stages})
    else:
        filters.append({"propertyName": "hs_is_closed_won", "operator": "EQ", "value": "true"})
    if search.pipelines:
        filters.append({"propertyName": "pipeline", "operator": "IN", "values": list(search.pipelines)})
    body: dict[str, Any] = {
        "filterGroups": [{"filters": filters}],
        "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
        "properties": list(dict.fromkeys([*DEAL_READBACK_PROPERTIES, *search.properties])),
        "limit": SEARCH_PAGE_LIMIT,
    }
    if after:
        body["after"] = after
    return body


def due_timestamp(due: date, hour: int, zone: ZoneInfo) -> str:
    """`hour`:00 on the due day in the portal's time zone, as the UTC instant HubSpot stores.

    A Friday task in Sydney is due Friday 17:00 there (06:00 UTC), not Friday 17:00 UTC, which is
    already Saturday in Sydney.
    """
    local = datetime.combine(due, time(hour), tzinfo=zone)
    return local.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def task_body_html(body: str, play_id: str) -> str:
    """The plain-text body as simple HTML, then the play marker as its own paragraph; within
    HubSpot's TASK_BODY_LIMIT (the text is cut, with a note, so that the marker stays)."""
    marker = f"<p>{PLAY_MARKER} {play_id}</p>"
    html_body = text_to_html(body)
    if len(html_body) + len(marker) <= TASK_BODY_LIMIT:
        return html_body + marker
    # Cut the text, not the HTML (no half entity or tag): the longest prefix that fits.
    low, high = 0, len(body)
    while low < high:
        middle = (low + high + 1) // 2
        if len(text_to_html(body[:middle] + _TRUNCATED_NOTE)) + len(marker) <= TASK_BODY_LIMIT:
            low = middle
        else:
            high = middle - 1
    return text_to_html(body[:low] + _TRUNCATED_NOTE) + marker


def associations(refs: HubSpotRefs, settings: HubSpotSettings) -> list[dict[str, Any]]:
    """One HUBSPOT_DEFINED association per record the account's HubSpot refs name."""
    targets = (
        (refs.company_id, settings.company_association_type),
        (refs.contact_id, settings.contact_association_type),
        (refs.deal_id, settings.deal_association_type),
    )
    return [
        {
            "to": {"id": record_id},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}],
        }
        for record_id, type_id in targets
        if record_id
    ]


@dataclass(frozen=True)
class StaleReferences:
    """Ids a rejected creation named that HubSpot does not know (any more): the owner, records."""

    owner_id: str | None
    record_ids: frozenset[str]

    def describe(self) -> str:
        parts = [f"owner {self.owner_id}"] if self.owner_id else []
        parts += [f"record {record_id}" for record_id in sorted(self.record_ids)]
        return "HubSpot does not know " + ", ".join(parts)


def stale_references(rejected: HubSpotRejected, delivery: PlayDelivery) -> StaleReferences | None:
    """The owner or associated records of `delivery` that HubSpot's 400 says are invalid, or None.

    HubSpot names an unknown owner in a property error on `hubspot_owner_id` (INVALID_OWNER_ID) and
    an unknown association target in `context` ("INVALID_OBJECT_IDS": ["COMPANY=123 is not valid"],
    "objectId": ["123"]).
    """
    details = rejected.details
    if details.status not in (400, 404):
        return None
    said = json.dumps([details.message, details.context, list(details.errors)])
    owner = delivery.owner.hubspot_owner_id if delivery.owner else None
    owner_stale = owner if owner and ("INVALID_OWNER_ID" in said or "hubspot_owner_id" in said) else None
    named = {str(value) for value in details.context.get("objectId") or []}
    for entry in details.context.get("INVALID_OBJECT_IDS") or []:
        named.update(re.findall(r"=(\d+)", str(entry)))
    refs = delivery.hubspot
    record_ids = frozenset(named.intersection({refs.company_id, refs.contact_id, refs.deal_id}))
    if owner_stale is None and not record_ids:
        return None
    return StaleReferences(owner_stale, record_ids)


def without_stale_references(delivery: PlayDelivery, stale: StaleReferences) -> PlayDelivery:
    """The delivery without what HubSpot refused, and a note at the top of the task that says so."""
    notes = []
    owner = delivery.owner
    if stale.owner_id and owner:
        owner = owner.model_copy(update={"hubspot_owner_id": None})
        notes.append(
            f"Upswing could not assign this task to HubSpot owner {stale.owner_id}: HubSpot does not "
            "know that owner (any more). Please assign it, and update the account's owner in Upswing."
        )
    refs = delivery.hubspot
    changes: dict[str, str | None] = {}
    for name, kind in (("company_id", "company"), ("contact_id", "contact"), ("deal_id", "deal")):
        record_id = getattr(refs, name)
        if record_id in stale.record_ids:
            changes[name] = None
            notes.append(
                f"The HubSpot {kind} {record_id} named by the account is not in HubSpot (any more): "
                "this task is not associated with it."
            )
    body = "\n".join(notes) + "\n\n" + delivery.body
    return delivery.model_copy(
        update={"owner": owner, "hubspot": refs.model_copy(update=changes), "body": body}
    )


@dataclass(frozen=True)
class _Call:
    operation: str
    play_id: str
    path: str
    body: dict[str, Any] | None
    method: str = "POST"

    def log_fields(self) -> dict[str, str]:
        """Ids only: the subject and body describe a customer account."""
        return {"operation": self.operation, "play_id": self.play_id}


@dataclass(frozen=True)
class _Retry:
    """A failed attempt worth repeating after `wait` seconds."""

    wait: float
    reason: str
    status: int | None = None
    policy: str | None = None  # set for 429, 423 and 477: nothing was done, the wait is known
    outcome_unknown: bool = False  # HubSpot may have acted on the request

    def give_up(self, attempts: int) -> HubSpotError:
        if self.policy is not None:
            return HubSpotThrottled(self.wait, self.policy)
        return HubSpotUnavailable(f"HubSpot still failing after {attempts} attempt(s): {self.reason}")


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        document = response.json()
    except ValueError:  # json.JSONDecodeError and UnicodeDecodeError both are
        return None
    return document if isinstance(document, dict) else None


def _error_details(status: int, document: dict[str, Any], text: str, token: str) -> HubSpotErrorDetails:
    message = str(document.get("message") or text or f"HTTP {status}")[:_MESSAGE_LIMIT]
    correlation_id = document.get("correlationId")
    context = document.get("context")
    errors = document.get("errors")
    # Should HubSpot ever echo the token in its context or errors, it stops here too.
    context = _redacted_json(context, token) if isinstance(context, dict) else {}
    errors = _redacted_json(errors, token) if isinstance(errors, list) else []
    return HubSpotErrorDetails(
        status=status,
        category=str(document.get("category") or UNKNOWN),
        message=_redacted(message, token),
        correlation_id=str(correlation_id) if correlation_id else None,
        context=context,
        errors=tuple(error for error in errors if isinstance(error, dict)),
    )


def _redacted_json(value: Any, token: str) -> Any:
    text = json.dumps(value, default=str)[: _MESSAGE_LIMIT * 4]
    try:
        return json.loads(_redacted(text, token))
    except ValueError:  # cut mid-document: keep what can be kept, as text
        return {"truncated": _redacted(text, token)} if isinstance(value, dict) else [{"truncated": text}]


def _int_header(headers: httpx.Headers, name: str) -> int | None:
    try:
        return int(headers.get(name, ""))
    except ValueError:
        return None


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (HubSpot does not document it, so only the seconds form is read)."""
    try:
        seconds = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _seconds_until_midnight(now: datetime, zone: ZoneInfo) -> float:
    """Until the next midnight in `zone` (a day may be 23 or 25 hours long there)."""
    tomorrow = now.astimezone(zone).date() + timedelta(days=1)
    midnight = datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=zone)
    return (midnight.astimezone(UTC) - now.astimezone(UTC)).total_seconds()


def _object_id(document: dict[str, Any]) -> str:
    object_id = document.get("id")
    if not isinstance(object_id, str | int) or isinstance(object_id, bool) or not str(object_id):
        raise HubSpotUnavailable("HubSpot's answer carries no object id")
    return str(object_id)


def _redacted(text: str, token: str) -> str:
    """Defence in depth: should an error text ever echo the token, it stops here."""
    return text.replace(token, "[redacted]") if token else text
