"""Slack's Web API (as far as Upswing uses it) and a webhook receiver, on 127.0.0.1: the local stack's
Slack workspace and webhook destination, so the real senders run against them unchanged.

SlackSink answers `users.lookupByEmail` (every address is a user, `U` + a stable hash, except those
told to be unknown: `users_not_found`, as Slack answers) and `chat.postMessage` (recorded, answered
with a channel and a `ts`), both behind a bearer token it never keeps. WebhookSink takes any POST,
checks its `Upswing-Signature` against the signing secret it was given, and records the request with
whether the signature held. Both serve what they received at GET /__sink/requests, newest last, and
write it as JSONL lines (truncated at start()), so a demo or a test can show what Slack or the
receiver got.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

REQUESTS_PATH = "/__sink/requests"


class _RecordingSink:
    """An HTTP server on 127.0.0.1 that records every request it answers."""

    def __init__(self, log_path: Path | None = None, port: int = 0) -> None:
        self._log_path = log_path
        self._lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                sink._serve(self)

            def do_GET(self) -> None:
                sink._serve(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Self:
        if self._log_path:
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_path.write_text("", encoding="utf-8")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _serve(self, request: BaseHTTPRequestHandler) -> None:
        path = urlsplit(request.path).path
        if request.command == "GET" and path == REQUESTS_PATH:
            with self._lock:
                self._reply(request, 200, {"requests": list(self.requests)})
            return
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        status, answer, entry = self.answer(request, path, body)
        entry = {"at": time.time(), "method": request.command, "path": path, "status": status, **entry}
        with self._lock:
            self.requests.append(entry)
            if self._log_path:
                with self._log_path.open("a", encoding="utf-8") as log:
                    log.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._reply(request, status, answer)

    def answer(
        self, request: BaseHTTPRequestHandler, path: str, body: bytes
    ) -> tuple[int, dict[str, Any], dict[str, Any]]:
        raise NotImplementedError

    @staticmethod
    def _reply(request: BaseHTTPRequestHandler, status: int, document: dict[str, Any]) -> None:
        raw = json.dumps(document).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json; charset=utf-8")
        request.send_header("Content-Length", str(len(raw)))
        request.end_headers()
        request.wfile.write(raw)


class SlackSink(_RecordingSink):
    """users.lookupByEmail and chat.postMessage, as Slack answers them."""

    def __init__(self, log_path: Path | None = None, port: int = 0) -> None:
        super().__init__(log_path, port)
        self.unknown_emails: set[str] = set()

    def messages(self) -> list[dict[str, Any]]:
        """What was posted: {"channel", "text", "blocks"} per message, oldest first."""
        return [
            r["body"] for r in self.requests if r["path"] == "/api/chat.postMessage" and r["status"] == 200
        ]

    def answer(
        self, request: BaseHTTPRequestHandler, path: str, body: bytes
    ) -> tuple[int, dict[str, Any], dict[str, Any]]:
        if not str(request.headers.get("Authorization") or "").startswith("Bearer "):
            return 200, {"ok": False, "error": "not_authed"}, {"body": None}
        method = path.removeprefix("/api/")
        if method == "users.lookupByEmail":
            email = (parse_qs(body.decode()).get("email") or [""])[0]
            # Recorded without the address: a sink log is no place for personal data either.
            if not email or email.lower() in self.unknown_emails:
                return 200, {"ok": False, "error": "users_not_found"}, {"body": None}
            user = "U" + hashlib.sha256(email.lower().encode()).hexdigest()[:10].upper()
            return 200, {"ok": True, "user": {"id": user}}, {"body": {"user": user}}
        if method == "chat.postMessage":
            message = json.loads(body or b"{}")
            if not message.get("channel") or not (message.get("text") or message.get("blocks")):
                return 200, {"ok": False, "error": "no_text"}, {"body": message}
            ts = f"{time.time():.6f}"
            return 200, {"ok": True, "channel": message["channel"], "ts": ts}, {"body": message}
        return 404, {"ok": False, "error": "unknown_method"}, {"body": None}


class WebhookSink(_RecordingSink):
    """A receiver that checks Upswing's signature with its signing secret and records each POST."""

    def __init__(self, signing_secret: str, log_path: Path | None = None, port: int = 0) -> None:
        super().__init__(log_path, port)
        self._secret = signing_secret

    def answer(
        self, request: BaseHTTPRequestHandler, path: str, body: bytes
    ) -> tuple[int, dict[str, Any], dict[str, Any]]:
        header = str(request.headers.get("Upswing-Signature") or "")
        parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
        expected = hmac.new(
            self._secret.encode(), parts.get("t", "").encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        verified = hmac.compare_digest(expected, parts.get("v1", ""))
        entry = {
            "idempotency_key": request.headers.get("Idempotency-Key"),
            "verified": verified,
            "body": json.loads(body or b"null"),
        }
        return (200 if verified else 401), {"received": verified}, entry
