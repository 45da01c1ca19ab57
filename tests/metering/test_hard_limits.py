"""Hard limits on any count or sum metric: each event's amount is added to its tenant's month counter
in the transaction that claims it, on condition the counter stays within the limit, so the limit
holds exactly under concurrency, a refused event is never written, and releases and voids give back
what was taken: the counter equals what is stored."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import yaml

from billing.adapters.clickhouse.metric_queries import ClickHouseMetrics
from billing.kernel.errors import BillingError
from billing.kernel.periods import Month, iso
from billing.metering.events import UsageEvent
from billing.metering.exactly_once import Claim
from billing.runtime import container
from billing_local.faults import OutageStore
from billing_local.runner import load_module, response_headers
from tests.conftest import api_event
from tests.metering.conftest import make_tenant, usage
from tests.metering.test_outages_and_bounds import FlakyQueue
from tests.metering.test_usage_types import _catalog, _price_book, body

NOV = Month(2025, 11)
LIMIT = Decimal("100.5")
GPU_SECONDS = {
    "id": "gpu_seconds",
    "name": "GPU seconds",
    "unit": "GPU-seconds",
    "event_types": ["gpu_job"],
    "filters": [{"property": "region", "in": ["eu"]}],
    "aggregation": "sum",
    "property": "seconds",
}
GPU_PLAN = {
    "id": "gpu",
    "name": "GPU",
    "base_fee": "10.00",
    "query_quota": 1000,
    "limits": [{"metric": "gpu_seconds", "value": str(LIMIT), "enforcement": "hard"}],
}


@pytest.fixture
def limited(env, monkeypatch, tmp_path):
    """Given a plan ``gpu`` with a hard limit of 100.5 on the sum of ``seconds`` of gpu_job events in
    region eu (and 1000 queries), and a tenant on it since January."""
    document = _catalog(metrics=[GPU_SECONDS])
    document["plans"].append(GPU_PLAN)
    (tmp_path / "plans.yaml").write_text(yaml.safe_dump(document))
    (tmp_path / "pricebook.yaml").write_text(yaml.safe_dump(_price_book()))
    monkeypatch.setenv("PLANS_PATH", str(tmp_path / "plans.yaml"))
    monkeypatch.setenv("PRICEBOOK_PATH", str(tmp_path / "pricebook.yaml"))
    container.reset()
    make_tenant(plan="gpu")
    return env


def gpu(event_id: str, seconds: str, region: str = "eu", ts: str = "2025-11-03T12:00:00Z") -> dict[str, Any]:
    return {
        "event_id": event_id,
        "tenant_id": "acme-corp",
        "timestamp": ts,
        "type": "gpu_job",
        "properties": {"seconds": Decimal(seconds), "region": region, "gpu_seconds": Decimal(seconds)},
    }


def counter(month: Month = NOV) -> Decimal:
    return container.ledger().metric_used("acme-corp", str(month)).get("gpu_seconds", Decimal(0))


def stored_sum(env, month: Month = NOV) -> Decimal:
    definition = container.plan_catalog().metric("gpu_seconds")
    return ClickHouseMetrics(env.store).value(definition, "acme-corp", month.start, month.end) or Decimal(0)


def stored_ids(env) -> set[str]:
    return {r[0] for r in env.store.query("SELECT event_id FROM usage_events FINAL WHERE sign = 1")}


def test_fifty_concurrent_requests_store_exactly_the_admissible_events(limited):
    # Given 50 requests, each one eu job of 2.5 seconds (40 of them fit in 100.5) and one us job of 7
    service = container.ingest_service()

    def request(i: int) -> Any:
        events = [
            UsageEvent.model_validate(gpu(f"eu-{i:02d}", "2.5", ts=f"2025-11-03T12:00:{i:02d}Z")),
            UsageEvent.model_validate(gpu(f"us-{i:02d}", "7", region="us", ts=f"2025-11-03T12:00:{i:02d}Z")),
        ]
        try:
            return service.ingest(events)
        except BillingError as error:
            return error

    # When they arrive at once on 50 threads
    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(request, range(50)))
    # Then every request was answered (none failed), and exactly 40 eu jobs and all 50 us jobs are stored
    assert not [r for r in results if isinstance(r, BillingError)]
    ids = stored_ids(limited)
    assert len([i for i in ids if i.startswith("eu-")]) == 40
    assert len([i for i in ids if i.startswith("us-")]) == 50
    # And each of the 10 refused eu jobs was named with the metric and the limit
    refused = [entry for r in results for entry in r.rejected_for_quota]
    assert len(refused) == 10
    assert {(e["metric"], e["limit"], e["index"]) for e in refused} == {("gpu_seconds", LIMIT, 0)}
    # And the counter equals the stored sum: 40 x 2.5, never over the limit
    assert counter() == stored_sum(limited) == Decimal("100.0")


def test_a_batch_that_would_cross_the_limit_stores_what_fits_and_names_what_does_not(limited, post):
    # Given a batch whose third eu job would take the sum past 100.5, then a smaller one that fits,
    # a us job (not limited) and a query
    events = [
        gpu("a", "60", ts="2025-11-03T12:00:00Z"),
        gpu("b", "30.25", ts="2025-11-03T12:00:01Z"),
        gpu("c", "20", ts="2025-11-03T12:00:02Z"),
        gpu("d", "10.25", ts="2025-11-03T12:00:03Z"),
        gpu("e", "500", region="us", ts="2025-11-03T12:00:04Z"),
        usage("q", ts="2025-11-03T12:00:05Z"),
    ]
    # When it is posted
    status, answer, _ = post(body(*events))
    # Then 202: every event but c is stored, and c is named with its index, the metric and the limit
    assert status == 202 and answer["accepted"] == 5
    assert answer["rejected_for_quota"] == [
        {
            "event_id": "c",
            "tenant_id": "acme-corp",
            "timestamp": "2025-11-03T12:00:02Z",
            "index": 2,
            "metric": "gpu_seconds",
            "limit": "100.5",
        }
    ]
    assert stored_ids(limited) == {"a", "b", "d", "e", "q"}
    # And nothing of c was written: no claim, not in the counter, which equals the stored sum exactly
    assert container.ledger().lookup([Claim("acme-corp", "c")]) == {}
    assert counter() == stored_sum(limited) == Decimal("100.50")
    # When a batch of one more eu job arrives, Then it is a 429 naming the metric, the limit and the index
    status, answer, headers = post(body(gpu("f", "0.000000000000000001", ts="2025-11-03T13:00:00Z")))
    assert status == 429 and int(headers["Retry-After"]) > 0
    assert "limit on gpu_seconds of 100.5" in answer["message"]
    assert [
        (r["event_id"], r["index"], r["metric"], r["limit"]) for r in answer["details"]["rejected_for_quota"]
    ] == [("f", 0, "gpu_seconds", "100.5")]
    assert counter() == Decimal("100.50") and "f" not in stored_ids(limited)


def test_a_failed_batch_gives_its_amounts_back_and_its_retry_counts_them_once(limited, post):
    # Given ClickHouse and the fallback queue both down
    service = container.ingest_service()
    service.store = OutageStore(limited.store, lambda n: "fail")
    service.fallback = FlakyQueue(container.fallback_queue(), lambda n: True)
    batch = body(gpu("a", "40"), gpu("b", "50.5", ts="2025-11-03T12:00:01Z"), usage("q"))
    # When the batch arrives, Then 503, and its claims and amounts are given back: the counters are 0
    status, answer, _ = post(batch)
    assert status == 503 and answer["kept"] == [] and answer["unsettled"] == []
    assert counter() == 0 and container.ledger().quota_used("acme-corp", "2025-11")[0] == 0
    assert container.ledger().lookup([Claim("acme-corp", "a"), Claim("acme-corp", "b")]) == {}
    # And once they are back, the retry is stored in full and counted once
    service.store, service.fallback = limited.store, container.fallback_queue()
    status, answer, _ = post(batch)
    assert status == 202 and answer["accepted"] == 3
    assert counter() == stored_sum(limited) == Decimal("90.5")


def test_a_void_gives_back_what_its_event_took(limited, post, corrections_app, lambda_context):
    # Given two eu jobs stored (90.5 of 100.5 used), in November
    container.override(clock=lambda: datetime(2025, 11, 20, tzinfo=UTC))
    assert post(body(gpu("a", "40"), gpu("b", "50.5", ts="2025-11-03T12:00:01Z")))[0] == 202
    # When b is voided
    item = {
        "correction_id": "c-1",
        "tenant_id": "acme-corp",
        "event_id": "b",
        "action": "void",
        "reason": "test",
    }
    response = corrections_app.handler(
        api_event({"corrections": [item]}, path="/v1/corrections"), lambda_context
    )
    assert response["statusCode"] == 200, response["body"]
    # Then its 50.5 is given back: the counter equals the stored sum
    assert counter() == stored_sum(limited) == Decimal("40")
    # And a job of 60 now fits where it did not before
    status, answer, _ = post(body(gpu("c", "60", ts="2025-11-04T12:00:00Z")))
    assert status == 202 and answer["rejected_for_quota"] == []
    assert counter() == stored_sum(limited) == Decimal("100")


def test_the_quota_route_and_the_trackers_gate_report_each_hard_limit(
    limited, post, status_app, lambda_context
):
    # Given 100 of the 100.5 GPU seconds and two queries used this month
    now = datetime.now(UTC)
    at = iso(now)
    assert post(body(gpu("a", "100", ts=at), usage("q1", ts=at), usage("q2", ts=at)))[0] == 202
    # When the quota route is read
    event = api_event("", method="GET", path="/v1/tenants/acme-corp/quota", api_key_id="platform-key")
    event["resource"] = "/v1/tenants/{tenant_id}/quota"
    event["pathParameters"] = {"tenant_id": "acme-corp"}
    response = status_app.handler(event, lambda_context)
    answer = json.loads(response["body"])
    # Then it keeps the query fields and lists every hard limit with its used and remaining
    assert response["statusCode"] == 200 and response_headers(response)["Cache-Control"] == "no-store"
    assert (answer["limit"], answer["used"], answer["remaining"]) == (1000, 2, 998)
    assert answer["limits"] == [
        {"metric": "queries", "limit": 1000, "used": 2, "remaining": 998},
        {"metric": "gpu_seconds", "limit": "100.5", "used": "100", "remaining": "0.5"},
    ]


def test_the_trackers_gate_refuses_work_on_a_used_up_limit(limited, post, tmp_path):
    from billing_local.http_api import LocalApi, serving, template_routes
    from usage_tracker import LimitReached, Tracker

    # Given the tenant's 100.5 GPU seconds used up this month
    at = iso(datetime.now(UTC))
    assert post(body(gpu("a", "100.5", ts=at)))[0] == 202
    api = LocalApi(template_routes(["ingest", "tenant_status"]), {"secret": "platform-key"})
    with serving(api) as url:
        tracker = Tracker(url, "secret", tmp_path / "spool", flush_interval=0.05, fail_open=False)
        try:
            # When the gate is asked before a GPU job, Then it refuses naming the metric
            with pytest.raises(LimitReached) as refused:
                tracker.check_quota("acme-corp", queries=False, metrics=["gpu_seconds"])
            assert refused.value.metric == "gpu_seconds"
            limit = refused.value.quota.limit_on("gpu_seconds")
            assert limit is not None and (limit.used, limit.remaining) == (Decimal("100.5"), 0)
            # And work that adds only queries passes
            assert tracker.check_quota("acme-corp").remaining == 1000
        finally:
            tracker.close()


@pytest.fixture(scope="module")
def corrections_app() -> Any:
    return load_module("corrections")


@pytest.fixture(scope="module")
def status_app() -> Any:
    return load_module("tenant_status")
