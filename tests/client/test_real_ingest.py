"""The tracker against the real ingest handler (functions/ingest/app.py on moto + embedded ClickHouse),
behind a minimal HTTP bridge that turns each request into the API Gateway event Lambda receives.
This holds the client to the API's actual answers, not only to the fake's reading of the README."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from billing_local.runner import LocalContext, load_module, response_headers
from tests.client.conftest import wait_until
from tests.conftest import api_event
from tests.metering.conftest import make_tenant
from usage_tracker import Tracker

PLATFORM_SECRET = "platform-secret"  # the x-api-key whose API Gateway key id is "platform-key"
FAST = dict(
    flush_interval=0.05, backoff_base=0.02, backoff_max=0.2, exit_timeout=2.0, unknown_tenant_retention=0.5
)


@pytest.fixture
def ingest_url(env) -> Iterator[str]:
    """POST /v1/events served by the real handler; one request at a time (as one Lambda would)."""
    app = load_module("ingest")
    context = LocalContext(function_name="ingest")
    lock = threading.Lock()

    class Bridge(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            key_id = "platform-key" if self.headers.get("x-api-key") == PLATFORM_SECRET else None
            event = api_event(
                body.decode(),
                path=self.path,
                api_key_id=key_id,
                content_type=self.headers.get("Content-Type") or "",
            )
            with lock:
                response = app.handler(event, context)
            data = (response.get("body") or "").encode()
            self.send_response(response["statusCode"])
            for name, value in response_headers(response).items():
                if name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Bridge)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def tracker(ingest_url, tmp_path, problems) -> Iterator[Tracker]:
    tracker = Tracker(ingest_url, PLATFORM_SECRET, tmp_path / "spool", on_error=problems.append, **FAST)
    yield tracker
    tracker.close(timeout=1)


def stored_ids(env, tenant_id: str) -> list[str]:
    """Event ids in raw usage_events rows (no FINAL: a second copy would show)."""
    rows = env.store.query(
        "SELECT event_id FROM usage_events WHERE tenant_id = {t:String} ORDER BY event_id",
        {"t": tenant_id},
    )
    return [r[0] for r in rows]


def test_tracked_events_are_stored_once_and_a_bad_one_is_refused_alone(env, tracker, problems):
    # Given two tenants on a plan, and a batch in which one event names a model not in the price book
    make_tenant("acme-corp", plan="starter")
    make_tenant("globex", plan="starter")
    good = [tracker.track("acme-corp", "query", "gpt-4o-mini", 100, 20) for _ in range(20)]
    bad = tracker.track("acme-corp", "query", "no-such-model", 100, 20)
    good += [tracker.track("globex", "embedding", "gpt-4o-mini", 50) for _ in range(10)]
    # When the tracker flushes
    result = tracker.flush(30)
    assert not result and (result.complete, result.delivered, result.refused) == (True, 30, 1)
    # Then the ingest API refused the batch with a 400 naming that event; the client sent the rest
    assert stored_ids(env, "acme-corp") + stored_ids(env, "globex") == sorted(good[:20]) + sorted(good[20:])
    [rejected] = [p for p in problems if p.kind == "rejected"]
    assert rejected.status == 400 and [e["event_id"] for e in rejected.events] == [bad]
    assert "model" in rejected.events[0]["_reason"]
    stats = tracker.stats()
    assert (stats.sent, stats.rejected, stats.retried, stats.queued) == (30, 1, 0, 0)


def test_tracked_properties_reach_clickhouse_exactly(env, tracker):
    # Given a tenant, and events tracked with text and exact number properties
    make_tenant("acme-corp", plan="starter")
    exact = Decimal("12345678901234567890.123456789012345678")
    event_id = tracker.track(
        "acme-corp", "query", properties={"gpu": "h100", "seconds": exact, "ratio": 0.1, "n": 7}
    )
    plain = tracker.track("acme-corp", "query")
    # When the tracker flushes
    assert tracker.flush(30)
    # Then ClickHouse holds each value exactly, and the event without any has empty maps
    rows = env.store.query(
        "SELECT event_id, string_properties, number_properties FROM usage_events ORDER BY event_id"
    )
    assert sorted(rows) == sorted(
        [
            (event_id, {"gpu": "h100"}, {"seconds": exact, "ratio": Decimal("0.1"), "n": Decimal(7)}),
            (plain, {}, {}),
        ]
    )


def test_a_declared_usage_type_reaches_clickhouse_priced_at_event_time(
    env, tracker, problems, monkeypatch, tmp_path
):
    # Given a catalog declaring gpu_job and a price book pricing it per GPU-second, H100s dearer
    from tests.metering.test_usage_types import write_typed_config

    write_typed_config(monkeypatch, tmp_path)
    make_tenant("acme-corp", plan="starter")
    # When the tracker sends a GPU job and an event of a type the catalog does not declare
    job = tracker.track(
        "acme-corp", type="gpu_job", properties={"gpu_seconds": Decimal("12.5"), "gpu": "h100"}
    )
    unknown = tracker.track("acme-corp", type="video", properties={"seconds": 1})
    result = tracker.flush(30)
    assert (result.complete, result.delivered, result.refused) == (True, 1, 1)
    # Then the job is stored with its exact cost and the version in force now (12.5 x 0.0005 x 1.25:
    # that version prices every GPU alike)
    assert env.store.query("SELECT event_id, type, cost_usd, price_version FROM usage_events FINAL") == [
        (job, "gpu_job", Decimal("0.0078125"), "nov-gpu")
    ]
    # And the API refused the other, naming its type and the catalog's types
    [rejected] = [p for p in problems if p.kind == "rejected"]
    assert [e["event_id"] for e in rejected.events] == [unknown]
    assert "unknown usage type 'video'; the catalog defines" in rejected.events[0]["_reason"]


def test_retracked_ids_are_acknowledged_as_duplicates_by_the_real_ledger(env, tracker):
    make_tenant("acme-corp", plan="starter")
    tracker.track("acme-corp", event_id="req-1")
    assert tracker.flush(30)
    tracker.track("acme-corp", event_id="req-1")
    assert tracker.flush(30)
    assert stored_ids(env, "acme-corp") == ["req-1"]
    assert (tracker.stats().sent, tracker.stats().duplicates) == (2, 1)


def test_quota_refusals_of_the_real_api_are_final_in_a_202_and_in_a_429(env, tracker, problems):
    # Given a tenant that may make 3 queries a month
    make_tenant("acme-corp", quota=3)
    first = [tracker.track("acme-corp") for _ in range(5)]
    assert tracker.flush(30).refused == 2
    # Then 3 are stored and the 2 refused in the 202 are final
    assert stored_ids(env, "acme-corp") == sorted(first[:3])
    # When more queries arrive alone, the real API answers 429 (Retry-After: the month's end)
    more = [tracker.track("acme-corp") for _ in range(2)]
    assert tracker.flush(30).refused == 2
    # Then they are refused too, not retried
    assert set(more).isdisjoint(stored_ids(env, "acme-corp"))
    stats = tracker.stats()
    assert (stats.sent, stats.rejected, stats.retried) == (3, 4, 0)
    assert {p.reason for p in problems if p.kind == "rejected"} == {"quota"}
    assert {p.status for p in problems if p.kind == "rejected"} == {202, 429}


def test_an_unknown_tenant_is_held_then_refused_and_its_batch_mates_stored(env, tracker, problems):
    make_tenant("acme-corp", plan="starter")
    ok = [tracker.track("acme-corp") for _ in range(3)]
    ghost = tracker.track("nobody")
    assert tracker.flush(30).held == 1
    wait_until(lambda: tracker.stats().rejected == 1, what="the unknown tenant's event refused")
    assert stored_ids(env, "acme-corp") == sorted(ok)
    assert [e["event_id"] for p in problems if p.kind == "rejected" for e in p.events] == [ghost]
    assert [p.status for p in problems if p.kind == "rejected"] == [404]


def test_a_key_the_api_does_not_know_keeps_the_events(env, ingest_url, tmp_path, problems):
    make_tenant("acme-corp", plan="starter")
    tracker = Tracker(ingest_url, "not-a-key", tmp_path / "spool", on_error=problems.append, **FAST)
    try:
        tracker.track("acme-corp")
        assert not tracker.flush(0.5)
        assert tracker.stats().rejected == 0 and {p.kind for p in problems} == {"auth"}
        assert {p.status for p in problems} == {401}
    finally:
        tracker.close(timeout=0.2)
