"""Small DynamoDB helpers shared by the adapters: clients, the attribute-value codec, errors.

Clients come from botocore directly: importing boto3 pulls in s3transfer, about 0.3 s of every
cold start, and nothing here needs it. They share one botocore session per process: each session
loads and parses the endpoint and partition data again, ~0.04 s a client (a function that makes
three clients saved ~0.09 s of its cold start).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import Context, Decimal
from functools import cache
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from shared.errors import StorageUnavailable

# DynamoDB numbers carry 38 significant digits.
_DECIMAL_CONTEXT = Context(prec=38)

# Retries with jitter for throttling; enough connections for the ingest's parallel puts.
CLIENT_CONFIG = Config(retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=32)


def aws_client(service: str, config: Config = CLIENT_CONFIG) -> Any:
    """A botocore client honouring the usual AWS_* environment (region, endpoint, credentials)."""
    # Lambda sets AWS_REGION; botocore on its own only reads AWS_DEFAULT_REGION.
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    with _SESSION_LOCK:  # a botocore session is not thread-safe; the clients it makes are
        return _session().create_client(service, region_name=region, config=config)


_SESSION_LOCK = threading.Lock()


@cache
def _session() -> botocore.session.Session:
    """The process's botocore session, made on first use. The endpoint (AWS_ENDPOINT_URL) and region
    are read again for each client; credentials are resolved once, as Lambda's never change."""
    return botocore.session.get_session()


def forget_clients() -> None:
    """A fresh session and DynamoDB client on next use (tests and the local stack: a session made
    before an AWS emulation was set up would not route through it)."""
    dynamodb_client.cache_clear()
    _session.cache_clear()


@cache
def dynamodb_client() -> Any:
    """One client per process, created on first use (never at import time)."""
    return aws_client("dynamodb")


def to_decimal(value: float | int | Decimal) -> Decimal:
    if isinstance(value, Decimal):
        return value
    # str() gives the shortest repr, so 0.1 stays 0.1 instead of its binary expansion.
    return _DECIMAL_CONTEXT.create_decimal(str(value))


def serialize(item: Mapping[str, Any]) -> dict[str, Any]:
    return {key: to_attribute(value) for key, value in item.items()}


def deserialize(item: Mapping[str, Any]) -> dict[str, Any]:
    return {key: from_attribute(value) for key, value in item.items()}


def to_attribute(value: Any) -> dict[str, Any]:
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, int | float | Decimal):
        return {"N": str(to_decimal(value))}
    if isinstance(value, Mapping):
        return {"M": serialize(value)}
    if isinstance(value, set | frozenset):
        if not value:
            raise ValueError("DynamoDB cannot store an empty set")
        if all(isinstance(member, str) for member in value):
            return {"SS": sorted(value)}
        return {"NS": sorted(str(to_decimal(member)) for member in value)}
    if isinstance(value, list | tuple):
        return {"L": [to_attribute(member) for member in value]}
    raise TypeError(f"cannot store {type(value).__name__} in DynamoDB")


def from_attribute(attribute: Mapping[str, Any]) -> Any:
    ((kind, value),) = attribute.items()
    match kind:
        case "S" | "BOOL":
            return value
        case "N":
            return Decimal(value)
        case "NULL":
            return None
        case "M":
            return deserialize(value)
        case "L":
            return [from_attribute(member) for member in value]
        case "SS":
            return set(value)
        case "NS":
            return {Decimal(member) for member in value}
        case _:
            raise TypeError(f"unsupported DynamoDB attribute type {kind}")


def is_conditional_failure(error: ClientError) -> bool:
    return error_code(error) == "ConditionalCheckFailedException"


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", "unknown"))


@contextmanager
def unavailable_on_failure(what: str) -> Iterator[None]:
    """Turn a store failure (any botocore error the caller did not handle) into StorageUnavailable."""
    try:
        yield
    except ClientError as error:
        raise StorageUnavailable(f"{what}: {error_code(error)}") from error
    except BotoCoreError as error:
        raise StorageUnavailable(f"{what}: {type(error).__name__}") from error
