"""HTTP with the standard library: one keep-alive connection per thread, no retries here."""

from __future__ import annotations

import email.utils
import http.client
import json
import socket
import threading
import time
from typing import Any, Dict, Optional, Set
from urllib.parse import quote, urlsplit

from .errors import TransportError

USER_AGENT = "usage-tracker-python/0.1"


class Response:
    def __init__(self, status: int, headers: Dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None

    def retry_after(self) -> Optional[float]:
        """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), else None."""
        value = self.headers.get("retry-after")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


class Transport:
    def __init__(self, endpoint: str, api_key: str, timeout: float) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"endpoint must be an http(s) URL, got {endpoint!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._base = parts.path.rstrip("/")  # e.g. an API Gateway stage, /prod
        self._api_key = api_key
        self.timeout = timeout
        self._local = threading.local()
        self._open: Set[http.client.HTTPConnection] = set()
        self._open_lock = threading.Lock()

    def post_events(self, body: bytes, timeout: Optional[float] = None) -> Response:
        return self._request("POST", "/v1/events", body, timeout)

    def post_corrections(self, body: bytes, timeout: Optional[float] = None) -> Response:
        return self._request("POST", "/v1/corrections", body, timeout)

    def get_quota(self, tenant_id: str, timeout: Optional[float] = None) -> Response:
        return self._request("GET", f"/v1/tenants/{quote(tenant_id, safe='')}/quota", None, timeout)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._discard(conn)

    def abort(self) -> None:
        """Cut every connection of every thread (a request blocked on a hanging server fails now)."""
        with self._open_lock:
            connections = list(self._open)
        for conn in connections:
            sock = conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _discard(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        with self._open_lock:
            self._open.discard(conn)
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = cls(self._host, self._port, timeout=timeout)
            self._local.conn = conn
            with self._open_lock:
                self._open.add(conn)
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def _request(self, method: str, path: str, body: Optional[bytes], timeout: Optional[float]) -> Response:
        headers = {"x-api-key": self._api_key, "user-agent": USER_AGENT, "accept": "application/json"}
        if body is not None:
            headers["content-type"] = "application/json"
        # A kept-alive connection the server closed meanwhile fails at once: one fresh retry.
        for attempt in (0, 1):
            conn = self._connection(timeout or self.timeout)
            reused = conn.sock is not None
            try:
                conn.request(method, self._base + path, body=body, headers=headers)
                raw = conn.getresponse()
                data = raw.read()
            except (OSError, http.client.HTTPException) as exc:
                self._discard(conn)
                if attempt == 0 and reused and not isinstance(exc, socket.timeout):
                    continue
                raise TransportError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
            response_headers = {k.lower(): v for k, v in raw.getheaders()}
            if response_headers.get("connection", "").lower() == "close":
                self._discard(conn)
            return Response(raw.status, response_headers, data)
        raise AssertionError("unreachable")
