"""a 503 keeps nothing it does not name, an error a retry cannot fix is a 400
and never queued, and quota counting is idempotent per claim (crash between insert and commit)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from billing.kernel.errors import QueueRefused, StoreRejected, StoreUnavailable
from billing.metering import fallback
from billing.runtime import container
from billing_local.faults import OutageStore
from billing_local.runner import drain_queue
from tests.metering.conftest import make_tenant, usage


class FlakyQueue:
    """The real fallback queue; ``plan(n)`` says for the n-th send whether SQS refuses the message
    (it answers with an error, e.g. access denied: surely not queued)."""

    def __init__(self, queue: Any, plan):
        self.queue, self.plan, self.calls = queue, plan, 0

    def send(self, body: str) -> None:
        down = self.plan(self.calls)
        self.calls += 1
        if down:
            raise QueueRefused("injected outage: SQS refused the message")
        self.queue.send(body)


class ReadsDown:
    """A store whose reads fail too (ClickHouse entirely unreachable after the insert)."""

    def __init__(self, store: Any):
        self.store = store

    def insert_events(self, events):
        self.store.insert_events(events)

    def existing_event_ids(self, tenant_id, event_ids):
        raise StoreUnavailable("injected outage: reads refused")

    def __getattr__(self, name):
        return getattr(self.store, name)


def counter(tenant: str = "acme-corp", month: str = "2025-11") -> int:
    return container.ledger().quota_used(tenant, month)[0]


def stored_queries(env, tenant: str = "acme-corp") -> int:
    rows = env.store.query(
        "SELECT count() FROM usage_events FINAL WHERE tenant_id = {t:String} AND queries = 1", {"t": tenant}
    )
    return rows[0][0]


def raw_rows(env) -> int:
    return env.store.query("SELECT count() FROM usage_events")[0][0]


def queue_depth(env) -> int:
    attrs = boto3.client("sqs").get_queue_attributes(
        QueueUrl=env.settings.fallback_queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"])


def batch(n: int = 12) -> dict:
    return {
        "events": [usage(f"e-{i:03d}", ts=f"2025-11-03T12:{i // 60:02d}:{i % 60:02d}Z") for i in range(n)]
    }


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of about 3 events, so a batch of 12 is cut into several."""
    monkeypatch.setattr(fallback, "MAX_MESSAGE_BYTES", 800)


def test_a_503_after_block_0_was_stored_names_it_kept_and_the_quota_matches(env, post, small_blocks):
    # Given ClickHouse takes block 0 and then fails, and SQS is down
    make_tenant(quota=40)
    service = container.ingest_service()
    service.store = OutageStore(env.store, lambda n: "ok" if n == 0 else "fail")
    service.fallback = FlakyQueue(container.fallback_queue(), lambda n: True)
    # When a batch of 12 queries arrives
    status, body, headers = post(batch())
    # Then 503 naming exactly the stored events as kept, and the counter equals the stored queries
    assert status == 503 and headers["Retry-After"]
    assert 0 < len(body["kept"]) < 12 and body["unsettled"] == []
    assert stored_queries(env) == len(body["kept"]) == counter()
    # When ClickHouse is back and the client retries the same request
    service.store, service.fallback = env.store, container.fallback_queue()
    status, body2, _ = post(batch())
    # Then every event is stored exactly once, the kept ones are duplicates, and the quota is exact
    assert status == 202 and sorted(body2["duplicates"]) == sorted(body["kept"])
    assert stored_queries(env) == raw_rows(env) == 12 == counter()


def test_a_503_after_block_0_was_queued_names_it_kept(env, post, small_blocks, replay_app):
    # Given ClickHouse is down, SQS takes block 0 and then fails
    make_tenant(quota=40)
    service = container.ingest_service()
    service.store = OutageStore(env.store, lambda n: "fail")
    service.fallback = FlakyQueue(container.fallback_queue(), lambda n: n > 0)
    status, body, _ = post(batch())
    assert status == 503 and 0 < len(body["kept"]) < 12
    assert counter() == len(body["kept"]) and queue_depth(env) == 1
    # When the replay runs and the client retries
    assert drain_queue(env.settings.fallback_queue_url, "fallback_replay") == (1, 0)
    service.store, service.fallback = env.store, container.fallback_queue()
    assert post(batch())[0] == 202
    # Then every event is stored once and counted once
    assert stored_queries(env) == raw_rows(env) == 12 == counter()


def test_an_insert_applied_but_timed_out_with_sqs_down_is_kept_when_clickhouse_confirms_it(
    env, post, small_blocks
):
    make_tenant(quota=40)
    service = container.ingest_service()
    service.store = OutageStore(env.store, lambda n: "ok" if n == 0 else "lost_ack" if n == 1 else "fail")
    service.fallback = FlakyQueue(container.fallback_queue(), lambda n: True)
    status, body, _ = post(batch())
    # Then the block that landed despite the timeout is kept as well
    assert status == 503 and stored_queries(env) == len(body["kept"]) == counter()
    service.store, service.fallback = env.store, container.fallback_queue()
    assert post(batch())[0] == 202
    assert stored_queries(env) == raw_rows(env) == 12 == counter()


def test_a_block_whose_fate_clickhouse_cannot_tell_is_unsettled_and_the_retry_settles_it(
    env, post, small_blocks
):
    # Given the insert of block 1 is applied but times out, SQS is down, and ClickHouse reads fail
    make_tenant(quota=40)
    service = container.ingest_service()
    service.store = ReadsDown(OutageStore(env.store, lambda n: "ok" if n == 0 else "lost_ack"))
    service.fallback = FlakyQueue(container.fallback_queue(), lambda n: True)
    status, body, _ = post(batch())
    # Then 503; the landed block 0 is kept; block 1 is unsettled: still claimed and counted
    assert status == 503 and body["kept"] and body["unsettled"]
    assert counter() == len(body["kept"]) + len(body["unsettled"])
    # When the retry comes after the outage
    service.store, service.fallback = env.store, container.fallback_queue()
    status, body2, _ = post(batch())
    # Then it settles: everything once, counted once
    assert status == 202
    assert stored_queries(env) == 12 == counter()


def test_concurrent_outages_never_store_more_queries_than_the_quota(env, post, small_blocks):
    # Given a quota of 40 and batches failing half way through, retried until accepted
    make_tenant(quota=40)
    service = container.ingest_service()
    calls = {"n": 0}

    def plan(n: int) -> str:
        calls["n"] += 1
        return "fail" if calls["n"] % 3 == 2 else "ok"

    service.store = OutageStore(env.store, plan)
    service.fallback = FlakyQueue(container.fallback_queue(), lambda n: n % 2 == 0)
    for b in range(6):
        body = {"events": [usage(f"b{b}-{i}", ts=f"2025-11-0{1 + b}T00:00:{i:02d}Z") for i in range(12)]}
        for _attempt in range(6):
            status, answer, _ = post(body)
            assert status in (202, 429, 503), answer
            drain_queue(env.settings.fallback_queue_url, "fallback_replay")  # queued blocks count
            assert stored_queries(env) == counter()
            if status != 503:
                break
    # Then the quota holds exactly
    assert stored_queries(env) == counter() == 40


def test_an_error_a_retry_cannot_fix_is_a_400_and_never_queued(env, post):
    # Given ClickHouse refuses a block as invalid (the driver cannot encode a value)
    make_tenant(quota=40)
    service = container.ingest_service()

    class Refusing:
        def insert_events(self, events):
            raise StoreRejected("value out of range for UInt64")

        def __getattr__(self, name):
            return getattr(env.store, name)

    service.store = Refusing()
    status, body, _ = post(batch(3))
    # Then 400 naming the events, nothing queued, nothing claimed or counted
    assert status == 400 and [d["index"] for d in body["details"]] == [0, 1, 2]
    assert queue_depth(env) == 0 and counter() == 0
    service.store = env.store
    assert post(batch(3))[0] == 202 and counter() == 3


def test_a_value_beyond_its_bound_is_a_400_before_anything_is_acknowledged(env, post):
    make_tenant(quota=40)
    status, body, _ = post(
        {"events": [usage("big", type="storage", model=None, input_tokens=0, output_tokens=0, bytes=2**64)]}
    )
    assert status == 400 and body["details"][0]["field"] == "bytes"
    status, body, _ = post({"events": [usage("big", input_tokens=2**63)]})
    assert status == 400 and body["details"][0]["field"] == "input_tokens"
    assert queue_depth(env) == 0 and counter() == 0 and raw_rows(env) == 0


def test_rollup_sums_do_not_wrap_at_the_bounds(env):
    # Given 20,000 events at the largest accepted token and byte counts (their sum is past 2^64)
    from billing.metering.events import MAX_BYTES, MAX_TOKENS

    n = 20_000
    env.store.client.command(
        f"""INSERT INTO usage_events (tenant_id, event_id, timestamp, type, model, queries, input_tokens,
                output_tokens, bytes, cost_usd, price_version, accepted_at)
            SELECT 'acme-corp', toString(number), toDateTime64('2025-11-03 12:00:00', 3, 'UTC'), 'query',
                   'gpt-4o-mini', 1, {MAX_TOKENS}, 0, {MAX_BYTES}, 0, 'v1', now64(3) FROM numbers({n})"""
    )
    # Then raw, hourly and daily sums are exact (no wrap-around)
    assert n * MAX_BYTES > 2**64
    for table in ("usage_events", "usage_hourly", "usage_daily"):
        tokens, nbytes = env.store.query(f"SELECT sum(input_tokens), sum(bytes) FROM {table}")[0]
        assert (int(tokens), int(nbytes)) == (n * MAX_TOKENS, n * MAX_BYTES), table


def test_a_crash_between_insert_and_commit_never_counts_quota_twice(env, post):
    # Given DynamoDB fails when the batch is committed (the process dies there)
    make_tenant(quota=40)
    ledger = container.ingest_service().ledger
    real_commit = ledger.commit_batch
    state = {"fail": True}

    def commit(*args, **kwargs):
        if state["fail"]:
            state["fail"] = False
            raise ConnectionError("injected: DynamoDB unreachable")
        return real_commit(*args, **kwargs)

    ledger.commit_batch = commit
    status, _, _ = post(batch(10))
    assert status in (500, 503)
    # When the client retries
    status, body, _ = post(batch(10))
    # Then the counter is 10 for 10 stored queries, not 20
    assert status == 202 and body["accepted"] == 10
    assert stored_queries(env) == 10 == counter() == raw_rows(env)
