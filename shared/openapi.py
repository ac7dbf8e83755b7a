"""The OpenAPI 3.1 document of the HTTP API, generated from the pydantic models.

The API serves it at GET /v1/openapi.json and `upswing openapi` writes it to docs/openapi.json
(a test keeps that copy in step with the code).
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from pydantic.json_schema import models_json_schema

from shared.accounts.models import AccountProfile, StoredAccount
from shared.events.contract import MAX_BODY_BYTES, MAX_EVENTS_PER_REQUEST
from shared.events.imports import MAX_ACCOUNTS_PER_FINISH, ImportFinish, ImportFinished
from shared.events.models import PRINTABLE_ID_FORMAT, EventBatch, IngestResponse, UsageEvent
from shared.outcomes.models import AccountOutcome, AccountOutcomes, OutcomeBatch, OutcomesResponse
from shared.producers import Scope
from shared.segment.messages import BatchCall, GroupCall, IdentifyCall, SegmentResponse, TrackCall

API_VERSION = "1.0.0"
_REF = "#/components/schemas/{model}"
SEGMENT_SCHEME = "segmentWriteKey"
# Slack's interactivity requests carry no producer key: the route verifies Slack's signature itself.
SLACK_SCHEME = "slackSignature"
SLACK_INTERACTIONS_PATH = "/v1/slack/interactions"
_UNAVAILABLE = "Storage is unavailable; retry in a few seconds (nothing was half-written)."


@cache
def openapi_document() -> dict[str, Any]:
    _, schemas = models_json_schema(
        [
            (model, "validation")
            for model in (EventBatch, UsageEvent, OutcomeBatch, AccountOutcome, AccountProfile, ImportFinish)
        ]
        + [(model, "validation") for model in (TrackCall, GroupCall, IdentifyCall, BatchCall)]
        + [
            (model, "serialization")
            for model in (IngestResponse, OutcomesResponse, StoredAccount, AccountOutcomes, ImportFinished)
        ]
        + [(SegmentResponse, "serialization")],
        ref_template=_REF,
    )
    components = schemas["$defs"]
    _close_pattern_maps(components)
    components["Message"] = {
        "type": "object",
        "properties": {
            "message": {"type": "string"},
            "errors": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["message"],
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Upswing API",
            "version": API_VERSION,
            "description": (
                "Usage events and outcomes in; account profiles, counters and trigger metrics out. Every "
                "call needs a producer key: `Authorization: Bearer <key>`, with the scope the operation "
                "names under `security` (events:write, outcomes:write, accounts:write, accounts:read). "
                "The Segment routes (/v1/track, /v1/identify, /v1/group, /v1/batch) also take the key as "
                "a Segment write key: `Authorization: Basic base64(<key>:)`. See docs/api.md."
            ),
        },
        "security": [{"producerKey": []}],
        "paths": {
            "/v1/events": {"post": _post_events()},
            "/v1/outcomes": {"post": _post_outcomes()},
            "/v1/imports/finish": {"post": _post_imports_finish()},
            "/v1/accounts/{account_id}": {"put": _put_account(), "get": _get_account()},
            "/v1/accounts/{account_id}/counters": {"get": _get_counters()},
            "/v1/accounts/{account_id}/signals": {"get": _get_signals()},
            "/v1/accounts/{account_id}/outcomes": {"get": _get_outcomes()},
            "/v1/triggers": {"get": _get_triggers()},
            "/v1/triggers/{name}": {"get": _get_trigger()},
            **_segment_paths(),
            "/v1/triggers/{name}/experiment": {"get": _get_experiment()},
            "/v1/rulesets": {"get": _get_rulesets()},
            "/v1/rulesets/{version}/changes": {"get": _get_ruleset_changes()},
            SLACK_INTERACTIONS_PATH: {"post": _post_slack_interactions()},
            "/v1/openapi.json": {
                "get": {
                    "operationId": "getOpenApi",
                    "summary": "This document (any valid key may read it).",
                    "security": [{"producerKey": []}],
                    "responses": {
                        "200": {"description": "The OpenAPI document.", **_json_body({"type": "object"})},
                        **_errors({}, scoped=False),
                    },
                }
            },
        },
        "components": {
            "schemas": components,
            "securitySchemes": {
                "producerKey": {"type": "http", "scheme": "bearer", "description": "A producer key."},
                SEGMENT_SCHEME: {
                    "type": "http",
                    "scheme": "basic",
                    "description": "A producer key as a Segment write key: the user name, with an empty "
                    "password (base64 of '<key>:'). Only on the Segment routes.",
                },
                SLACK_SCHEME: {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Slack-Signature",
                    "description": "Slack's v0 request signature (HMAC-SHA256 with the app's signing secret "
                    "over 'v0:<X-Slack-Request-Timestamp>:<body>'), checked by the route itself. Only on "
                    f"{SLACK_INTERACTIONS_PATH}.",
                },
            },
        },
    }


def _post_events() -> dict[str, Any]:
    return {
        "operationId": "postEvents",
        "security": _needs(Scope.EVENTS_WRITE),
        "summary": "Send a batch of usage events.",
        "description": (
            f"1 to {MAX_EVENTS_PER_REQUEST} events, at most {MAX_BODY_BYTES:,} bytes. "
            "Each event is validated on its own: valid events are stored even when others "
            "are rejected, and a rejected event writes nothing. Sending an event again "
            "(same account_id and event_id) is safe: it is reported as a duplicate and not "
            "counted twice."
        ),
        "requestBody": {"required": True, **_json_body(_ref("EventBatch"))},
        "responses": {
            "202": {"description": "Per-event outcome.", **_json_body(_ref("IngestResponse"))},
            **_errors(
                {
                    "400": 'The body is not JSON, or not {"events": [...]} with at least one event.',
                    "413": "More than 500 events or more than 1 MiB.",
                    "415": "Content-Type is not application/json.",
                    "503": "Storage is unavailable; retry the whole request (stored events count once).",
                }
            ),
        },
    }


def _post_imports_finish() -> dict[str, Any]:
    return {
        "operationId": "postImportsFinish",
        "security": _needs(Scope.EVENTS_WRITE),
        "summary": "End a history import: each imported account goes live once.",
        "description": (
            'After the history was sent with "backfill": true, each account named is evaluated once '
            "with its whole history; the triggers that hold then are pre-existing, and the ruleset's "
            "go_live setting decides whether they are routed now (fire), spread over days (spread) or "
            f"not at all (skip). 1 to {MAX_ACCOUNTS_PER_FINISH} account ids per request. Calling it "
            "again for an account changes nothing and answers what its first call decided."
        ),
        "requestBody": {"required": True, **_json_body(_ref("ImportFinish"))},
        "responses": {
            "200": {
                "description": "What going live decided, per account.",
                **_json_body(_ref("ImportFinished")),
            },
            **_errors(
                {
                    "400": 'The body is not JSON, or not {"account_ids": [...]} with 1 to '
                    f"{MAX_ACCOUNTS_PER_FINISH} valid ids.",
                    "413": f"More than {MAX_BODY_BYTES:,} bytes.",
                    "503": "Storage is unavailable; retry (accounts already live answer the same).",
                }
            ),
        },
    }


def _post_outcomes() -> dict[str, Any]:
    return {
        "operationId": "postOutcomes",
        "security": _needs(Scope.OUTCOMES_WRITE),
        "summary": "Send a batch of account outcomes (expansions, contractions, churn).",
        "description": (
            f"1 to {MAX_EVENTS_PER_REQUEST} outcomes, at most {MAX_BODY_BYTES:,} bytes. Each outcome "
            "is validated on its own: valid outcomes are stored even when others are rejected, and a "
            "rejected outcome writes nothing. Sending an outcome again (same account_id and "
            "outcome_id, same content) is safe: it is reported as a duplicate and stored once; the "
            "same id with other content is rejected. Outcomes for accounts without a profile are "
            "accepted and kept. Needs the outcomes:write scope (events:write is not enough)."
        ),
        "requestBody": {"required": True, **_json_body(_ref("OutcomeBatch"))},
        "responses": {
            "202": {"description": "Per-outcome result.", **_json_body(_ref("OutcomesResponse"))},
            **_errors(
                {
                    "400": 'The body is not JSON, or not {"outcomes": [...]} with at least one outcome.',
                    "413": "More than 500 outcomes or more than 1 MiB.",
                    "415": "Content-Type is not application/json.",
                    "503": "Storage is unavailable; retry the whole request (stored outcomes are kept once).",
                }
            ),
        },
    }


def _put_account() -> dict[str, Any]:
    return {
        "operationId": "putAccount",
        "security": _needs(Scope.ACCOUNTS_WRITE),
        "summary": "Create or replace an account's profile.",
        "parameters": [_account_parameter()],
        "requestBody": {"required": True, **_json_body(_ref("AccountProfile"))},
        "responses": {
            "200": {"description": "Profile replaced.", **_json_body(_ref("StoredAccount"))},
            "201": {"description": "Account created.", **_json_body(_ref("StoredAccount"))},
            **_errors(
                {
                    "400": "account_id, the body or the profile is not valid; `errors` lists why.",
                    "413": "The body is over 1 MiB.",
                    "503": _UNAVAILABLE,
                }
            ),
        },
    }


def _get_account() -> dict[str, Any]:
    return {
        "operationId": "getAccount",
        "security": _needs(Scope.ACCOUNTS_READ),
        "summary": "Read an account's profile.",
        "parameters": [_account_parameter()],
        "responses": {
            "200": {"description": "The profile.", **_json_body(_ref("StoredAccount"))},
            **_errors({"400": "account_id is not valid.", "404": "No such account.", "503": _UNAVAILABLE}),
        },
    }


def _get_counters() -> dict[str, Any]:
    day = {"type": "string", "format": "date"}
    return {
        "operationId": "getCounters",
        "security": _needs(Scope.ACCOUNTS_READ),
        "summary": "An account's daily counters (UTC days, by event time).",
        "parameters": [
            _account_parameter(),
            {
                "name": "from",
                "in": "query",
                "schema": day,
                "description": "First day; default: 29 days before `to`.",
            },
            {
                "name": "to",
                "in": "query",
                "schema": day,
                "description": "Last day, inclusive; default: today.",
            },
        ],
        "responses": {
            "200": {"description": "One entry per day with data.", **_json_body({"type": "object"})},
            **_errors(
                {
                    "400": "account_id is not valid; bad dates, days outside the kept range "
                    "(the message names it), or more than 400 days.",
                    "503": _UNAVAILABLE,
                }
            ),
        },
    }


def _get_signals() -> dict[str, Any]:
    return {
        "operationId": "getSignals",
        "security": _needs(Scope.ACCOUNTS_READ),
        "summary": "What the rules say about an account now, its recent firings with their evidence, "
        "and the plays they became.",
        "description": "Each trigger's status (fired, not held, excluded, cooling down, not re-armed, "
        "other segment) with its condition as evaluated now, and for an excluded trigger the exclusions that "
        "applied (excluded_by, exclusions_checked); recent firings newest first (docs/rules.md); "
        "recent plays, last updated first, with their status (routed, scheduled, deferred, accepted, "
        "suppressed, lapsed) and why they wait or ended (docs/api.md).",
        "parameters": [_account_parameter()],
        "responses": {
            "200": {"description": "Signals and firings.", **_json_body({"type": "object"})},
            **_errors({"400": "account_id is not valid.", "503": _UNAVAILABLE}),
        },
    }


def _get_outcomes() -> dict[str, Any]:
    return {
        "operationId": "getOutcomes",
        "security": _needs(Scope.ACCOUNTS_READ),
        "summary": "An account's expansion and contraction outcomes, the most recent first.",
        "parameters": [_account_parameter()],
        "responses": {
            "200": {
                "description": "The outcomes kept for the account.",
                **_json_body(_ref("AccountOutcomes")),
            },
            **_errors({"400": "account_id is not valid.", "503": _UNAVAILABLE}),
        },
    }


_TRIGGER_METRICS = (
    "Per trigger and ruleset version, over the last 7, 30 and 90 firing days (UTC, today included): "
    "firings, plays routed, deferred, suppressed, escalations routed, tasks worked, median hours to "
    "work, accounts expanded within the horizon, expansion amount per currency, and precision: "
    "matured (firings whose horizon has passed) and to date (a lower bound while firings are open), "
    "each with its 95 % Wilson interval. Kept incrementally: reading costs one query per trigger "
    "(docs/api.md, 'Trigger metrics')."
)


def _get_triggers() -> dict[str, Any]:
    return {
        "operationId": "getTriggers",
        "security": _needs(Scope.ACCOUNTS_READ),
        "summary": "Live metrics of every trigger of the active ruleset.",
        "description": _TRIGGER_METRICS,
        "responses": {
            "200": {"description": "One entry per trigger.", **_json_body({"type": "object"})},
            **_errors({"503": _UNAVAILABLE}),
        },
    }


def _get_trigger() -> dict[str, Any]:
    return {
        "operationId": "getTrigger",
        "security": _needs(Scope.ACCOUNTS_READ),
        "summary": "Live metrics of one trigger (also one no longer in the active ruleset).",
        "description": _TRIGGER_METRICS,
        "parameters": [_path_parameter("name", "The trigger's name, as in the ruleset.")],
        "responses": {
            "200": {"description": "The trigger's windows.", **_json_body({"type": "object"})},
            **_errors(
                {
                    "404": "No such trigger in the active ruleset and no firings of it in the last 90 "
                    "days; the message lists the known triggers (and the closest name).",
                    "503": _UNAVAILABLE,
                }
            ),
        },
    }


def _segment_paths() -> dict[str, Any]:
    """The Segment HTTP Tracking API's routes (docs/api.md, "Segment")."""
    shared = {
        "400": "The body is not a JSON object (for /v1/batch: no `batch` array, or an empty one); on "
        "/v1/track, /v1/group and /v1/identify also: the call was not taken (`errors` says why; Segment "
        "does not retry a 4xx).",
        "413": "More than 500 calls or more than 1 MiB.",
        "415": "Content-Type is not application/json.",
        "503": "Storage is unavailable; retry the whole request (calls already taken count once).",
    }
    operations = {
        "/v1/track": (
            "postTrack",
            Scope.EVENTS_WRITE,
            "TrackCall",
            "A Segment track call: a usage event, as the mapping file (segment/mapping.yaml) says.",
        ),
        "/v1/group": (
            "postGroup",
            Scope.ACCOUNTS_WRITE,
            "GroupCall",
            "A Segment group call: profile fields from its traits, as the mapping file says.",
        ),
        "/v1/identify": (
            "postIdentify",
            Scope.EVENTS_WRITE,
            "IdentifyCall",
            "A Segment identify call: accepted and ignored (Upswing keeps accounts, not people).",
        ),
        "/v1/batch": (
            "postBatch",
            Scope.EVENTS_WRITE,
            "BatchCall",
            "A Segment batch: up to 500 calls of any type, each taken on its own; group calls in it also "
            "need accounts:write (else rejected one by one).",
        ),
    }
    return {
        path: {
            "post": {
                "operationId": operation_id,
                "security": [*_needs(scope), {SEGMENT_SCHEME: [scope.value]}],
                "summary": summary,
                "description": 'Segment-compatible (docs/api.md, "Segment"). messageId is the '
                "deduplication key: a call delivered again is a duplicate and changes nothing.",
                "requestBody": {"required": True, **_json_body(_ref(model))},
                "responses": {
                    "200": {"description": "Each call's fate.", **_json_body(_ref("SegmentResponse"))},
                    **_errors(shared),
                },
            }
        }
        for path, (operation_id, scope, model, summary) in operations.items()
    }


def _get_experiment() -> dict[str, Any]:
    return {
        "operationId": "getTriggerExperiment",
        "security": _needs(Scope.ACCOUNTS_READ),
        "summary": "Measured lift of a trigger's play: treated vs held-out accounts (its holdout).",
        "description": (
            "One trial per account (its first firing in the experiment). Per arm: accounts, those that "
            "expanded within the horizon (rate with its Wilson 95 % interval), expansion amount and amount "
            "per account by currency, trials still within their horizon. Absolute lift with Newcombe's "
            "interval, relative lift with the Katz interval, a plain verdict, the accounts per arm still "
            "needed, and a power note. From counters kept incrementally: one query per call "
            "(docs/api.md, 'Experiments')."
        ),
        "parameters": [
            _path_parameter("name", "The trigger's name, as in the ruleset."),
            {
                "name": "salt",
                "in": "query",
                "required": False,
                "description": "Which experiment (default: the active trigger's salt, else its name).",
                "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$"},
            },
        ],
        "responses": {
            "200": {"description": "The experiment's arms and lift.", **_json_body({"type": "object"})},
            **_errors(
                {
                    "400": "The salt is not a salt (the message says what one looks like).",
                    "404": "No such trigger in the active ruleset and no firings of it kept; the message "
                    "lists the known triggers (and the closest name).",
                    "503": _UNAVAILABLE,
                }
            ),
        },
    }


def _get_rulesets() -> dict[str, Any]:
    return {
        "operationId": "getRulesets",
        "security": _needs(Scope.ACCOUNTS_READ),
        "summary": "Every ruleset version deployed: live, shadow or retired, who deployed it and when.",
        "description": (
            "Each version as first recorded (oldest first): its content hash, file, git revision and "
            "deployer (as the deployment was told), when it first ran (`deployed_at`) and first ran live "
            "(`live_from`), and its status now. Firings name their version (`ruleset_version`). "
            "One read per call (docs/api.md, 'Ruleset versions')."
        ),
        "responses": {
            "200": {
                "description": "The live and shadow versions, and every version recorded.",
                **_json_body({"type": "object"}),
            },
            **_errors({"503": _UNAVAILABLE}),
        },
    }


def _get_ruleset_changes() -> dict[str, Any]:
    return {
        "operationId": "getRulesetChanges",
        "security": _needs(Scope.ACCOUNTS_READ),
        "summary": "The audit of one ruleset version: which triggers it added, removed or changed.",
        "description": (
            "A structural diff of the version's rules against the version recorded before it, trigger by "
            "trigger, in plain words (a trigger changed when its keys, the signals it reads or its play "
            "changed), with who deployed it and when (docs/api.md, 'Ruleset versions')."
        ),
        "parameters": [
            _path_parameter("version", "A recorded ruleset version, as GET /v1/rulesets lists it.")
        ],
        "responses": {
            "200": {"description": "The version's changes.", **_json_body({"type": "object"})},
            **_errors(
                {
                    "404": "No such version recorded (the message names the closest one).",
                    "503": _UNAVAILABLE,
                }
            ),
        },
    }


def _account_parameter() -> dict[str, Any]:
    return _path_parameter(
        "account_id",
        "Percent-encoded UTF-8; decoded strictly and normalized to NFC (docs/api.md).",
        {
            "type": "string",
            "minLength": 1,
            "maxLength": 128,
            "format": PRINTABLE_ID_FORMAT,
            "not": {"enum": [".", ".."]},
        },
    )


def _path_parameter(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """A required path parameter; by default a name of 1 to 64 characters."""
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema or {"type": "string", "minLength": 1, "maxLength": 64},
    }


def _close_pattern_maps(schemas: dict[str, Any]) -> None:
    """Maps whose keys have a pattern (plan limits, dimensions, owners) accept no other keys.

    Pydantic states the key pattern as `patternProperties` without `additionalProperties: false`,
    which in JSON Schema lets any other key through; the API refuses them, so the document says so.
    """
    pending: list[Any] = [schemas]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if "patternProperties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
                node.pop("propertyNames", None)  # pydantic puts only a description there
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)


def _post_slack_interactions() -> dict[str, Any]:
    return {
        "operationId": "postSlackInteractions",
        "summary": "Slack's interactivity requests: a click on a play message's 'Not useful' button.",
        "description": "Configure this URL as the Slack app's Interactivity Request URL. No producer key: "
        "the request must carry Slack's signature (X-Slack-Signature, X-Slack-Request-Timestamp within 5 "
        "minutes). 'Not useful' records feedback on the play (GET .../signals shows it); other "
        "interactions are acknowledged and ignored. See docs/api.md, 'Slack interactivity'.",
        "security": [{SLACK_SCHEME: []}],
        "parameters": [
            {
                "name": "X-Slack-Request-Timestamp",
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
                "description": "Unix seconds when Slack sent the request.",
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "payload": {"type": "string", "description": "A JSON block_actions document."}
                        },
                        "required": ["payload"],
                    }
                }
            },
        },
        "responses": {
            "200": {
                "description": "Recorded, or already recorded, or ignored.",
                **_json_body(_ref("Message")),
            },
            **{
                status: {"description": text, **_json_body(_ref("Message"))}
                for status, text in {
                    "400": "Signed, but not an interaction this endpoint understands.",
                    "401": "Not signed by Slack with the app's signing secret, or older than 5 minutes.",
                    "404": "The button names a play Upswing does not have.",
                    "503": "Slack is not set up here (no signing secret), or storage is unavailable.",
                }.items()
            },
        },
    }


def self_verified(method: str, path: str) -> bool:
    """Whether the operation takes no producer key and checks its caller itself (Slack's signature)."""
    requirements = openapi_document()["paths"][path][method.lower()]["security"]
    return [name for requirement in requirements for name in requirement] == [SLACK_SCHEME]


def required_scope(method: str, path: str) -> Scope | None:
    """The scope an operation needs (None: any valid key), as this document declares it.

    The API enforces what the document says, so the two cannot disagree. KeyError: no such operation.
    Every way to authenticate an operation (a bearer key, a Segment write key) needs the same scope.
    """
    requirement = openapi_document()["paths"][path][method.lower()]["security"][0]
    (scope,) = requirement.get("producerKey") or [None]
    return Scope(scope) if scope else None


def takes_scheme(method: str, path: str, scheme: str) -> bool:
    """Whether the operation takes a key presented this way: "bearer" everywhere, "basic" (a Segment
    write key) where the document lists the Segment scheme. KeyError: no such operation."""
    requirements = openapi_document()["paths"][path][method.lower()]["security"]
    names = {name for requirement in requirements for name in requirement}
    return {"bearer": "producerKey", "basic": SEGMENT_SCHEME}.get(scheme) in names


def allowed_methods(path: str) -> list[str]:
    """The methods the document declares for a concrete path ([] when no operation has that path)."""
    for template, item in openapi_document()["paths"].items():
        if _template_pattern(template).fullmatch(path):
            return sorted(method.upper() for method in item)
    return []


@cache
def _template_pattern(template: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(template)))


def _needs(scope: Scope) -> list[dict[str, list[str]]]:
    # OpenAPI 3.1 lets a non-OAuth security requirement list the roles it needs: here, the scope.
    return [{"producerKey": [scope.value]}]


def _errors(cases: dict[str, str], scoped: bool = True) -> dict[str, Any]:
    shared = {"401": "Missing, unknown or revoked producer key."}
    if scoped:
        shared["403"] = "The key lacks the scope this operation needs (the message names it)."
    return {
        status: {"description": text, **_json_body(_ref("Message"))}
        for status, text in (cases | shared).items()
    }


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _ref(model: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=model)}
