"""The HTTP API: events and outcomes in (also as Segment calls), account profiles, counters, signals
and plays out, Slack's button clicks, and the OpenAPI document.

Every route but one is behind the producer-key authorizer; the producer it names is recorded with
each accepted event. The exception is Slack's interactivity endpoint, which Slack calls without a
key: it verifies Slack's signature itself (shared/delivery/slack_interactions.py). Each route needs
the scope the OpenAPI document declares for it (a middleware checks it before the route runs; a
route the document does not declare is refused). Domain errors become HTTP answers in one place
(the exception handlers below).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, TypeAdapter, ValidationError

from functions.api.settings import ApiSettings
from shared.accounts.models import AccountProfile, StoredAccount, Writer
from shared.accounts.store import AccountStore, ConcurrentProfileWrites, HierarchyRefused
from shared.counters.store import CounterStore
from shared.counters.view import bucket_view
from shared.delivery.secrets import CachedSecret
from shared.delivery.slack_interactions import (
    NotAnInteraction,
    SlackRequestRefused,
    parse_interaction,
    record_not_useful,
    verify_slack_request,
)
from shared.events.counting_lag import CountingLag
from shared.events.imports import ImportFinish, ImportFinished
from shared.events.ingest import Ingestor, ingestor_for, summarize
from shared.events.models import AccountId
from shared.events.validation import (
    BadRequest,
    TooLarge,
    UnsupportedMediaType,
    describe_errors,
    parse_batch_envelope,
    parse_json_body,
)
from shared.experiments.arms import EXPERIMENT_SALT, experiment_salt
from shared.experiments.report import experiment_report
from shared.intake import BatchIntake, Channel, ItemResult, Tally
from shared.model_fields import did_you_mean
from shared.observability import logger, metrics, traced
from shared.openapi import allowed_methods, openapi_document, required_scope, self_verified, takes_scheme
from shared.outcomes.intake import OutcomeIntake, outcome_intake_for, summarize_outcomes
from shared.outcomes.models import AccountOutcomes
from shared.outcomes.store import OutcomeStore
from shared.producers import Scope
from shared.routing.ledger import PlayLedger
from shared.routing.views import play_state
from shared.rules.audit import ruleset_audit
from shared.rules.build import build_online_evaluator
from shared.rules.golive import WentLive
from shared.rules.online import OnlineEvaluator, active_ruleset, sqs_publisher, trigger_view
from shared.rules.versions import RulesetRecords, shadow_paths
from shared.segment.intake import (
    Caller,
    CallResult,
    Fate,
    SegmentIntake,
    parse_segment_request,
    summarize_calls,
)
from shared.segment.mapping import active_mapping
from shared.settings import load_settings
from shared.storage.dynamo import aws_client, dynamodb_client
from shared.timestamps import utc_stamp
from shared.trigger_metrics.report import WINDOWS_DAYS, oldest_day, trigger_report
from shared.trigger_metrics.store import TriggerMetricsStore
from shared.wiring import Wiring

wiring = Wiring()

app = APIGatewayRestResolver()
MAX_COUNTER_DAYS = 400
# POST /v1/imports/finish: accounts evaluated at once (each a handful of reads and one commit).
GO_LIVE_IN_PARALLEL = 8
RECENT_PLAYS = 20
# GET /v1/triggers reads one partition per trigger; this many at once.
TRIGGER_READS_IN_PARALLEL = 8
_ACCOUNT_ID = TypeAdapter(AccountId)
# The rule of the route Powertools makes up when none matched (REST resolver: "^{rule}/*$").
_CATCH_ALL = "^.*/*$"


class NotFound(Exception):
    pass


class StorageUnavailable(Exception):
    pass


class MissingScope(Exception):
    def __init__(self, scope: Scope | None) -> None:
        super().__init__(scope)
        self.scope = scope


class SchemeNotAccepted(Exception):
    """The key came in a way this route does not take (a Segment write key off the Segment routes)."""


class RejectedCall(Exception):
    """The one call of a single-call Segment route was not taken: a 400 so Segment does not retry it."""

    def __init__(self, result: CallResult, kind: str) -> None:
        super().__init__("; ".join(result.reasons))
        self.result = result
        self.kind = kind


class SlackNotSetUp(Exception):
    """No Slack signing secret is configured for this deployment."""


class InvalidProfile(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@wiring.once
def settings() -> ApiSettings:
    return load_settings(ApiSettings)


@wiring.once
def ingestor() -> Ingestor:
    return ingestor_for(dynamodb_client(), settings())


@wiring.once
def outcome_store() -> OutcomeStore:
    return OutcomeStore(dynamodb_client(), settings().outcomes_table)


@wiring.once
def outcome_intake() -> OutcomeIntake:
    config = settings()
    return outcome_intake_for(dynamodb_client(), config.outcomes_table, config.retention_days)


@wiring.once
def segment_intake() -> SegmentIntake:
    config = settings()
    return SegmentIntake(
        active_mapping(config.segment_mapping_path), ingestor(), accounts(), config.retention_days
    )


@wiring.once
def slack_signing_secret() -> CachedSecret:
    secret_id = settings().slack_signing_secret_id
    if not secret_id:
        raise SlackNotSetUp()
    return CachedSecret(
        aws_client("secretsmanager"),
        secret_id,
        key="signing_secret",
        what="the Slack signing secret is empty: store the app's signing secret",
    )


@wiring.once
def accounts() -> AccountStore:
    return AccountStore(dynamodb_client(), settings().accounts_table)


@wiring.once
def counters() -> CounterStore:
    return CounterStore(dynamodb_client(), settings().counters_table, settings().retention_days)


@wiring.once
def play_ledger() -> PlayLedger:
    return PlayLedger(dynamodb_client(), settings().plays_table, settings().retention_days)


@wiring.once
def trigger_metrics() -> TriggerMetricsStore:
    return TriggerMetricsStore(dynamodb_client(), settings().plays_table)


@wiring.once
def signals() -> OnlineEvaluator:
    """The rules, read-only: previews what they say now; firing is the evaluator's job."""
    return build_online_evaluator(settings(), consistent_reads=False)  # a preview: eventual is enough


@wiring.once
def go_live() -> OnlineEvaluator:
    """The rules as the evaluator runs them (consistent reads, hand-off to the router), for the one
    evaluation of each imported account at the end of an import (POST /v1/imports/finish)."""
    return build_online_evaluator(settings(), sqs_publisher(aws_client("sqs"), settings().fired_queue_url))


@wiring.once
def counting_lag() -> CountingLag:
    config = settings()
    return CountingLag(dynamodb_client(), config.events_table, counters(), config.retention_days)


def require_scope(app: APIGatewayRestResolver, next_middleware: NextMiddleware) -> Response:
    """Let the call through only if the key holds the scope the document names for this route."""
    route = app.context["_route"]
    if route.rule.pattern == _CATCH_ALL:  # no route matched: the 404 handler answers, whoever calls
        return next_middleware(app)
    template = route.path.replace("<", "{").replace(">", "}")
    try:
        if self_verified(route.method, template):  # no key: the route checks its caller's signature
            return next_middleware(app)
        needed = required_scope(route.method, template)
    except KeyError:  # served but never declared, so never reviewed: refuse for every key
        logger.error("route missing from the OpenAPI document", extra={"route": route.path})
        raise MissingScope(None) from None
    if not takes_scheme(route.method, template, _auth_scheme()):
        raise SchemeNotAccepted()
    if needed is not None and needed not in _scopes():
        raise MissingScope(needed)
    return next_middleware(app)


app.use(middlewares=[require_scope])


@app.post("/v1/events")
def post_events() -> Response:
    return _take_batch(ingestor(), summarize, backfill=ingestor().for_backfill())


@app.post("/v1/imports/finish")
def post_imports_finish() -> Response:
    """Each imported account goes live once (shared/rules/golive.py); again: the same answer."""
    request = app.current_event
    document = parse_json_body(request.body, request.is_base64_encoded or False, what="account ids")
    try:
        finish = ImportFinish.model_validate(document)
    except ValidationError as error:
        problems = describe_errors(error, ImportFinish, noun="body")
        raise BadRequest("The body is not a valid import finish: " + "; ".join(problems)) from None
    now = datetime.now(UTC)

    def go_live_once(account_id: str) -> WentLive | None:
        live = go_live().went_live(account_id)
        if live is None and counting_lag().uncounted(account_id, now.date()):
            return None  # judged on part of its history otherwise: the caller asks again
        return live or go_live().go_live(account_id, now)

    account_ids = list(dict.fromkeys(finish.account_ids))
    with ThreadPoolExecutor(max_workers=GO_LIVE_IN_PARALLEL) as pool:
        answers = list(pool.map(go_live_once, account_ids))
    went_live = [answer for answer in answers if answer is not None]
    still_counting = [account for account, answer in zip(account_ids, answers, strict=True) if answer is None]
    by_trigger: dict[str, int] = {}
    for account in went_live:
        for name in account.pre_existing:
            by_trigger[name] = by_trigger.get(name, 0) + 1
    answer = ImportFinished.model_validate(
        {
            "accounts": [account.as_view() for account in went_live],
            "still_counting": still_counting,
            "pre_existing_by_trigger": by_trigger,
        }
    )
    return _json(200, answer.model_dump(mode="json"))


@app.post("/v1/outcomes")
def post_outcomes() -> Response:
    return _take_batch(outcome_intake(), summarize_outcomes)


@app.post("/v1/track")
def post_track() -> Response:
    return _take_segment("track")


@app.post("/v1/group")
def post_group() -> Response:
    return _take_segment("group")


@app.post("/v1/identify")
def post_identify() -> Response:
    return _take_segment("identify")


@app.post("/v1/batch")
def post_batch() -> Response:
    return _take_segment(None)


def _take_segment(route_type: str | None) -> Response:
    """Segment calls: 200 with each call's fate (what Segment's libraries expect of a success), a 400 when
    the one call of /v1/track, /v1/group or /v1/identify was rejected (Segment does not retry a 4xx),
    503 when storage failed (a retry is safe: what was stored comes back as duplicates)."""
    request = app.current_event
    calls, context = parse_segment_request(
        request.body,
        request.headers.get("content-type"),
        request.is_base64_encoded or False,
        batch=route_type is None,
    )
    caller = Caller(
        producer_id=_producer(),
        key_id=_writer().key_id,
        may_write_accounts=Scope.ACCOUNTS_WRITE in _scopes(),
    )
    results = segment_intake().take(calls, caller, datetime.now(UTC), route_type=route_type, context=context)
    for fate in Fate:
        count = sum(result.fate is fate for result in results)
        metrics.add_metric(name=f"Segment{fate.value.capitalize()}", unit=MetricUnit.Count, value=count)
    failed = sum(result.fate is Fate.FAILED for result in results)
    if failed:
        raise StorageUnavailable(
            f"{failed} of {len(results)} calls could not be stored because storage became unavailable. "
            "Retry the whole request: calls already taken are recognised and not counted twice."
        )
    if route_type is not None and results[0].fate is Fate.REJECTED:
        raise RejectedCall(results[0], route_type)
    return _json(200, summarize_calls(results).model_dump(mode="json"))


def _take_batch(
    intake: BatchIntake,
    summarize: Callable[[Sequence[ItemResult]], BaseModel],
    backfill: BatchIntake | None = None,
) -> Response:
    """A batch POST: the envelope, then each item through the intake, then 202 with each item's fate
    (or 503 when storage failed part-way: the whole request is retried and what was stored counts once).
    `backfill`: the intake of a request flagged `"backfill": true` (only routes that take history)."""
    request = app.current_event
    noun = intake.noun
    raw_items, flags = parse_batch_envelope(
        request.body,
        request.headers.get("content-type"),
        request.is_base64_encoded or False,
        array=noun.plural,
        noun=noun.singular,
        flags=("backfill",) if backfill else (),
    )
    if backfill and flags["backfill"]:
        intake = backfill
    results = intake.ingest(raw_items, _producer(), Channel.HTTPS, datetime.now(UTC))
    tally = Tally.of(results)
    prefix = noun.plural.capitalize()
    metrics.add_metric(name=f"{prefix}Accepted", unit=MetricUnit.Count, value=tally.accepted)
    metrics.add_metric(name=f"{prefix}Duplicate", unit=MetricUnit.Count, value=tally.duplicates)
    metrics.add_metric(name=f"{prefix}Rejected", unit=MetricUnit.Count, value=len(tally.rejected))
    if tally.failed:
        raise StorageUnavailable(
            f"{tally.accepted} of {len(results)} {noun.plural} were stored before storage became "
            f"unavailable. Retry the whole request: {noun.plural} already stored are recognised and "
            "not counted twice."
        )
    return _json(202, summarize(results).model_dump(mode="json"))


@app.put("/v1/accounts/<account_id>")
def put_account(account_id: str) -> Response:
    account_id = _account_id(account_id)
    request = app.current_event
    document = parse_json_body(request.body, request.is_base64_encoded or False, what="profile")
    if not isinstance(document, dict):
        raise BadRequest("The body must be a JSON object with the account profile (at least a name).")
    try:
        profile = AccountProfile.model_validate(document)
    except ValidationError as error:
        raise InvalidProfile(describe_errors(error, AccountProfile, noun="profile")) from None
    stored, created = accounts().put(account_id, profile, _writer())
    return _json(201 if created else 200, _profile_view(stored))


@app.get("/v1/accounts/<account_id>")
def get_account(account_id: str) -> Response:
    account_id = _account_id(account_id)
    stored = accounts().get(account_id)
    if stored is None:
        raise NotFound(f"No account {account_id!r}: create it with PUT /v1/accounts/{{account_id}}.")
    return _json(200, _profile_view(stored))


@app.get("/v1/accounts/<account_id>/counters")
def get_counters(account_id: str) -> Response:
    account_id = _account_id(account_id)
    first, last = _day_range(
        app.current_event.get_query_string_value("from"),
        app.current_event.get_query_string_value("to"),
        today=datetime.now(UTC).date(),
    )
    buckets = counters().read_range(account_id, first.isoformat(), last.isoformat())
    return _json(
        200,
        {
            "account_id": account_id,
            "from": first.isoformat(),
            "to": last.isoformat(),
            "days": [bucket_view(bucket) for bucket in buckets],
        },
    )


@app.get("/v1/accounts/<account_id>/signals")
def get_signals(account_id: str) -> Response:
    account_id = _account_id(account_id)
    online = signals()
    evaluation = online.preview(account_id, datetime.now(UTC))
    return _json(
        200,
        {
            "account_id": account_id,
            "ruleset_version": online.ruleset.version,
            "evaluated_at": utc_stamp(evaluation.evaluated_at),
            "triggers": [trigger_view(outcome) for outcome in evaluation.outcomes],
            "recent_firings": online.firings.recent_firings(account_id),
            "recent_plays": _recent_plays(account_id, now=evaluation.evaluated_at),
        },
    )


def _recent_plays(account_id: str, now: datetime) -> list[dict[str, Any]]:
    """The account's most recently updated plays, each with its fate (an escalation tier's fate
    knows its firing's expansion, which tier 0 holds)."""
    plays = play_ledger().plays(account_id)
    expanded = {play.firing_id: play.expanded for play in plays if play.tier == 0 and play.expanded}
    return [
        play_state(
            play, now=now, horizon_days=settings().horizon_days, firing_expanded=expanded.get(play.firing_id)
        )
        for play in plays[:RECENT_PLAYS]
    ]


@app.get("/v1/triggers")
def get_triggers() -> Response:
    now = datetime.now(UTC)
    names = list(signals().ruleset.triggers)
    with ThreadPoolExecutor(max_workers=TRIGGER_READS_IN_PARALLEL) as pool:
        reports = list(pool.map(lambda name: _trigger(name, now), names))
    return _json(200, {**_metrics_context(now), "triggers": reports})


@app.get("/v1/triggers/<name>")
def get_trigger(name: str) -> Response:
    now = datetime.now(UTC)
    name = unquote(name)
    report = _trigger(name, now)
    if name not in signals().ruleset.triggers and not report["firings_kept"]:
        raise NotFound(_unknown_trigger(name))
    return _json(200, {**_metrics_context(now), **report})


@app.get("/v1/triggers/<name>/experiment")
def get_experiment(name: str) -> Response:
    now = datetime.now(UTC)
    name = unquote(name)
    trigger = signals().ruleset.triggers.get(name)
    first = now.date() - timedelta(days=settings().retention_days)
    cohorts = trigger_metrics().cohorts(name, first, now.date())
    if trigger is None and not cohorts:
        raise NotFound(_unknown_trigger(name))  # before the salt: an unknown name is a 404, not a bad salt
    salt = app.current_event.get_query_string_value("salt") or (
        experiment_salt(name, trigger) if trigger else name
    )
    if not EXPERIMENT_SALT.fullmatch(salt):
        raise BadRequest(
            f"salt {salt!r} is not a salt: lower-case letters, digits, '-' and '_', at most 64",
        )
    percent = (trigger.holdout_percent or None) if trigger else None
    report = experiment_report(name, salt, percent, cohorts, now, settings().horizon_days)
    return _json(200, {**_metrics_context(now), "in_active_ruleset": trigger is not None, **report})


@app.get("/v1/rulesets")
def get_rulesets() -> Response:
    """Every ruleset version the deployment ever ran (as the evaluator recorded it), oldest first,
    each with its status now: live, shadow, or retired."""
    config = settings()
    live = signals().ruleset.version
    shadows = [active_ruleset(path)[0].version for path in shadow_paths(config.shadow_rulesets)]
    records = RulesetRecords(dynamodb_client(), config.registry_table).records()

    def status(version: str) -> str:
        return "live" if version == live else "shadow" if version in shadows else "retired"

    return _json(
        200,
        {
            "live": live,
            "shadow": shadows,
            "rulesets": [{**record.as_view(), "status": status(record.version)} for record in records],
        },
    )


@app.get("/v1/rulesets/<version>/changes")
def get_ruleset_changes(version: str) -> Response:
    """The triggers added, removed or changed by a recorded version, against the one recorded before it."""
    version = unquote(version)
    store = RulesetRecords(dynamodb_client(), settings().registry_table)
    records = store.records()
    index = next((i for i, record in enumerate(records) if record.version == version), None)
    if index is None:
        known = [record.version for record in records]
        raise NotFound(
            f"no ruleset version {version!r} was recorded{did_you_mean(version, known)}; "
            "GET /v1/rulesets lists them"
        )
    (changes,) = ruleset_audit(records[max(index - 1, 0) : index + 1], store.text)[-1:]
    return _json(200, changes.as_view())


def _trigger(name: str, now: datetime) -> dict[str, Any]:
    """A trigger's windows, from its cohorts (one Query); retired triggers keep theirs."""
    cohorts = trigger_metrics().cohorts(name, oldest_day(now), now.date())
    trigger = signals().ruleset.triggers.get(name)
    return {
        "category": trigger.category.value if trigger else None,
        "in_active_ruleset": trigger is not None,
        "firings_kept": bool(cohorts),
        **trigger_report(name, cohorts, now, settings().horizon_days),
    }


def _metrics_context(now: datetime) -> dict[str, Any]:
    return {
        "as_of": utc_stamp(now),
        "ruleset_version": signals().ruleset.version,
        "horizon_days": settings().horizon_days,
        "windows_days": list(WINDOWS_DAYS),
    }


def _unknown_trigger(name: str) -> str:
    known = sorted(signals().ruleset.triggers)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return (
        f"No trigger {name!r} in the active ruleset ({signals().ruleset.version}) and no firings of it "
        f"in the last {max(WINDOWS_DAYS)} days.{hint} Known triggers: {', '.join(known)}."
    )


@app.get("/v1/accounts/<account_id>/outcomes")
def get_outcomes(account_id: str) -> Response:
    account_id = _account_id(account_id)
    found = AccountOutcomes(account_id=account_id, outcomes=outcome_store().outcomes(account_id))
    return _json(200, found.model_dump(mode="json"))


@app.post("/v1/slack/interactions")
def post_slack_interactions() -> Response:
    """Slack's button clicks: verified against the signing secret, then "Not useful" on its play."""
    request = app.current_event
    body = request.decoded_body.encode() if request.decoded_body else b""
    verify_slack_request(
        slack_signing_secret()(),
        request.headers.get("x-slack-request-timestamp"),
        request.headers.get("x-slack-signature"),
        body,
        datetime.now(UTC).timestamp(),
    )
    click = parse_interaction(body)
    if click is None:
        return _message(200, "Not an interaction Upswing acts on; acknowledged.")
    try:
        fresh = record_not_useful(play_ledger(), click, datetime.now(UTC))
    except KeyError:
        raise NotFound(f"No play {click.play_id} for account {click.account_id}.") from None
    metrics.add_metric(
        name="PlaysMarkedNotUseful" if fresh else "PlaysMarkedAgain", unit=MetricUnit.Count, value=1
    )
    logger.info("play feedback", extra={"play_id": click.play_id, "fresh": fresh})
    return _message(200, "Recorded: not useful." if fresh else "This play already has feedback.")


@app.get("/v1/openapi.json")
def get_openapi() -> Response:
    return _json(200, openapi_document())


@app.exception_handler(BadRequest)
def bad_request(error: BadRequest) -> Response:
    status = 413 if isinstance(error, TooLarge) else 415 if isinstance(error, UnsupportedMediaType) else 400
    return _message(status, error.message)


@app.exception_handler(InvalidProfile)
def invalid_profile(error: InvalidProfile) -> Response:
    return _json(400, {"message": "The profile is not valid.", "errors": error.errors})


@app.exception_handler(RejectedCall)
def rejected_call(error: RejectedCall) -> Response:
    return _json(400, {"message": f"The {error.kind} call was not taken.", "errors": error.result.reasons})


@app.exception_handler(SchemeNotAccepted)
def scheme_not_accepted(_: SchemeNotAccepted) -> Response:
    return _message(
        403,
        "A Segment write key (HTTP Basic) is accepted only on the Segment routes (/v1/track, /v1/identify, "
        "/v1/group, /v1/batch); send this key as Authorization: Bearer <key> here.",
    )


@app.exception_handler(MissingScope)
def missing_scope(error: MissingScope) -> Response:
    if error.scope is None:
        return _message(403, "No key may call this route.")
    return _message(
        403,
        f"This key lacks the scope {error.scope.value!r}, which this route needs. "
        f"An operator can grant it: upswing keys grant KEY_ID --scope {error.scope.value}.",
    )


@app.exception_handler(SlackRequestRefused)
def slack_request_refused(error: SlackRequestRefused) -> Response:
    return _message(401, f"Not a request from Slack: {error}.")


@app.exception_handler(NotAnInteraction)
def not_an_interaction(error: NotAnInteraction) -> Response:
    return _message(400, f"Not a Slack interaction: {error}.")


@app.exception_handler(SlackNotSetUp)
def slack_not_set_up(_: SlackNotSetUp) -> Response:
    return _message(503, "Slack is not set up for this deployment: no signing secret (docs/operations.md).")


@app.exception_handler(NotFound)
def not_found(error: NotFound) -> Response:
    return _message(404, str(error))


@app.exception_handler(ConcurrentProfileWrites)
def concurrent_writes(_: ConcurrentProfileWrites) -> Response:
    return _message(503, "Other writers changed this profile at the same time; retry the request.")


@app.exception_handler(HierarchyRefused)
def hierarchy_refused(error: HierarchyRefused) -> Response:
    return _json(400, {"message": "The profile is not valid.", "errors": [f"parent_account_id: {error}"]})


@app.exception_handler(StorageUnavailable)
def storage_unavailable(error: StorageUnavailable) -> Response:
    return _message(503, str(error))


@app.exception_handler([ClientError, BotoCoreError])
def aws_unavailable(error: Exception) -> Response:
    # Throttling or an outage after botocore's own retries: the caller can retry; nothing is
    # half-written (every write is a single conditional item write).
    logger.error("storage call failed", extra={"error": type(error).__name__})
    return _message(503, "Storage is unavailable right now; retry the request in a few seconds.")


@app.not_found
def unknown_route(_: Exception) -> Response:
    method, path = app.current_event.http_method, app.current_event.path
    allowed = allowed_methods(path)
    if allowed:
        return Response(
            status_code=405,
            content_type=content_types.APPLICATION_JSON,
            headers={"Allow": ", ".join(allowed)},
            body=json.dumps({"message": f"{method} is not allowed on {path}; use {' or '.join(allowed)}."}),
        )
    return _message(404, f"No route {method} {path}; see /v1/openapi.json.")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)


def _profile_view(stored: StoredAccount) -> dict[str, Any]:
    """The profile as this caller may see it: owners' e-mail addresses only for accounts:read keys."""
    if Scope.ACCOUNTS_READ in _scopes():
        return stored.model_dump(mode="json")
    return stored.model_dump(mode="json", exclude={"owners": {"__all__": {"email"}}})


def _writer() -> Writer:
    authorizer = app.current_event.request_context.authorizer
    key_id = authorizer.get("key_id") if authorizer else None
    return Writer(producer_id=_producer(), key_id=str(key_id or "unknown"))


def _producer() -> str:
    authorizer = app.current_event.request_context.authorizer
    producer = authorizer.get("producer_id") if authorizer else None
    if not producer:
        # API Gateway only routes here after the authorizer allowed the call; a missing
        # producer means the deployment is miswired, never the caller's fault.
        raise RuntimeError("the authorizer did not name a producer")
    return str(producer)


def _auth_scheme() -> str:
    """How the caller presented its key: bearer, or basic (a Segment write key); the authorizer says."""
    authorizer = app.current_event.request_context.authorizer
    return str((authorizer.get("auth_scheme") if authorizer else None) or "bearer")


def _scopes() -> frozenset[Scope]:
    authorizer = app.current_event.request_context.authorizer
    text = authorizer.get("scopes") if authorizer else None
    return frozenset(scope for scope in Scope if scope.value in str(text or "").split())


def _account_id(raw: str) -> str:
    """The account id of a path, decoded strictly: one path, one account, or a 400 that says why."""
    try:
        # API Gateway (REST) passes path parameters percent-encoded: "soci%C3%A9t%C3%A9". A byte
        # that is not UTF-8 (%FF) must not become U+FFFD and collapse two ids into one.
        decoded = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise BadRequest("account_id is not valid percent-encoded UTF-8 (e.g. %FF).") from None
    if decoded in (".", ".."):
        raise BadRequest("account_id cannot be '.' or '..': such a path names no account.")
    try:
        return _ACCOUNT_ID.validate_python(decoded)
    except ValidationError:
        raise BadRequest("account_id must be 1-128 printable characters.") from None


def _day_range(first: str | None, last: str | None, today: date) -> tuple[date, date]:
    """The days asked for, within the days counters can exist: the retention window up to tomorrow."""
    oldest, newest = today - timedelta(days=settings().retention_days), today + timedelta(days=1)
    allowed = f"between {oldest.isoformat()} and {newest.isoformat()} (counters are kept for " + (
        f"{settings().retention_days} days)"
    )
    try:
        # An empty value (`?to=`) is a bad date, not a missing one.
        last_day = date.fromisoformat(last) if last is not None else today
        first_day = (
            date.fromisoformat(first) if first is not None else max(oldest, last_day - timedelta(days=29))
        )
    except (ValueError, OverflowError):
        raise BadRequest(f"from and to must be dates like 2026-11-23, {allowed}.") from None
    if not (oldest <= first_day <= newest and oldest <= last_day <= newest):
        raise BadRequest(f"from and to must be {allowed}.")
    if first_day > last_day:
        raise BadRequest("from must not be after to.")
    if (last_day - first_day).days >= MAX_COUNTER_DAYS:
        raise BadRequest(f"Ask for at most {MAX_COUNTER_DAYS} days at a time.")
    return first_day, last_day


def _message(status: int, message: str) -> Response:
    return _json(status, {"message": message})


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(body, ensure_ascii=False, separators=(",", ":")),
    )
