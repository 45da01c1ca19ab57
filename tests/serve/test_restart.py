"""`billing serve` killed with SIGKILL and started again on the same data directory keeps every
tenant, key, quota counter, credit, accepted event and statement; the usage tracker, pointed at the
new server, is answered for every tenant it knew. And what a second server, on the same data
directory or the same port, is told."""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from billing_local.serve_process import ServeProcess
from tests.serve.test_concurrent_requests import stored_rows
from usage_tracker import Tracker

ROOT = Path(__file__).resolve().parents[2]
KEY = "restart-test-platform-key"
MONTH = datetime.now(UTC).strftime("%Y-%m")
PREVIOUS = (datetime.now(UTC).replace(day=1) - timedelta(days=1)).strftime("%Y-%m")


def events(tenant: str, n: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    return [
        {
            "event_id": f"{tenant}-{uuid.uuid4().hex}",
            "tenant_id": tenant,
            "timestamp": now,
            "type": "query",
            "model": "gpt-4o-mini",
            "input_tokens": 100 + i,
            "output_tokens": 10,
        }
        for i in range(n)
    ]


def track(server: ServeProcess, key: str, spool: Path, tenant: str, n: int) -> Any:
    """``n`` queries tracked for ``tenant`` with the tenant's key, flushed; the flush result."""
    tracker = Tracker(server.url, key, str(spool), flush_interval=0.05, timeout=120)
    try:
        for i in range(n):
            tracker.track(tenant, "query", "gpt-4o-mini", input_tokens=i + 1, output_tokens=1)
        return tracker.flush(300)
    finally:
        tracker.close()


def snapshot(server: ServeProcess, keys: dict[str, str]) -> dict[str, Any]:
    """What each tenant's own key reads back: its status, quota, credits and statement preview."""
    seen: dict[str, Any] = {}
    for tenant, key in keys.items():
        for name, path in (
            ("status", f"/v1/tenants/{tenant}/status"),
            ("quota", f"/v1/tenants/{tenant}/quota"),
            ("credits", f"/v1/tenants/{tenant}/credits"),
            ("statement", f"/v1/tenants/{tenant}/statements/{MONTH}"),
        ):
            status, body = server.call("GET", path, key=key if name != "credits" else KEY)
            assert status == 200, (tenant, name, body)
            seen[f"{tenant} {name}"] = body
    return seen


def without_clock(value: Any) -> Any:
    """A body minus the fields that say when it was computed (a preview's ``generated_at``...)."""
    if isinstance(value, dict):
        return {k: without_clock(v) for k, v in value.items() if k not in ("generated_at", "as_of", "now")}
    if isinstance(value, list):
        return [without_clock(v) for v in value]
    return value


@pytest.fixture
def data(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "data"


def test_a_killed_server_restarted_on_its_data_dir_has_everything_it_accepted(data, tmp_path):
    # Given a server with two tenants, each with a key, a credit granted to one, events sent over
    # HTTP for one and tracked with the usage tracker for the other
    first = ServeProcess(data, KEY, cwd=ROOT)
    try:
        keys, customers = {}, {}
        for tenant in ("north", "south"):
            status, body = first.call(
                "POST",
                "/v1/tenants",
                {"id": tenant, "name": tenant, "email": f"{tenant}@example.com", "plan": "pro"},
            )
            assert status in (200, 201), body
            customers[tenant] = body["stripe_customer_id"]
            status, created = first.call("POST", "/_local/keys", {"tenant_id": tenant})
            assert status == 201, created
            keys[tenant] = created["api_key"]
        status, body = first.call(
            "POST",
            "/v1/tenants/north/credits",
            {"grant_id": "goodwill-1", "amount": "1250", "description": "goodwill"},
        )
        assert status in (200, 201), body
        for _ in range(3):
            status, body = first.call(
                "POST", "/v1/events", {"events": events("north", 40)}, key=keys["north"]
            )
            assert status == 202 and body["accepted"] == 40, body
        assert track(first, keys["south"], tmp_path / "spool", "south", 150)
        status, closed = first.call(
            "POST", "/_local/schedules/monthly_close", {"detail": {"month": PREVIOUS}}
        )
        assert status == 200 and closed["result"]["csv_written"], closed
        before = snapshot(first, keys)
        assert before["north quota"]["used"] == 120 and before["south quota"]["used"] == 150
    finally:
        # When the server is killed with SIGKILL
        first.kill()
    stored = stored_rows(data / "chdb")

    # Then every accepted event is in ClickHouse once
    per_tenant = {t: sum(1 for (owner, _) in stored if owner == t) for t in ("north", "south")}
    assert per_tenant == {"north": 120, "south": 150} and set(stored.values()) == {1}

    # When it is started again on the same data directory
    second = ServeProcess(data, KEY, cwd=ROOT)
    try:
        # Then each tenant, its key, its quota counter (equal to what is stored), its credit and its
        # statement read back as before the kill
        after = snapshot(second, keys)
        assert without_clock(after) == without_clock(before)
        assert after["north quota"]["used"] == per_tenant["north"]
        assert after["south quota"]["used"] == per_tenant["south"]
        # And the previous month's close is the one stored before (a re-run keeps its cutoff)
        status, again = second.call(
            "POST", "/_local/schedules/monthly_close", {"detail": {"month": PREVIOUS}}
        )
        assert status == 200 and again["result"]["closed_at"] == closed["result"]["closed_at"], again
        # And the Stripe customer made at signup is still there (a billing portal session for it)
        status, portal = second.call("POST", "/v1/tenants/north/billing/portal", {}, key=keys["north"])
        assert status == 201 and portal["customer_id"] == customers["north"], portal
        # And the tracker, pointed at the new server, has every event answered (no unknown tenant)
        result = track(second, keys["south"], tmp_path / "spool", "south", 60)
        assert result and result.delivered == 60
        status, quota = second.call("GET", "/v1/tenants/south/quota", key=keys["south"])
        assert status == 200 and quota["used"] == 210
        # And the restart said what it restored, and no metrics line reached the console
        assert any(line.startswith("restored ") for line in second.lines)
        assert not any('"_aws"' in line for line in first.lines + second.lines)
    finally:
        assert second.stop() == 0


def run_serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from billing_cli import main; main()", "serve", "--api-key", KEY, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_second_server_on_the_same_data_dir_is_told_which_one_holds_it(data, tmp_path):
    # Given a server running on a data directory
    running = ServeProcess(data, KEY, cwd=ROOT)
    try:
        # When another is started on the same directory (another port)
        refused = run_serve("--port", "0", "--data", str(data))
        # Then it exits at once, naming the running one's pid, the directory and the flag
        assert refused.returncode == 2  # a flag to change: the usage exit code
        message = refused.stderr.strip()
        assert message == (
            f"billing: another billing serve (pid {running.process.pid}) is using data dir {data}; "
            "stop it or pass --data with another directory"
        ), refused.stderr
        assert "Traceback" not in refused.stdout + refused.stderr
        # And the running one still answers
        assert running.call("GET", "/_local/state")[0] == 200
    finally:
        running.stop()


def test_a_server_on_a_port_another_server_holds_is_told_so(data, tmp_path):
    # Given a server running on a port
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    running = ServeProcess(data, KEY, cwd=ROOT, port=port)
    try:
        # When another is started on that port (its own data directory)
        refused = run_serve("--port", str(port), "--data", str(tmp_path / "other"))
        # Then it exits before opening anything, naming the holder and the flag
        assert refused.returncode == 2  # a flag to change: the usage exit code
        assert refused.stderr.strip() == (
            f"billing: port {port} is in use (by another billing serve, pid {running.process.pid}); "
            "pass --port with another port (0: any free port)"
        ), refused.stderr
        assert "Traceback" not in refused.stdout + refused.stderr
        assert not (tmp_path / "other" / "chdb").exists()
    finally:
        running.stop()


def test_a_port_held_by_another_program_is_named(tmp_path):
    # Given a port some other program listens on
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        # When billing serve is started on it
        refused = run_serve("--port", str(port), "--data", str(tmp_path / "data"))
    # Then the message names that program (this test's own process) and the flag
    assert refused.returncode == 2  # a flag to change: the usage exit code
    assert f"port {port} is in use (by pid " in refused.stderr and "pass --port" in refused.stderr
    assert "Traceback" not in refused.stderr
