"""`billing serve` under concurrent clients: every answer belongs to its own request (the handlers
run one event at a time, as a Lambda environment does), every 202-acknowledged event is stored
exactly once, and a burst of simultaneous connections is answered rather than reset."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from billing_local.http_api import LocalApi, template_routes
from billing_local.runner import load_function
from billing_local.serve_process import ServeProcess

ROOT = Path(__file__).resolve().parents[2]
KEY = "serve-concurrency-platform-key"
THREADS = 24  # released at once by one barrier
ROUNDS = 25  # requests per thread, each of another kind than the thread's previous one
BATCH = 5  # events per ingest batch


@dataclass
class Answer:
    kind: str
    status: int | None  # None: no HTTP answer (connection refused, reset, timed out)
    body: Any
    sent: list[str]  # the event ids of an ingest batch
    tenant: str  # the tenant of the path (quota) or of the batch (ingest)


def belongs(answer: Answer) -> bool:
    """Whether an answer is the one its request deserves: a quota read of its own tenant (another
    tenant's key is refused), a batch accepted whole with no duplicates (its ids are new)."""
    if answer.kind == "foreign quota":
        return answer.status in (403, 404)
    if answer.kind == "quota":
        return answer.status == 200 and answer.body.get("tenant_id") == answer.tenant
    body = answer.body if isinstance(answer.body, dict) else {}
    return answer.status == 202 and body.get("accepted") == BATCH and body.get("duplicates") == []


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


def stored_rows(clickhouse_dir: Path) -> Counter[tuple[str, str]]:
    """Each (tenant, event id) row of ``usage_events`` as written (no FINAL), read from the data
    directory of a stopped server by a process of its own (embedded ClickHouse holds one path per
    process)."""
    database = os.environ.get("CLICKHOUSE_DATABASE") or "billing"
    script = (
        "import json, sys\n"
        "from billing.adapters.clickhouse.usage_store import ClickHouseUsageStore\n"
        "store = ClickHouseUsageStore.from_url('chdb://' + sys.argv[1], sys.argv[2])\n"
        "rows = store.query('SELECT tenant_id, event_id, count() FROM usage_events GROUP BY tenant_id, event_id')\n"
        "print(json.dumps([list(r) for r in rows]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(clickhouse_dir), database],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    return Counter({(t, e): int(n) for t, e, n in json.loads(out.splitlines()[-1])})


def test_concurrent_requests_of_two_tenants_each_get_their_own_answer(tmp_path):
    server = ServeProcess(tmp_path / "data", KEY, cwd=ROOT)
    try:
        # Given two tenants, each with a key of its own, and the platform key
        keys = {}
        for tenant in ("north", "south"):
            status, body = server.call(
                "POST",
                "/v1/tenants",
                {"id": tenant, "name": tenant, "email": f"{tenant}@example.com", "plan": "pro"},
            )
            assert status in (200, 201), body
            status, created = server.call("POST", "/_local/keys", {"tenant_id": tenant})
            assert status == 201, created
            keys[tenant] = created["api_key"]

        def ingest(tenant: str, key: str) -> Answer:
            ids = [f"{tenant}-{uuid.uuid4().hex}" for _ in range(BATCH)]
            now = datetime.now(UTC).isoformat(timespec="milliseconds")
            events = [
                {
                    "event_id": i,
                    "tenant_id": tenant,
                    "timestamp": now,
                    "type": "query",
                    "model": "gpt-4o-mini",
                }
                for i in ids
            ]
            status, body = request(server.url, "POST", "/v1/events", key, {"events": events})
            return Answer("ingest", status, body, ids, tenant)

        def quota(tenant: str, key: str) -> Answer:
            status, body = request(server.url, "GET", f"/v1/tenants/{tenant}/quota", key)
            foreign = key in keys.values() and key != keys[tenant]
            return Answer("foreign quota" if foreign else "quota", status, body, [], tenant)

        # Platform-key and tenant-key requests on quota reads and ingest, of both tenants
        kinds = [
            lambda: quota("north", keys["north"]),  # its own quota
            lambda: quota("south", KEY),  # the platform reading a tenant
            lambda: quota("south", keys["north"]),  # another tenant's quota: never 200
            lambda: ingest("north", keys["north"]),
            lambda: quota("north", KEY),
            lambda: quota("north", keys["south"]),
            lambda: ingest("south", KEY),
            lambda: quota("south", keys["south"]),
            lambda: quota("north", keys["north"]),
            lambda: quota("south", keys["north"]),
            lambda: quota("north", KEY),
        ]
        answers: list[Answer] = []
        gate = threading.Barrier(THREADS)

        def client(n: int) -> None:
            gate.wait()
            for r in range(ROUNDS):
                answer = kinds[(n + r) % len(kinds)]()
                answers.append(answer)

        # When THREADS clients send their requests at once
        threads = [threading.Thread(target=client, args=(n,)) for n in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        assert len(answers) == THREADS * ROUNDS
        assert server.call("POST", "/_local/replay", {})[0] == 200  # nothing left in the fallback queue
    finally:
        assert server.stop() == 0
    # Then every request was answered, and each answer belongs to its own request
    unanswered = [a for a in answers if a.status is None]
    wrong = [a for a in answers if a.status is not None and not belongs(a)]
    # And every acknowledged event is stored exactly once, and nothing else is
    acknowledged = {(a.tenant, i) for a in answers if a.status == 202 for i in a.sent}
    rows = stored_rows(tmp_path / "data" / "chdb")
    lost, extra = acknowledged - set(rows), set(rows) - acknowledged
    twice = {k: n for k, n in rows.items() if n != 1}
    assert not unanswered, f"{len(unanswered)} of {len(answers)} requests unanswered: {unanswered[:3]}"
    assert not wrong, f"{len(wrong)} of {len(answers)} answers not their request's: {wrong[:3]}"
    assert not lost and not extra and not twice, (
        f"of {len(acknowledged)} acknowledged events {len(lost)} not stored; "
        f"{len(extra)} stored but not acknowledged; {len(twice)} stored more than once"
    )


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


def test_handlers_of_two_functions_never_run_at_once(monkeypatch):
    # Given the quota route's and the ingest route's handlers, each waiting up to 2 s once inside
    # for the other to start
    api = LocalApi(template_routes(["tenant_status", "ingest"]), {"key": "platform-key"})
    inside: list[str] = []
    other_started = {name: threading.Event() for name in ("tenant_status", "ingest")}
    peak = []

    def probe(name: str, other: str) -> Any:
        def handler(event: dict, context: Any) -> dict:
            inside.append(name)
            peak.append(len(inside))
            other_started[other].set()
            other_started[name].wait(2)
            inside.remove(name)
            return {"statusCode": 200, "body": name}

        return handler

    monkeypatch.setattr(load_function("tenant_status"), "handler", probe("tenant_status", "ingest"))
    monkeypatch.setattr(load_function("ingest"), "handler", probe("ingest", "tenant_status"))
    answers: list[tuple[int, dict[str, str], bytes]] = []
    requests = [("GET", "/v1/tenants/acme/quota", b""), ("POST", "/v1/events", b'{"events": []}')]

    def send(method: str, path: str, body: bytes) -> None:
        answers.append(api.handle(method, path, {"x-api-key": "key"}, body, "localhost"))

    # When a request of each arrives at once
    threads = [threading.Thread(target=send, args=r) for r in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # Then the second handler started only once the first had returned, and both answered
    assert max(peak) == 1
    assert sorted(body for _, _, body in answers) == [b"ingest", b"tenant_status"]
