"""`upswing`: the local stack, the demo, producer keys, rules, the OpenAPI document and synthetic history."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from datetime import date
from pathlib import Path
from typing import Any

from shared.horizon import DEFAULT_HORIZON_DAYS
from upswing.local.stack import QUIET_POWERTOOLS


def main(argv: list[str] | None = None) -> int:
    for name, value in QUIET_POWERTOOLS.items():
        os.environ.setdefault(name, value)
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except UserError as error:
        print(f"upswing: {error}", file=sys.stderr)
        return 2


class UserError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="upswing", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    local = commands.add_parser("local", help="run Upswing on this machine (AWS emulated on 127.0.0.1)")
    local.add_argument("--serve", action="store_true", help="stay up for your own requests (Ctrl-C stops)")
    local.add_argument("--port", type=int, default=8787, help="HTTP port on 127.0.0.1 (default 8787, 0: any)")
    local.set_defaults(run=_local)

    keys = commands.add_parser("keys", help="issue, list, grant and revoke producer keys")
    keys.add_argument("--registry-table", help="registry table name (default: $REGISTRY_TABLE)")
    keys.add_argument("--stack", help="read the table name from this CloudFormation stack's outputs")
    actions = keys.add_subparsers(required=True, metavar="ACTION")
    issue = actions.add_parser("issue", help="issue a key for a producer; the key is shown once")
    issue.add_argument("producer", help="producer name, e.g. billing-service")
    scope_help = (
        "events:write, outcomes:write, accounts:write or accounts:read; repeat or separate with commas"
    )
    issue.add_argument(
        "--scope", action="append", default=[], help=f"{scope_help} (default: events:write only)"
    )
    issue.set_defaults(run=_keys_issue)
    grant = actions.add_parser("grant", help="add scopes to a key (e.g. a key issued before scopes)")
    grant.add_argument("key_id")
    grant.add_argument("--scope", action="append", required=True, help=scope_help)
    grant.set_defaults(run=_keys_grant)
    revoke = actions.add_parser("revoke", help="revoke a key by its id (effective within a minute)")
    revoke.add_argument("key_id")
    revoke.set_defaults(run=_keys_revoke)
    actions.add_parser("list", help="list keys (ids, producers, scopes, dates)").set_defaults(run=_keys_list)

    rules = commands.add_parser("rules", help="validate rules files, print the rules JSON Schema")
    rule_actions = rules.add_subparsers(required=True, metavar="ACTION")
    validate = rule_actions.add_parser("validate", help="check rules files: every problem with file:line")
    validate.add_argument("path", type=Path, nargs="?", default=Path("rules"), help="file or folder (rules/)")
    validate.set_defaults(run=_rules_validate)
    schema = rule_actions.add_parser("schema", help="the JSON Schema of rules files (write it with --out)")
    schema.add_argument("--out", type=Path)
    schema.set_defaults(run=_rules_schema)
    lock = rule_actions.add_parser(
        "lock", help="add new ruleset versions to rules/versions.lock (a locked version never changes)"
    )
    lock.add_argument("path", type=Path, nargs="?", default=Path("rules"), help="file or folder (rules/)")
    lock.add_argument("--check", action="store_true", help="change nothing: fail if the lock is not current")
    lock.set_defaults(run=_rules_lock)
    audit = rule_actions.add_parser(
        "audit",
        help="which triggers each deployed ruleset version added, removed or changed, by whom and when",
        description="Reads the version records from the registry table with your AWS credentials (one "
        "GetItem, and one per version for its file), or diffs two local rules files with --diff.",
    )
    source = audit.add_mutually_exclusive_group(required=True)
    source.add_argument("--registry-table", help="the registry table's name")
    source.add_argument("--stack", help="read the table name from this CloudFormation stack's outputs")
    source.add_argument("--diff", nargs=2, type=Path, metavar=("OLD", "NEW"), help="two rules files")
    audit.add_argument("--json", action="store_true", help="JSON instead of text")
    audit.set_defaults(run=_rules_audit)

    openapi = commands.add_parser("openapi", help="print the OpenAPI document (or write it with --out)")
    openapi.add_argument("--out", type=Path)
    openapi.set_defaults(run=_openapi)

    hubspot = commands.add_parser("hubspot", help="one-time HubSpot portal set-up")
    hubspot_actions = hubspot.add_subparsers(required=True, metavar="ACTION")
    create_property = hubspot_actions.add_parser(
        "create-property",
        help="create the task property upswing_play_id (lookups by EQ instead of the body marker)",
        description="Creates the task custom property that carries each play's id. The token is read "
        "from the environment variable named by --token-env (never an argument); its app needs the "
        "schema write scope for tasks. Then deploy with --context hubspot_play_id_property=<name>.",
    )
    create_property.add_argument("--token-env", default="HUBSPOT_TOKEN", help="env var holding the token")
    create_property.add_argument("--base-url", default="https://api.hubapi.com", help="HubSpot's API")
    create_property.add_argument("--name", default="upswing_play_id", help="the property's name")
    create_property.set_defaults(run=_hubspot_create_property)

    _add_simulate(commands)
    _add_backtest(commands)
    _add_import(commands)
    _add_experiment(commands)
    return parser


def _add_import(commands: Any) -> None:
    imports = commands.add_parser(
        "import",
        help="go live: post history as backfill (counted, not evaluated), then evaluate each account once",
        description="Posts the files' events (JSONL or CSV, as the backtest reads them) to POST /v1/events "
        'with "backfill": true, then calls POST /v1/imports/finish for every imported account: each is '
        "evaluated once with its whole history, and the ruleset's go_live setting decides what happens to "
        "the triggers that already held (fire, spread, skip). Resumable: a progress file records what the "
        "API acknowledged; run the same command again to resume. The key (events:write) is read from the "
        "environment variable named by --key-env (never an argument). See docs/operations.md, Going live.",
    )
    imports.add_argument("files", type=Path, nargs="+", help="event files, in order")
    where = imports.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--endpoint", help="the API's base URL (the stack's ApiUrl output, or the local stack's)"
    )
    where.add_argument("--stack", help="read the API's URL from this CloudFormation stack's outputs")
    imports.add_argument("--key-env", default="UPSWING_API_KEY", help="env var holding the producer key")
    imports.add_argument(
        "--progress-file", type=Path, help="where progress is kept (default: .upswing-import-<digest>.json)"
    )
    imports.add_argument(
        "--no-finish", action="store_true", help="import only; go live later by running it again without this"
    )
    imports.set_defaults(run=_import)


def _import(args: argparse.Namespace) -> None:
    import httpx

    from upswing.backtest.events import InputError
    from upswing.backtest.output import terminal_progress
    from upswing.importer import (
        Importer,
        ImportFailed,
        ImportState,
        check_files,
        default_progress_file,
        files_digest,
        summary,
    )

    key = os.environ.get(args.key_env, "").strip()
    if not key:
        raise UserError(
            f"put a producer key with the events:write scope in ${args.key_env} (never an argument)"
        )
    try:
        check_files(args.files)
    except InputError as error:
        raise UserError(str(error)) from None
    endpoint = args.endpoint or _stack_output(args.stack, "ApiUrl")
    progress_file = args.progress_file or default_progress_file(args.files)
    try:
        state = ImportState.load(progress_file, files_digest(args.files))
        with httpx.Client(timeout=60) as http:
            importer = Importer(http, endpoint, key, state, progress_file, terminal_progress())
            importer.send(args.files)
            if not args.no_finish:
                importer.finish()
    except (ImportFailed, InputError) as error:
        raise UserError(f"{error} (progress kept in {progress_file})") from None
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    print(summary(importer.state))
    print(f"Progress kept in {progress_file}: running the same command again sends nothing twice.")


def _add_experiment(commands: Any) -> None:
    experiment = commands.add_parser("experiment", help="a trigger's measured lift (its holdout)")
    actions = experiment.add_subparsers(required=True, metavar="ACTION")
    report = actions.add_parser(
        "report",
        help="treated vs held-out expansion rates, lift with 95 %% intervals, a plain verdict",
        description="Reads GET /v1/triggers/{name}/experiment with a key holding accounts:read, read from "
        "the environment variable named by --key-env (never an argument).",
    )
    report.add_argument("trigger", help="the trigger's name")
    where = report.add_mutually_exclusive_group(required=True)
    where.add_argument("--endpoint", help="the API's base URL (the stack's ApiUrl output)")
    where.add_argument("--stack", help="read the API's URL from this CloudFormation stack's outputs")
    report.add_argument("--salt", help="another experiment of the trigger (default: its current one)")
    report.add_argument("--key-env", default="UPSWING_API_KEY", help="env var holding the reader key")
    report.add_argument("--json", action="store_true", help="print the API's JSON instead of text")
    report.add_argument(
        "--html", type=Path, metavar="OUT", help="also write the report as a self-contained HTML page"
    )
    report.set_defaults(run=_experiment_report)
    export = actions.add_parser(
        "export",
        help="every kept firing of a trigger with its arm, as CSV (scans the plays table)",
        description="Reads the plays table with your AWS credentials (a scan: run it off-peak on big "
        "tables) and writes one row per firing: arm, draw, trial, status, expansion.",
    )
    export.add_argument("trigger", help="the trigger's name")
    table = export.add_mutually_exclusive_group(required=True)
    table.add_argument("--plays-table", help="the plays table's name")
    table.add_argument("--stack", help="read the table name from this CloudFormation stack's outputs")
    export.add_argument("--out", type=Path, help="the CSV file (default: standard output)")
    export.set_defaults(run=_experiment_export)


def _experiment_report(args: argparse.Namespace) -> None:
    import httpx

    from upswing.experiment import ReportError, fetch_report, render, render_html

    key = os.environ.get(args.key_env, "").strip()
    if not key:
        raise UserError(f"put a key with the accounts:read scope in ${args.key_env} (never an argument)")
    endpoint = args.endpoint or _stack_output(args.stack, "ApiUrl")
    try:
        with httpx.Client(timeout=30) as http:
            report = fetch_report(http, endpoint, key, args.trigger, args.salt)
    except ReportError as error:
        raise UserError(str(error)) from None
    print(json.dumps(report, indent=2) if args.json else render(report))
    if args.html:
        args.html.write_text(render_html(report), encoding="utf-8")
        print(f"HTML report written to {args.html}", file=sys.stderr)


def _experiment_export(args: argparse.Namespace) -> None:
    from shared.experiments.export import write_firings
    from shared.routing.ledger import PlayLedger
    from shared.storage.dynamo import dynamodb_client

    table = args.plays_table or _stack_output(args.stack, "PlaysTableName")
    ledger = PlayLedger(dynamodb_client(), table, retention_days=1)  # reads only: no expiry is written
    if args.out is None:
        write_firings(ledger.firings_of(args.trigger), sys.stdout)
        return
    with args.out.open("w", encoding="utf-8", newline="") as out:
        rows = write_firings(ledger.firings_of(args.trigger), out)
    print(f"{rows:,} firings of {args.trigger} written to {args.out}", file=sys.stderr)


def _stack_output(stack: str, name: str) -> str:
    from shared.storage.dynamo import aws_client

    outputs = aws_client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
    value = next((o["OutputValue"] for o in outputs if o["OutputKey"] == name), None)
    if not value:
        raise UserError(f"stack {stack} has no {name} output")
    return str(value)


def _hubspot_create_property(args: argparse.Namespace) -> None:
    import httpx

    from shared.delivery.hubspot_schema import PropertyError, create_play_id_property

    token = os.environ.get(args.token_env, "").strip()
    if not token:
        raise UserError(
            f"put a HubSpot private-app token in ${args.token_env} (it is never a command argument)"
        )
    try:
        with httpx.Client(timeout=30) as http:
            outcome = create_play_id_property(http, args.base_url, token, args.name)
    except PropertyError as error:
        raise UserError(str(error)) from None
    except httpx.HTTPError as error:
        raise UserError(f"could not reach HubSpot at {args.base_url}: {type(error).__name__}") from None
    print(outcome.message)
    print(f"Now deploy with: --context hubspot_play_id_property={args.name}")


def _add_simulate(commands: Any) -> None:
    from upswing.simulate import FORMATS, SimulationConfig

    defaults = SimulationConfig()
    simulate = commands.add_parser(
        "simulate",
        help="write a seeded synthetic history (events, profiles, outcomes) to try Upswing on",
        description="A reproducible population with planted behaviours: growers that expand, plateaus, "
        "churners and a noise signal. See docs/simulate.md.",
    )
    simulate.add_argument("--accounts", type=int, default=defaults.accounts, help="default %(default)s")
    simulate.add_argument("--days", type=int, default=defaults.days, help="default %(default)s")
    simulate.add_argument(
        "--seed", type=int, default=defaults.seed, help="same seed, same files (default %(default)s)"
    )
    simulate.add_argument(
        "--start", type=_iso_date, default=defaults.start, help="first day, YYYY-MM-DD (default %(default)s)"
    )
    simulate.add_argument("--out", type=Path, required=True, help="folder to write into (created if missing)")
    simulate.add_argument(
        "--format", default=",".join(FORMATS), help="events as jsonl and/or parquet (default %(default)s)"
    )
    simulate.set_defaults(run=_simulate)


def _add_backtest(commands: Any) -> None:
    backtest = commands.add_parser(
        "backtest",
        help="replay historical events through the rules and score each trigger against expansions",
        description="Replays events (JSONL, CSV or Parquet) through the same engine as the evaluator and "
        "scores every trigger against an outcomes file: firings, precision, recall, lift, time to "
        "expansion. Writes backtest.json, triggers.csv, firings.csv and report.html. See docs/backtest.md.",
    )
    source = backtest.add_mutually_exclusive_group(required=True)
    source.add_argument("--events", type=Path, nargs="+", help="event files, in arrival order")
    source.add_argument(
        "--from-stack",
        metavar="NAME",
        help="the deployed stack's events archive (S3), profiles and outcomes (its tables)",
    )
    source.add_argument(
        "--from",
        dest="from_uri",
        metavar="S3_URI",
        help="an events archive: s3://BUCKET/PREFIX holding day=YYYY-MM-DD/ folders of Parquet",
    )
    backtest.add_argument(
        "--since", type=_iso_date, help="with --from-stack/--from: the first event day read (YYYY-MM-DD)"
    )
    backtest.add_argument(
        "--until", type=_iso_date, help="with --from-stack/--from: the last event day read (YYYY-MM-DD)"
    )
    backtest.add_argument(
        "--outcomes",
        type=Path,
        help="CSV: account_id, expansion_date, … (required, except with --from-stack: its outcomes table)",
    )
    backtest.add_argument("--accounts", type=Path, help="JSONL profiles, as `upswing simulate` writes them")
    backtest.add_argument(
        "--rules", type=Path, default=Path("rules/reference.yaml"), help="default %(default)s"
    )
    backtest.add_argument("--compare", type=Path, help="a second ruleset, scored on the same replay")
    backtest.add_argument(
        "--horizon",
        type=int,
        default=DEFAULT_HORIZON_DAYS,
        help="days a firing may precede an expansion (%(default)s, as the live metrics)",
    )
    backtest.add_argument(
        "--signals", action="store_true", help="also score each signal no trigger uses, as if it were one"
    )
    backtest.add_argument(
        "--strict", action="store_true", help="stop at the first bad line (default: skip it and count it)"
    )
    backtest.add_argument("--workers", type=int, help="processes replaying accounts (default: one per core)")
    backtest.add_argument(
        "--engine",
        choices=("auto", "columnar", "scalar"),
        default="auto",
        help="auto (default): the columnar engine for every account and ruleset it models, the online "
        "engine for the rest; columnar: fail if a ruleset needs the online engine; scalar: the online "
        "engine throughout (docs/backtest.md, 'Engines')",
    )
    backtest.add_argument("--out", type=Path, default=Path("backtest-results"), help="folder (%(default)s)")
    backtest.set_defaults(run=_backtest)


def _backtest(args: argparse.Namespace) -> None:
    if args.events is not None:
        if args.since or args.until:
            raise UserError(
                "--since and --until choose days of an archive: use them with --from-stack or --from"
            )
        _run_backtest(args, tuple(args.events), args.outcomes, args.accounts)
        return
    from shared.storage.dynamo import aws_client, dynamodb_client
    from upswing.backtest.archive import gather, scratch_folder, source_from_stack, source_from_uri
    from upswing.backtest.events import InputError

    try:
        source = (
            source_from_stack(args.from_stack, aws_client("cloudformation"))
            if args.from_stack
            else source_from_uri(args.from_uri)
        )
        with scratch_folder() as scratch:
            gathered = gather(
                source,
                Path(scratch),
                s3=aws_client("s3"),
                dynamodb=dynamodb_client() if args.from_stack else None,
                since=args.since,
                until=args.until,
                report=lambda line: print(line, file=sys.stderr),
            )
            print(
                f"archive: {gathered.objects:,} objects, {gathered.rows:,} rows, "
                f"{gathered.events_kept:,} events (one per account and event id)",
                file=sys.stderr,
            )
            _run_backtest(
                args,
                (gathered.events,),
                args.outcomes or gathered.outcomes,
                args.accounts or gathered.accounts,
            )
    except InputError as error:
        raise UserError(str(error)) from None


def _run_backtest(
    args: argparse.Namespace, events: tuple[Path, ...], outcomes: Path | None, accounts: Path | None
) -> None:
    from upswing.backtest import BacktestConfig, BacktestError, backtest
    from upswing.backtest.output import summary, terminal_progress, write_all

    if outcomes is None:
        raise UserError("give --outcomes FILE (only --from-stack reads a stack's outcomes table)")
    # Left out when not given, so that the config's own default (one per core) applies.
    workers = {"workers": args.workers} if args.workers is not None else {}
    try:
        config = BacktestConfig(
            events=events,
            outcomes=outcomes,
            accounts=accounts,
            rules=args.rules,
            compare=args.compare,
            horizon_days=args.horizon,
            signals=args.signals,
            strict=args.strict,
            command=" ".join(["upswing", *sys.argv[1:]]),
            engine=args.engine,
            **workers,
        )
        run = backtest(config, progress=terminal_progress())
    except BacktestError as error:
        raise UserError(str(error)) from None
    written = write_all(run.result, run.firings, args.out)
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    print(summary(run.result))
    print("\nWrote " + ", ".join(str(path) for path in written))


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: use YYYY-MM-DD, e.g. 2025-01-01") from None


def _local(args: argparse.Namespace) -> int:
    from upswing.local.demo import run_demo
    from upswing.local.stack import WEBHOOK_SECRET_NAME, LocalStack

    with LocalStack(port=args.port) as stack:
        print(f"Upswing local stack\n  API      {stack.endpoint}\n  AWS      {stack.aws_endpoint} (emulated)")
        print(f"  key      {stack.producer_key}   (producer 'local-dev')")
        if stack.slack_sink and stack.webhook_sink:
            print(f"  Slack    {stack.slack_sink.endpoint}   (sink; what it got: /__sink/requests)")
            print(f"  webhook  {stack.webhook_sink.endpoint}   (sink, secret {WEBHOOK_SECRET_NAME})")
        print()
        if not args.serve:
            run_demo(stack, sys.stdout)
            failures = stack.pump_failures()
            if failures:
                print(f"\n{len(failures)} stream records could not be processed", file=sys.stderr)
                return 1
            return 0
        _print_serve_help(stack)
        stopped = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        with contextlib.suppress(KeyboardInterrupt):
            stopped.wait()
        return 0


def _print_serve_help(stack: Any) -> None:
    example = json.dumps(
        {
            "events": [
                {
                    "event_id": "e-1",
                    "account_id": "acme",
                    "name": "seats.active",
                    "kind": "gauge",
                    "value": 42,
                    "occurred_at": "<now, e.g. 2026-11-23T10:00:00Z>",
                }
            ]
        }
    )
    print("Try it:")
    print(f"  curl -s {stack.endpoint}/v1/events -H 'Authorization: Bearer {stack.producer_key}' \\")
    print(f"       -H 'Content-Type: application/json' -d '{example}'")
    auth = f"-H 'Authorization: Bearer {stack.producer_key}'"
    print(f"  curl -s {stack.endpoint}/v1/accounts/acme/counters {auth}")
    if stack.hubspot_sink:
        # Like HubSpot, the sink refuses owners and records its portal does not have.
        print("HubSpot sink: tell it the owner and record ids your account profiles name:")
        print(
            f"  curl -s {stack.hubspot_url}/__sink/records -H 'Content-Type: application/json' "
            """-d '{"owners": ["1001"], "companies": ["5001"]}'"""
        )
    print("Serving until Ctrl-C.", flush=True)


def _producer_keys(args: argparse.Namespace) -> Any:
    from shared.producers import ProducerKeys
    from shared.resources import REGISTRY_TABLE
    from shared.storage.dynamo import aws_client, dynamodb_client

    table = args.registry_table or os.environ.get(REGISTRY_TABLE.env_var)
    if args.stack:
        outputs = (
            aws_client("cloudformation").describe_stacks(StackName=args.stack)["Stacks"][0].get("Outputs", [])
        )
        table = next((o["OutputValue"] for o in outputs if o["OutputKey"] == "RegistryTableName"), None)
    if not table:
        raise UserError("name the registry table: --registry-table NAME, --stack STACK or $REGISTRY_TABLE")
    return ProducerKeys(dynamodb_client(), table)


def _keys_issue(args: argparse.Namespace) -> None:
    from shared.producers import DEFAULT_SCOPES, ProducerKeyError, scopes_text

    try:
        scopes = _scopes_of(args.scope) or DEFAULT_SCOPES
        issued = _producer_keys(args).issue(args.producer, scopes)
    except ProducerKeyError as error:
        raise UserError(str(error)) from None
    print(f"key id   {issued.key_id}\nproducer {issued.producer_id}\nscopes   {scopes_text(issued.scopes)}")
    print(f"key      {issued.key}")
    print("Store the key in the producer's secret store now: it is not shown again.", file=sys.stderr)


def _keys_grant(args: argparse.Namespace) -> None:
    from shared.producers import ProducerKeyError, scopes_text

    try:
        scopes = _scopes_of(args.scope)
        keys = _producer_keys(args)
        keys.grant(args.key_id, scopes)
    except ProducerKeyError as error:
        raise UserError(str(error)) from None
    print(f"granted {scopes_text(scopes)} to {args.key_id} (effective within a minute: API Gateway caches)")


def _scopes_of(values: list[str]) -> Any:
    from shared.producers import parse_scopes

    return parse_scopes(name for value in values for name in value.split(",") if name.strip())


def _keys_revoke(args: argparse.Namespace) -> None:
    from shared.producers import ProducerKeyError

    try:
        _producer_keys(args).revoke(args.key_id)
    except ProducerKeyError as error:
        raise UserError(str(error)) from None
    print(f"revoked {args.key_id} (API Gateway may honour a cached answer for up to a minute)")


def _keys_list(args: argparse.Namespace) -> None:
    from shared.producers import scopes_text

    for record in _producer_keys(args).list():
        state = f"revoked {record.revoked_at}" if record.revoked_at else "active"
        scopes = scopes_text(record.scopes)
        print(f"{record.key_id}  {record.producer_id:<24} {scopes:<44} created {record.created_at}  {state}")


def _rules_validate(args: argparse.Namespace) -> int:
    from shared.rules.loading import RulesetError, load_ruleset, rules_files

    if not args.path.exists():
        raise UserError(f"{args.path} does not exist")
    files = rules_files(args.path)
    if not files:
        raise UserError(f"no .yaml or .yml files in {args.path}")
    failed = 0
    for file in files:
        try:
            ruleset = load_ruleset(file)
        except RulesetError as error:
            failed += 1
            print(error, file=sys.stderr)
            continue
        counts = f"{len(ruleset.signals)} signals, {len(ruleset.triggers)} triggers"
        print(f"{file}: ruleset {ruleset.version}: {counts}")
    return 1 if failed else 0


def _rules_lock(args: argparse.Namespace) -> int:
    from shared.rules.loading import RulesetError
    from shared.rules.versions import (
        LOCK_FILE,
        VersionError,
        folder_entries,
        lock_problems,
        lock_text,
        read_lock,
        relocked,
    )

    root = Path.cwd()
    lock_path = root / LOCK_FILE
    try:
        entries = folder_entries(args.path.resolve(), root)
        lock = read_lock(lock_path)
        if args.check:
            problems = lock_problems(entries, lock)
            for problem in problems:
                print(problem, file=sys.stderr)
            return 1 if problems else 0
        updated = relocked(entries, lock)
    except (RulesetError, VersionError, FileNotFoundError) as error:
        raise UserError(str(error)) from None
    added = sorted(set(updated) - set(lock))
    lock_path.write_text(lock_text(updated), encoding="utf-8")
    print(
        f"{LOCK_FILE}: {len(updated)} versions" + (f", added {', '.join(added)}" if added else ", no change")
    )
    return 0


def _rules_audit(args: argparse.Namespace) -> None:
    from shared.rules.audit import ruleset_audit, ruleset_changes, summary
    from shared.rules.loading import RulesetError, load_ruleset
    from shared.rules.versions import RulesetRecords
    from shared.storage.dynamo import dynamodb_client

    if args.diff:
        old, new = args.diff
        try:
            changes = ruleset_changes(load_ruleset(old), load_ruleset(new))
        except (RulesetError, FileNotFoundError) as error:
            raise UserError(str(error)) from None
        if args.json:
            print(json.dumps([change.as_view() for change in changes], indent=2, ensure_ascii=False))
            return
        print(f"{old} → {new}: {summary(changes)}")
        for change in changes:
            print("\n".join(change.lines()))
        return
    table = args.registry_table or _stack_output(args.stack, "RegistryTableName")
    store = RulesetRecords(dynamodb_client(), table)
    audit = ruleset_audit(store.records(), store.text)
    if not audit:
        raise UserError(f"no ruleset version is recorded in {table} yet (the evaluator records them)")
    if args.json:
        print(json.dumps([entry.as_view() for entry in audit], indent=2, ensure_ascii=False))
        return
    print("\n\n".join(str(entry) for entry in audit))


def _rules_schema(args: argparse.Namespace) -> None:
    from shared.rules.schema import rules_json_schema

    _write_json(rules_json_schema(), args.out)


def _write_json(document: Any, out: Path | None) -> None:
    text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if out:
        out.write_text(text)
    else:
        sys.stdout.write(text)


def _simulate(args: argparse.Namespace) -> None:
    from upswing.simulate import SimulationConfig, SimulationError, simulate

    formats = tuple(dict.fromkeys(part.strip() for part in args.format.split(",") if part.strip()))
    try:
        config = SimulationConfig(accounts=args.accounts, days=args.days, seed=args.seed, start=args.start)
        summary = simulate(config, args.out, formats, progress=_day_progress(args.days))
    except SimulationError as error:
        raise UserError(str(error)) from None
    print(summary.text())


def _day_progress(days: int) -> Any:
    """A progress line on a terminal; nothing when stderr is a file or a pipe."""
    if not sys.stderr.isatty():
        return None

    def show(done: int) -> None:
        if done % 7 == 0 or done == days:
            end = "\n" if done == days else ""
            print(f"\rsimulating: day {done:,} of {days:,}", end=end, file=sys.stderr, flush=True)

    return show


def _openapi(args: argparse.Namespace) -> None:
    from shared.openapi import openapi_document

    _write_json(openapi_document(), args.out)


if __name__ == "__main__":
    sys.exit(main())
