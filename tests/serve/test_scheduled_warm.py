"""`billing serve` runs the usage page's preview warmer as it runs the template's other schedules
(``POST /_local/schedules/portal_warm``, what ``billing local schedule portal_warm`` calls)."""

from __future__ import annotations

from datetime import UTC, datetime

from billing_local.serve_process import ServeProcess


def test_the_warmer_schedule_rates_a_tenant_with_usage_this_minute_once(tmp_path):
    # Given a running `billing serve` with a tenant that sent a query just now
    server = ServeProcess(tmp_path / "serve", "warm-test-platform-key")
    try:
        body = {"id": "acme", "name": "Acme", "email": "billing@acme.example", "plan": "starter"}
        assert server.call("POST", "/v1/tenants", body)[0] == 201
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        event = {"event_id": "warm-1", "tenant_id": "acme", "timestamp": now, "type": "query"}
        event |= {"model": "gpt-4o-mini", "input_tokens": 10, "output_tokens": 2}
        assert server.call("POST", "/v1/events", {"events": [event]})[0] == 202
        # When the warmer's schedule runs, twice in a row
        first = server.call("POST", "/_local/schedules/portal_warm", {})
        second = server.call("POST", "/_local/schedules/portal_warm", {})
    finally:
        server.stop()
    # Then the first run rates acme's preview and the second keeps it
    assert first[0] == 200 and first[1]["result"]["warmed"] == 1, first
    assert second[0] == 200 and second[1]["result"]["warmed"] == 0, second
    assert second[1]["result"]["kept"] == 1, second
