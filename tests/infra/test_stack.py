"""What the synthesized Upswing stack must guarantee, read from the CloudFormation template.

Resources are found by what they are (a table through the output named after its spec, a function
by its handler, a queue by who points at it), never by logical id.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Template

from functions.email_sender import handler as email_sender
from functions.hubspot_sender import handler as hubspot_sender
from infra.ingest import AUTHORIZER_CACHE_TTL
from infra.settings import UpswingSettings
from shared.http_messages import FORBIDDEN_MESSAGE, UNAUTHORIZED_MESSAGE
from shared.openapi import openapi_document
from shared.resources import (
    ACCOUNTS_COMPANY_INDEX,
    ACCOUNTS_PARENT_INDEX,
    ACCOUNTS_TABLE,
    BUS_INGEST_QUEUE,
    COUNTERS_TABLE,
    DELIVERIES_TABLE,
    EMAIL_QUEUE,
    EMAIL_SENDER_FUNCTION,
    EVENTS_TABLE,
    FIRED_QUEUE,
    FIRINGS_TABLE,
    FUNCTIONS,
    HUBSPOT_DLQ_ENV,
    HUBSPOT_QUEUE,
    HUBSPOT_SECRET_ENV,
    HUBSPOT_SENDER_FUNCTION,
    METRICS_NAMESPACE,
    OUTCOME_DETAIL_TYPE,
    OUTCOMES_TABLE,
    PLAY_ROUTED_DETAIL_TYPE,
    PLAYS_TABLE,
    REGISTRY_TABLE,
    REJECTS_QUEUE,
    RETENTION_DAYS_ENV,
    SERVICE_NAME,
    SLACK_BOT_TOKEN_SECRET_ENV,
    SLACK_DLQ_ENV,
    SLACK_QUEUE,
    SLACK_SENDER_FUNCTION,
    TABLES,
    USAGE_EVENT_DETAIL_TYPE,
    WEBHOOK_DLQ_ENV,
    WEBHOOK_QUEUE,
    WEBHOOK_SENDER_FUNCTION,
    TableSpec,
)

from .synth import SETTINGS, synthesize

API_HANDLER = "functions.api.handler.handler"
AUTHORIZER_HANDLER = "functions.authorizer.handler.handler"
BUS_INGEST_HANDLER = "functions.bus_ingest.handler.handler"
AGGREGATOR_HANDLER = "functions.aggregator.handler.handler"
EVALUATOR_HANDLER = "functions.evaluator.handler.handler"
ROUTER_HANDLER = "functions.router.handler.handler"
SCHEDULER_HANDLER = "functions.router.scheduler.handler"
HUBSPOT_SENDER_HANDLER = "functions.hubspot_sender.handler.handler"
EMAIL_SENDER_HANDLER = "functions.email_sender.handler.handler"
HUBSPOT_POLLER_HANDLER = "functions.hubspot_poller.handler.handler"
ATTRIBUTOR_HANDLER = "functions.attributor.handler.handler"
WEBHOOK_SENDER_HANDLER = "functions.webhook_sender.handler.handler"
SLACK_SENDER_HANDLER = "functions.slack_sender.handler.handler"
ARCHIVER_HANDLER = "functions.archiver.handler.handler"
DYNAMODB_WRITES = {
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:TransactWriteItems",
    "dynamodb:*",
}


@pytest.fixture(scope="module")
def template(
    tiny_asset_dirs: tuple[Path, Path], cdk_context: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The stack synthesized once for the module, on an app without cdk-nag (tested separately)."""
    _, stack = synthesize(tiny_asset_dirs, cdk_context, tmp_path_factory.mktemp("cdk.out"))
    return dict(Template.from_stack(stack).to_json())


# --- helpers: find things by meaning ----------------------------------------------------------


def of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == resource_type}


def referenced_ids(value: Any) -> Iterator[str]:
    """Logical ids a property refers to through Ref / Fn::GetAtt, however deeply nested."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                if not inner.startswith("AWS::"):  # pseudo parameters are not resources
                    yield inner
            elif key == "Fn::GetAtt":
                yield inner[0]
            else:
                yield from referenced_ids(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from referenced_ids(inner)


def table_id(template: dict[str, Any], spec: TableSpec) -> str:
    """The table behind the `<Spec>TableName` output the stack publishes."""
    (table,) = referenced_ids(template["Outputs"][f"{spec.construct_id}TableName"]["Value"])
    return table


def function_id(template: dict[str, Any], handler: str) -> str:
    (function,) = [
        name
        for name, function in of_type(template, "AWS::Lambda::Function").items()
        if function["Properties"]["Handler"] == handler
    ]
    return function


def role_statements(template: dict[str, Any], function: str) -> list[dict[str, Any]]:
    (role,) = referenced_ids(template["Resources"][function]["Properties"]["Role"])
    return [
        statement
        for policy in of_type(template, "AWS::IAM::Policy").values()
        if role in referenced_ids(policy["Properties"]["Roles"])
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def allowed_actions(statements: list[dict[str, Any]], resource_id: str | None = None) -> set[str]:
    actions: set[str] = set()
    for statement in statements:
        if resource_id is None or resource_id in referenced_ids(statement["Resource"]):
            action = statement["Action"]
            actions.update([action] if isinstance(action, str) else action)
    return actions


def item_statements(statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The statements on tables themselves, not on one of their indexes."""
    return [s for s in statements if "/index/" not in json.dumps(s["Resource"])]


def assert_parent_index_query_only(template: dict[str, Any], statements: list[dict[str, Any]]) -> None:
    """Family-scope rules and profile writes read the accounts' `parent` index: Query, that index only."""
    accounts = table_id(template, ACCOUNTS_TABLE)
    on_index = [
        s
        for s in statements
        if accounts in referenced_ids(s["Resource"]) and "/index/" in json.dumps(s["Resource"])
    ]
    assert [s["Action"] for s in on_index] == ["dynamodb:Query"]
    assert f"/index/{ACCOUNTS_PARENT_INDEX.name}" in json.dumps(on_index[0]["Resource"])


def test_given_the_evaluator_and_the_scheduler_then_they_query_the_parent_index_only(
    template: dict[str, Any],
) -> None:
    for handler in (EVALUATOR_HANDLER, SCHEDULER_HANDLER):
        statements = role_statements(template, function_id(template, handler))
        assert allowed_actions(item_statements(statements), table_id(template, ACCOUNTS_TABLE)) == {
            "dynamodb:GetItem"
        }
        assert_parent_index_query_only(template, statements)


def dead_letter_queue_ids(template: dict[str, Any]) -> set[str]:
    """Queues something else sends its failures to: SQS redrive, EventBridge target DLQ, Lambda on-failure."""
    resources = template["Resources"].values()
    return {
        *(
            queue_id
            for r in resources
            if r["Type"] == "AWS::SQS::Queue" and "RedrivePolicy" in r["Properties"]
            for queue_id in referenced_ids(r["Properties"]["RedrivePolicy"]["deadLetterTargetArn"])
        ),
        *(
            queue_id
            for r in resources
            if r["Type"] == "AWS::Events::Rule"
            for target in r["Properties"]["Targets"]
            for queue_id in referenced_ids(target.get("DeadLetterConfig", {}))
        ),
        *(
            queue_id
            for r in resources
            if r["Type"] == "AWS::Lambda::EventSourceMapping"
            for queue_id in referenced_ids(r["Properties"].get("DestinationConfig", {}))
        ),
    }


def api_routes(template: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(HTTP method, path) -> method properties, rebuilding paths from the resource tree."""
    resources = of_type(template, "AWS::ApiGateway::Resource")

    def path(resource_ref: Any) -> str:
        ids = list(referenced_ids(resource_ref))
        resource = resources.get(ids[0]) if len(ids) == 1 else None
        if resource is None:  # the API's root resource
            return ""
        return f"{path(resource['Properties']['ParentId'])}/{resource['Properties']['PathPart']}"

    return {
        (method["Properties"]["HttpMethod"], path(method["Properties"]["ResourceId"])): method["Properties"]
        for method in of_type(template, "AWS::ApiGateway::Method").values()
    }


# --- storage ----------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [spec for spec in TABLES if spec.stream], ids=lambda spec: spec.construct_id)
def test_given_a_table_spec_with_a_stream_when_synthesized_then_the_table_streams_that_view(
    template: dict[str, Any], spec: TableSpec
) -> None:
    table = template["Resources"][table_id(template, spec)]["Properties"]

    assert spec.stream is not None
    assert table["StreamSpecification"] == {"StreamViewType": spec.stream.value}


@pytest.mark.parametrize("spec", TABLES, ids=lambda spec: spec.construct_id)
def test_given_a_table_spec_when_synthesized_then_keys_and_ttl_come_from_the_spec(
    template: dict[str, Any], spec: TableSpec
) -> None:
    table = template["Resources"][table_id(template, spec)]["Properties"]

    expected_keys = [{"AttributeName": spec.partition_key, "KeyType": "HASH"}]
    if spec.sort_key:
        expected_keys.append({"AttributeName": spec.sort_key, "KeyType": "RANGE"})
    assert table["KeySchema"] == expected_keys
    index_keys = {key for index in spec.indexes for key in (index.partition_key, index.sort_key)}
    key_names = {key["AttributeName"] for key in expected_keys} | index_keys
    attributes = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
    assert attributes == dict.fromkeys(key_names, "S")
    assert [
        (index["IndexName"], [key["AttributeName"] for key in index["KeySchema"]], index["Projection"])
        for index in table.get("GlobalSecondaryIndexes", [])
    ] == [
        (
            index.name,
            [index.partition_key, index.sort_key],
            {"ProjectionType": "KEYS_ONLY" if index.keys_only else "ALL"},
        )
        for index in spec.indexes
    ]
    if spec.ttl_attribute:
        assert table["TimeToLiveSpecification"] == {"AttributeName": spec.ttl_attribute, "Enabled": True}
    else:
        assert "TimeToLiveSpecification" not in table
    if not spec.stream:
        assert "StreamSpecification" not in table


def test_given_any_table_then_it_is_on_demand_encrypted_recoverable_and_retained(
    template: dict[str, Any],
) -> None:
    tables = of_type(template, "AWS::DynamoDB::Table")

    assert len(tables) == len(TABLES)
    for table in tables.values():
        properties = table["Properties"]
        assert properties["BillingMode"] == "PAY_PER_REQUEST"
        assert properties["SSESpecification"]["SSEEnabled"] is True
        assert properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
        assert table["DeletionPolicy"] == "Retain"
        # Deletion protection is for prod only (see the prod test below).
        assert properties.get("DeletionProtectionEnabled") is False


def test_given_the_prod_stage_when_synthesized_then_every_table_has_deletion_protection(
    tiny_asset_dirs: tuple[Path, Path], cdk_context: dict[str, Any], tmp_path: Path
) -> None:
    _, stack = synthesize(tiny_asset_dirs, cdk_context, tmp_path, UpswingSettings(stage="prod"))

    tables = of_type(dict(Template.from_stack(stack).to_json()), "AWS::DynamoDB::Table")

    assert tables
    assert all(table["Properties"]["DeletionProtectionEnabled"] is True for table in tables.values())


# --- HTTP API ---------------------------------------------------------------------------------


def test_given_the_published_openapi_document_then_the_api_serves_exactly_its_routes_via_the_api_function(
    template: dict[str, Any],
) -> None:
    documented = {
        (verb.upper(), path)
        for path, operations in openapi_document()["paths"].items()
        for verb in operations
        if verb in {"get", "put", "post", "patch", "delete"}
    }
    routes = api_routes(template)
    api_function = function_id(template, API_HANDLER)

    # ANY on each documented path sends other methods to the API, which answers 405 with Allow.
    assert {route for route in routes if route[0] == "ANY"} == {("ANY", path) for _, path in documented}
    assert {route for route in routes if route[0] != "ANY"} == documented
    assert ("POST", "/v1/events") in routes
    for (_, path), method in routes.items():
        assert method["Integration"]["Type"] == "AWS_PROXY"
        assert api_function in referenced_ids(method["Integration"]["Uri"])
        if "{account_id}" in path:
            assert method["RequestParameters"] == {"method.request.path.account_id": True}


def test_given_any_api_method_except_options_then_it_requires_the_producer_key_authorizer(
    template: dict[str, Any],
) -> None:
    (authorizer_id, authorizer), *others = of_type(template, "AWS::ApiGateway::Authorizer").items()
    methods = [m for (verb, _), m in api_routes(template).items() if verb != "OPTIONS"]

    assert not others
    assert authorizer["Properties"]["Type"] == "TOKEN"
    assert authorizer["Properties"]["IdentitySource"] == "method.request.header.Authorization"
    assert authorizer["Properties"]["AuthorizerResultTtlInSeconds"] == AUTHORIZER_CACHE_TTL.to_seconds() == 60
    assert function_id(template, AUTHORIZER_HANDLER) in referenced_ids(
        authorizer["Properties"]["AuthorizerUri"]
    )
    assert methods
    # Slack calls its interactivity route without a key; the function checks Slack's signature.
    slack = api_routes(template)[("POST", "/v1/slack/interactions")]
    assert slack["AuthorizationType"] == "NONE"
    assert "AuthorizerId" not in slack
    methods = [method for method in methods if method is not slack]
    for method in methods:
        assert method["AuthorizationType"] == "CUSTOM"
        assert authorizer_id in referenced_ids(method["AuthorizerId"])
        assert "RequestValidatorId" in method


def test_given_a_missing_or_revoked_key_then_the_gateway_answers_json_with_the_shared_messages(
    template: dict[str, Any],
) -> None:
    responses = {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in of_type(template, "AWS::ApiGateway::GatewayResponse").values()
    }

    unauthorized = responses["UNAUTHORIZED"]
    assert unauthorized["StatusCode"] == "401"
    assert json.loads(unauthorized["ResponseTemplates"]["application/json"]) == {
        "message": UNAUTHORIZED_MESSAGE
    }
    denied = responses["ACCESS_DENIED"]
    assert denied["StatusCode"] == "403"
    assert json.loads(denied["ResponseTemplates"]["application/json"]) == {"message": FORBIDDEN_MESSAGE}
    assert "$context.error.messageString" in responses["DEFAULT_4XX"]["ResponseTemplates"]["application/json"]


def test_given_the_api_stage_then_it_logs_access_as_json_throttles_traces_and_never_logs_bodies(
    template: dict[str, Any],
) -> None:
    (stage,) = [s["Properties"] for s in of_type(template, "AWS::ApiGateway::Stage").values()]
    (settings,) = stage["MethodSettings"]

    assert stage["StageName"] == "api"
    (access_log_group,) = referenced_ids(stage["AccessLogSetting"]["DestinationArn"])
    assert access_log_group in of_type(template, "AWS::Logs::LogGroup")
    assert json.loads(stage["AccessLogSetting"]["Format"])["status"] == "$context.status"
    assert json.loads(stage["AccessLogSetting"]["Format"])["producer"] == "$context.authorizer.producer_id"
    # The scopes the authorizer passed are on every access-log line (a 403 can be explained).
    assert json.loads(stage["AccessLogSetting"]["Format"])["scopes"] == "$context.authorizer.scopes"
    assert stage["TracingEnabled"] is True
    assert settings["ThrottlingRateLimit"] == SETTINGS.api_rate_limit
    assert settings["ThrottlingBurstLimit"] == SETTINGS.api_burst_limit
    assert settings["LoggingLevel"] == "INFO"
    assert settings["DataTraceEnabled"] is False
    assert settings["MetricsEnabled"] is True


# --- functions and their permissions ----------------------------------------------------------


def test_given_any_function_then_it_runs_python_3_12_on_arm64_traced_with_its_own_log_group(
    template: dict[str, Any],
) -> None:
    functions = of_type(template, "AWS::Lambda::Function")
    log_groups = set(of_type(template, "AWS::Logs::LogGroup"))
    (layer,) = of_type(template, "AWS::Lambda::LayerVersion")

    assert {f["Properties"]["Handler"] for f in functions.values()} == {
        API_HANDLER,
        AUTHORIZER_HANDLER,
        BUS_INGEST_HANDLER,
        AGGREGATOR_HANDLER,
        EVALUATOR_HANDLER,
        ROUTER_HANDLER,
        SCHEDULER_HANDLER,
        HUBSPOT_SENDER_HANDLER,
        EMAIL_SENDER_HANDLER,
        HUBSPOT_POLLER_HANDLER,
        ATTRIBUTOR_HANDLER,
        WEBHOOK_SENDER_HANDLER,
        SLACK_SENDER_HANDLER,
        ARCHIVER_HANDLER,
    }
    own_log_groups = set()
    for function in functions.values():
        properties = function["Properties"]
        assert properties["Runtime"] == "python3.12"
        assert properties["Architectures"] == ["arm64"]
        assert properties["TracingConfig"] == {"Mode": "Active"}
        assert layer in referenced_ids(properties["Layers"])
        environment = properties["Environment"]["Variables"]
        assert environment["POWERTOOLS_SERVICE_NAME"] == "upswing"
        assert environment["POWERTOOLS_METRICS_NAMESPACE"] == "Upswing"
        (log_group,) = referenced_ids(properties["LoggingConfig"]["LogGroup"])
        assert log_group in log_groups
        own_log_groups.add(log_group)
    assert len(own_log_groups) == len(functions)


@pytest.mark.parametrize(
    ("handler", "tables"),
    [
        (
            API_HANDLER,
            [
                EVENTS_TABLE,
                REGISTRY_TABLE,
                ACCOUNTS_TABLE,
                COUNTERS_TABLE,
                FIRINGS_TABLE,
                PLAYS_TABLE,
                OUTCOMES_TABLE,
            ],
        ),
        (AUTHORIZER_HANDLER, [REGISTRY_TABLE]),
        (BUS_INGEST_HANDLER, [EVENTS_TABLE, REGISTRY_TABLE, OUTCOMES_TABLE]),
        (AGGREGATOR_HANDLER, [COUNTERS_TABLE]),
        (EVALUATOR_HANDLER, [COUNTERS_TABLE, ACCOUNTS_TABLE, FIRINGS_TABLE, REGISTRY_TABLE]),
        (ROUTER_HANDLER, [PLAYS_TABLE, ACCOUNTS_TABLE]),
        (SCHEDULER_HANDLER, [PLAYS_TABLE, ACCOUNTS_TABLE, COUNTERS_TABLE, FIRINGS_TABLE]),
        (HUBSPOT_SENDER_HANDLER, [DELIVERIES_TABLE, PLAYS_TABLE, ACCOUNTS_TABLE]),
        (EMAIL_SENDER_HANDLER, [DELIVERIES_TABLE]),
        (HUBSPOT_POLLER_HANDLER, [DELIVERIES_TABLE, PLAYS_TABLE, ACCOUNTS_TABLE, OUTCOMES_TABLE]),
        (ATTRIBUTOR_HANDLER, [PLAYS_TABLE]),
    ],
)
def test_given_a_function_then_its_table_env_vars_name_the_tables_of_the_same_spec(
    template: dict[str, Any], handler: str, tables: list[TableSpec]
) -> None:
    environment = template["Resources"][function_id(template, handler)]["Properties"]["Environment"][
        "Variables"
    ]

    table_variables = {name for name in environment if name in {spec.env_var for spec in TABLES}}
    assert table_variables == {spec.env_var for spec in tables}
    for spec in tables:
        assert list(referenced_ids(environment[spec.env_var])) == [table_id(template, spec)]


def test_given_the_ingesting_functions_then_they_know_the_retention_and_where_to_send_rejects(
    template: dict[str, Any],
) -> None:
    for handler in (API_HANDLER, BUS_INGEST_HANDLER, AGGREGATOR_HANDLER):
        environment = template["Resources"][function_id(template, handler)]["Properties"]["Environment"]
        assert environment["Variables"][RETENTION_DAYS_ENV] == str(SETTINGS.retention_days)
    bus_environment = template["Resources"][function_id(template, BUS_INGEST_HANDLER)]["Properties"]
    rejects_url = template["Outputs"]["RejectsQueueUrl"]["Value"]
    assert bus_environment["Environment"]["Variables"][REJECTS_QUEUE.env_var] == rejects_url


def test_given_any_lambda_role_then_it_has_no_managed_policies(template: dict[str, Any]) -> None:
    lambda_roles = [
        role["Properties"]
        for role in of_type(template, "AWS::IAM::Role").values()
        if role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"].get("Service")
        == "lambda.amazonaws.com"
    ]

    assert len(lambda_roles) == len(of_type(template, "AWS::Lambda::Function"))
    assert all(not role.get("ManagedPolicyArns") for role in lambda_roles)


def test_given_the_authorizer_then_it_can_only_read_one_key_from_the_registry(
    template: dict[str, Any],
) -> None:
    statements = role_statements(template, function_id(template, AUTHORIZER_HANDLER))
    dynamodb_actions = {a for a in allowed_actions(statements) if a.startswith("dynamodb:")}

    assert "dynamodb:PutItem" not in dynamodb_actions
    assert not dynamodb_actions & DYNAMODB_WRITES
    assert allowed_actions(statements, table_id(template, REGISTRY_TABLE)) == {"dynamodb:GetItem"}


def test_given_the_api_function_then_it_gets_exactly_the_item_actions_it_performs(
    template: dict[str, Any],
) -> None:
    statements = role_statements(template, function_id(template, API_HANDLER))

    # Query: POST /v1/imports/finish counts an account's ledger events (are they all counted yet?).
    assert allowed_actions(statements, table_id(template, EVENTS_TABLE)) == {
        "dynamodb:PutItem",
        "dynamodb:Query",
    }
    for spec in (REGISTRY_TABLE, ACCOUNTS_TABLE):
        assert allowed_actions(item_statements(statements), table_id(template, spec)) == {
            "dynamodb:GetItem",
            "dynamodb:PutItem",
        }
    assert_parent_index_query_only(template, statements)
    assert allowed_actions(statements, table_id(template, COUNTERS_TABLE)) == {"dynamodb:Query"}
    # GET .../signals reads the state and recent firings; POST /v1/imports/finish commits an
    # imported account's go-live evaluation (state + firings) and clears its outbox, as the evaluator does.
    assert allowed_actions(statements, table_id(template, FIRINGS_TABLE)) == {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:Query",
        "dynamodb:UpdateItem",
    }
    # Reads; and POST /v1/slack/interactions records "Not useful" on a play (an update, a read)
    assert allowed_actions(statements, table_id(template, PLAYS_TABLE)) == {
        "dynamodb:Query",
        "dynamodb:UpdateItem",
        "dynamodb:GetItem",
    }
    # POST /v1/outcomes: the conditional put; GET .../outcomes: one account's partition.
    assert allowed_actions(statements, table_id(template, OUTCOMES_TABLE)) == {
        "dynamodb:PutItem",
        "dynamodb:Query",
    }


def test_given_the_outcomes_table_then_only_the_intakes_write_it_and_only_by_putting_items(
    template: dict[str, Any],
) -> None:
    outcomes = table_id(template, OUTCOMES_TABLE)
    access = {
        template["Resources"][name]["Properties"]["Handler"]: allowed_actions(
            role_statements(template, name), outcomes
        )
        for name in of_type(template, "AWS::Lambda::Function")
    }

    assert {handler: actions for handler, actions in access.items() if actions} == {
        API_HANDLER: {"dynamodb:PutItem", "dynamodb:Query"},  # Query: GET .../outcomes reads them
        BUS_INGEST_HANDLER: {"dynamodb:PutItem"},
        HUBSPOT_POLLER_HANDLER: {"dynamodb:PutItem"},  # closed-won deals, through the same intake
        # The attributor reads its stream, never an item.
        ATTRIBUTOR_HANDLER: {"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"},
    }
    # Its stream carries new outcomes to the attributor only; the aggregator never sees one.
    assert template["Resources"][outcomes]["Properties"]["StreamSpecification"] == {
        "StreamViewType": "NEW_IMAGE"
    }
    consumers = [
        m["Properties"]
        for m in of_type(template, "AWS::Lambda::EventSourceMapping").values()
        if outcomes in referenced_ids(m["Properties"].get("EventSourceArn"))
    ]
    assert [list(referenced_ids(m["FunctionName"])) for m in consumers] == [
        [function_id(template, ATTRIBUTOR_HANDLER)]
    ]


def test_given_the_outcomes_stream_then_the_attributor_gets_only_inserts_with_bisect_and_a_failure_queue(
    template: dict[str, Any],
) -> None:
    attributor = function_id(template, ATTRIBUTOR_HANDLER)
    (mapping,) = [
        m["Properties"]
        for m in of_type(template, "AWS::Lambda::EventSourceMapping").values()
        if attributor in referenced_ids(m["Properties"]["FunctionName"])
    ]

    assert list(referenced_ids(mapping["EventSourceArn"])) == [table_id(template, OUTCOMES_TABLE)]
    assert [json.loads(f["Pattern"]) for f in mapping["FilterCriteria"]["Filters"]] == [
        {"eventName": ["INSERT"]}
    ]
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    (failures,) = referenced_ids(mapping["DestinationConfig"]["OnFailure"]["Destination"])
    assert failures in dead_letter_queue_ids(template)


def test_given_the_attributor_then_it_only_queries_plays_and_updates_them_and_their_counters(
    template: dict[str, Any],
) -> None:
    attributor = function_id(template, ATTRIBUTOR_HANDLER)
    statements = role_statements(template, attributor)

    assert allowed_actions(statements, table_id(template, PLAYS_TABLE)) == {
        "dynamodb:Query",
        "dynamodb:UpdateItem",
    }
    for spec in TABLES:
        if spec not in (PLAYS_TABLE, OUTCOMES_TABLE):
            assert not allowed_actions(statements, table_id(template, spec)), spec.construct_id
    # The outcomes table: its stream only (records, shards), never an item
    outcome_actions = allowed_actions(statements, table_id(template, OUTCOMES_TABLE))
    assert "dynamodb:GetRecords" in outcome_actions
    assert not outcome_actions & (DYNAMODB_WRITES | {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan"})
    variables = template["Resources"][attributor]["Properties"]["Environment"]["Variables"]
    assert variables["EXPANSION_HORIZON_DAYS"] == str(SETTINGS.expansion_horizon_days) == "14"


def test_given_the_business_dashboard_then_it_graphs_fired_worked_expanded_and_amount_per_trigger(
    template: dict[str, Any],
) -> None:
    # The bodies' literal text, without escapes (the region is joined in as a reference)
    dashboards = {
        json.dumps(d["Properties"]["DashboardName"]): "".join(
            part for part in d["Properties"]["DashboardBody"]["Fn::Join"][1] if isinstance(part, str)
        ).replace(chr(92), "")
        for d in of_type(template, "AWS::CloudWatch::Dashboard").values()
    }
    (business,) = [body for name, body in dashboards.items() if "triggers" in name]

    for metric in ("TriggerFired", "TriggerWorked", "TriggerExpanded", "TriggerExpansionAmount"):
        assert f'MetricName="{metric}"' in business, metric
    assert "{Upswing,service,trigger}" in business
    assert "{Upswing,service,trigger,currency}" in business
    assert len(dashboards) == 2  # beside the operations one


def test_given_the_aggregator_then_it_writes_only_counters(template: dict[str, Any]) -> None:
    statements = role_statements(template, function_id(template, AGGREGATOR_HANDLER))

    assert allowed_actions(statements, table_id(template, COUNTERS_TABLE)) == {
        "dynamodb:BatchGetItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",  # the first_seen marker (data coverage)
        "dynamodb:Query",  # its earliest bucket, once per account
    }
    assert not allowed_actions(statements) & (DYNAMODB_WRITES - {"dynamodb:PutItem", "dynamodb:UpdateItem"})
    for spec in (EVENTS_TABLE, REGISTRY_TABLE, ACCOUNTS_TABLE):
        assert not allowed_actions(statements, table_id(template, spec)) & DYNAMODB_WRITES


# --- event sources, bus and queues ------------------------------------------------------------


def test_given_the_events_stream_then_the_aggregator_gets_only_inserts_with_bisect_and_a_failure_queue(
    template: dict[str, Any],
) -> None:
    aggregator = function_id(template, AGGREGATOR_HANDLER)
    (mapping,) = [
        m["Properties"]
        for m in of_type(template, "AWS::Lambda::EventSourceMapping").values()
        if aggregator in referenced_ids(m["Properties"]["FunctionName"])
    ]

    assert list(referenced_ids(mapping["EventSourceArn"])) == [table_id(template, EVENTS_TABLE)]
    assert [json.loads(f["Pattern"]) for f in mapping["FilterCriteria"]["Filters"]] == [
        {"eventName": ["INSERT"]}
    ]
    assert mapping["StartingPosition"] == "TRIM_HORIZON"
    assert mapping["BatchSize"] == 500
    assert mapping["MaximumBatchingWindowInSeconds"] == 1
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["MaximumRetryAttempts"] == 5
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    (failure_queue,) = referenced_ids(mapping["DestinationConfig"]["OnFailure"]["Destination"])
    assert template["Resources"][failure_queue]["Type"] == "AWS::SQS::Queue"


def test_given_a_usage_event_or_an_outcome_on_the_bus_then_it_reaches_the_bus_ingest_function_through_a_queue(
    template: dict[str, Any],
) -> None:
    (bus_id,) = referenced_ids(template["Outputs"]["EventBusName"]["Value"])
    (rule,) = [
        r["Properties"]
        for r in of_type(template, "AWS::Events::Rule").values()
        if bus_id in referenced_ids(r["Properties"].get("EventBusName"))
    ]
    (target,) = rule["Targets"]
    bus_ingest = function_id(template, BUS_INGEST_HANDLER)
    (mapping,) = [
        m["Properties"]
        for m in of_type(template, "AWS::Lambda::EventSourceMapping").values()
        if bus_ingest in referenced_ids(m["Properties"]["FunctionName"])
    ]

    assert template["Resources"][bus_id]["Properties"]["Name"] == f"upswing-{SETTINGS.stage}"
    assert bus_id in referenced_ids(rule["EventBusName"])
    assert rule["EventPattern"] == {"detail-type": [USAGE_EVENT_DETAIL_TYPE, OUTCOME_DETAIL_TYPE]}
    (queue,) = referenced_ids(target["Arn"])
    assert "DeadLetterConfig" in target
    assert list(referenced_ids(mapping["EventSourceArn"])) == [queue]
    assert mapping["BatchSize"] == 100
    assert mapping["MaximumBatchingWindowInSeconds"] == 1
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    queue_properties = template["Resources"][queue]["Properties"]
    assert queue_properties["RedrivePolicy"]["maxReceiveCount"] == BUS_INGEST_QUEUE.max_receive_count
    timeout = template["Resources"][bus_ingest]["Properties"]["Timeout"]
    assert queue_properties["VisibilityTimeout"] == 6 * timeout


def test_given_any_queue_then_it_is_encrypted_tls_only_and_either_is_a_dlq_or_has_one(
    template: dict[str, Any],
) -> None:
    queues = of_type(template, "AWS::SQS::Queue")
    dead_letter_queues = dead_letter_queue_ids(template)
    tls_only_queues = {
        queue_id
        for policy in of_type(template, "AWS::SQS::QueuePolicy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Deny"
        and statement.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        for queue_id in referenced_ids(policy["Properties"]["Queues"])
    }

    assert dead_letter_queues < set(queues)
    for queue_id, queue in queues.items():
        properties = queue["Properties"]
        assert properties.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in properties, queue_id
        assert queue_id in tls_only_queues
        if queue_id in dead_letter_queues:
            assert properties["MessageRetentionPeriod"] == 14 * 24 * 3600
        else:
            assert "RedrivePolicy" in properties, f"{queue_id} has no dead-letter queue"


# --- observability ----------------------------------------------------------------------------


def test_given_any_dead_letter_queue_or_the_rejects_queue_then_a_message_in_it_raises_an_alarm(
    template: dict[str, Any],
) -> None:
    (rejects_queue,) = [
        queue_id
        for queue_id in of_type(template, "AWS::SQS::Queue")
        if f'"{queue_id}"' in json.dumps(template["Outputs"]["RejectsQueueUrl"]["Value"])
    ]
    depth_alarms = [
        a["Properties"]
        for a in of_type(template, "AWS::CloudWatch::Alarm").values()
        if a["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    ]
    watched = {
        queue_id
        for alarm in depth_alarms
        if alarm["Threshold"] == 0 and alarm["ComparisonOperator"] == "GreaterThanThreshold"
        for queue_id in referenced_ids(alarm["Dimensions"])
    }

    assert dead_letter_queue_ids(template) | {rejects_queue} <= watched


def test_given_the_alarms_then_each_function_errors_and_the_aggregator_lag_notify_the_encrypted_topic(
    template: dict[str, Any],
) -> None:
    (topic_id, topic), *others = of_type(template, "AWS::SNS::Topic").items()
    (key_id,) = referenced_ids(topic["Properties"]["KmsMasterKeyId"])
    key = of_type(template, "AWS::KMS::Key")[key_id]
    alarms = [a["Properties"] for a in of_type(template, "AWS::CloudWatch::Alarm").values()]
    errors_watched = {
        function
        for alarm in alarms
        if alarm["MetricName"] == "Errors"
        for function in referenced_ids(alarm["Dimensions"])
    }
    iterator_ages = [alarm for alarm in alarms if alarm["MetricName"] == "IteratorAge"]

    assert not others
    assert list(referenced_ids(topic["Properties"]["KmsMasterKeyId"])) == [key_id]
    assert key["Properties"]["EnableKeyRotation"] is True
    assert errors_watched == set(of_type(template, "AWS::Lambda::Function"))
    stream_consumers = {
        function_id(template, handler)
        for handler in (AGGREGATOR_HANDLER, EVALUATOR_HANDLER, ATTRIBUTOR_HANDLER, ARCHIVER_HANDLER)
    }
    assert {fn for alarm in iterator_ages for fn in referenced_ids(alarm["Dimensions"])} == stream_consumers
    assert {alarm["Threshold"] for alarm in iterator_ages} == {60_000}
    assert any(alarm["MetricName"] == "5XXError" for alarm in alarms)
    for alarm in alarms:
        assert list(referenced_ids(alarm["AlarmActions"])) == [topic_id]


def test_given_an_alarm_email_in_the_settings_then_the_topic_mails_it(
    tiny_asset_dirs: tuple[Path, Path], cdk_context: dict[str, Any], tmp_path: Path
) -> None:
    settings = UpswingSettings(stage="mail", alarm_email="oncall@example.com")
    _, stack = synthesize(tiny_asset_dirs, cdk_context, tmp_path, settings)

    Template.from_stack(stack).has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "oncall@example.com"}
    )


def test_given_the_stack_then_it_publishes_the_api_url_bus_tables_and_rejects_queue(
    template: dict[str, Any],
) -> None:
    assert set(template["Outputs"]) >= {
        "ApiUrl",
        "EventBusName",
        "RejectsQueueUrl",
        *(f"{spec.construct_id}TableName" for spec in TABLES),
    }


# --- routing and delivery ---------------------------------------------------------------------


def queue_of_env(template: dict[str, Any], handler: str, env_var: str) -> str:
    """The queue a function's environment variable names (by its URL)."""
    environment = template["Resources"][function_id(template, handler)]["Properties"]["Environment"]
    (queue,) = referenced_ids(environment["Variables"][env_var])
    return queue


def event_source(template: dict[str, Any], handler: str) -> dict[str, Any]:
    function = function_id(template, handler)
    (mapping,) = [
        m["Properties"]
        for m in of_type(template, "AWS::Lambda::EventSourceMapping").values()
        if function in referenced_ids(m["Properties"]["FunctionName"])
    ]
    return mapping


@pytest.mark.parametrize(
    ("consumer", "producers", "env_var", "max_receive_count"),
    [
        # The API hands off the go-live firings of an import (POST /v1/imports/finish).
        (
            ROUTER_HANDLER,
            [EVALUATOR_HANDLER, API_HANDLER],
            FIRED_QUEUE.env_var,
            FIRED_QUEUE.max_receive_count,
        ),
        (HUBSPOT_SENDER_HANDLER, [ROUTER_HANDLER, SCHEDULER_HANDLER], HUBSPOT_QUEUE.env_var, 10),
        (EMAIL_SENDER_HANDLER, [ROUTER_HANDLER, SCHEDULER_HANDLER], EMAIL_QUEUE.env_var, 5),
        (WEBHOOK_SENDER_HANDLER, [ROUTER_HANDLER, SCHEDULER_HANDLER], WEBHOOK_QUEUE.env_var, 10),
        (SLACK_SENDER_HANDLER, [ROUTER_HANDLER, SCHEDULER_HANDLER], SLACK_QUEUE.env_var, 10),
    ],
)
def test_given_a_play_queue_then_its_producers_send_and_its_consumer_reports_partial_failures(
    template: dict[str, Any], consumer: str, producers: list[str], env_var: str, max_receive_count: int
) -> None:
    queue = queue_of_env(template, producers[0], env_var)
    mapping = event_source(template, consumer)

    assert list(referenced_ids(mapping["EventSourceArn"])) == [queue]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    properties = template["Resources"][queue]["Properties"]
    assert properties["RedrivePolicy"]["maxReceiveCount"] == max_receive_count
    timeout = template["Resources"][function_id(template, consumer)]["Properties"]["Timeout"]
    assert properties["VisibilityTimeout"] == 6 * timeout
    for producer in producers:
        assert "sqs:SendMessage" in allowed_actions(
            role_statements(template, function_id(template, producer)), queue
        )


def test_given_the_hubspot_sender_then_it_runs_at_most_two_at_once_and_can_dead_letter_itself(
    template: dict[str, Any],
) -> None:
    mapping = event_source(template, HUBSPOT_SENDER_HANDLER)
    dead_letters = queue_of_env(template, HUBSPOT_SENDER_HANDLER, HUBSPOT_DLQ_ENV)
    queue = queue_of_env(template, HUBSPOT_SENDER_HANDLER, HUBSPOT_QUEUE.env_var)
    statements = role_statements(template, function_id(template, HUBSPOT_SENDER_HANDLER))

    assert mapping["ScalingConfig"] == {"MaximumConcurrency": 2}
    assert list(referenced_ids(template["Resources"][queue]["Properties"]["RedrivePolicy"])) == [dead_letters]
    assert "sqs:SendMessage" in allowed_actions(statements, dead_letters)
    assert "sqs:ChangeMessageVisibility" in allowed_actions(statements, queue)


def test_given_the_webhook_sender_then_it_reads_only_the_webhook_secrets_and_dead_letters_itself(
    template: dict[str, Any],
) -> None:
    sender = function_id(template, WEBHOOK_SENDER_HANDLER)
    statements = role_statements(template, sender)
    dead_letters = queue_of_env(template, WEBHOOK_SENDER_HANDLER, WEBHOOK_DLQ_ENV)
    queue = queue_of_env(template, WEBHOOK_SENDER_HANDLER, WEBHOOK_QUEUE.env_var)
    secret_statements = [s for s in statements if "secretsmanager:" in json.dumps(s["Action"])]

    (statement,) = secret_statements
    assert statement["Action"] == "secretsmanager:GetSecretValue"
    assert json.dumps(statement["Resource"]).endswith(':secret:upswing/webhooks/*"]]}')
    assert list(referenced_ids(template["Resources"][queue]["Properties"]["RedrivePolicy"])) == [dead_letters]
    assert "sqs:SendMessage" in allowed_actions(statements, dead_letters)
    assert "sqs:ChangeMessageVisibility" in allowed_actions(statements, queue)
    deliveries = table_id(template, DELIVERIES_TABLE)
    assert allowed_actions(item_statements(statements), deliveries) == {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
    }
    # No other function may read the webhooks' signing secrets
    readers = {
        name
        for name in of_type(template, "AWS::Lambda::Function")
        if "webhooks/*" in json.dumps(role_statements(template, name))
    }
    assert readers == {sender}


def test_given_the_slack_sender_then_only_it_reads_the_bot_token_and_it_dead_letters_itself(
    template: dict[str, Any],
) -> None:
    sender = function_id(template, SLACK_SENDER_HANDLER)
    statements = role_statements(template, sender)
    (token,) = [
        name
        for name, resource in of_type(template, "AWS::SecretsManager::Secret").items()
        if resource["Properties"]["Name"] == SETTINGS.slack_bot_token_secret
    ]
    readers = {
        name
        for name in of_type(template, "AWS::Lambda::Function")
        if any(
            a.startswith("secretsmanager:") for a in allowed_actions(role_statements(template, name), token)
        )
    }
    dead_letters = queue_of_env(template, SLACK_SENDER_HANDLER, SLACK_DLQ_ENV)
    queue = queue_of_env(template, SLACK_SENDER_HANDLER, SLACK_QUEUE.env_var)
    environment = template["Resources"][sender]["Properties"]["Environment"]["Variables"]

    assert readers == {sender}
    assert list(referenced_ids(environment[SLACK_BOT_TOKEN_SECRET_ENV])) == [token]
    assert event_source(template, SLACK_SENDER_HANDLER)["ScalingConfig"] == {"MaximumConcurrency": 2}
    assert "sqs:SendMessage" in allowed_actions(statements, dead_letters)
    assert "sqs:ChangeMessageVisibility" in allowed_actions(statements, queue)
    assert allowed_actions(item_statements(statements), table_id(template, PLAYS_TABLE)) == {
        "dynamodb:UpdateItem"
    }


def test_given_the_hubspot_sender_then_it_may_only_update_account_items_never_read_or_put_profiles(
    template: dict[str, Any],
) -> None:
    # A company found by domain goes on the account's item (a conditional update, decision 44)
    statements = role_statements(template, function_id(template, HUBSPOT_SENDER_HANDLER))
    assert allowed_actions(statements, table_id(template, ACCOUNTS_TABLE)) == {"dynamodb:UpdateItem"}
    assert "/index/" not in json.dumps(
        [
            s["Resource"]
            for s in statements
            if table_id(template, ACCOUNTS_TABLE) in referenced_ids(s["Resource"])
        ]
    )


def test_given_the_hubspot_secret_then_only_the_hubspot_sender_and_poller_can_read_it(
    template: dict[str, Any],
) -> None:
    (secret,) = [
        name
        for name, resource in of_type(template, "AWS::SecretsManager::Secret").items()
        if resource["Properties"]["Name"] == SETTINGS.hubspot_secret
    ]
    readers = {
        name
        for name in of_type(template, "AWS::Lambda::Function")
        if any(
            action.startswith("secretsmanager:")
            for action in allowed_actions(role_statements(template, name), secret)
        )
    }
    sender = function_id(template, HUBSPOT_SENDER_HANDLER)
    environment = template["Resources"][sender]["Properties"]["Environment"]["Variables"]

    poller = function_id(template, HUBSPOT_POLLER_HANDLER)
    assert readers == {sender, poller}
    assert list(referenced_ids(environment[HUBSPOT_SECRET_ENV])) == [secret]
    assert template["Resources"][secret]["Properties"]["Name"] == SETTINGS.hubspot_secret
    # Nothing in any function's environment looks like a token
    for function in of_type(template, "AWS::Lambda::Function").values():
        assert not any("token" in name.lower() for name in function["Properties"]["Environment"]["Variables"])


def test_given_the_email_sender_then_it_may_send_only_as_the_sender_identity(
    template: dict[str, Any],
) -> None:
    statements = role_statements(template, function_id(template, EMAIL_SENDER_HANDLER))
    ses = [statement for statement in statements if "ses:SendEmail" in json.dumps(statement["Action"])]
    senders = {
        function
        for function in of_type(template, "AWS::Lambda::Function")
        if "ses:SendEmail" in allowed_actions(role_statements(template, function))
    }

    assert senders == {function_id(template, EMAIL_SENDER_HANDLER)}
    (statement,) = ses
    resources = json.dumps(statement["Resource"])
    assert f"identity/{SETTINGS.sender_email}" in resources
    assert "*" not in resources


def test_given_the_router_then_it_publishes_play_routed_on_the_bus_and_the_bus_does_not_loop_it(
    template: dict[str, Any],
) -> None:
    (bus_id,) = referenced_ids(template["Outputs"]["EventBusName"]["Value"])
    for handler in (ROUTER_HANDLER, SCHEDULER_HANDLER):
        assert "events:PutEvents" in allowed_actions(
            role_statements(template, function_id(template, handler)), bus_id
        )
    bus_rules = [
        r["Properties"]
        for r in of_type(template, "AWS::Events::Rule").values()
        if bus_id in referenced_ids(r["Properties"].get("EventBusName"))
    ]
    assert all(PLAY_ROUTED_DETAIL_TYPE not in json.dumps(rule["EventPattern"]) for rule in bus_rules)


def test_given_the_scheduler_then_it_runs_every_five_minutes(template: dict[str, Any]) -> None:
    scheduler = function_id(template, SCHEDULER_HANDLER)
    (rule,) = [
        r["Properties"]
        for r in of_type(template, "AWS::Events::Rule").values()
        if any(scheduler in referenced_ids(target["Arn"]) for target in r["Properties"]["Targets"])
    ]
    assert rule["ScheduleExpression"] == "rate(5 minutes)"


def test_given_the_play_ledger_then_only_routing_the_hubspot_sender_the_poller_and_the_attributor_write_it(
    template: dict[str, Any],
) -> None:
    plays = table_id(template, PLAYS_TABLE)
    writes = {
        template["Resources"][name]["Properties"]["Handler"]: allowed_actions(
            role_statements(template, name), plays
        )
        & DYNAMODB_WRITES
        for name in of_type(template, "AWS::Lambda::Function")
    }
    writers = {handler for handler, actions in writes.items() if actions}
    # The API records a person's "Not useful" on a play (Slack's button): an update only
    assert writes[API_HANDLER] == {"dynamodb:UpdateItem"}
    assert writers == {
        API_HANDLER,
        ROUTER_HANDLER,
        SCHEDULER_HANDLER,
        HUBSPOT_SENDER_HANDLER,
        HUBSPOT_POLLER_HANDLER,
        ATTRIBUTOR_HANDLER,
        SLACK_SENDER_HANDLER,
    }
    # The Slack sender only notes a refusal on the play (delivery_problems)
    assert writes[SLACK_SENDER_HANDLER] == {"dynamodb:UpdateItem"}
    # The attributor only updates: a play's `expanded`, its trigger cohort's counters
    assert writes[ATTRIBUTOR_HANDLER] == {"dynamodb:UpdateItem"}
    # The sender records the task on its play (updates) and registers it for the read-back (a put)
    assert writes[HUBSPOT_SENDER_HANDLER] == {"dynamodb:UpdateItem", "dynamodb:PutItem"}
    # The poller only updates: facts on plays, registry entries, its watermark
    assert writes[HUBSPOT_POLLER_HANDLER] == {"dynamodb:UpdateItem"}


def test_given_the_hubspot_poller_then_it_runs_every_five_minutes_with_least_privilege_and_an_alarm(
    template: dict[str, Any],
) -> None:
    poller = function_id(template, HUBSPOT_POLLER_HANDLER)
    (rule,) = [
        r["Properties"]
        for r in of_type(template, "AWS::Events::Rule").values()
        if any(poller in referenced_ids(target["Arn"]) for target in r["Properties"]["Targets"])
    ]
    assert rule["ScheduleExpression"] == "rate(5 minutes)"
    assert template["Resources"][poller]["Properties"]["Timeout"] == 120
    statements = role_statements(template, poller)
    assert allowed_actions(statements, table_id(template, PLAYS_TABLE)) == {
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:Query",
        "dynamodb:UpdateItem",
    }
    # The shared search pacer's item: read and conditional update, nothing else in that table
    assert allowed_actions(statements, table_id(template, DELIVERIES_TABLE)) == {
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
    }
    # Deals: the company index only (never the profiles themselves), and the outcome's put
    accounts = table_id(template, ACCOUNTS_TABLE)
    (index_query,) = [s for s in statements if accounts in referenced_ids(s["Resource"])]
    assert index_query["Action"] == "dynamodb:Query"
    assert f"/index/{ACCOUNTS_COMPANY_INDEX.name}" in json.dumps(index_query["Resource"])
    assert allowed_actions(statements, table_id(template, OUTCOMES_TABLE)) == {"dynamodb:PutItem"}
    alarmed = [
        a["Properties"]
        for a in of_type(template, "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == "Errors"
        and any(poller in referenced_ids(d["Value"]) for d in a["Properties"].get("Dimensions", []))
    ]
    assert len(alarmed) == 1


@pytest.mark.parametrize(
    ("metric_name", "what_to_do"),
    [
        ("HubSpotTokenRejected", "Put a valid token in the HubSpot secret"),
        ("HubSpotScopeMissing", "Grant the private app the scope"),
        ("HubSpotFallbacks", "Fix the account's owners / hubspot ids"),
        ("HubSpotUnresolved", "Fix the account's owner e-mail or hubspot.domain"),
    ],
)
def test_given_the_hubspot_senders_metrics_then_token_scope_and_fallbacks_raise_alarms_saying_what_to_do(
    template: dict[str, Any], metric_name: str, what_to_do: str
) -> None:
    (topic_id,) = of_type(template, "AWS::SNS::Topic")
    (alarm,) = [
        a["Properties"]
        for a in of_type(template, "AWS::CloudWatch::Alarm").values()
        if a["Properties"]["MetricName"] == metric_name
    ]

    # The metric the sender emits: Powertools' EMF in the Upswing namespace, service dimension
    assert alarm["Namespace"] == METRICS_NAMESPACE
    assert alarm["Dimensions"] == [{"Name": "service", "Value": SERVICE_NAME}]
    assert (alarm["Statistic"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
        "Sum",
        0,
        "GreaterThanThreshold",
    )
    assert alarm["TreatMissingData"] == "notBreaching"
    assert what_to_do in alarm["AlarmDescription"]
    assert list(referenced_ids(alarm["AlarmActions"])) == [topic_id]


def test_given_due_hour_and_play_id_property_settings_then_the_hubspot_sender_gets_them(
    tiny_asset_dirs: tuple[Path, Path], cdk_context: dict[str, Any], tmp_path: Path
) -> None:
    settings = UpswingSettings(
        stage="sydney",
        hubspot_portal_timezone="Australia/Sydney",
        hubspot_due_hour=9,
        hubspot_play_id_property="upswing_play_id",
        auto_close_check_hours=12,
    )
    _, stack = synthesize(tiny_asset_dirs, cdk_context, tmp_path, settings)
    template = dict(Template.from_stack(stack).to_json())
    sender = function_id(template, HUBSPOT_SENDER_HANDLER)
    environment = template["Resources"][sender]["Properties"]["Environment"]["Variables"]

    assert environment["HUBSPOT_PORTAL_TIMEZONE"] == "Australia/Sydney"
    for business_days_counter in (ROUTER_HANDLER, SCHEDULER_HANDLER):  # SLAs count the portal's days
        variables = template["Resources"][function_id(template, business_days_counter)]["Properties"]
        assert variables["Environment"]["Variables"]["HUBSPOT_PORTAL_TIMEZONE"] == "Australia/Sydney"
        # Both watch tasks for auto-closing: the router starts the watch, the scheduler checks it
        assert variables["Environment"]["Variables"]["AUTO_CLOSE_CHECK_MINUTES"] == "720"
    assert environment["HUBSPOT_DUE_HOUR"] == "9"
    assert environment["HUBSPOT_PLAY_ID_PROPERTY"] == "upswing_play_id"
    assert list(referenced_ids(environment[PLAYS_TABLE.env_var])) == [table_id(template, PLAYS_TABLE)]


def test_every_function_is_deployed_as_its_spec_says(template: dict[str, Any]) -> None:
    """Handlers reason from their own timeout (a delivery claim younger than it may still be running);
    the stack must give them exactly that timeout, from the same spec (shared/resources.py)."""
    deployed = {
        function["Properties"]["Handler"]: function["Properties"]
        for function in of_type(template, "AWS::Lambda::Function").values()
        if str(function["Properties"].get("Handler", "")).startswith("functions.")
    }
    assert set(deployed) == {spec.handler for spec in FUNCTIONS}
    for spec in FUNCTIONS:
        properties = deployed[spec.handler]
        assert (properties["Timeout"], properties["MemorySize"]) == (spec.timeout_seconds, spec.memory_mb)
    # The senders' timeouts are their specs'.
    assert HUBSPOT_SENDER_FUNCTION.timeout == hubspot_sender.FUNCTION_TIMEOUT
    assert EMAIL_SENDER_FUNCTION.timeout == email_sender.FUNCTION_TIMEOUT


def test_a_queue_stays_invisible_six_function_timeouts_of_its_consumer(template: dict[str, Any]) -> None:
    timeouts = {
        queue["Properties"]["VisibilityTimeout"]
        for queue in of_type(template, "AWS::SQS::Queue").values()
        if "VisibilityTimeout" in queue["Properties"]
    }
    senders = (HUBSPOT_SENDER_FUNCTION, EMAIL_SENDER_FUNCTION, WEBHOOK_SENDER_FUNCTION, SLACK_SENDER_FUNCTION)
    assert {6 * spec.timeout_seconds for spec in senders} <= timeouts
    assert {6 * spec.timeout_seconds for spec in (HUBSPOT_SENDER_FUNCTION, EMAIL_SENDER_FUNCTION)} <= timeouts


# --- the events archive (S3, Parquet through Firehose) -----------------------------------------


def test_given_the_archive_then_events_land_as_day_partitioned_parquet_encrypted_and_expiring(
    template: dict[str, Any],
) -> None:
    from shared.archive.layout import ARCHIVE_COLUMNS

    (bucket_id,) = referenced_ids(template["Outputs"]["ArchiveBucketName"]["Value"])
    bucket = template["Resources"][bucket_id]["Properties"]
    (stream,) = of_type(template, "AWS::KinesisFirehose::DeliveryStream").values()
    destination = stream["Properties"]["ExtendedS3DestinationConfiguration"]
    (glue_table,) = of_type(template, "AWS::Glue::Table").values()

    # Encrypted with the archive's own rotating key, never public, TLS only
    (encryption,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    (key_id,) = referenced_ids(encryption["ServerSideEncryptionByDefault"]["KMSMasterKeyID"])
    assert template["Resources"][key_id]["Properties"]["EnableKeyRotation"] is True
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    policies = [p["Properties"] for p in of_type(template, "AWS::S3::BucketPolicy").values()]
    assert any(
        statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for policy in policies
        if bucket_id in referenced_ids(policy["Bucket"])
        for statement in policy["PolicyDocument"]["Statement"]
    )
    # Kept for the archive's retention (longer than the ledger's), then expired
    rules = {rule["Id"]: rule for rule in bucket["LifecycleConfiguration"]["Rules"]}
    assert rules["events-retention"]["ExpirationInDays"] == SETTINGS.archive_retention_days
    assert rules["events-retention"]["Prefix"] == "events/"
    assert SETTINGS.archive_retention_days > SETTINGS.retention_days
    # Parquet, converted with the Glue table's columns, one folder per event day, encrypted in transit
    # through the stream too
    assert destination["Prefix"] == "events/day=!{partitionKeyFromQuery:day}/"
    assert destination["DynamicPartitioningConfiguration"]["Enabled"] is True
    assert destination["FileExtension"] == ".parquet"
    conversion = destination["DataFormatConversionConfiguration"]
    assert conversion["Enabled"] is True
    assert "ParquetSerDe" in conversion["OutputFormatConfiguration"]["Serializer"]
    assert list(referenced_ids(destination["EncryptionConfiguration"])) == [key_id]
    assert (
        stream["Properties"]["DeliveryStreamEncryptionConfigurationInput"]["KeyType"]
        == "CUSTOMER_MANAGED_CMK"
    )
    columns = glue_table["Properties"]["TableInput"]["StorageDescriptor"]["Columns"]
    assert [(c["Name"], c["Type"]) for c in columns] == list(ARCHIVE_COLUMNS)
    assert [k["Name"] for k in glue_table["Properties"]["TableInput"]["PartitionKeys"]] == ["day"]


def test_given_the_archiver_then_it_only_puts_records_on_the_archive_stream(template: dict[str, Any]) -> None:
    statements = role_statements(template, function_id(template, ARCHIVER_HANDLER))
    (stream_id,) = of_type(template, "AWS::KinesisFirehose::DeliveryStream")

    assert allowed_actions(statements, stream_id) == {"firehose:PutRecordBatch"}
    assert not allowed_actions(statements) & DYNAMODB_WRITES
    assert not {action for action in allowed_actions(statements) if action.startswith("s3:")}


def test_given_the_counters_stream_then_the_evaluator_gets_bucket_inserts_and_changes_only(
    template: dict[str, Any],
) -> None:
    evaluator = function_id(template, EVALUATOR_HANDLER)
    (mapping,) = [
        m["Properties"]
        for m in of_type(template, "AWS::Lambda::EventSourceMapping").values()
        if evaluator in referenced_ids(m["Properties"]["FunctionName"])
    ]

    assert list(referenced_ids(mapping["EventSourceArn"])) == [table_id(template, COUNTERS_TABLE)]
    # TTL removals never, and the first_seen marker never (its bucket's own record follows it)
    assert [json.loads(f["Pattern"]) for f in mapping["FilterCriteria"]["Filters"]] == [
        {"eventName": ["INSERT", "MODIFY"], "dynamodb": {"Keys": {"sk": {"S": [{"prefix": "day#"}]}}}}
    ]
