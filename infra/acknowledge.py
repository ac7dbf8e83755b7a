"""Acknowledging a cdk-nag finding on one construct, with the reason it is acceptable."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct


def acknowledge(scope: IConstruct, finding: str, reason: str) -> None:
    """Accept `finding` (e.g. "AwsSolutions-IAM5[Resource::*]") on `scope` and its children only."""
    Validations.of(scope).acknowledge(Acknowledgment(id=finding, reason=reason))
