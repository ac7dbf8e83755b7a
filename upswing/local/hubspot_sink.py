"""HubSpot's tasks API as far as Upswing uses it, on 127.0.0.1: the local stack's HubSpot.

It answers like HubSpot (status codes, error bodies, ids as numeric strings) so the real client runs
against it unchanged: POST {tasks_path} creates a task, POST {tasks_path}/search finds tasks (EQ,
CONTAINS_TOKEN, HAS_PROPERTY and GT/GTE/LT/LTE filters; dates compare as instants, so
`hs_lastmodifieddate GTE <epoch ms>` works; sorts; pages of at most 200 with `after`), GET and PATCH
{tasks_path}/{id} read and update one (every update moves hs_lastmodifieddate; completing one sets
hs_task_completion_date, as HubSpot does: how the auto-close completes a task), DELETE archives it
(gone from search and reads), POST {tasks_path}/batch/read?archived=false|true reads up to 100 by id
(207 with OBJECT_NOT_FOUND errors for the missing ones), POST /crm/v3/properties/tasks creates a
custom task property. GET /crm/v3/owners?email=...&archived=false|true finds owners by e-mail and
POST /crm/v3/objects/companies/search companies by `domain` EQ (`register_owner`, `register_company`,
or POST /__sink/records with {"owner_emails": [{"id", "email", "archived"}], "company_domains":
[{"id", "domain"}]}). A bearer token is required and never kept. A test or the demo completes a task
as its owner would with `complete()` or POST /__sink/tasks/{id}/complete ({"owner_id": ...} optional:
completed by someone else, i.e. reassigned).

It is as strict as HubSpot: a property it does not know (HubSpot's task properties and the custom
ones created here), an owner or an associated record it was not told about (`register`, or POST
/__sink/records with {"owners": [...], "companies": [...], "contacts": [...], "deals": [...]}) is
refused with HubSpot's 400, and refused requests count in the rate window too.

Every request is recorded (time, method, path, JSON body, the status answered) as a line of a JSONL
file, truncated at start(), and served back at GET /__sink/requests, so a demo or a benchmark can
show what HubSpot would have received.

Deals, for the read-back of closed-won deals: POST {deals_path} creates one (with associations to
known companies, HUBSPOT_DEFINED type 5 for the Primary company, 341 otherwise), POST
{deals_path}/search searches them like tasks (IN and NOT_IN too; `hs_is_closed_won` is "true" when
the stage is one of `closed_won_stages`), GET / PATCH {deals_path}/{id} read and update one, and POST
/crm/v4/associations/deals/companies/batch/read answers each deal's companies (207 with an error for
deals without one). A test or the demo creates and closes deals as a salesperson would with
`create_deal()` / `close_deal()`, or POST /__sink/deals ({"properties": ..., "companies": [...]})
and POST /__sink/deals/{id}/close ({"amount": ...} optional).

For tests and benchmarks it can misbehave on purpose:
`fail_next` answers the next task creations with a chosen error, `rate_limit` answers 429 like
HubSpot's ten-secondly limit, and `search_lag_seconds` hides new tasks from search for a while, as
HubSpot's search index does.
"""

from __future__ import annotations

import fnmatch
import html
import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

from shared.timestamps import utc_stamp

REQUESTS_PATH = "/__sink/requests"
RECORDS_PATH = "/__sink/records"
SINK_TASKS_PATH = "/__sink/tasks/"  # POST /__sink/tasks/{id}/complete
SINK_DEALS_PATH = "/__sink/deals"  # POST: create a deal; POST /__sink/deals/{id}/close: close it won
DEALS_PATH = "/crm/v3/objects/deals"
DEAL_COMPANIES_PATH = "/crm/v4/associations/deals/companies/batch/read"
# HubSpot's deal properties a client may set (a subset), and the default pipeline's closed-won stage.
DEAL_PROPERTIES = frozenset(
    {
        "dealname",
        "amount",
        "deal_currency_code",
        "closedate",
        "pipeline",
        "dealstage",
        "dealtype",
        "hubspot_owner_id",
        "description",
    }
)
CLOSED_WON = "closedwon"
_DEAL_READ_ONLY_PROPERTIES = frozenset(
    {"createdate", "hs_lastmodifieddate", "hs_object_id", "hs_is_closed_won"}
)
_PRIMARY_COMPANY = 5  # deal → company, Primary (HUBSPOT_DEFINED)
_DEAL_COMPANY = 341  # deal → company, unlabelled
OWNERS_PATH = "/crm/v3/owners"
COMPANIES_SEARCH_PATH = "/crm/v3/objects/companies/search"
PROPERTIES_PATH = "/crm/v3/properties/tasks"
RATE_LIMIT_WINDOW_SECONDS = 10.0
# HubSpot's own task properties (the ones a client may set; a subset of what HubSpot has).
TASK_PROPERTIES = frozenset(
    {
        "hs_timestamp",
        "hs_task_subject",
        "hs_task_body",
        "hs_task_status",
        "hs_task_priority",
        "hs_task_type",
        "hubspot_owner_id",
        "hs_task_completion_date",
        "hs_task_reminders",
        "hs_queue_membership_ids",
        "hs_task_is_all_day",
    }
)
# Association type ids (HUBSPOT_DEFINED, from a task) → the object type HubSpot names in its errors.
_ASSOCIATED_TYPES = {192: "COMPANY", 204: "CONTACT", 216: "DEAL"}
_STATUSES = {"NOT_STARTED", "IN_PROGRESS", "WAITING", "COMPLETED", "DEFERRED"}
_PRIORITIES = {"NONE", "LOW", "MEDIUM", "HIGH"}
_TYPES = {"TODO", "CALL", "EMAIL", "LINKED_IN", "MEETING", "LINKED_IN_CONNECT", "LINKED_IN_MESSAGE"}
_ASSOCIATION_CATEGORIES = {"HUBSPOT_DEFINED", "USER_DEFINED", "INTEGRATOR_DEFINED"}
_CATEGORIES = {
    400: "VALIDATION_ERROR",
    401: "INVALID_AUTHENTICATION",
    403: "MISSING_SCOPES",
    404: "OBJECT_NOT_FOUND",
    409: "OBJECT_ALREADY_EXISTS",
}
# HubSpot's bookkeeping properties: searchable and sortable, never set by a client.
_READ_ONLY_PROPERTIES = frozenset({"hs_createdate", "hs_lastmodifieddate", "hs_object_id"})
_SEARCH_LIMIT_MAX = 200
_BATCH_READ_MAX = 100
_DATE_PROPERTIES = frozenset(
    {
        "hs_createdate",
        "hs_lastmodifieddate",
        "hs_timestamp",
        "hs_task_completion_date",
        "createdate",
        "closedate",
    }
)
_SHUTDOWN_POLL_SECONDS = 0.05  # how soon stop() returns (the default, 0.5 s, adds up in tests)
_ISO_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$")


class HubSpotSink:
    """Start it, point the client's base_url at `endpoint`, read `requests()` afterwards.

    `rate_limit`: requests per 10 s (any task API call) before it answers 429 TEN_SECONDLY_ROLLING;
    as with HubSpot, refused requests count against the window too. `search_lag_seconds`: how long
    a new task stays invisible to search. `clock` (monotonic) drives both. `owners` and `companies`
    (and `contacts`, `deals`) are the ids the portal knows; more can be registered later.
    """

    def __init__(
        self,
        log_path: Path | str,
        tasks_path: str = "/crm/v3/objects/tasks",
        port: int = 0,
        rate_limit: int | None = None,
        search_lag_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        owners: Iterable[str] = (),
        companies: Iterable[str] = (),
        contacts: Iterable[str] = (),
        deals: Iterable[str] = (),
        closed_won_stages: Iterable[str] = (CLOSED_WON,),
        deal_properties: Iterable[str] = (),
    ) -> None:
        sink = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as with HubSpot: benchmarks measure us, not TCP
            timeout = 30  # an idle keep-alive connection ends its thread
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms ACK wait

            def do_GET(self) -> None:
                sink._handle(self)

            do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                return  # the JSONL file is the log

        self.log_path = Path(log_path)
        self.tasks_path = tasks_path.rstrip("/")
        self._search_lag = search_lag_seconds
        self._clock = clock
        self._rate = _RateWindow(rate_limit, RATE_LIMIT_WINDOW_SECONDS, clock) if rate_limit else None
        self._lock = threading.Lock()
        self._owners: set[str] = set()
        self._records: dict[str, set[str]] = {kind: set() for kind in _ASSOCIATED_TYPES.values()}
        self._custom_properties: dict[str, dict[str, Any]] = {}
        self._owner_emails: dict[str, tuple[str, bool]] = {}  # e-mail (lower case) → (owner id, archived)
        self._company_domains: dict[str, list[str]] = {}  # domain (lower case) → company ids, oldest first
        self.register(owners=owners, companies=companies, contacts=contacts, deals=deals)
        self._tasks: dict[str, _Task] = {}
        self._deals: dict[str, _Task] = {}
        self._closed_won_stages = frozenset(closed_won_stages)
        self._deal_properties = DEAL_PROPERTIES | frozenset(deal_properties)  # + custom ones (the kind)
        self._last_stamp_ms = 0
        self._next_id = 1
        self._faults: deque[_Fault] = deque()
        self._requests: list[dict[str, Any]] = []
        self._log: IO[str] | None = None
        self._server = _Server(("127.0.0.1", port), RequestHandler)
        self._thread = threading.Thread(target=self._serve, name="hubspot-sink", daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> HubSpotSink:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("w", encoding="utf-8")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() would wait forever for a server never started
            self._server.shutdown()
        self._server.server_close()
        with self._lock:
            if self._log:
                self._log.close()
                self._log = None

    def __enter__(self) -> HubSpotSink:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def requests(self) -> list[dict[str, Any]]:
        """Every request received since start(), oldest first (without /__sink/ ones)."""
        with self._lock:
            return [dict(record) for record in self._requests]

    def tasks(self) -> list[dict[str, Any]]:
        """The tasks created so far, as GET {tasks_path}/{id} answers them."""
        with self._lock:
            return [task.document() for task in self._tasks.values()]

    def complete(self, task_id: str, owner_id: str | None = None) -> dict[str, Any] | None:
        """Complete a task as its owner would in HubSpot (`owner_id`: someone else took it over and
        completed it). The task's document, or None when there is no such (live) task."""
        properties = {"hs_task_status": "COMPLETED", "hs_task_completion_date": _now_iso()}
        if owner_id:
            properties["hubspot_owner_id"] = owner_id
            self.register(owners=[owner_id])
        answer = self._update(task_id, {"properties": properties})
        return answer.document if answer.status == 200 else None

    def update(self, task_id: str, properties: dict[str, Any]) -> dict[str, Any] | None:
        """Change a task's properties as a person in HubSpot would (no token, not recorded)."""
        answer = self._update(task_id, {"properties": properties})
        return answer.document if answer.status == 200 else None

    def delete(self, task_id: str) -> bool:
        """Delete (archive) a task as a person in HubSpot would."""
        return self._archive(task_id).status == 204

    def register(
        self,
        *,
        owners: Iterable[str] = (),
        companies: Iterable[str] = (),
        contacts: Iterable[str] = (),
        deals: Iterable[str] = (),
    ) -> None:
        """Tell the sink which owners and records exist in its portal (HubSpot refuses the others)."""
        with self._lock:
            self._owners.update(map(str, owners))
            self._records["COMPANY"].update(map(str, companies))
            self._records["CONTACT"].update(map(str, contacts))
            self._records["DEAL"].update(map(str, deals))

    def register_owner(self, owner_id: str, email: str, *, archived: bool = False) -> None:
        """An owner the Owners API finds by `email`; an archived one cannot be given tasks."""
        with self._lock:
            self._owner_emails[email.lower()] = (str(owner_id), archived)
            if archived:
                self._owners.discard(str(owner_id))
            else:
                self._owners.add(str(owner_id))

    def register_company(self, company_id: str, domain: str) -> None:
        """A company the search finds by `domain` (several may share one, as in HubSpot)."""
        with self._lock:
            self._records["COMPANY"].add(str(company_id))
            self._company_domains.setdefault(domain.lower(), []).append(str(company_id))

    def properties(self) -> list[str]:
        """The custom task properties created so far."""
        with self._lock:
            return sorted(self._custom_properties)

    def fail_next(
        self,
        status: int,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        count: int = 1,
        *,
        after_create: bool = False,
    ) -> None:
        """Answer the next `count` task creations with `status` (a HubSpot-like body by default).

        `after_create`: create the task all the same, then answer the error: an answer lost on the
        way back, which is how duplicates happen.
        """
        document = body if body is not None else _default_error(status)
        with self._lock:
            self._faults.append(_Fault(status, document, dict(headers or {}), count, after_create))

    def _serve(self) -> None:
        self._server.serve_forever(poll_interval=_SHUTDOWN_POLL_SECONDS)

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        split = urlsplit(request.path)
        path, query = split.path, split.query
        if path == REQUESTS_PATH and request.command == "GET":
            _reply(request, _Answer(200, self.requests()))
            return
        body = _parse_body(raw)
        if path == RECORDS_PATH and request.command == "POST" and isinstance(body, dict):
            self.register(
                **{kind: body.get(kind) or () for kind in ("owners", "companies", "contacts", "deals")}
            )
            for owner in body.get("owner_emails") or []:  # {"id", "email", "archived"?}
                self.register_owner(
                    str(owner["id"]), str(owner["email"]), archived=bool(owner.get("archived"))
                )
            for company in body.get("company_domains") or []:  # {"id", "domain"}
                self.register_company(str(company["id"]), str(company["domain"]))
            _reply(request, _Answer(200, {"registered": True}))
            return
        if path.startswith(SINK_DEALS_PATH) and request.command == "POST":
            _reply(request, self._sink_deal_route(path, body))
            return
        completing = re.fullmatch(re.escape(SINK_TASKS_PATH) + r"(\d+)/complete", path)
        if completing and request.command == "POST":
            owner = body.get("owner_id") if isinstance(body, dict) else None
            done = self.complete(completing.group(1), owner_id=str(owner) if owner else None)
            _reply(request, _Answer(200, done) if done else _error(404, "No such task."))
            return
        answer = self._answer(request.command, path, request.headers.get("Authorization", ""), body, query)
        self._record(request.command, request.path, body, answer.status)
        _reply(request, answer)

    def _answer(self, method: str, path: str, authorization: str, body: Any, query: str = "") -> _Answer:
        if not re.fullmatch(r"Bearer \S+", authorization.strip()):
            return _error(401, "Authentication credentials not found.")
        if self._rate and not self._rate.admit():  # like HubSpot: no Retry-After, only the policy
            return _Answer(429, _rate_limit_body())
        if method == "GET" and path == OWNERS_PATH:
            return self._owners_by_email(parse_qs(query))
        if method == "POST" and path == COMPANIES_SEARCH_PATH:
            return self._companies_by_domain(body)
        if method == "POST" and path == PROPERTIES_PATH:
            return self._create_property(body)
        if method == "GET" and path.startswith(f"{PROPERTIES_PATH}/"):
            return self._read_property(path.removeprefix(f"{PROPERTIES_PATH}/"))
        if method == "POST" and path == self.tasks_path:
            return self._create(body)
        if method == "POST" and path == f"{self.tasks_path}/search":
            return self._search(body)
        if method == "POST" and path == f"{self.tasks_path}/batch/read":
            return self._batch_read(body, "archived=true" in query)
        if method == "GET" and path.startswith(f"{self.tasks_path}/"):
            return self._read(path.removeprefix(f"{self.tasks_path}/"))
        if method == "PATCH" and path.startswith(f"{self.tasks_path}/"):
            return self._update(path.removeprefix(f"{self.tasks_path}/"), body)
        if method == "DELETE" and path.startswith(f"{self.tasks_path}/"):
            return self._archive(path.removeprefix(f"{self.tasks_path}/"))
        if path.startswith(DEALS_PATH) or path == DEAL_COMPANIES_PATH:
            return self._deal_route(method, path, body)
        return _error(404, f"No route for {method} {path}.")

    def _create(self, body: Any) -> _Answer:
        fault = self._take_fault()
        if fault and not fault.after_create:
            return fault.answer()
        problem = _task_problem(body) or self._unknown_property(body["properties"])
        if problem:
            return _error(400, problem)
        unknown = self._unknown_owner(body["properties"]) or self._unknown_records(
            body.get("associations") or []
        )
        if unknown:
            return unknown
        with self._lock:
            stamp = self._next_stamp()
            task = _Task(
                str(self._next_id),
                dict(body["properties"]),
                body.get("associations") or [],
                self._clock(),
                created_at=stamp,
                modified_at=stamp,
            )
            self._next_id += 1
            self._tasks[task.id] = task
        return fault.answer() if fault else _Answer(201, task.document())

    def _owners_by_email(self, query: dict[str, list[str]]) -> _Answer:
        """GET /crm/v3/owners?email=...&archived=true|false: the active owners, or the archived ones."""
        email = (query.get("email") or [""])[0].lower()
        archived = (query.get("archived") or ["false"])[0] == "true"
        with self._lock:
            found = self._owner_emails.get(email)
        results = (
            [{"id": found[0], "email": email, "type": "PERSON", "archived": archived}]
            if found and found[1] == archived
            else []
        )
        return _Answer(200, {"results": results})

    def _companies_by_domain(self, body: Any) -> _Answer:
        """POST /crm/v3/objects/companies/search with `domain` EQ: the companies with that domain."""
        query = body if isinstance(body, dict) else {}
        domains = [
            str(condition.get("value") or "").lower()
            for group in query.get("filterGroups") or []
            for condition in group.get("filters") or []
            if condition.get("propertyName") == "domain" and condition.get("operator") == "EQ"
        ]
        if len(domains) != 1:
            return _error(400, "This sink searches companies by one `domain` EQ filter only.")
        limit = query.get("limit", 10)
        if not isinstance(limit, int) or not 0 < limit <= _SEARCH_LIMIT_MAX:
            return _error(400, f"limit must be between 1 and {_SEARCH_LIMIT_MAX}.")
        with self._lock:
            ids = list(self._company_domains.get(domains[0], []))
        results = [{"id": company_id, "properties": {"domain": domains[0]}} for company_id in ids[:limit]]
        return _Answer(200, {"total": len(ids), "results": results})

    def _create_property(self, body: Any) -> _Answer:
        definition = body if isinstance(body, dict) else {}
        name = str(definition.get("name") or "")
        missing = [
            key for key in ("name", "label", "type", "fieldType", "groupName") if not definition.get(key)
        ]
        if missing or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            return _error(400, f"Invalid property definition: missing {missing} or a bad name {name!r}.")
        with self._lock:
            if name in self._custom_properties or name in TASK_PROPERTIES:
                return _error(409, f"A property named '{name}' already exists.")
            self._custom_properties[name] = dict(definition)
        return _Answer(201, {**definition, "hasUniqueValue": False, "hidden": False})

    def _read_property(self, name: str) -> _Answer:
        with self._lock:
            definition = self._custom_properties.get(name)
        if definition is None:
            return _error(404, f"Unable to find property {name}.")
        return _Answer(200, definition)

    def _known_property(self, name: str) -> bool:
        with self._lock:
            return name in TASK_PROPERTIES or name in self._custom_properties or name in _READ_ONLY_PROPERTIES

    def _unknown_property(self, properties: dict[str, Any]) -> str | None:
        unknown = [
            name for name in properties if not self._known_property(name) or name in _READ_ONLY_PROPERTIES
        ]
        if not unknown:
            return None
        invalid = [
            {
                "isValid": False,
                "message": f'Property "{name}" does not exist',
                "error": "PROPERTY_DOESNT_EXIST",
                "name": name,
            }
            for name in unknown
        ]
        return f"Property values were not valid: {json.dumps(invalid)}"

    def _unknown_owner(self, properties: dict[str, Any]) -> _Answer | None:
        owner = properties.get("hubspot_owner_id")
        with self._lock:
            known = owner is None or str(owner) in self._owners
        if known:
            return None
        invalid = [
            {
                "isValid": False,
                "message": f"{owner} is not a valid owner id",
                "error": "INVALID_OWNER_ID",
                "name": "hubspot_owner_id",
            }
        ]
        return _error(400, f"Property values were not valid: {json.dumps(invalid)}")

    def _unknown_records(self, associations: list[dict[str, Any]]) -> _Answer | None:
        unknown: list[tuple[str, str]] = []
        with self._lock:
            for association in associations:
                kind = _ASSOCIATED_TYPES.get(association["types"][0]["associationTypeId"], "COMPANY")
                record_id = str(association["to"]["id"])
                if record_id not in self._records[kind]:
                    unknown.append((kind, record_id))
        if not unknown:
            return None
        context = {
            "INVALID_OBJECT_IDS": [f"{kind}={record_id} is not valid" for kind, record_id in unknown],
            "objectId": [record_id for _, record_id in unknown],
            "objectType": [kind for kind, _ in unknown],
        }
        return _error(400, "One or more associations are invalid", context)

    def _search(self, body: Any, *, deals: bool = False) -> _Answer:
        query = body if isinstance(body, dict) else {}
        known = self._known_deal_property if deals else self._known_property
        for group in query.get("filterGroups") or []:
            for condition in group.get("filters") or []:
                name = str(condition.get("propertyName"))
                if not known(name):
                    return _error(
                        400, f"There was a problem with the request: property {name} does not exist."
                    )
        limit = query.get("limit", 10)
        if not isinstance(limit, int) or not 0 < limit <= _SEARCH_LIMIT_MAX:
            return _error(400, f"limit must be between 1 and {_SEARCH_LIMIT_MAX}.")
        try:
            matches = self._matching(query.get("filterGroups") or [], self._deals if deals else None)
            offset = int(query.get("after") or 0)
        except ValueError as problem:
            return _error(400, str(problem))
        for sort in reversed(query.get("sorts") or []):  # stable sorts: the first sort wins
            name = str(sort.get("propertyName"))
            descending = sort.get("direction") == "DESCENDING"
            if name in _DATE_PROPERTIES:
                matches.sort(
                    key=lambda task: _instant_ms(task.properties.get(name) or "0"), reverse=descending
                )
            else:
                matches.sort(key=lambda task: _sort_key(task.properties.get(name, "")), reverse=descending)
        page = matches[offset : offset + limit]
        document: dict[str, Any] = {
            "total": len(matches),
            "results": [task.document(query.get("properties")) for task in page],
        }
        if offset + limit < len(matches):
            document["paging"] = {"next": {"after": str(offset + limit)}}
        return _Answer(200, document)

    def _matching(self, groups: list[dict[str, Any]], records: dict[str, _Task] | None = None) -> list[_Task]:
        """Filter groups are ORed, the filters within a group ANDed, as in HubSpot's search."""
        visible_before = self._clock() - self._search_lag
        with self._lock:
            tasks = [
                task
                for task in (self._tasks if records is None else records).values()
                if task.created <= visible_before and not task.archived_at
            ]
        if not groups:
            return tasks
        return [task for task in tasks if any(_group_matches(task, group) for group in groups)]

    def _read(self, task_id: str) -> _Answer:
        with self._lock:
            task = self._tasks.get(task_id)
        if task is None or task.archived_at:
            return _error(404, "Object not found.  objectId are usually numeric.")
        return _Answer(200, task.document())

    def _update(self, task_id: str, body: Any) -> _Answer:
        properties = body.get("properties") if isinstance(body, dict) else None
        if not isinstance(properties, dict):
            return _error(400, "Invalid input JSON: a JSON object with a properties object is required.")
        problems = [
            {"isValid": False, "message": message, "error": error, "name": name}
            for name, error, message in _property_problems({"hs_timestamp": "0", **properties})
        ]
        problem = (
            f"Property values were not valid: {json.dumps(problems)}" if problems else None
        ) or self._unknown_property(properties)
        if problem:
            return _error(400, problem)
        unknown = self._unknown_owner(properties)
        if unknown:
            return unknown
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None or task.archived_at:
                return _error(404, "Object not found.  objectId are usually numeric.")
            completing = properties.get("hs_task_status") == "COMPLETED" != task.given.get("hs_task_status")
            task.given.update(properties)
            task.modified_at = self._next_stamp()
            if completing and "hs_task_completion_date" not in properties:
                task.given["hs_task_completion_date"] = task.modified_at  # as HubSpot sets it
            return _Answer(200, task.document())

    def _archive(self, task_id: str) -> _Answer:
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None or task.archived_at:
                return _error(404, "Object not found.  objectId are usually numeric.")
            task.archived_at = self._next_stamp()
        return _Answer(204, None)

    def _batch_read(self, body: Any, archived: bool) -> _Answer:
        inputs = body.get("inputs") if isinstance(body, dict) else None
        if not isinstance(inputs, list) or not 0 < len(inputs) <= _BATCH_READ_MAX:
            return _error(400, f"inputs must hold 1 to {_BATCH_READ_MAX} objects with an id.")
        ids = [str(entry.get("id")) for entry in inputs if isinstance(entry, dict)]
        names = body.get("properties")
        with self._lock:
            found = [
                self._tasks[task_id]
                for task_id in ids
                if task_id in self._tasks and bool(self._tasks[task_id].archived_at) == archived
            ]
        missing = [task_id for task_id in ids if task_id not in {task.id for task in found}]
        document: dict[str, Any] = {
            "status": "COMPLETE",
            "results": [task.document(names if isinstance(names, list) else None) for task in found],
        }
        if not missing:
            return _Answer(200, document)
        document["numErrors"] = 1
        document["errors"] = [
            {
                "status": "error",
                "category": "OBJECT_NOT_FOUND",
                "message": "Could not get some TASK objects, they may be deleted or not exist.",
                "context": {"ids": missing},
            }
        ]
        return _Answer(207, document)

    def _next_stamp(self) -> str:
        """Now, as an ISO instant strictly later than the last one handed out (call under the lock):
        two changes never share an hs_lastmodifieddate, which keeps paging tests deterministic."""
        now_ms = max(int(time.time() * 1000), self._last_stamp_ms + 1)
        self._last_stamp_ms = now_ms
        return utc_stamp(datetime.fromtimestamp(now_ms / 1000, UTC), "milliseconds")

    # ── deals (the read-back of closed-won deals) ──────────────────────────────────────────────

    def create_deal(
        self, properties: dict[str, Any], companies: Iterable[str] = (), primary: str | None = None
    ) -> dict[str, Any]:
        """Create a deal as a salesperson would (no token, not recorded), associated with `companies`
        (registered as known); `primary`: the company labelled Primary (the first one by default)."""
        company_ids = [str(company) for company in companies]
        self.register(companies=company_ids)
        chosen = primary if primary is not None else (company_ids[0] if company_ids else None)
        associations = [
            {
                "to": {"id": company},
                "types": [
                    {
                        "associationCategory": "HUBSPOT_DEFINED",
                        "associationTypeId": _PRIMARY_COMPANY if company == chosen else _DEAL_COMPANY,
                    }
                ],
            }
            for company in company_ids
        ]
        answer = self._create_deal({"properties": properties, "associations": associations})
        if answer.status != 201:
            raise ValueError(f"the sink refused the deal: {answer.document}")
        return dict(answer.document)

    def close_deal(self, deal_id: str, amount: Any = None, stage: str = CLOSED_WON) -> dict[str, Any] | None:
        """Move a deal to a closed-won stage (closedate now unless it has one; `amount` if given).
        The deal's document, or None when there is no such deal."""
        properties: dict[str, Any] = {"dealstage": stage}
        with self._lock:
            deal = self._deals.get(deal_id)
            if deal is not None and not deal.given.get("closedate"):
                properties["closedate"] = _now_iso()
        if amount is not None:
            properties["amount"] = str(amount)
        return self.update_deal(deal_id, properties)

    def update_deal(self, deal_id: str, properties: dict[str, Any]) -> dict[str, Any] | None:
        """Change a deal's properties as a person in HubSpot would (no token, not recorded)."""
        answer = self._update_deal(deal_id, {"properties": properties})
        return answer.document if answer.status == 200 else None

    def deals(self) -> list[dict[str, Any]]:
        with self._lock:
            return [deal.document() for deal in self._deals.values()]

    def _known_deal_property(self, name: str) -> bool:
        return name in self._deal_properties or name in _DEAL_READ_ONLY_PROPERTIES

    def _sink_deal_route(self, path: str, body: Any) -> _Answer:
        document = body if isinstance(body, dict) else {}
        if path == SINK_DEALS_PATH:
            try:
                return _Answer(
                    201,
                    self.create_deal(document.get("properties") or {}, document.get("companies") or ()),
                )
            except ValueError as refused:
                return _error(400, str(refused))
        closing = re.fullmatch(re.escape(SINK_DEALS_PATH) + r"/(\d+)/close", path)
        closed = self.close_deal(closing.group(1), document.get("amount")) if closing else None
        return _Answer(200, closed) if closed else _error(404, "No such deal.")

    def _deal_route(self, method: str, path: str, body: Any) -> _Answer:
        if method == "POST" and path == DEALS_PATH:
            return self._create_deal(body)
        if method == "POST" and path == f"{DEALS_PATH}/search":
            return self._search(body, deals=True)
        if method == "POST" and path == DEAL_COMPANIES_PATH:
            return self._deal_companies(body)
        deal_id = path.removeprefix(f"{DEALS_PATH}/")
        if method == "GET" and deal_id.isdigit():
            with self._lock:
                deal = self._deals.get(deal_id)
            return _Answer(200, deal.document()) if deal else _error(404, "Object not found.")
        if method == "PATCH" and deal_id.isdigit():
            return self._update_deal(deal_id, body)
        return _error(404, f"No route for {method} {path}.")

    def _deal_problem(self, properties: Any) -> str | None:
        if not isinstance(properties, dict):
            return "Invalid input JSON: a JSON object with a properties object is required."
        unknown = sorted(name for name in properties if name not in self._deal_properties)
        if unknown:
            return f'Property values were not valid: property "{unknown[0]}" does not exist'
        closed = str(properties.get("closedate") or "")
        if closed and not (closed.isdigit() or _ISO_TIMESTAMP.match(closed)):
            return f"Property values were not valid: {closed!r} is not a valid datetime (closedate)."
        return None

    def _create_deal(self, body: Any) -> _Answer:
        document = body if isinstance(body, dict) else {}
        properties = document.get("properties")
        problem = self._deal_problem(properties) or _association_problem(document.get("associations"))
        if problem:
            return _error(400, problem)
        assert isinstance(properties, dict)
        associations = document.get("associations") or []
        with self._lock:
            unknown = [
                str(a["to"]["id"]) for a in associations if str(a["to"]["id"]) not in self._records["COMPANY"]
            ]
        if unknown:
            return _error(400, "One or more associations are invalid", {"objectId": unknown})
        with self._lock:
            stamp = self._next_stamp()
            deal = _Deal(
                str(self._next_id),
                {"pipeline": "default", **properties},
                associations,
                self._clock(),
                created_at=stamp,
                modified_at=stamp,
                closed_won_stages=self._closed_won_stages,
            )
            self._next_id += 1
            self._deals[deal.id] = deal
        return _Answer(201, deal.document())

    def _update_deal(self, deal_id: str, body: Any) -> _Answer:
        properties = body.get("properties") if isinstance(body, dict) else None
        problem = self._deal_problem(properties)
        if problem:
            return _error(400, problem)
        assert isinstance(properties, dict)
        with self._lock:
            deal = self._deals.get(deal_id)
            if deal is None:
                return _error(404, "Object not found.  objectId are usually numeric.")
            deal.given.update(properties)
            deal.modified_at = self._next_stamp()
            return _Answer(200, deal.document())

    def _deal_companies(self, body: Any) -> _Answer:
        inputs = body.get("inputs") if isinstance(body, dict) else None
        if not isinstance(inputs, list) or not 0 < len(inputs) <= 1000:
            return _error(400, "inputs must hold 1 to 1000 objects with an id.")
        ids = [str(entry.get("id")) for entry in inputs if isinstance(entry, dict)]
        results, missing = [], []
        with self._lock:
            for deal_id in ids:
                deal = self._deals.get(deal_id)
                if deal is None or not deal.associations:
                    missing.append(deal_id)
                    continue
                results.append(
                    {
                        "from": {"id": deal_id},
                        "to": [
                            {
                                "toObjectId": int(a["to"]["id"]),
                                "associationTypes": [
                                    {
                                        "category": kind["associationCategory"],
                                        "typeId": kind["associationTypeId"],
                                        "label": "Primary"
                                        if kind["associationTypeId"] == _PRIMARY_COMPANY
                                        else None,
                                    }
                                    for kind in a["types"]
                                ],
                            }
                            for a in deal.associations
                        ],
                    }
                )
        document: dict[str, Any] = {"status": "COMPLETE", "results": results}
        if not missing:
            return _Answer(200, document)
        document["numErrors"] = len(missing)
        document["errors"] = [
            {
                "status": "error",
                "category": "OBJECT_NOT_FOUND",
                "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
                "message": f"No company is associated with deal {deal_id}.",
                "context": {"fromObjectId": [deal_id]},
            }
            for deal_id in missing
        ]
        return _Answer(207, document)

    def _take_fault(self) -> _Fault | None:
        with self._lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._faults.popleft()
            return fault

    def _record(self, method: str, path: str, body: Any, status: int) -> None:
        record = {"time": _now_iso(), "method": method, "path": path, "body": body, "status": status}
        with self._lock:
            self._requests.append(record)
            if self._log:
                self._log.write(json.dumps(record) + "\n")
                self._log.flush()


class _Server(ThreadingHTTPServer):
    # Keep-alive connections hold a thread each; stop() must not wait for clients to hang up.
    block_on_close = False
    daemon_threads = True


@dataclass
class _Answer:
    status: int
    document: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Fault:
    status: int
    document: dict[str, Any]
    headers: dict[str, str]
    remaining: int
    after_create: bool

    def answer(self) -> _Answer:
        return _Answer(self.status, self.document, self.headers)


@dataclass
class _Task:
    id: str
    given: dict[str, Any]
    associations: list[dict[str, Any]]
    created: float  # the sink's clock, for the search lag
    created_at: str = field(default_factory=lambda: _now_iso())
    modified_at: str = ""
    archived_at: str = ""  # deleted (archived) in HubSpot

    @property
    def properties(self) -> dict[str, str]:
        """HubSpot answers every property as a string, with its own bookkeeping ones added."""
        stored = {name: str(value) for name, value in self.given.items() if value is not None}
        return {
            **stored,
            "hs_createdate": self.created_at,
            "hs_lastmodifieddate": self.modified_at or self.created_at,
            "hs_object_id": self.id,
        }

    def document(self, names: list[str] | None = None) -> dict[str, Any]:
        properties = self.properties
        if names is not None:
            wanted = {*names, "hs_createdate", "hs_lastmodifieddate", "hs_object_id"}
            properties = {name: value for name, value in properties.items() if name in wanted}
        document: dict[str, Any] = {
            "id": self.id,
            "properties": properties,
            "createdAt": self.created_at,
            "updatedAt": self.modified_at or self.created_at,
            "archived": bool(self.archived_at),
        }
        if self.archived_at:
            document["archivedAt"] = self.archived_at
        return document


@dataclass
class _Deal(_Task):
    """A deal: a record like a task, with HubSpot's deal bookkeeping (createdate, hs_is_closed_won)."""

    closed_won_stages: frozenset[str] = frozenset({CLOSED_WON})

    @property
    def properties(self) -> dict[str, str]:
        stored = {name: str(value) for name, value in self.given.items() if value is not None}
        return {
            **stored,
            "createdate": self.created_at,
            "hs_lastmodifieddate": self.modified_at or self.created_at,
            "hs_object_id": self.id,
            "hs_is_closed_won": "true" if self.given.get("dealstage") in self.closed_won_stages else "false",
        }

    def document(self, names: list[str] | None = None) -> dict[str, Any]:
        document = super().document(None)
        if names is not None:
            wanted = {*names, "createdate", "hs_lastmodifieddate", "hs_object_id"}
            document["properties"] = {k: v for k, v in self.properties.items() if k in wanted}
        return document


def _task_problem(body: Any) -> str | None:
    """What HubSpot would refuse in a task creation, or None."""
    if not isinstance(body, dict) or not isinstance(body.get("properties"), dict):
        return "Invalid input JSON: a JSON object with a properties object is required."
    properties = body["properties"]
    invalid = [
        {"isValid": False, "message": message, "error": error, "name": name}
        for name, error, message in _property_problems(properties)
    ]
    if invalid:
        return f"Property values were not valid: {json.dumps(invalid)}"
    return _association_problem(body.get("associations"))


def _property_problems(properties: dict[str, Any]) -> list[tuple[str, str, str]]:
    problems = []
    timestamp = str(properties.get("hs_timestamp") or "")
    if not timestamp:
        problems.append(("hs_timestamp", "REQUIRED_PROPERTY", "hs_timestamp is required."))
    elif not (timestamp.isdigit() or _ISO_TIMESTAMP.match(timestamp)):
        problems.append(("hs_timestamp", "INVALID_DATETIME", f"{timestamp!r} is not a valid datetime."))
    for name, options in (
        ("hs_task_status", _STATUSES),
        ("hs_task_priority", _PRIORITIES),
        ("hs_task_type", _TYPES),
    ):
        value = properties.get(name)
        if value is not None and value not in options:
            problems.append((name, "INVALID_OPTION", f"{value!r} was not one of the allowed options."))
    return problems


def _association_problem(associations: Any) -> str | None:
    if associations is None:
        return None
    if not isinstance(associations, list):
        return "Invalid input JSON: associations must be a list."
    for association in associations:
        target = association.get("to") if isinstance(association, dict) else None
        types = association.get("types") if isinstance(association, dict) else None
        if not isinstance(target, dict) or not str(target.get("id", "")).isdigit():
            return "Invalid input JSON: each association needs to.id, a numeric record id."
        if not isinstance(types, list) or not types or not all(_association_type_ok(kind) for kind in types):
            return "Invalid input JSON: each association needs types with a category and a type id."
    return None


def _association_type_ok(kind: Any) -> bool:
    return (
        isinstance(kind, dict)
        and kind.get("associationCategory") in _ASSOCIATION_CATEGORIES
        and isinstance(kind.get("associationTypeId"), int)
    )


def _group_matches(task: _Task, group: dict[str, Any]) -> bool:
    return all(_filter_matches(task, condition) for condition in group.get("filters") or [])


def _filter_matches(task: _Task, condition: dict[str, Any]) -> bool:
    operator = condition.get("operator")
    actual = task.properties.get(str(condition.get("propertyName")))
    expected = str(condition.get("value", ""))
    if operator == "EQ":
        return actual is not None and actual.lower() == expected.lower()
    if operator == "CONTAINS_TOKEN":
        return actual is not None and _contains_token(actual, expected)
    if operator == "HAS_PROPERTY":
        return actual not in (None, "")
    if operator in ("IN", "NOT_IN"):
        values = {str(value).lower() for value in condition.get("values") or []}
        inside = actual is not None and actual.lower() in values
        return inside if operator == "IN" else not inside
    if operator in _COMPARISONS:
        if actual is None:
            return False
        name = str(condition.get("propertyName"))
        if name in _DATE_PROPERTIES:
            return _COMPARISONS[operator](_instant_ms(actual), _instant_ms(expected))
        return _COMPARISONS[operator](_sort_key(actual), _sort_key(expected))
    raise ValueError(
        f"The sink does not support the {operator} operator "
        "(EQ, CONTAINS_TOKEN, HAS_PROPERTY, IN, NOT_IN, GT, GTE, LT, LTE only)."
    )


_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "GT": lambda a, b: a > b,
    "GTE": lambda a, b: a >= b,
    "LT": lambda a, b: a < b,
    "LTE": lambda a, b: a <= b,
}


def _instant_ms(value: str) -> int:
    """A date property or filter value as epoch ms: HubSpot takes both epoch ms and ISO 8601."""
    text = value.strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is not a valid datetime.") from None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)


def _contains_token(text: str, pattern: str) -> bool:
    """HubSpot tokenizes text on whitespace and punctuation; `*` is a wildcard within a token."""
    plain = html.unescape(re.sub(r"<[^>]*>", " ", text)).lower()
    tokens = re.findall(r"[0-9a-z_]+", plain)
    return any(fnmatch.fnmatchcase(token, pattern.lower()) for token in tokens)


def _task_sort_key(name: str) -> Callable[[_Task], Any]:
    """Dates sort as instants (HubSpot answers ISO strings, filters take epoch ms), the rest by value."""
    if name in _DATE_PROPERTIES:
        return lambda task: _instant_ms(task.properties.get(name) or "0")
    return lambda task: _sort_key(task.properties.get(name, ""))


def _sort_key(value: str) -> tuple[int, int, str]:
    """Numbers (ids, epoch values) sort as numbers, as in HubSpot; everything else as text."""
    return (0, int(value), "") if value.isdigit() else (1, 0, value)


def _parse_body(raw: bytes) -> Any:
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def _error(status: int, message: str, context: dict[str, Any] | None = None) -> _Answer:
    return _Answer(status, _error_body(status, message, context))


def _error_body(status: int, message: str, context: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": "error",
        "message": message,
        "correlationId": str(uuid.uuid4()),
        "category": _CATEGORIES.get(status, "UNKNOWN"),
    }
    if context:
        body["context"] = context
    return body


class _RateWindow:
    """Every request in the last `seconds` counts, refused ones too (as with HubSpot's rolling limit)."""

    def __init__(self, limit: int, seconds: float, clock: Callable[[], float]) -> None:
        self._limit = limit
        self._seconds = seconds
        self._clock = clock
        self._seen: deque[float] = deque()
        self._lock = threading.Lock()

    def admit(self) -> bool:
        with self._lock:
            now = self._clock()
            while self._seen and now - self._seen[0] >= self._seconds:
                self._seen.popleft()
            self._seen.append(now)
            return len(self._seen) <= self._limit


def _default_error(status: int) -> dict[str, Any]:
    return _rate_limit_body() if status == 429 else _error_body(status, f"Simulated failure (HTTP {status}).")


def _rate_limit_body() -> dict[str, Any]:
    return {
        "status": "error",
        "message": "You have reached your ten_secondly_rolling limit.",
        "errorType": "RATE_LIMIT",
        "correlationId": str(uuid.uuid4()),
        "policyName": "TEN_SECONDLY_ROLLING",
        "groupName": "publicapi:local-sink",
    }


def _reply(request: BaseHTTPRequestHandler, answer: _Answer) -> None:
    raw = b"" if answer.status == 204 else json.dumps(answer.document).encode()
    request.send_response(answer.status)
    request.send_header("Content-Type", "application/json;charset=utf-8")
    request.send_header("Content-Length", str(len(raw)))
    for name, value in answer.headers.items():
        request.send_header(name, value)
    request.end_headers()
    request.wfile.write(raw)


def _now_iso() -> str:
    return utc_stamp(datetime.now(UTC), "milliseconds")
