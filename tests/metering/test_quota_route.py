"""GET /v1/tenants/{tenant_id}/quota: the quota gate's read, from the counter ingest enforces."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from billing.kernel.periods import Month, iso
from billing_local.http_api import LocalApi, serving, template_routes
from billing_local.runner import load_module, response_headers
from tests.conftest import api_event
from tests.metering.conftest import make_tenant, usage
from usage_tracker import QuotaExceeded, Tracker


@pytest.fixture(scope="module")
def status_app():
    return load_module("tenant_status")


def now_usage(event_id: str, tenant_id: str = "acme-corp", **kw) -> dict:
    return usage(event_id, tenant_id, ts=iso(datetime.now(UTC)), **kw)


@pytest.fixture
def get_quota(status_app, lambda_context):
    def _get(tenant_id: str, api_key_id: str | None = "platform-key") -> tuple[int, dict, dict]:
        path = f"/v1/tenants/{tenant_id}/quota"
        event = api_event("", method="GET", path=path, api_key_id=api_key_id)
        event["resource"] = "/v1/tenants/{tenant_id}/quota"
        event["pathParameters"] = {"tenant_id": tenant_id}
        response = status_app.handler(event, lambda_context)
        return response["statusCode"], json.loads(response["body"]), response_headers(response)

    return _get


def test_quota_is_the_ingest_counter_against_the_plan_in_force(env, post, get_quota):
    # Given a tenant on the free plan (100 queries a month) with 3 queries and an embedding this month
    make_tenant(plan="free")
    events = [now_usage(f"q{i}") for i in range(3)]
    events.append(now_usage("emb", type="embedding", model="text-embedding-3-small", output_tokens=0))
    assert post({"events": events})[0] == 202
    # When the gate reads the quota
    status, body, headers = get_quota("acme-corp")
    # Then it is the month's query count (the embedding does not count), the plan's limit and the standing
    month = Month.of(datetime.now(UTC))
    assert status == 200 and headers.get("Cache-Control") == "no-store"
    assert body == {
        "tenant_id": "acme-corp",
        "limit": 100,
        "used": 3,
        "remaining": 97,
        "resets_at": iso(month.end),
        "plan": "free",
        "payment_status": "active",
    }
    # And a retried batch (duplicates) does not move it
    assert post({"events": events})[0] == 202
    assert get_quota("acme-corp")[1]["used"] == 3


def test_quota_refusals_leave_remaining_at_zero(env, post, get_quota):
    # Given a tenant without plans whose legacy quota is 2, sent 3 queries
    make_tenant(quota=2)
    status, body, _ = post({"events": [now_usage(f"q{i}") for i in range(3)]})
    assert status == 202 and len(body["rejected_for_quota"]) == 1
    # Then the gate sees the quota used up
    body = get_quota("acme-corp")[1]
    assert (body["limit"], body["used"], body["remaining"], body["plan"]) == (2, 2, 0, None)


def test_unlimited_tenant_has_no_limit_and_no_remaining(env, get_quota):
    make_tenant()
    body = get_quota("acme-corp")[1]
    assert body["limit"] is None and body["remaining"] is None and body["used"] == 0


def test_who_may_read_a_quota(env, get_quota):
    # Given a tenant whose own key is "acme-key"
    make_tenant(plan="free", api_key_ids=["acme-key"])
    make_tenant("globex", plan="free", api_key_ids=["globex-key"])
    # Then the platform key and its own key may read it, another tenant's key may not
    assert get_quota("acme-corp")[0] == 200
    assert get_quota("acme-corp", api_key_id="acme-key")[0] == 200
    status, body, _ = get_quota("acme-corp", api_key_id="globex-key")
    assert status == 403 and body["details"][0]["field"] == "tenant_id"
    # And no key is 401, an unknown tenant 404 naming the field
    assert get_quota("acme-corp", api_key_id=None)[0] == 401
    status, body, _ = get_quota("nobody")
    assert status == 404 and body["details"][0]["field"] == "tenant_id"
    # And for a tenant's key an unknown tenant is the same 403 as another's (it learns nothing)
    assert get_quota("nobody", api_key_id="acme-key")[0] == 403


def test_the_trackers_gate_refuses_before_the_work_through_the_template_routes(env, tmp_path):
    # Given ingest and the quota route served from template.yaml's routes, and a tenant with quota 2
    make_tenant(quota=2)
    api = LocalApi(template_routes(["ingest", "tenant_status"]), {"secret": "platform-key"})
    with serving(api) as url:
        tracker = Tracker(url, "secret", tmp_path / "spool", flush_interval=0.05, fail_open=False)
        try:
            # When two gated queries run and are flushed
            for _ in range(2):
                with tracker.query("acme-corp", model="gpt-4o-mini") as q:
                    assert q.quota is not None and q.quota.limit == 2
                    q.record(input_tokens=10, output_tokens=5)
            assert tracker.flush(timeout=20)
            # Then the third is refused before its work runs
            ran = []
            with pytest.raises(QuotaExceeded) as refused, tracker.query("acme-corp", model="gpt-4o-mini"):
                ran.append(True)
            assert not ran and refused.value.quota.used == 2 and refused.value.quota.remaining == 0
            assert tracker.stats().rejected == 0
        finally:
            tracker.close(timeout=2)
