"""Limits and alerts through the real ingest path (DynamoDB double, embedded ClickHouse): a hard
limit written under ``limits`` admits exactly its count under 50 concurrent requests, the counter
equal to what is stored; a soft limit and spend alerts fire once per period per threshold (notice
and webhook), however often they are evaluated and from how many threads; they resolve when a plan
change takes usage back under, and fire again when usage crosses again."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from billing.catalog.plans import PlanCatalog
from billing.kernel.errors import BillingError
from billing.metering.events import UsageEvent
from billing.runtime import container
from tests.support import create_tenant

NOW = datetime(2025, 11, 20, 12, 0, tzinfo=UTC)


def catalog(*, token_limit: str = "1000", query_limit: int = 10) -> PlanCatalog:
    return PlanCatalog.model_validate(
        {
            "plans": [
                {
                    "id": "bigger",
                    "name": "Bigger",
                    "base_fee": "10.00",
                    "query_tiers": [{"up_to": None, "unit_price": "1.00"}],
                    "limits": [{"metric": "queries", "value": 1000, "enforcement": "hard"}],
                    "alerts": [{"id": "queries", "metric": "queries", "thresholds": ["50%", "100%"]}],
                },
                {
                    "id": "metered",
                    "name": "Metered",
                    "base_fee": "10.00",
                    "query_tiers": [{"up_to": None, "unit_price": "1.00"}],
                    "limits": [
                        {"metric": "queries", "value": query_limit, "enforcement": "hard"},
                        {"metric": "tokens", "value": token_limit, "enforcement": "soft"},
                    ],
                    "alerts": [
                        {"id": "queries", "metric": "queries", "thresholds": ["50%", "100%"]},
                        {"id": "spend", "metric": "spend", "thresholds": ["14.00"]},
                    ],
                },
            ]
        }
    )


class Notices:
    def __init__(self) -> None:
        self.kinds: list[tuple[str, str]] = []

    def publish(self, notices) -> None:
        self.kinds += [(n.kind, n.id) for n in notices]


class Webhooks:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict]] = []

    def publish(self, event_type, object_id, data, *, source_id) -> None:
        self.sent.append((event_type, source_id, dict(data)))


@pytest.fixture
def world(env):
    notices, webhooks = Notices(), Webhooks()
    container.override(
        plan_catalog=catalog(), fact_notices=notices, webhook_publisher=webhooks, clock=lambda: NOW
    )
    create_tenant("acme", [("metered", "2025-01-01T00:00:00Z")])
    return notices, webhooks


def event(i: int, tokens: int = 100) -> dict:
    return {
        "event_id": f"e-{i}",
        "tenant_id": "acme",
        "timestamp": f"2025-11-03T12:{i // 60:02d}:{i % 60:02d}Z",
        "type": "query",
        "model": "gpt-4o-mini",
        "input_tokens": tokens,
        "output_tokens": 0,
    }


def ingest_one(body: dict) -> int:
    try:
        result = container.ingest_service().ingest([UsageEvent.model_validate(body)])
        return 202 if result.accepted or result.duplicates else 200
    except BillingError as error:
        return error.status


def stored_queries(env) -> int:
    [(n,)] = env.store.query("SELECT count() FROM usage_events FINAL WHERE tenant_id = 'acme'")
    return int(n)


def test_a_hard_limit_under_limits_admits_exactly_its_count_under_50_concurrent_requests(env, world):
    # Given a plan whose hard limit on queries is 10 (written under limits, not query_quota)
    # When 50 single-query requests race, from 50 threads
    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(lambda i: ingest_one(event(i)), range(50)))
    # Then exactly 10 are admitted and stored, 40 refused with 429, and the counter equals the stored
    assert statuses.count(202) == 10 and statuses.count(429) == 40
    assert stored_queries(env) == 10
    assert container.ledger().quota_used("acme", "2025-11")[0] == 10


def test_alerts_fire_once_per_threshold_and_resolve_after_a_plan_change(env, world):
    notices, webhooks = world
    # Given 5 queries of 300 tokens each: 50% of the query limit, 1500 tokens over the soft limit of
    # 1000, spend 10.00 base + 5.00 queries
    for i in range(5):
        assert ingest_one(event(i, tokens=300)) == 202
    # When the alerts are evaluated by eight evaluators at once, then again
    evaluator = container.alert_evaluator()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda _: evaluator.evaluate(), range(8)))
    evaluator.evaluate()
    # Then each crossed threshold fired once: queries 50%, the soft token limit (100%), spend 14.00
    fired = sorted((d["alert_id"], d["threshold"]) for t, _, d in webhooks.sent if t == "alert.triggered")
    assert fired == [("queries", "50%"), ("spend", "14"), ("tokens-limit", "100%")]
    assert sorted(k for k, _ in notices.kinds) == ["alert.triggered"] * 3
    assert len({i for _, i in notices.kinds}) == 3
    spend = next(d for t, _, d in webhooks.sent if d["alert_id"] == "spend")
    assert Decimal(spend["value"]) == Decimal("15.00") and spend["period"] == "2025-11"
    # And the states say they are active
    states = container.alert_states().of_period("acme", "2025-11")
    assert sorted((s.alert_id, s.threshold, s.state) for s in states) == [
        ("queries", "50%", "active"),
        ("spend", "14", "active"),
        ("tokens-limit", "100%", "active"),
    ]
    # And the usage page lists them in its alerts block
    view = container.portal_service().view("acme", "2025-11")
    assert sorted(a["alert_id"] for a in view.to_json()["alerts"]) == ["queries", "spend", "tokens-limit"]
    from billing.portal.page import render_content

    html = render_content(view)
    assert 'id="alerts"' in html and "Usage of tokens reached 100% of the plan's limit (1,000): 1,500" in html
    # When the plan changes so that the soft token limit is 5000
    container.override(plan_catalog=catalog(token_limit="5000"))
    changes = container.alert_evaluator().evaluate()
    # Then that alert resolves, once, and the others stay active
    assert [(c.kind, c.state.alert_id) for c in changes] == [("alert.resolved", "tokens-limit")]
    assert container.alert_evaluator().evaluate() == []
    assert [t for t, _, d in webhooks.sent if d["alert_id"] == "tokens-limit"] == [
        "alert.triggered",
        "alert.resolved",
    ]
    # When the plan changes back, Then it fires again, as the period's second occurrence
    container.override(plan_catalog=catalog(token_limit="1000"))
    [again] = container.alert_evaluator().evaluate()
    assert again.kind == "alert.triggered" and again.state.occurrence == 2
    assert len({source for _, source, _ in webhooks.sent}) == len(webhooks.sent)


def test_an_alert_on_queries_fires_at_ingest(env, world):
    notices, _ = world
    # Given 4 queries stored (under 50% of 10)
    for i in range(4):
        ingest_one(event(i))
    assert notices.kinds == []
    # When the fifth arrives through the ingest route
    from billing_local.runner import LocalContext, load_module
    from tests.conftest import api_event

    app = load_module("ingest")
    response = app.handler(api_event({"events": [event(4)]}), LocalContext(function_name="ingest"))
    # Then the 50% alert fired in that same request, before the answer
    assert response["statusCode"] == 202
    assert [k for k, _ in notices.kinds] == ["alert.triggered"] and "queries:50%" in notices.kinds[0][1]


def test_the_trackers_gate_reads_a_hard_limit_written_under_limits(env, world, lambda_context):
    import json

    from billing_local.runner import load_module
    from tests.conftest import api_event

    # Given 3 queries stored this month by a tenant whose plan's hard limit (under limits) is 10
    container.override(clock=None)
    create_tenant("gate", [("metered", "2025-01-01T00:00:00Z")])
    today = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    for i in range(3):
        assert ingest_one({**event(i), "tenant_id": "gate", "timestamp": today}) == 202
    # When the gate (GET /v1/tenants/{id}/quota) reads it
    request = api_event("", method="GET", path="/v1/tenants/gate/quota")
    request["resource"] = "/v1/tenants/{tenant_id}/quota"
    request["pathParameters"] = {"tenant_id": "gate"}
    response = load_module("tenant_status").handler(request, lambda_context)
    # Then it answers the limit, the count and what remains, as for query_quota
    body = json.loads(response["body"])
    assert (body["limit"], body["used"], body["remaining"]) == (10, 3, 7)


def test_a_plan_change_resolves_what_the_new_plan_no_longer_crosses(env, world):
    _, webhooks = world
    # Given a tenant past 50% of its 10 queries, with 1500 tokens over its soft limit of 1000
    for i in range(5):
        assert ingest_one(event(i, tokens=300)) == 202
    fired = container.alert_evaluator().evaluate()
    assert {c.state.alert_id for c in fired} == {"queries", "tokens-limit", "spend"}
    # When the tenant moves to a plan of 1000 queries, with no token limit nor spend alert
    from billing.tenants.requests import PlanChangeRequest

    container.tenant_service().change_plan("acme", PlanChangeRequest(plan="bigger", effective_at=NOW))
    later = NOW.replace(hour=13)
    container.override(clock=lambda: later)
    changes = container.alert_evaluator().evaluate()
    # Then every active threshold resolves: 5 queries are under 50% of 1000, and the other two
    # alerts are not in the new plan
    assert sorted((c.kind, c.state.alert_id) for c in changes) == [
        ("alert.resolved", "queries"),
        ("alert.resolved", "spend"),
        ("alert.resolved", "tokens-limit"),
    ]
    assert container.alert_evaluator().evaluate() == []
    assert container.portal_service().view("acme", "2025-11").alerts == []
