"""The local gateway answers like API Gateway: JSON for every refusal, 502 when the handler raises,
every method passed to the API, never a dropped connection."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from upswing.local.gateway import LocalGateway
from upswing.local.lambda_runtime import LocalFunction


def allow_everyone(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"principalId": "p", "context": {"producer_id": "p", "key_id": "k", "scopes": "events:write"}}


def echo_method(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if event["path"] == "/boom":
        raise RuntimeError("the handler crashed")
    body = json.dumps({"method": event["httpMethod"]})
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": body}


@pytest.fixture
def gateway() -> Iterator[str]:
    running = LocalGateway(LocalFunction("authorizer", allow_everyone), LocalFunction("api", echo_method))
    running.start()
    try:
        yield running.endpoint
    finally:
        running.stop()


def test_given_a_handler_that_raises_then_502_json_like_api_gateway(gateway):
    answer = httpx.get(f"{gateway}/boom", headers={"Authorization": "Bearer k"})

    assert answer.status_code == 502
    assert answer.json() == {"message": "Internal server error"}


@pytest.mark.parametrize("method", ["TRACE", "OPTIONS", "PATCH", "PROPFIND", "DELETE"])
def test_given_any_method_then_it_reaches_the_api(gateway, method):
    answer = httpx.request(method, f"{gateway}/v1/events", headers={"Authorization": "Bearer k"})

    assert answer.status_code == 200
    assert answer.json() == {"method": method}


def test_given_head_then_the_answer_has_headers_and_no_body(gateway):
    answer = httpx.head(f"{gateway}/v1/events", headers={"Authorization": "Bearer k"})

    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.content == b""


def test_given_headers_too_large_then_the_refusal_is_json(gateway):
    host, port = gateway.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(b"GET /v1/events HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
        raw = b""
        while chunk := connection.recv(65_536):
            raw += chunk

    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 431") or head.startswith(b"HTTP/1.1 431")
    assert b"Content-Type: application/json" in head
    assert "message" in json.loads(body)


def test_given_no_key_then_401_json_before_the_api_runs(gateway):
    answer = httpx.get(f"{gateway}/boom")

    assert answer.status_code == 401
    assert "producer key" in answer.json()["message"]
