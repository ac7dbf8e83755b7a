"""The HTTP API on 127.0.0.1, shaped like API Gateway: authorizer first, then a proxy event to the handler."""

from __future__ import annotations

import base64
import json
import logging
import threading
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from shared.http_messages import UNAUTHORIZED_MESSAGE
from shared.openapi import SLACK_INTERACTIONS_PATH
from upswing.local.lambda_runtime import LocalFunction

_API_GATEWAY_PAYLOAD_LIMIT = 10 * 1024 * 1024  # REST APIs refuse bigger bodies before any Lambda runs
_METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:local/api/{method}{path}"


class LocalGateway:
    def __init__(self, authorizer: LocalFunction, api: LocalFunction, port: int = 0) -> None:
        gateway = self

        class RequestHandler(BaseHTTPRequestHandler):
            def __getattr__(self, name: str) -> Any:
                # Every method reaches the API, as with API Gateway's ANY method (the API answers
                # 405 with Allow for a method a route does not take), not http.server's HTML 501.
                if name.startswith("do_"):
                    return lambda: gateway.handle(self)
                raise AttributeError(name)

            def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
                # http.server's own refusals (header too large, bad request line) in the API's shape.
                self.close_connection = True
                _reply(self, code, {"message": message or HTTPStatus(code).phrase})

            def log_message(self, format: str, *args: Any) -> None:
                return  # request lines would drown the demo's output

        self._authorizer = authorizer
        self._api = api
        self._server = ThreadingHTTPServer(("127.0.0.1", port), RequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="gateway", daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        if length > _API_GATEWAY_PAYLOAD_LIMIT:
            _reply(request, 413, {"message": "Request Too Long"})
            return
        body = request.rfile.read(length) if length else b""
        url = urlsplit(request.path)
        path = url.path  # REST APIs hand Lambda the path still percent-encoded; so do we
        # Like the deployed API: Slack's interactivity route has no authorizer (the function checks
        # Slack's signature); every other route does.
        keyless = request.command == "POST" and path == SLACK_INTERACTIONS_PATH
        context = {} if keyless else self._authorize(request, path)
        if context is None:
            _reply(request, 401, {"message": UNAUTHORIZED_MESSAGE})
            return
        try:
            answer = self._api.invoke(_proxy_event(request, path, url.query, body, context))
        except Exception:  # API Gateway answers a Lambda that raised with 502, never a dropped connection
            logging.getLogger(__name__).exception("the API function raised (answered 502)")
            _reply(request, 502, {"message": "Internal server error"})
            return
        payload = answer.get("body") or ""
        raw = base64.b64decode(payload) if answer.get("isBase64Encoded") else payload.encode()
        request.send_response(answer["statusCode"])
        headers = {
            **answer.get("headers", {}),
            **{k: v[-1] for k, v in answer.get("multiValueHeaders", {}).items()},
        }
        for name, value in headers.items():
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(raw)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(raw)

    def _authorize(self, request: BaseHTTPRequestHandler, path: str) -> dict[str, Any] | None:
        token = request.headers.get("Authorization")
        if not token:
            return None
        event = {
            "type": "TOKEN",
            "authorizationToken": token,
            "methodArn": _METHOD_ARN.format(method=request.command, path=path),
        }
        try:
            policy = self._authorizer.invoke(event)
        except Exception:  # the authorizer's "Unauthorized" exception is how Lambda authorizers say no
            return None
        return {"principalId": policy["principalId"], **policy.get("context", {})}


def _proxy_event(
    request: BaseHTTPRequestHandler, path: str, query: str, body: bytes, authorizer: dict[str, Any]
) -> dict[str, Any]:
    try:
        text, is_base64 = body.decode(), False
    except UnicodeDecodeError:
        text, is_base64 = base64.b64encode(body).decode(), True
    multi_query = parse_qs(query, keep_blank_values=True)
    headers = dict(request.headers.items())
    return {
        "resource": path,
        "path": path,
        "httpMethod": request.command,
        "headers": headers,
        "multiValueHeaders": {name: request.headers.get_all(name) for name in headers},
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": path,
            "httpMethod": request.command,
            "path": f"/api{path}",
            "stage": "api",
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": request.client_address[0]},
            "authorizer": authorizer,
        },
        "body": text if body else None,
        "isBase64Encoded": is_base64,
    }


def _reply(request: BaseHTTPRequestHandler, status: int, document: dict[str, Any]) -> None:
    raw = json.dumps(document).encode()
    request.send_response(status)
    request.send_header("Content-Type", "application/json")
    request.send_header("Content-Length", str(len(raw)))
    request.end_headers()
    if request.command != "HEAD":
        request.wfile.write(raw)
