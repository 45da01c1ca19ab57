"""POST /v1/events through the real handler, real ClickHouse (chdb) and in-process AWS (moto)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from billing.kernel.periods import Month
from billing.runtime import container
from tests.metering.conftest import make_tenant, usage

NOV = Month(2025, 11)


def test_a_valid_batch_is_stored_with_its_event_time_cost(env, post):
    # Given a tenant on the starter plan
    make_tenant(plan="starter")
    # When it sends a query and an embedding
    status, body, _ = post(
        {
            "events": [
                usage("e-1", input_tokens=1200, output_tokens=300, bytes=5120),
                {
                    "event_id": "e-2",
                    "tenant_id": "acme-corp",
                    "timestamp": "2025-11-03T12:00:05Z",
                    "type": "embedding",
                    "model": "text-embedding-3-small",
                    "input_tokens": 1000,
                },
            ]
        }
    )
    # Then both are stored with their cost priced at event time
    assert status == 202 and body["accepted"] == 2 and body["status"] == "stored"
    rows = env.store.query(
        "SELECT event_id, cost_usd, price_version, queries FROM usage_events ORDER BY event_id"
    )
    assert rows == [
        ("e-1", Decimal("0.000450640"), "2025-01-01T00:00:00Z", 1),
        ("e-2", Decimal("0.000025000"), "2025-01-01T00:00:00Z", 0),
    ]


def test_invalid_events_list_index_field_and_reason_and_nothing_is_stored(env, post):
    make_tenant(plan="starter")
    status, body, _ = post(
        {
            "events": [
                usage("ok-1"),
                usage("bad-1", input_tokens=-5),
                {"event_id": "bad-2", "tenant_id": "acme-corp", "timestamp": "yesterday", "type": "query"},
                usage("bad-3", model=None),
                usage("bad-4", model="gpt-17"),
                {
                    "event_id": "bad-5",
                    "tenant_id": "acme-corp",
                    "timestamp": "2025-11-03T12:00:00Z",
                    "type": "video",
                },
            ]
        }
    )
    assert status == 400
    problems = {(p["index"], p["field"]) for p in body["details"]}
    assert {(1, "input_tokens"), (2, "timestamp"), (3, "event"), (5, "type")} <= problems
    assert all(p["reason"] for p in body["details"])
    assert env.store.query("SELECT count() FROM usage_events") == [(0,)]


def test_an_unknown_model_is_a_400_naming_the_event(env, post):
    make_tenant(plan="starter")
    status, body, _ = post({"events": [usage("ok"), usage("bad", model="gpt-17")]})
    assert status == 400
    assert body["details"] == [{"index": 1, "field": "model", "reason": body["details"][0]["reason"]}]
    assert "gpt-17" in body["details"][0]["reason"]
    assert env.store.query("SELECT count() FROM usage_events") == [(0,)]


@pytest.mark.parametrize(
    "raw, content_type, status",
    [
        ("not json", "application/json", 400),
        ('{"events": []}', "application/json", 400),
        ('{"events": "x"}', "application/json", 400),
        ("[1, 2]", "application/json", 400),
        ('{"events": [], "extra": 1}', "application/json", 400),
        ('{"events": [{}]}', "text/plain", 415),
    ],
)
def test_malformed_requests_get_a_clear_4xx(env, post, raw, content_type, status):
    code, body, _ = post(raw, content_type=content_type)
    assert code == status
    assert body["error"] and body["message"]


def test_too_many_events_and_too_large_a_body_are_413(env, post):
    make_tenant(plan="starter")
    code, body, _ = post({"events": [usage(f"e-{i}") for i in range(1001)]})
    assert code == 413 and "1000" in body["message"]
    code, body, _ = post({"events": [usage("e-1", model="x" * 1_100_000)]})
    assert code == 413


def test_a_base64_body_as_api_gateway_delivers_it_is_accepted(env, post):
    make_tenant(plan="starter")
    code, body, _ = post({"events": [usage("e-1")]}, base64=True)
    assert code == 202 and body["accepted"] == 1


def test_unknown_tenant_is_404_for_the_whole_batch(env, post):
    make_tenant(plan="starter")
    code, body, _ = post({"events": [usage("e-1"), usage("e-2", tenant_id="ghost")]})
    assert code == 404 and "ghost" in body["message"]
    assert env.store.query("SELECT count() FROM usage_events") == [(0,)]


def test_no_anonymous_ingestion(env, post):
    make_tenant(plan="starter")
    code, body, _ = post({"events": [usage("e-1")]}, api_key_id=None)
    assert code == 401


def test_a_tenant_key_cannot_write_another_tenants_usage(env, post):
    # Given two tenants, each with its own API key
    make_tenant("acme-corp", plan="starter", api_key_ids=["key-acme"])
    make_tenant("globex", plan="starter", api_key_ids=["key-globex"])
    # When acme's key writes for globex, Then 403 and nothing is stored
    code, body, _ = post({"events": [usage("e-1", tenant_id="globex")]}, api_key_id="key-acme")
    assert code == 403 and "globex" in body["message"]
    # And acme's key may write acme's usage
    code, _, _ = post({"events": [usage("e-2")]}, api_key_id="key-acme")
    assert code == 202
    assert env.store.query("SELECT tenant_id, event_id FROM usage_events") == [("acme-corp", "e-2")]


def test_a_suspended_tenant_gets_402(env, post):
    make_tenant(plan="starter", payment_status="suspended")
    code, body, _ = post({"events": [usage("e-1")]})
    assert code == 402 and "suspended" in body["message"]


def test_events_after_cancellation_and_before_the_first_plan_are_refused(env, post):
    make_tenant(plan="starter", plan_from="2025-11-02T00:00:00Z", canceled_at="2025-11-20T00:00:00Z")
    code, body, _ = post({"events": [usage("late", ts="2025-11-21T00:00:00Z")]})
    assert code == 403 and "cancelled" in body["details"][0]["reason"]
    code, body, _ = post({"events": [usage("early", ts="2025-11-01T00:00:00Z")]})
    assert code == 403 and "no plan" in body["details"][0]["reason"]
    code, _, _ = post({"events": [usage("inside", ts="2025-11-19T23:59:59Z")]})
    assert code == 202


def test_events_for_a_closed_month_are_409(env, post):
    from datetime import UTC, datetime

    make_tenant(plan="starter")
    container.periods().close(Month(2025, 10), datetime(2025, 11, 1, 0, 15, tzinfo=UTC))
    code, body, _ = post({"events": [usage("e-1", ts="2025-10-31T23:59:59Z")]})
    assert code == 409 and "2025-10" in body["message"] + json.dumps(body["details"])
    code, _, _ = post({"events": [usage("e-2", ts="2025-11-01T00:00:00Z")]})
    assert code == 202
