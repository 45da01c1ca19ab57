"""`billing serve` under concurrent clients: a burst of simultaneous connections is answered rather
than reset."""

from __future__ import annotations

import http.client
import json
import threading
import urllib.error
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from billing_local.serve_process import ServeProcess

ROOT = Path(__file__).resolve().parents[2]
KEY = "serve-concurrency-platform-key"


def request(url: str, method: str, path: str, key: str, body: Any = None) -> tuple[int | None, Any]:
    req = urllib.request.Request(
        url + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "x-api-key": key},
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        return None, repr(error)


def test_32_simultaneous_connections_are_all_answered(tmp_path):
    server = ServeProcess(tmp_path / "data", KEY, cwd=ROOT)
    try:
        # Given a tenant
        status, body = server.call(
            "POST", "/v1/tenants", {"id": "burst", "name": "burst", "email": "b@example.com", "plan": "pro"}
        )
        assert status == 201, body
        clients = 32
        gate = threading.Barrier(clients)
        answers: list[tuple[int | None, Any]] = []

        def send(n: int) -> None:
            now = datetime.now(UTC).isoformat(timespec="milliseconds")
            event = {"event_id": f"burst-{n}", "tenant_id": "burst", "timestamp": now, "type": "query"}
            gate.wait()
            answers.append(request(server.url, "POST", "/v1/events", KEY, {"events": [event]}))

        # When 32 clients connect and send a batch at the same moment
        threads = [threading.Thread(target=send, args=(n,)) for n in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
    finally:
        assert server.stop() == 0
    # Then every one of them is answered, none reset
    assert Counter(status for status, _ in answers) == {202: clients}, [b for s, b in answers if s != 202]
