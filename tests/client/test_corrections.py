"""``Tracker.void`` / ``Tracker.amend`` against the real handlers (ingest and corrections on moto +
embedded ClickHouse) behind a minimal HTTP bridge: applied once however often called, refusals
raised with the API's status."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from billing.kernel.periods import Month
from billing.runtime import container
from billing_local.runner import LocalContext, load_module, response_headers
from tests.conftest import api_event
from tests.metering.conftest import make_tenant
from usage_tracker import CorrectionFailed, Tracker

PLATFORM_SECRET = "platform-secret"
FAST = dict(flush_interval=0.05, backoff_base=0.02, backoff_max=0.2, exit_timeout=2.0)
NOV = Month(2025, 11)


@pytest.fixture
def api_url(env) -> Iterator[str]:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    apps = {"/v1/events": load_module("ingest"), "/v1/corrections": load_module("corrections")}
    context = LocalContext(function_name="api")
    lock = threading.Lock()

    class Bridge(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            key_id = "platform-key" if self.headers.get("x-api-key") == PLATFORM_SECRET else None
            event = api_event(
                body.decode(), path=self.path, api_key_id=key_id, content_type=self.headers["Content-Type"]
            )
            with lock:
                response = apps[self.path].handler(event, context)
            data = (response.get("body") or "").encode()
            self.send_response(response["statusCode"])
            for name, value in response_headers(response).items():
                if name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Bridge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_the_tracker_voids_and_amends_once_however_often_called(env, api_url, tmp_path):
    # Given two queries the tracker sent in November
    make_tenant(plan="starter", plan_from="2025-10-01T00:00:00Z")
    container.override(clock=lambda: datetime(2025, 11, 20, tzinfo=UTC))
    tracker = Tracker(api_url, PLATFORM_SECRET, tmp_path / "spool", **FAST)
    at = datetime(2025, 11, 3, 12, tzinfo=UTC)
    first = tracker.track("acme-corp", model="gpt-4o-mini", input_tokens=100, output_tokens=20, timestamp=at)
    second = tracker.track("acme-corp", model="gpt-4o-mini", input_tokens=100, output_tokens=20, timestamp=at)
    assert tracker.flush(timeout=10)
    # When the first is voided twice (a retry) and the second amended
    voided = tracker.void("acme-corp", first, reason="sent twice")
    again = tracker.void("acme-corp", first, reason="sent twice")
    amended = tracker.amend("acme-corp", second, reason="miscounted", input_tokens=1000)
    # Then the void was applied once, the amend priced, and the month holds one event of 1,000 tokens
    assert (voided.status, again.status) == ("applied", "already_applied")
    assert voided.correction_id == again.correction_id
    assert amended.entry["after"]["input_tokens"] == 1000
    month = env.store.month_usage("acme-corp", NOV)
    assert (month["events"], month["queries"], month["input_tokens"]) == (1, 1, 1000)
    # And voiding the voided event again, under another id, raises with the API's 409
    with pytest.raises(CorrectionFailed) as refused:
        tracker.void("acme-corp", first, reason="once more")
    assert refused.value.status == 409 and "already voided" in str(refused.value)
    with pytest.raises(CorrectionFailed) as unknown:
        tracker.void("acme-corp", "never-sent", reason="typo")
    assert unknown.value.status == 404
    tracker.close(timeout=1)
