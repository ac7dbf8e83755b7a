"""API Gateway TOKEN authorizer: a producer key in, an allow policy naming the producer and its scopes out.

API Gateway caches the answer per key for a minute, for every route of the API (the policy
allows the whole API), so a revoked key stops working within that minute.

A key also works as a Segment write key (`Authorization: Basic base64(<key>:)`, as Segment's
libraries send it), on the Segment routes only: the policy for such a header allows just those
routes, so the cached answer cannot open others, and the API checks the scheme per route again.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.authorizer.settings import AuthorizerSettings
from shared.observability import logger
from shared.producers import ProducerKeys, scopes_text
from shared.segment import SEGMENT_PATHS
from shared.settings import load_settings
from shared.storage.dynamo import dynamodb_client
from shared.wiring import Wiring

wiring = Wiring()


@wiring.once
def producer_keys() -> ProducerKeys:
    return ProducerKeys(dynamodb_client(), load_settings(AuthorizerSettings).registry_table)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return authorize(event, producer_keys())


def authorize(event: dict[str, Any], keys: ProducerKeys) -> dict[str, Any]:
    token = event.get("authorizationToken") or ""
    scheme, _, credentials = token.partition(" ")
    scheme = scheme.lower()
    key = (
        credentials.strip() if scheme == "bearer" else _write_key(credentials) if scheme == "basic" else None
    )
    producer = keys.verify(key) if key else None
    if producer is None:
        # API Gateway answers 401 with the UNAUTHORIZED gateway response for this exception text.
        logger.info("producer key refused")
        raise Exception("Unauthorized")
    logger.append_keys(producer_id=producer.producer_id, key_id=producer.key_id)
    return {
        "principalId": producer.producer_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Action": "execute-api:Invoke",
                    "Effect": "Allow",
                    "Resource": (
                        _whole_api(event["methodArn"])
                        if scheme == "bearer"
                        else _segment_routes(event["methodArn"])
                    ),
                }
            ],
        },
        # Context values must be strings: scopes travel space-separated; the API checks them per route.
        "context": {
            "producer_id": producer.producer_id,
            "key_id": producer.key_id,
            "scopes": scopes_text(producer.scopes),
            "auth_scheme": scheme,
        },
    }


def _write_key(credentials: str) -> str | None:
    """The write key of HTTP Basic credentials: the user name, the password empty. Segment documents
    `base64(key + ":")` and also accepts the key without the colon; so do we."""
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, password = decoded.partition(":")
    return user if user and not password else None


def _segment_routes(method_arn: str) -> list[str]:
    """arn:...:api-id/stage/VERB/path → .../api-id/stage/*/v1/track, ... (every verb: others answer 405)."""
    api, stage = method_arn.split("/")[:2]
    return [f"{api}/{stage}/*{path}" for path in SEGMENT_PATHS]


def _whole_api(method_arn: str) -> str:
    """arn:aws:execute-api:region:account:api-id/stage/VERB/path → .../api-id/stage/*"""
    api, stage = method_arn.split("/")[:2]
    return f"{api}/{stage}/*"
