"""The usage tracker against `billing serve` in a subprocess: the real handlers behind the
template's routes, on embedded ClickHouse and in-process AWS. Outages of the server process
(SIGSTOP), an app killed with SIGKILL mid-send, injected 429s and 503s (one applied then lost), a
batch with one invalid event, real quota refusals; afterwards the statement preview shows every
tracked query exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from billing_local.serve_process import ServeProcess
from usage_tracker import QuotaExceeded, Tracker

ROOT = Path(__file__).resolve().parents[2]
APP = Path(__file__).resolve().parent / "app.py"
KEY = "serve-test-platform-key"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    running = ServeProcess(tmp_path_factory.mktemp("serve") / "data", KEY, cwd=ROOT)
    yield running
    running.stop()


def run_app(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(APP), *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def wait_until(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def signup(server: ServeProcess, tenant_id: str, plan: str) -> None:
    status, body = server.call(
        "POST",
        "/v1/tenants",
        {"id": tenant_id, "name": tenant_id, "email": f"{tenant_id}@example.com", "plan": plan},
    )
    assert status in (200, 201), body


def month_queries(server: ServeProcess, tenant_id: str) -> int:
    month = datetime.now(UTC).strftime("%Y-%m")
    status, body = server.call("GET", f"/v1/tenants/{tenant_id}/statements/{month}")
    assert status == 200 and body["preview"] is True, body
    return int(
        sum(
            Decimal(str(line["quantity"]))
            for line in body["statement"]["lines"]
            if line["line_id"].startswith("queries:")
        )
    )


def test_outages_kills_faults_and_an_invalid_event_end_with_each_query_billed_once(server, tmp_path):
    # Given a tenant on the pro plan and an app tracking its queries (every 40th names an unknown model)
    signup(server, "acme", "pro")
    spool, ids = tmp_path / "spool", tmp_path / "ids.txt"
    args = (server.url, KEY, str(spool), str(ids), "acme", "100", "40")
    app = run_app("track", *args)
    try:
        wait_until(
            lambda: server.call("GET", "/v1/tenants/acme/quota")[1]["used"] >= 100, 90, "first batches"
        )
        # When the server process is stopped for a while, the app keeps tracking
        os.kill(server.process.pid, signal.SIGSTOP)
        before = len(lines(ids))
        time.sleep(1.5)
        assert len(lines(ids)) >= before + 100
        os.kill(server.process.pid, signal.SIGCONT)
        # And the app is killed with SIGKILL while it sends
        time.sleep(0.5)
        app.send_signal(signal.SIGKILL)
        app.wait(10)
        # And restarted on the same spool while the API answers 503 (once after applying the batch) and 429
        for fault in (
            {"status": 503, "times": 2, "retry_after": 0},
            {"status": 503, "times": 1, "apply": True},
            {"status": 429, "times": 2, "retry_after": 0},
        ):
            assert server.call("POST", "/_local/faults", fault)[0] == 201
        app = run_app("track", *args)
        wait_until(lambda: len(lines(ids)) >= before + 400, 90, "tracking after the restart")
        app.send_signal(signal.SIGKILL)
        app.wait(10)
    finally:
        app.kill()
    drain = run_app("drain", server.url, KEY, str(spool))
    out, err = drain.communicate(timeout=700)
    assert drain.returncode == 0, err
    # Then every query whose track() returned is billed exactly once, and the invalid ones never
    tracked, invalid = set(lines(ids)), set(lines(Path(str(ids) + ".invalid")))
    assert len(tracked) == len(lines(ids)) and invalid and not tracked & invalid
    billed = month_queries(server, "acme")
    assert len(tracked) <= billed <= len(tracked) + 2  # + what was tracked but not yet written when killed
    assert server.call("GET", "/v1/tenants/acme/quota")[1]["used"] == billed
    stats = json.loads(out)
    assert stats["dropped"] <= 2 and stats["queued"] == 0


def test_quota_refusals_and_the_gate_through_billing_serve(server, tmp_path):
    # Given a tenant on the free plan (100 queries a month) and a tracker in this process
    signup(server, "capped", "free")
    tracker = Tracker(
        server.url, KEY, tmp_path / "spool", flush_interval=0.05, backoff_base=0.02, fail_open=False
    )
    try:
        # When 110 queries are tracked, then 5 more once the quota is used up (a 429)
        for n in range(110):
            tracker.track("capped", "query", "gpt-4o-mini", input_tokens=n + 1)
        first = tracker.flush(60)
        # (every event answered for, and the refusals reported as such, never as success)
        assert first.complete and not first and (first.delivered, first.refused) == (100, 10)
        for _ in range(5):
            tracker.track("capped", "query", "gpt-4o-mini", input_tokens=1)
        second = tracker.flush(60)
        assert second.complete and not second and (second.delivered, second.refused) == (0, 5)
        # Then 15 are refused as final, the gate refuses before the work, and 100 are billed
        assert tracker.stats().rejected == 15
        with pytest.raises(QuotaExceeded), tracker.query("capped", model="gpt-4o-mini"):
            raise AssertionError("the work ran")
        assert month_queries(server, "capped") == 100
    finally:
        tracker.close(timeout=2)


def test_keys_routes_and_pages(server):
    # Given a tenant with a key of its own
    signup(server, "globex", "starter")
    status, created = server.call("POST", "/_local/keys", {"tenant_id": "globex"})
    assert status == 201
    own = created["api_key"]
    # Then its key reads its own quota, not another tenant's; no key is API Gateway's 403
    assert server.call("GET", "/v1/tenants/globex/quota", key=own)[0] == 200
    assert server.call("GET", "/v1/tenants/acme/quota", key=own)[0] in (403, 404)
    assert server.call("GET", "/v1/tenants/globex/quota", key=None)[0] == 403
    assert server.call("POST", "/_local/keys", {"tenant_id": "globex"}, key=own)[0] == 403
    # And an HTML page passes through as HTML
    status, link = server.call("POST", "/v1/tenants/globex/portal-link", {})
    assert status == 201
    with urllib.request.urlopen(link["url"], timeout=60) as response:
        assert response.headers["Content-Type"].startswith("text/html")
        assert response.read().lstrip().lower().startswith(b"<!doctype html>")
    # And the CLI runs inside the server with --local DIR
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from billing_cli import main; main()",
            "--local",
            str(server.data),
            "tenant",
            "status",
            "globex",
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["tenant_id"] == "globex"


def test_sigterm_stops_the_server_cleanly(tmp_path):
    running = ServeProcess(tmp_path / "data", KEY, cwd=ROOT)
    assert running.call("GET", "/v1/tenants/nobody/quota")[0] == 404
    assert running.stop() == 0
    assert "billing serve: stopped" in "".join(running.lines)
    assert not (tmp_path / "data" / "serve.json").exists()
