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

The private-app token is fetched from the `token` callable for every request (the caller caches it)
and never reaches a log line, an exception or a repr.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from shared.accounts.models import HubSpotRefs
from shared.delivery.html import text_to_html
from shared.delivery.pacing import Pacer, PacingDeadlineExceeded
from shared.observability import logger
from shared.routing.messages import PlayDelivery

PLAY_MARKER = "Upswing play"  # the body's last line: "Upswing play <play_id>", found by CONTAINS_TOKEN
TEN_SECONDLY_ROLLING = "TEN_SECONDLY_ROLLING"
DAILY = "DAILY"
LOCAL_PACER = "LOCAL_PACER"  # HubSpotThrottled.policy when our own pacer has no slot before the deadline
UNKNOWN = "UNKNOWN"
# How long after a creation HubSpot's search surely finds the task. HubSpot documents no figure and
# a lag of a few seconds is what is seen; the margin costs only a later lookup of a lost attempt.
SEARCH_INDEX_LAG = timedelta(seconds=30)

_HUBSPOT_WINDOW_SECONDS = 10.0  # the rolling window HubSpot counts TEN_SECONDLY_ROLLING over
_SHORT_POLICY_WAIT_SECONDS = 1.0  # other 429 policies (the search endpoints' per-second limit)
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
    company_association_type: int = 192
    contact_association_type: int = 204
    deal_association_type: int = 216
    requests_per_window: int = 100  # per process: divide the app's limit by the sender's concurrency
    window_seconds: float = 10.0
    timeout_seconds: float = 10.0
    max_attempts: int = 5  # for 429 / 5xx / timeouts
    # The search endpoints have their own, lower limit (about 4-5 requests / s per token).
    search_requests_per_window: int = 4
    search_window_seconds: float = 1.0
    # hs_timestamp is an instant; 17:00 UTC puts it on the due day (a UTC day) in the afternoon in
    # Europe and in the morning in the Americas, so the task is due, not overdue, during that day.
    due_hour_utc: int = 17
    # The portal's time zone (HubSpot: Settings > Account defaults): its DAILY limit resets at the
    # portal's midnight. An IANA name; see portal_zone.
    portal_timezone: str = "UTC"


class HubSpotError(Exception):
    """Every error the client raises. None of them carries the token.

    From create_task, HubSpotRejected and HubSpotThrottled mean no task was created; after a
    HubSpotUnavailable the task may exist (look it up, after SEARCH_INDEX_LAG, before creating it).
    """


class HubSpotRejected(HubSpotError):
    """A permanent 4xx: sending the same request again cannot succeed. HubSpot's message says why."""

    def __init__(self, status: int, category: str, message: str, correlation_id: str | None = None) -> None:
        super().__init__(f"HubSpot rejected the request: {status} {category}: {message}")
        self.status = status
        self.category = category
        self.message = message
        self.correlation_id = correlation_id


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


class HubSpotClient:
    """Creates and finds Upswing's tasks. Create one per process and reuse it: the pacer lives here.

    `deadline` arguments are `clock()` values. `jitter` (uniform in [0, 1)) and `wall_clock` (for
    the DAILY limit's reset at the portal's midnight) are injectable so tests are deterministic.
    """

    def __init__(
        self,
        settings: HubSpotSettings,
        token: Callable[[], str],
        http: httpx.Client | None = None,
        pacer: Pacer | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        *,
        jitter: Callable[[], float] = random.random,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._settings = settings
        self._token = token
        self._owns_http = http is None
        self._http = http or httpx.Client(timeout=settings.timeout_seconds)
        self._pacer = pacer or Pacer(settings.requests_per_window, settings.window_seconds, clock, sleep)
        self._search_pacer = Pacer(
            settings.search_requests_per_window, settings.search_window_seconds, clock, sleep
        )
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter
        self._wall_clock = wall_clock
        self._portal_zone = portal_zone(settings.portal_timezone)

    def create_task(self, delivery: PlayDelivery, deadline: float) -> str:
        """Create the delivery's task and return its HubSpot id."""
        call = _Call(
            "create_task", delivery.play_id, self._settings.tasks_path, task_request(delivery, self._settings)
        )
        document = self._call(call, deadline, creates=True)
        return _object_id(document)

    def find_task(self, play_id: str, deadline: float) -> str | None:
        """The id of the (oldest) task whose body carries the play's marker, or None."""
        call = _Call("find_task", play_id, f"{self._settings.tasks_path}/search", search_request(play_id))
        results = self._call(call, deadline, search=True).get("results") or []
        return _object_id(results[0]) if results else None

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
        for attempt in range(1, self._settings.max_attempts + 1):
            if retry is not None:
                self._wait(call, retry, attempt - 1, deadline)
            outcome = self._attempt(call, attempt, deadline, search)
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
        assert retry is not None  # max_attempts >= 1
        raise retry.give_up(self._settings.max_attempts)

    def _attempt(self, call: _Call, attempt: int, deadline: float, search: bool) -> dict[str, Any] | _Retry:
        self._pace(deadline, search)
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise HubSpotUnavailable("no time left before the deadline to send the request")
        token = self._token()
        try:
            response = self._http.post(
                self._settings.base_url.rstrip("/") + call.path,
                json=call.body,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                # A request must not outlive the deadline either.
                timeout=min(self._settings.timeout_seconds, remaining),
            )
        except httpx.TransportError as error:
            reason = _redacted(f"{type(error).__name__}: {error}", token)
            return _Retry(self._backoff(attempt), reason, outcome_unknown=not isinstance(error, _NOT_SENT))
        return self._verdict(response, attempt, token)

    def _verdict(self, response: httpx.Response, attempt: int, token: str) -> dict[str, Any] | _Retry:
        status = response.status_code
        document = _json_object(response)
        if 200 <= status < 300:
            if document is None:
                raise HubSpotUnavailable(f"HubSpot answered {status} without a JSON object")
            return document
        if status == 429:
            return self._rate_limited(response, document or {}, attempt)
        if status >= 500:
            return _Retry(self._backoff(attempt), f"HTTP {status}", status=status, outcome_unknown=True)
        raise _rejection(status, document or {}, response.text, token)

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

    def _backoff(self, attempt: int) -> float:
        """0.2 s, 0.4 s, 0.8 s... each stretched by up to 2x at random (jitter)."""
        wait = _BACKOFF_BASE_SECONDS * 2 ** (attempt - 1) * (1 + self._jitter())
        return min(wait, _BACKOFF_CAP_SECONDS)

    def _pace(self, deadline: float, search: bool) -> None:
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
        "hs_timestamp": due_timestamp(delivery.due, settings.due_hour_utc),
        "hs_task_subject": delivery.subject,
        "hs_task_body": task_body_html(delivery.body, delivery.play_id),
        "hs_task_status": "NOT_STARTED",
        "hs_task_priority": delivery.priority,
        "hs_task_type": delivery.task_type,
    }
    if delivery.owner and delivery.owner.hubspot_owner_id:
        properties["hubspot_owner_id"] = delivery.owner.hubspot_owner_id
    return {"properties": properties, "associations": associations(delivery.hubspot, settings)}


def search_request(play_id: str) -> dict[str, Any]:
    """The body of POST {tasks_path}/search for the task carrying a play's marker.

    Oldest first, one result: should a duplicate exist, every lookup names the same, original task.
    """
    return {
        "filterGroups": [
            {"filters": [{"propertyName": "hs_task_body", "operator": "CONTAINS_TOKEN", "value": play_id}]}
        ],
        "sorts": [{"propertyName": "hs_createdate", "direction": "ASCENDING"}],
        "properties": ["hs_task_subject"],
        "limit": 1,
    }


def due_timestamp(due: date, hour_utc: int) -> str:
    return f"{due.isoformat()}T{hour_utc:02d}:00:00Z"


def task_body_html(body: str, play_id: str) -> str:
    """The plain-text body as simple HTML, then the play marker as its own paragraph."""
    return f"{text_to_html(body)}<p>{PLAY_MARKER} {play_id}</p>"


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
class _Call:
    operation: str
    play_id: str
    path: str
    body: dict[str, Any]

    def log_fields(self) -> dict[str, str]:
        """Ids only: the subject and body describe a customer account."""
        return {"operation": self.operation, "play_id": self.play_id}


@dataclass(frozen=True)
class _Retry:
    """A failed attempt worth repeating after `wait` seconds."""

    wait: float
    reason: str
    status: int | None = None
    policy: str | None = None  # set for 429s
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


def _rejection(status: int, document: dict[str, Any], text: str, token: str) -> HubSpotRejected:
    message = str(document.get("message") or text or f"HTTP {status}")[:_MESSAGE_LIMIT]
    correlation_id = document.get("correlationId")
    return HubSpotRejected(
        status,
        str(document.get("category") or UNKNOWN),
        _redacted(message, token),
        str(correlation_id) if correlation_id else None,
    )


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (HubSpot does not document it, so only the seconds form is read)."""
    try:
        seconds = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def portal_zone(name: str) -> ZoneInfo:
    """The portal's time zone by its IANA name ("Europe/Paris"), or a ValueError that says what to set."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}: give the HubSpot portal's time zone as an IANA name, "
            "such as 'America/New_York' or 'Europe/Paris' (or 'UTC')"
        ) from None


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
