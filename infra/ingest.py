"""The two ways usage events get in: the HTTP API (producer keys) and the EventBridge bus."""

from __future__ import annotations

import json
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from shared.horizon import HORIZON_ENV
from shared.http_messages import FORBIDDEN_MESSAGE, UNAUTHORIZED_MESSAGE
from shared.resources import (
    ACCOUNTS_PARENT_INDEX,
    ACCOUNTS_TABLE,
    API_FUNCTION,
    AUTHORIZER_FUNCTION,
    BUS_INGEST_FUNCTION,
    BUS_INGEST_QUEUE,
    BUS_INTAKE_DETAIL_TYPES,
    COUNTERS_TABLE,
    EVENTS_TABLE,
    FIRED_QUEUE,
    FIRINGS_TABLE,
    OUTCOMES_TABLE,
    PLAYS_TABLE,
    REGISTRY_TABLE,
    REJECTS_QUEUE,
    RETENTION_DAYS_ENV,
    RULESET_PATH_ENV,
    SHADOW_RULESETS_ENV,
    SLACK_SIGNING_SECRET_ENV,
)
from shared.segment import SEGMENT_PATHS
from shared.segment.mapping import DEFAULT_MAPPING_PATH, load_mapping

from .acknowledge import acknowledge
from .function import LambdaPackage, UpswingFunction
from .queues import dead_letter_queue, queue_with_dlq
from .settings import UpswingSettings
from .storage import Storage

_REPO_ROOT = Path(__file__).resolve().parents[1]
API_STAGE_NAME = "api"
# A revoked key keeps working for at most this long (API Gateway caches the authorizer's answer).
AUTHORIZER_CACHE_TTL = Duration.seconds(60)

# One JSON line per request. The producer (from the authorizer) tells an operator who sent a burst
# of 4xx; bodies are never logged (they carry account data).
_ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "requestTime": "$context.requestTime",
    "ip": "$context.identity.sourceIp",
    "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.resourcePath",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "latencyMs": "$context.responseLatency",
    "producer": "$context.authorizer.producer_id",
    "keyId": "$context.authorizer.key_id",
    # What the key may do, from the authorizer's context (the API checks it per route).
    "scopes": "$context.authorizer.scopes",
    "error": "$context.error.message",
}


class IngestApi(Construct):
    """REST API: the routes of the OpenAPI document (shared/openapi.py), all served by one api function.

    Every method is behind the producer-key TOKEN authorizer and proxies to one api function, but
    POST /v1/slack/interactions: Slack calls it without a key, and the function checks Slack's
    signature with the app's signing secret (the only reader of that secret).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        package: LambdaPackage,
        storage: Storage,
        settings: UpswingSettings,
    ) -> None:
        super().__init__(scope, construct_id)
        events_table = storage.table(EVENTS_TABLE)
        registry_table = storage.table(REGISTRY_TABLE)
        accounts_table = storage.table(ACCOUNTS_TABLE)
        counters_table = storage.table(COUNTERS_TABLE)
        firings_table = storage.table(FIRINGS_TABLE)
        plays_table = storage.table(PLAYS_TABLE)
        outcomes_table = storage.table(OUTCOMES_TABLE)

        # A Segment mapping with a mistake fails the synth, long before a Segment call could meet it.
        load_mapping(_REPO_ROOT / DEFAULT_MAPPING_PATH)
        self.api_function = UpswingFunction(
            self,
            "Api",
            spec=API_FUNCTION,
            package=package,
            description="HTTP API: accepts usage events, outcomes, account profiles and Segment calls",
            environment={
                EVENTS_TABLE.env_var: events_table.table_name,
                REGISTRY_TABLE.env_var: registry_table.table_name,
                ACCOUNTS_TABLE.env_var: accounts_table.table_name,
                COUNTERS_TABLE.env_var: counters_table.table_name,
                FIRINGS_TABLE.env_var: firings_table.table_name,
                PLAYS_TABLE.env_var: plays_table.table_name,
                OUTCOMES_TABLE.env_var: outcomes_table.table_name,
                RULESET_PATH_ENV: settings.ruleset_path,
                SHADOW_RULESETS_ENV: ",".join(settings.shadow_rulesets),
                RETENTION_DAYS_ENV: str(settings.retention_days),
                HORIZON_ENV: str(settings.expansion_horizon_days),
            },
        )
        # Conditional put of the ledger item is the deduplication; nothing is read back from it.
        self.api_function.allow(["dynamodb:PutItem"], events_table.table_arn)
        # Outcomes: the same conditional put (POST /v1/outcomes); GET .../outcomes queries an account's.
        self.api_function.allow(["dynamodb:PutItem", "dynamodb:Query"], outcomes_table.table_arn)
        # Metric-kind registrations (registry) and account profiles (accounts).
        self.api_function.allow(
            ["dynamodb:GetItem", "dynamodb:PutItem"], registry_table.table_arn, accounts_table.table_arn
        )
        # PUT /v1/accounts checks a parent_account_id against the family (the `parent` index);
        # GET .../signals reads a family for family-scope rules.
        self.api_function.allow(
            ["dynamodb:Query"], f"{accounts_table.table_arn}/index/{ACCOUNTS_PARENT_INDEX.name}"
        )
        # GET .../counters reads a range of an account's day buckets; only the aggregator writes them.
        self.api_function.allow(["dynamodb:Query"], counters_table.table_arn)
        # GET .../signals previews the rules: the account's trigger state and recent firings.
        self.api_function.allow(["dynamodb:GetItem", "dynamodb:Query"], firings_table.table_arn)
        # ...and the plays those firings became (routed, waiting, suppressed), and GET /v1/triggers
        # the trigger cohorts' counters (a partition per trigger): read only.
        self.api_function.allow(["dynamodb:Query"], plays_table.table_arn)
        # POST /v1/slack/interactions: "Not useful" on a play (one conditional update; a read to tell
        # a repeated click from an unknown play).
        self.api_function.allow(["dynamodb:UpdateItem", "dynamodb:GetItem"], plays_table.table_arn)
        self.slack_signing_secret = secretsmanager.Secret(
            self,
            "SlackSigningSecret",
            secret_name=settings.slack_signing_secret,
            description="The Upswing Slack app's signing secret (put it here; Basic Information in Slack)",
        )
        acknowledge(
            self.slack_signing_secret,
            "AwsSolutions-SMG4",
            "A Slack app's signing secret is regenerated in Slack, not by a Lambda; the API re-reads "
            "the secret every five minutes.",
        )
        self.slack_signing_secret.grant_read(self.api_function.function)
        self.api_function.function.add_environment(
            SLACK_SIGNING_SECRET_ENV, self.slack_signing_secret.secret_arn
        )

        self.authorizer_function = UpswingFunction(
            self,
            "Authorizer",
            spec=AUTHORIZER_FUNCTION,
            package=package,
            description="Verifies producer keys for the HTTP API",
            environment={REGISTRY_TABLE.env_var: registry_table.table_name},
        )
        # Verifying a key is one GetItem by its hash; the authorizer can never write.
        self.authorizer_function.allow(["dynamodb:GetItem"], registry_table.table_arn)
        authorizer = apigateway.TokenAuthorizer(
            self,
            "ProducerKeyAuthorizer",
            handler=self.authorizer_function.function,
            identity_source=apigateway.IdentitySource.header("Authorization"),
            results_cache_ttl=AUTHORIZER_CACHE_TTL,
        )

        self.rest_api = apigateway.RestApi(
            self,
            "RestApi",
            rest_api_name=f"upswing-{settings.stage}",
            description="Upswing usage-event ingestion",
            endpoint_types=[apigateway.EndpointType.REGIONAL],
            # API Gateway needs an account-level role to write execution logs (logging_level below).
            # Retained: other APIs in the account may rely on it after this stack is gone.
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
            deploy_options=self._stage_options(settings),
            default_method_options=apigateway.MethodOptions(
                authorizer=authorizer, authorization_type=apigateway.AuthorizationType.CUSTOM
            ),
        )
        self._add_routes(apigateway.LambdaIntegration(self.api_function.function, allow_test_invoke=False))
        self._add_gateway_responses()
        self._acknowledge_findings()

    def allow_going_live(self, storage: Storage, fired_queue: sqs.IQueue) -> None:
        """POST /v1/imports/finish evaluates each imported account once, as the evaluator would:
        it commits the account's trigger state and firings and hands them to the router."""
        firings_table = storage.table(FIRINGS_TABLE)
        self.api_function.function.add_environment(FIRED_QUEUE.env_var, fired_queue.queue_url)
        # The state item's versioned put, the firings' conditional puts (one transaction), the
        # outbox's DELETE of handed-off ids; reads are granted above.
        self.api_function.allow(["dynamodb:PutItem", "dynamodb:UpdateItem"], firings_table.table_arn)
        # ...once the account's counters hold every event of its ledger partition (a COUNT query).
        self.api_function.allow(["dynamodb:Query"], storage.table(EVENTS_TABLE).table_arn)
        fired_queue.grant_send_messages(self.api_function.function)

    def _stage_options(self, settings: UpswingSettings) -> apigateway.StageOptions:
        access_logs = logs.LogGroup(
            self, "AccessLogs", retention=logs.RetentionDays.THREE_MONTHS, removal_policy=RemovalPolicy.RETAIN
        )
        return apigateway.StageOptions(
            stage_name=API_STAGE_NAME,
            access_log_destination=apigateway.LogGroupLogDestination(access_logs),
            access_log_format=apigateway.AccessLogFormat.custom(json.dumps(_ACCESS_LOG_FIELDS)),
            throttling_rate_limit=settings.api_rate_limit,
            throttling_burst_limit=settings.api_burst_limit,
            tracing_enabled=True,
            logging_level=apigateway.MethodLoggingLevel.INFO,
            # Request and response bodies carry account properties: never copy them into logs.
            data_trace_enabled=False,
            metrics_enabled=True,
        )

    def _add_routes(self, integration: apigateway.LambdaIntegration) -> None:
        validator = apigateway.RequestValidator(
            self,
            "RequestValidator",
            rest_api=self.rest_api,
            validate_request_parameters=True,
            # No request models are attached, so there is no body schema to check yet (the handler
            # parses bodies); it is on so a model added later is enforced, and cdk-nag APIG2 asks for it.
            validate_request_body=True,
        )
        v1 = self.rest_api.root.add_resource("v1")
        account = v1.add_resource("accounts").add_resource("{account_id}")
        account_id_required = {"method.request.path.account_id": True}
        events = v1.add_resource("events")
        import_finish = v1.add_resource("imports").add_resource("finish")
        outcomes = v1.add_resource("outcomes")
        counters = account.add_resource("counters")
        signals = account.add_resource("signals")
        account_outcomes = account.add_resource("outcomes")
        document = v1.add_resource("openapi.json")
        triggers = v1.add_resource("triggers")
        trigger = triggers.add_resource("{name}")
        experiment = trigger.add_resource("experiment")
        name_required = {"method.request.path.name": True}
        rulesets = v1.add_resource("rulesets")
        ruleset_changes = rulesets.add_resource("{version}").add_resource("changes")
        version_required = {"method.request.path.version": True}
        # Segment's HTTP Tracking API paths (/v1/track, ...): Segment's libraries and destinations post there.
        segment_calls = [v1.add_resource(path.removeprefix("/v1/")) for path in SEGMENT_PATHS]
        methods = [
            events.add_method("POST", integration, request_validator=validator),
            import_finish.add_method("POST", integration, request_validator=validator),
            outcomes.add_method("POST", integration, request_validator=validator),
            account.add_method(
                "GET", integration, request_validator=validator, request_parameters=account_id_required
            ),
            account.add_method(
                "PUT", integration, request_validator=validator, request_parameters=account_id_required
            ),
            counters.add_method(
                "GET", integration, request_validator=validator, request_parameters=account_id_required
            ),
            signals.add_method(
                "GET", integration, request_validator=validator, request_parameters=account_id_required
            ),
            account_outcomes.add_method(
                "GET", integration, request_validator=validator, request_parameters=account_id_required
            ),
            document.add_method("GET", integration, request_validator=validator),
            triggers.add_method("GET", integration, request_validator=validator),
            trigger.add_method(
                "GET", integration, request_validator=validator, request_parameters=name_required
            ),
            experiment.add_method(
                "GET", integration, request_validator=validator, request_parameters=name_required
            ),
            rulesets.add_method("GET", integration, request_validator=validator),
            ruleset_changes.add_method(
                "GET", integration, request_validator=validator, request_parameters=version_required
            ),
            *(call.add_method("POST", integration, request_validator=validator) for call in segment_calls),
        ]
        slack_interactions = v1.add_resource("slack").add_resource("interactions")
        methods.append(self._slack_interactions(slack_interactions, integration, validator))
        per_account = (account, counters, signals, account_outcomes)
        # Any other method on a route's path reaches the API too, which answers 405 with an Allow
        # header (API Gateway alone would answer 403 "Missing Authentication Token").
        methods += [
            resource.add_method(
                "ANY",
                integration,
                request_validator=validator,
                request_parameters=(
                    account_id_required
                    if resource in per_account
                    else name_required
                    if resource in (trigger, experiment)
                    else version_required
                    if resource is ruleset_changes
                    else None
                ),
            )
            for resource in (
                events,
                import_finish,
                outcomes,
                document,
                triggers,
                trigger,
                experiment,
                rulesets,
                ruleset_changes,
                *per_account,
                *segment_calls,
                slack_interactions,
            )
        ]
        for method in methods:
            acknowledge(
                method,
                "AwsSolutions-COG4",
                "Producers are services, not users: this method uses the producer-key TOKEN Lambda "
                "authorizer (AuthorizationType CUSTOM) instead of a Cognito user pool.",
            )

    @staticmethod
    def _slack_interactions(
        resource: apigateway.Resource,
        integration: apigateway.LambdaIntegration,
        validator: apigateway.RequestValidator,
    ) -> apigateway.Method:
        """POST without the producer-key authorizer: Slack cannot send a key; the function verifies
        Slack's signature (HMAC with the signing secret, timestamp within 5 minutes) before anything."""
        method = resource.add_method("POST", integration, request_validator=validator)
        # The API's default method options carry the authorizer, and CDK refuses NONE beside it.
        cfn = method.node.default_child
        assert isinstance(cfn, apigateway.CfnMethod)
        cfn.add_property_override("AuthorizationType", "NONE")
        cfn.add_property_deletion_override("AuthorizerId")
        acknowledge(
            method,
            "AwsSolutions-APIG4",
            "Slack's interactivity requests carry no credential API Gateway can check; the api function "
            "verifies Slack's v0 HMAC signature with the app's signing secret and a 5-minute timestamp "
            "window before acting, and answers 401 otherwise.",
        )
        return method

    def _add_gateway_responses(self) -> None:
        self.rest_api.add_gateway_response(
            "Unauthorized",
            type=apigateway.ResponseType.UNAUTHORIZED,
            status_code="401",
            response_headers={"WWW-Authenticate": "'Bearer'"},
            templates={"application/json": json.dumps({"message": UNAUTHORIZED_MESSAGE})},
        )
        self.rest_api.add_gateway_response(
            "AccessDenied",
            type=apigateway.ResponseType.ACCESS_DENIED,
            status_code="403",
            templates={"application/json": json.dumps({"message": FORBIDDEN_MESSAGE})},
        )
        # Every other gateway-made 4xx keeps the same {"message": ...} shape the handlers use.
        self.rest_api.add_gateway_response(
            "Default4xx",
            type=apigateway.ResponseType.DEFAULT_4_XX,
            templates={"application/json": '{"message": $context.error.messageString}'},
        )

    def _acknowledge_findings(self) -> None:
        acknowledge(
            self.rest_api.node.find_child("CloudWatchRole"),
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]",
            "The account-level role API Gateway uses to write execution and access logs; this AWS "
            "managed policy is the documented one and covers only CloudWatch Logs actions.",
        )
        acknowledge(
            self.rest_api.deployment_stage,
            "AwsSolutions-APIG3",
            "Callers are machine producers authenticated by a producer key that the Lambda "
            "authorizer verifies, and the stage is throttled; a WAF web ACL is an optional add-on "
            "the platform team attaches per environment, outside this stack.",
        )


class BusIngest(Construct):
    """EventBridge bus → rule on `usage.event` and `outcome` → SQS → bus ingest function; invalid
    messages → rejects."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        package: LambdaPackage,
        storage: Storage,
        settings: UpswingSettings,
    ) -> None:
        super().__init__(scope, construct_id)
        events_table = storage.table(EVENTS_TABLE)
        registry_table = storage.table(REGISTRY_TABLE)
        outcomes_table = storage.table(OUTCOMES_TABLE)

        self.event_bus = events.EventBus(self, "EventBus", event_bus_name=f"upswing-{settings.stage}")
        inbox = queue_with_dlq(self, BUS_INGEST_QUEUE, consumer=BUS_INGEST_FUNCTION)
        rejects = queue_with_dlq(self, REJECTS_QUEUE, consumer=None)
        self.rejects_queue = rejects.queue
        undeliverable = dead_letter_queue(self, "BusDeliveryDlq", used_by="EventBridge rule target DLQ")
        self.dead_letter_queues: list[sqs.IQueue] = [
            inbox.dead_letter_queue,
            rejects.dead_letter_queue,
            undeliverable,
        ]

        events.Rule(
            self,
            "UsageEventRule",
            event_bus=self.event_bus,
            description="Usage events and outcomes published on the bus go to the bus ingest queue",
            event_pattern=events.EventPattern(detail_type=list(BUS_INTAKE_DETAIL_TYPES)),
            targets=[targets.SqsQueue(inbox.queue, dead_letter_queue=undeliverable)],
        )

        self.function = UpswingFunction(
            self,
            "BusIngest",
            spec=BUS_INGEST_FUNCTION,
            package=package,
            description="Validates and records usage events and outcomes that arrived on the event bus",
            environment={
                EVENTS_TABLE.env_var: events_table.table_name,
                REGISTRY_TABLE.env_var: registry_table.table_name,
                OUTCOMES_TABLE.env_var: outcomes_table.table_name,
                REJECTS_QUEUE.env_var: rejects.queue.queue_url,
                RETENTION_DAYS_ENV: str(settings.retention_days),
            },
        )
        self.function.allow(["dynamodb:PutItem"], events_table.table_arn, outcomes_table.table_arn)
        self.function.allow(["dynamodb:GetItem", "dynamodb:PutItem"], registry_table.table_arn)
        self.function.allow(["sqs:SendMessage"], rejects.queue.queue_arn)
        self.function.function.add_event_source(
            event_sources.SqsEventSource(
                inbox.queue,
                batch_size=100,
                max_batching_window=Duration.seconds(1),
                report_batch_item_failures=True,
            )
        )
