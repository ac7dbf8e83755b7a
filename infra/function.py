"""The one way an Upswing Lambda function is built."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from shared.resources import METRICS_NAMESPACE, SERVICE_NAME, FunctionSpec

from .acknowledge import acknowledge

# 3.12, not the newest runtime: the bundle ships bytecode (see infra/bytecode.py), which only an
# interpreter of the runtime's own minor version can compile, and 3.12 is the one this project is
# built and tested with. Moving on means building and testing with that version first.
RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.ARM_64

_XRAY_REASON = (
    "X-Ray tracing (Tracing.ACTIVE) needs xray:PutTraceSegments and xray:PutTelemetryRecords, "
    "which support no resource-level permissions: '*' is the only valid resource."
)


@dataclass(frozen=True)
class LambdaPackage:
    """The code bundle and the dependencies layer every function is built from."""

    code: lambda_.Code
    layer: lambda_.ILayerVersion
    environment: Mapping[str, str] = field(default_factory=dict)  # for every function


def dependencies_layer(scope: Construct, construct_id: str, code: lambda_.Code) -> lambda_.LayerVersion:
    """The third-party packages (Powertools, pydantic, ...) every function imports."""
    return lambda_.LayerVersion(
        scope,
        construct_id,
        code=code,
        compatible_runtimes=[RUNTIME],
        compatible_architectures=[ARCHITECTURE],
        description="Upswing runtime dependencies (built by `make layer`)",
    )


class UpswingFunction(Construct):
    """A Python/arm64 function with X-Ray, its own log group and its own role with no managed policies.

    The role starts with permission to write to its own log group only; callers add exactly the
    data-plane actions the handler performs with `allow(...)` (or CDK `grant_*` helpers).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: FunctionSpec,
        package: LambdaPackage,
        environment: Mapping[str, str],
        description: str | None = None,
        wildcard_resource_reasons: Sequence[str] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            retention=logs.RetentionDays.ONE_MONTH,
            # Logs outlive the function so an incident can still be read after a teardown.
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Runs {spec.handler}",
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.log_group.log_group_arn],
            )
        )
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=spec.handler,
            code=package.code,
            layers=[package.layer],
            memory_size=spec.memory_mb,
            timeout=Duration.seconds(spec.timeout_seconds),
            tracing=lambda_.Tracing.ACTIVE,
            log_group=self.log_group,
            role=self.role,
            description=description,
            environment={
                "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
                "LOG_LEVEL": "INFO",
                **package.environment,
                **environment,
            },
        )
        acknowledge(
            self.function,
            "AwsSolutions-L1",
            "Python 3.12 (supported until 2028) is the version the code is tested with and the only one "
            "whose bytecode the build can compile; shipping bytecode cuts cold starts by about two thirds.",
        )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5[Resource::*]",
            " ".join((_XRAY_REASON, *wildcard_resource_reasons)),
        )

    def allow(self, actions: Sequence[str], *resources: str) -> None:
        """Let the function call exactly these actions on exactly these resources."""
        self.role.add_to_policy(iam.PolicyStatement(actions=list(actions), resources=list(resources)))
