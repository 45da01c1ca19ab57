"""The HTTP face of the double: the official SDK talks to it on 127.0.0.1, in Stripe's form encoding."""

from __future__ import annotations

import json
import re
import secrets
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit


class StripeEngine(Protocol):
    """What the HTTP face asks of the double's engine (``core.DoubleCore``)."""

    def handle(
        self, method: str, path: str, params: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, dict[str, Any], dict[str, str]] | None: ...

    def stats(self) -> dict[str, Any]: ...

    def reset_requests(self) -> None: ...


def listen(engine: StripeEngine) -> ThreadingHTTPServer:
    """An HTTP server on 127.0.0.1 (a free port) whose requests ``engine`` answers; the caller runs
    ``serve_forever``."""

    class Bound(Handler):
        stripe = engine

    server = ThreadingHTTPServer(("127.0.0.1", 0), Bound)
    server.daemon_threads = True
    return server


class Handler(BaseHTTPRequestHandler):
    stripe: StripeEngine
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # one response, one segment: no 40 ms delayed-ACK stalls

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        pairs = parse_qsl(url.query, keep_blank_values=True) + parse_qsl(body, keep_blank_values=True)
        headers = {k.lower(): v for k, v in self.headers.items()}
        if url.path == "/_double/stats":  # not Stripe: lets a bench in another process read counts
            self._send(200, self.stripe.stats(), {})
            if "reset" in url.query:
                self.stripe.reset_requests()
            return
        if not headers.get("authorization", "").startswith("Bearer "):
            self._send(
                401, {"error": {"type": "invalid_request_error", "message": "No API key provided."}}, {}
            )
            return
        result = self.stripe.handle(method, url.path, decode_form(pairs), headers)
        if result is None:
            self.close_connection = True
            return
        self._send(*result)

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("Request-Id", f"req_{secrets.token_hex(7)}")
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")


def decode_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding (``metadata[k]=v``, ``expand[0]=x``) back to nested dicts."""
    result: dict[str, Any] = {}
    for raw_key, value in pairs:
        parts = re.findall(r"[^\[\]]+|\[\]", raw_key)
        target = result
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    listified: dict[str, Any] = _listify(result)
    return listified


def _listify(value: Any) -> Any:
    if isinstance(value, dict):
        if value and all(k.isdigit() for k in value):
            return [_listify(value[k]) for k in sorted(value, key=int)]
        return {k: _listify(v) for k, v in value.items()}
    return value
