"""Exactly-once admission and exact quotas, including under concurrency."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from billing.kernel.errors import BillingError
from billing.kernel.periods import Month
from billing.metering.events import UsageEvent
from billing.runtime import container
from billing_local.aws import TRANSACTION_MS_VARIABLE
from billing_local.aws_meter import DynamoMeter
from tests.metering.conftest import make_tenant, stored, usage

NOV = Month(2025, 11)


def rollup_queries(env, tenant="acme-corp") -> tuple:
    return (
        env.store.query("SELECT sum(queries) FROM usage_hourly WHERE tenant_id = {t:String}", {"t": tenant})[
            0
        ][0],
        env.store.query("SELECT sum(queries) FROM usage_daily WHERE tenant_id = {t:String}", {"t": tenant})[
            0
        ][0],
    )


def test_a_retried_batch_counts_once_everywhere_and_consumes_no_quota(env, post):
    # Given a tenant with a quota of 3
    make_tenant(quota=3)
    batch = {"events": [usage("e-1"), usage("e-2", ts="2025-11-03T12:00:01Z")]}
    # When the same batch arrives three times
    first = post(batch)
    second = post(batch)
    third = post(batch)
    # Then it is stored once; the retries are acknowledged as duplicates
    assert first[0] == 202 and first[1]["accepted"] == 2
    assert (
        second[0] == 202 and second[1]["accepted"] == 0 and sorted(second[1]["duplicates"]) == ["e-1", "e-2"]
    )
    assert third[1]["duplicates"] == second[1]["duplicates"]
    assert stored(env)["queries"] == 2
    assert rollup_queries(env) == (2, 2)
    # And the duplicates consumed no quota: one more query fits, the next does not
    assert post({"events": [usage("e-3", ts="2025-11-04T00:00:00Z")]})[0] == 202
    assert post({"events": [usage("e-4", ts="2025-11-04T00:00:01Z")]})[0] == 429


def test_the_eleventh_query_gets_429_with_limit_used_resets_at_and_retry_after(env, post):
    make_tenant(quota=10)
    for i in range(10):
        assert post({"events": [usage(f"q-{i}", ts=f"2025-11-03T12:00:{i:02d}Z")]})[0] == 202
    status, body, headers = post({"events": [usage("q-10", ts="2025-11-03T12:01:00Z")]})
    assert status == 429
    assert (body["limit"], body["used"], body["resets_at"]) == (10, 10, "2025-12-01T00:00:00Z")
    assert int(headers["Retry-After"]) >= 1
    assert stored(env)["queries"] == 10


def test_a_batch_admits_queries_in_timestamp_order_and_names_the_rejected(env, post):
    # Given 2 queries of quota left
    make_tenant(quota=2)
    # When a batch of 4 queries (sent out of order) and one embedding arrives
    status, body, _ = post(
        {
            "events": [
                usage("late", ts="2025-11-05T00:00:00Z"),
                usage("first", ts="2025-11-01T00:00:00Z"),
                usage("third", ts="2025-11-03T00:00:00Z"),
                usage("second", ts="2025-11-02T00:00:00Z"),
                {
                    "event_id": "emb",
                    "tenant_id": "acme-corp",
                    "timestamp": "2025-11-06T00:00:00Z",
                    "type": "embedding",
                    "model": "text-embedding-3-small",
                    "input_tokens": 10,
                },
            ]
        }
    )
    # Then the two earliest queries and the embedding are stored, the rest named as rejected
    assert status == 202 and body["accepted"] == 3
    assert sorted(r["event_id"] for r in body["rejected_for_quota"]) == ["late", "third"]
    assert body["quota"]["limit"] == 2
    ids = {r[0] for r in env.store.query("SELECT event_id FROM usage_events")}
    assert ids == {"first", "second", "emb"}


def concurrently(n: int, fn) -> list:
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(fn, range(n)))


def ingest_one(event: dict) -> int:
    """One request's path below HTTP parsing. Powertools' resolver keeps the current event on the
    class, so in-process threads cannot share one handler module; Lambda never runs two
    invocations in one environment. Concurrent requests meet in DynamoDB, which is what we test."""
    try:  # no lock: nothing waits for another request, so no 503 (it would fail the counts below)
        result = container.ingest_service().ingest([UsageEvent.model_validate(event)])
        return 202 if result.accepted or result.duplicates else 200
    except BillingError as error:
        return error.status


def test_quota_is_exact_under_50_concurrent_requests(env):
    # Given quota 10
    make_tenant(quota=10)
    # When 50 single-query requests race
    statuses = concurrently(
        50, lambda i: ingest_one(usage(f"c-{i}", ts=f"2025-11-03T12:{i // 60:02d}:{i % 60:02d}Z"))
    )
    # Then exactly 10 are admitted and stored
    assert statuses.count(202) == 10 and statuses.count(429) == 40
    assert stored(env)["queries"] == 10
    assert container.ledger().quota_used("acme-corp", "2025-11")[0] == 10


def test_quota_is_exact_when_the_counter_is_contended(env, monkeypatch):
    # Given quota 10, and DynamoDB cancelling a transaction on the counter while another one still
    # holds it (TransactionConflict: each keeps it 100 ms)
    monkeypatch.setenv(TRANSACTION_MS_VARIABLE, "100")
    make_tenant(quota=10)
    meter = DynamoMeter().attach(container.ledger().client)
    # When 50 single-query requests race
    statuses = concurrently(
        50, lambda i: ingest_one(usage(f"c-{i}", ts=f"2025-11-03T12:{i // 60:02d}:{i % 60:02d}Z"))
    )
    # Then the conflicts (transactions sent again) are retried: exactly 10 are admitted, stored and
    # counted, none fails
    assert meter.snapshot().requests["TransactWriteItems"] > 50  # at least one sent again
    assert statuses.count(202) == 10 and statuses.count(429) == 40
    assert stored(env)["queries"] == 10
    assert container.ledger().quota_used("acme-corp", "2025-11")[0] == 10


def test_concurrent_copies_of_one_event_store_it_once(env):
    # Given a tenant, When 20 copies of one event race
    make_tenant(quota=100)
    results = concurrently(
        20, lambda i: container.ingest_service().ingest([UsageEvent.model_validate(usage("same"))])
    )
    # Then exactly one request stored it; every other copy was acknowledged as a duplicate
    assert sum(len(r.accepted) for r in results) == 1
    assert all(len(r.accepted) + len(r.duplicates) == 1 for r in results)
    assert stored(env)["queries"] == 1
    # And it consumed exactly one unit of quota
    assert container.ledger().quota_used("acme-corp", "2025-11")[0] == 1


def test_quota_follows_the_plan_in_force_at_each_query(env, post):
    # Given payg (quota 50000) switched to a custom... starter (10000) — use a tenant-level check
    from billing.kernel.periods import parse_instant
    from billing.metering.quotas import quota_limit
    from billing.runtime import container
    from billing.tenants.tenant import PlanAssignment, Tenant

    tenant = Tenant(
        id="x",
        plans=[
            PlanAssignment(plan="starter", effective_at="2025-10-01T00:00:00Z"),
            PlanAssignment(plan="pro", effective_at="2025-11-16T08:00:00Z"),
        ],
    )
    catalog = container.plan_catalog()
    assert quota_limit(tenant, catalog, parse_instant("2025-11-16T07:59:59Z")) == 10000
    assert quota_limit(tenant, catalog, parse_instant("2025-11-16T08:00:00Z")) == 100000
