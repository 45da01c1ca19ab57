"""A local stand-in for the billing API, for testing an app that embeds the tracker (and the tracker).

``FakeBillingAPI`` serves ``POST /v1/events`` and ``GET /v1/tenants/{id}/quota`` over real HTTP on
127.0.0.1 with the documented contract (docs/concepts/metering.md): 202 with ``accepted``,
``duplicates`` and ``rejected_for_quota``; 400 with ``details`` ``[{index, field, reason}]`` and
nothing of the batch stored; 401/403 for keys; 402 suspended; 404 unknown tenant; 413 over 1,000
events or 1 MB; 415; 429 with ``Retry-After`` when every query of a batch is over quota; exactly
once by (tenant_id, event_id). Faults are scripted per request (``script``), the server can be
slowed (``delay``), paused (``pause``/``resume``) or stopped and restarted on the same port.

    with FakeBillingAPI(quotas={"acme": 100}) as api:
        tracker = Tracker(api.url, api.api_key, spool_dir)
"""

from __future__ import annotations

import calendar
import json
import re
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple
from urllib.parse import unquote

from ._events import encode_properties

_IDENT = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
_FIELDS = {
    "event_id",
    "tenant_id",
    "timestamp",
    "type",
    "model",
    "input_tokens",
    "output_tokens",
    "bytes",
    "properties",
}
MAX_EVENTS = 1000
MAX_BYTES = 1_000_000


class Request:
    """One request as the fake saw it (status 0: the connection was dropped without an answer)."""

    def __init__(self, path: str, status: int, events: int, size: int) -> None:
        self.path = path
        self.status = status
        self.events = events
        self.size = size
        self.at = time.monotonic()

    def __repr__(self) -> str:
        return f"Request({self.path!r}, {self.status}, events={self.events}, size={self.size})"


class Fault:
    """One scripted answer: an HTTP status (with optional Retry-After), ``"drop"`` (close the
    connection without answering) or ``"apply_then_drop"`` (store the batch, then drop)."""

    def __init__(self, kind: Any, retry_after: Optional[float] = None, body: Optional[Dict[str, Any]] = None):
        self.kind = kind
        self.retry_after = retry_after
        self.body = body


def _problem(index: Optional[int], field: str, reason: str) -> Dict[str, Any]:
    return {"index": index, "field": field, "reason": reason}


def _month_end(timestamp: str) -> str:
    year, month = int(timestamp[:4]), int(timestamp[5:7])
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return f"{year:04d}-{month:02d}-01T00:00:00Z"


class FakeBillingAPI:
    def __init__(
        self,
        *,
        api_key: str = "test-key",
        port: int = 0,
        quotas: Optional[Dict[str, Optional[int]]] = None,
        tenants: Optional[Iterable[str]] = None,
        models: Optional[Iterable[str]] = None,
        usage_types: Iterable[str] = (),
        suspended: Iterable[str] = (),
        plan: str = "pro",
    ) -> None:
        self.api_key = api_key
        self.quotas: Dict[str, Optional[int]] = dict(quotas or {})
        self.tenants: Optional[Set[str]] = set(tenants) if tenants is not None else None
        self.models: Optional[Set[str]] = set(models) if models is not None else None
        # the types the catalog declares beyond the built-in ones, as the server's plans file does
        self.usage_types: Set[str] = {"query", "embedding", "storage", *usage_types}
        self.suspended = set(suspended)
        self.plan = plan
        self.delay = 0.0
        self.stored: Dict[Tuple[str, str], Dict[str, Any]] = {}
        self.received: Counter[str] = Counter()  # event_id -> times it arrived in a request
        self.used: Counter[str] = Counter()  # tenant -> queries admitted
        self.log: List[Request] = []
        self.in_flight = 0  # POST /v1/events being handled right now
        self._faults: List[Fault] = []
        self._lock = threading.Lock()
        self._running = threading.Event()
        self._running.set()
        self._port = port
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._connections: Set[Any] = set()

    # -- control -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    def start(self) -> FakeBillingAPI:
        api = self

        class Handler(_Handler):
            owner = api

        server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        server.daemon_threads = True
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (clients then get "connection refused"); ``start()`` again reuses the port."""
        self._running.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:  # kept-alive clients must see the server gone too
            try:
                connection.shutdown(2)
            except OSError:
                pass

    def pause(self) -> None:
        """Requests hang (as with SIGSTOP) until ``resume()``."""
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def script(
        self,
        kind: Any,
        *,
        times: int = 1,
        retry_after: Optional[float] = None,
        body: Optional[Dict[str, Any]] = None,
    ) -> None:
        """The next ``times`` POST /v1/events get this answer instead of being processed."""
        with self._lock:
            self._faults.extend(Fault(kind, retry_after, body) for _ in range(times))

    def posts(self) -> List[Request]:
        return [r for r in list(self.log) if r.path == "/v1/events"]

    def stored_ids(self) -> List[str]:
        with self._lock:
            return [event_id for (_, event_id) in self.stored]

    def __enter__(self) -> FakeBillingAPI:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- the contract ------------------------------------------------------------------------
    def _validate(self, index: int, raw: Any) -> List[Dict[str, Any]]:
        if not isinstance(raw, dict):
            return [_problem(index, "event", "must be a JSON object")]
        problems = [_problem(index, key, "unknown field") for key in raw if key not in _FIELDS]
        for key in ("event_id", "tenant_id"):
            value = raw.get(key)
            if not isinstance(value, str) or not _IDENT.fullmatch(value):
                problems.append(_problem(index, key, "must be 1-128 characters of [A-Za-z0-9._:@/+=-]"))
        if not isinstance(raw.get("timestamp"), str) or not _RFC3339.fullmatch(raw["timestamp"]):
            problems.append(_problem(index, "timestamp", "must be RFC 3339 with an offset"))
        if raw.get("type") not in self.usage_types:
            known = ", ".join(sorted(self.usage_types))
            problems.append(
                _problem(
                    index, "type", f"unknown usage type {raw.get('type')!r}; the catalog defines {known}"
                )
            )
        for key in ("input_tokens", "output_tokens", "bytes"):
            value = raw.get(key, 0)
            if type(value) is not int or value < 0:
                problems.append(_problem(index, key, "must be a non-negative integer"))
        tokens = raw.get("input_tokens", 0) or raw.get("output_tokens", 0)
        model = raw.get("model")
        if tokens and not model:
            problems.append(_problem(index, "model", "model is required when tokens > 0"))
        if model is not None and self.models is not None and model not in self.models:
            problems.append(_problem(index, "model", f"unknown model {model!r}"))
        properties = raw.get("properties")
        if properties is not None:
            try:
                if not isinstance(properties, dict):
                    raise ValueError("must be a JSON object")
                encode_properties(properties)  # the server's rules, as the tracker checks them
            except ValueError as exc:
                problems.append(_problem(index, "properties", str(exc)))
        return problems

    def handle_events(
        self, body: bytes, content_type: str, api_key: Optional[str]
    ) -> Tuple[int, Dict[str, str], Optional[Dict[str, Any]], int]:
        if not api_key:
            return 401, {}, {"error": "unauthorized", "message": "an API key is required"}, 0
        if api_key != self.api_key:
            return 403, {}, {"message": "Forbidden"}, 0
        if content_type.split(";")[0].strip().lower() != "application/json":
            return (
                415,
                {},
                {"error": "unsupported_media_type", "message": "Content-Type must be application/json"},
                0,
            )
        if len(body) > MAX_BYTES:
            return 413, {}, {"error": "payload_too_large", "message": f"request body is {len(body)} bytes"}, 0
        try:
            document = json.loads(body, parse_float=Decimal)  # numbers exactly, as the server reads them
        except (ValueError, ArithmeticError) as exc:
            return (
                400,
                {},
                {
                    "error": "invalid_request",
                    "message": "request body is not valid JSON",
                    "details": [_problem(None, "body", str(exc))],
                },
                0,
            )
        events = document.get("events") if isinstance(document, dict) else None
        if not isinstance(events, list) or not events:
            return (
                400,
                {},
                {
                    "error": "invalid_request",
                    "message": "'events' must be a non-empty array",
                    "details": [_problem(None, "events", "required")],
                },
                0,
            )
        if len(events) > MAX_EVENTS:
            return (
                413,
                {},
                {"error": "payload_too_large", "message": f"at most {MAX_EVENTS} events"},
                len(events),
            )
        problems: List[Dict[str, Any]] = []
        seen: Dict[Tuple[Any, Any], int] = {}
        for index, raw in enumerate(events):
            problems.extend(self._validate(index, raw))
            if isinstance(raw, dict):
                key = (raw.get("tenant_id"), raw.get("event_id"))
                if key in seen:
                    problems.append(_problem(index, "event_id", f"repeats event {seen[key]} of this batch"))
                seen.setdefault(key, index)
        with self._lock:
            for raw in events:
                if isinstance(raw, dict):
                    self.received[str(raw.get("event_id"))] += 1
        if problems:
            return (
                400,
                {},
                {
                    "error": "invalid_request",
                    "details": problems,
                    "message": f"{len({p['index'] for p in problems})} invalid event(s); nothing was stored",
                },
                len(events),
            )
        tenant_ids = sorted({e["tenant_id"] for e in events})
        if self.tenants is not None:
            missing = [t for t in tenant_ids if t not in self.tenants]
            if missing:
                return (
                    404,
                    {},
                    {
                        "error": "not_found",
                        "message": f"unknown tenant(s): {', '.join(missing)}",
                        "details": [
                            {"field": "tenant_id", "tenant_id": t, "reason": "unknown tenant"}
                            for t in missing
                        ],
                    },
                    len(events),
                )
        suspended = [t for t in tenant_ids if t in self.suspended]
        if suspended:
            return (
                402,
                {},
                {
                    "error": "tenant_suspended",
                    "message": "suspended for non-payment",
                    "details": [
                        {"field": "tenant_id", "tenant_id": t, "reason": "suspended"} for t in suspended
                    ],
                },
                len(events),
            )
        with self._lock:
            duplicates = [e["event_id"] for e in events if (e["tenant_id"], e["event_id"]) in self.stored]
            fresh = [e for e in events if (e["tenant_id"], e["event_id"]) not in self.stored]
            admitted, rejected = [], []
            used = Counter(self.used)
            for event in sorted(fresh, key=lambda e: (e["timestamp"], e["event_id"])):
                limit = self.quotas.get(event["tenant_id"])
                if event["type"] == "query":
                    if limit is not None and used[event["tenant_id"]] >= limit:
                        rejected.append(event)
                        continue
                    used[event["tenant_id"]] += 1
                admitted.append(event)
            refused = [
                {"event_id": e["event_id"], "tenant_id": e["tenant_id"], "timestamp": e["timestamp"]}
                for e in rejected
            ]
            if rejected and not admitted:
                first = rejected[0]
                resets_at = _month_end(first["timestamp"])
                retry_after = max(
                    1, int(calendar.timegm(time.strptime(resets_at, "%Y-%m-%dT%H:%M:%SZ")) - time.time())
                )
                quota = {
                    "tenant_id": first["tenant_id"],
                    "month": first["timestamp"][:7],
                    "limit": self.quotas.get(first["tenant_id"]),
                    "used": used[first["tenant_id"]],
                    "resets_at": resets_at,
                }
                return (
                    429,
                    {"Retry-After": str(retry_after)},
                    {
                        "error": "quota_exceeded",
                        "message": "monthly query quota reached",
                        "limit": quota["limit"],
                        "used": quota["used"],
                        "resets_at": resets_at,
                        "details": {**quota, "rejected_for_quota": refused, "duplicates": duplicates},
                    },
                    len(events),
                )
            self.used = used
            for event in admitted:
                self.stored[(event["tenant_id"], event["event_id"])] = event
        return (
            202,
            {},
            {
                "status": "stored",
                "accepted": len(admitted),
                "duplicates": duplicates,
                "rejected_for_quota": refused,
                "queued": False,
            },
            len(events),
        )

    def handle_quota(self, tenant_id: str, api_key: Optional[str]) -> Tuple[int, Dict[str, Any]]:
        if api_key != self.api_key:
            return (401 if not api_key else 403), {"message": "Forbidden"}
        if self.tenants is not None and tenant_id not in self.tenants:
            return 404, {"error": "not_found", "message": f"unknown tenant {tenant_id}"}
        now = datetime.now(timezone.utc)
        with self._lock:
            limit = self.quotas.get(tenant_id)
            used = self.used[tenant_id]
        return 200, {
            "limit": limit,
            "used": used,
            "remaining": None if limit is None else max(0, limit - used),
            "resets_at": _month_end(now.strftime("%Y-%m-%dT%H:%M:%SZ")),
            "plan": self.plan,
            "payment_status": "suspended" if tenant_id in self.suspended else "active",
        }

    def next_fault(self) -> Optional[Fault]:
        with self._lock:
            return self._faults.pop(0) if self._faults else None


class _Handler(BaseHTTPRequestHandler):
    owner: FakeBillingAPI
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with self.owner._lock:
            self.owner._connections.add(self.connection)

    def finish(self) -> None:
        with self.owner._lock:
            self.owner._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def _send(
        self, status: int, body: Optional[Dict[str, Any]], headers: Optional[Dict[str, str]] = None
    ) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(2)
        except OSError:
            pass

    def do_POST(self) -> None:
        api = self.owner
        with api._lock:
            api.in_flight += 1
        try:
            self._post()
        finally:
            with api._lock:
                api.in_flight -= 1

    def _post(self) -> None:
        api = self.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        api._running.wait()
        if api.delay:
            time.sleep(api.delay)
        if self.path.rstrip("/").split("?")[0] != "/v1/events":
            self._send(404, {"message": "Not Found"})
            return
        fault = api.next_fault()
        if fault is not None and fault.kind == "drop":
            api.log.append(Request(self.path, 0, 0, len(body)))
            self._drop()
            return
        if fault is not None and fault.kind != "apply_then_drop":
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            api.log.append(Request(self.path, int(fault.kind), 0, len(body)))
            self._send(int(fault.kind), fault.body or {"message": f"scripted {fault.kind}"}, headers)
            return
        status, headers, answer, count = api.handle_events(
            body, self.headers.get("Content-Type") or "", self.headers.get("x-api-key")
        )
        api.log.append(Request(self.path, status, count, len(body)))
        if fault is not None:  # apply_then_drop: stored, but the answer never arrives
            self._drop()
            return
        self._send(status, answer, headers)

    def do_GET(self) -> None:
        api = self.owner
        api._running.wait()
        if self.path == "/_fake/state":  # for a test that runs the fake in another process
            with api._lock:
                state = {"stored": [event_id for (_, event_id) in api.stored], "received": dict(api.received)}
            self._send(200, state)
            return
        match = re.fullmatch(r"/v1/tenants/([^/]+)/quota", self.path.split("?")[0])
        if not match:
            self._send(404, {"message": "Not Found"})
            return
        status, body = api.handle_quota(unquote(match.group(1)), self.headers.get("x-api-key"))
        api.log.append(Request(self.path, status, 0, 0))
        self._send(status, body)


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m usage_tracker.testing [--port N] [--api-key K] [--delay S]``: serve until stdin
    closes or SIGTERM; prints the URL first. ``GET /_fake/state`` returns stored and received ids."""
    import argparse
    import signal
    import sys

    parser = argparse.ArgumentParser(prog="python -m usage_tracker.testing", description=main.__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="test-key")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before answering each POST")
    args = parser.parse_args(argv)
    api = FakeBillingAPI(api_key=args.api_key, port=args.port)
    api.delay = args.delay
    api.start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(api.url, flush=True)
    try:
        sys.stdin.read()
    finally:
        api.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
