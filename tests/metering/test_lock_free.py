"""one tenant, many writers. No per-tenant lock: concurrent batches of one tenant run in
parallel (threads against moto), exactly once and the quota stay exact, and a request that dies
anywhere (between its claims and the rest of its counter transactions, between insert and commit)
is settled by its retry."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from billing.kernel.errors import BillingError, ServiceUnavailable
from billing.metering.events import UsageEvent
from billing.runtime import container
from tests.metering.conftest import make_tenant, usage


class Crash(BaseException):
    """The process dies here: no handler, no clean-up runs (a Lambda timeout or OOM)."""


def counter(tenant: str = "acme-corp") -> int:
    return container.ledger().quota_used(tenant, "2025-11")[0]


def rows(env, where: str = "1") -> tuple[int, int]:
    """(raw rows, distinct event ids) in usage_events."""
    return env.store.query(f"SELECT count(), uniqExact(event_id) FROM usage_events WHERE {where}")[0]


def stored_queries(env) -> int:
    return env.store.query("SELECT count() FROM usage_events FINAL WHERE queries = 1")[0][0]


def events(prefix: str, n: int, *, day: int = 3, every: int = 1) -> list[UsageEvent]:
    """n events of one tenant; every ``every``-th is an embedding (not a query)."""
    out = []
    for i in range(n):
        extra: dict[str, Any] = {}
        if every > 1 and i % every == 0:
            extra = {"type": "embedding", "model": "text-embedding-3-small", "output_tokens": 0}
        out.append(
            UsageEvent.model_validate(
                usage(
                    f"{prefix}-{i:04d}",
                    ts=f"2025-11-{day:02d}T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z",
                    **extra,
                )
            )
        )
    return out


def ingest(batch: list[UsageEvent]):
    try:
        return container.ingest_service().ingest(batch)
    except BillingError as error:
        return error


def test_two_batches_of_one_tenant_are_inside_the_store_at_the_same_time(env):
    # Given a store that lets an insert finish only once a second insert is in flight too
    make_tenant(quota=None)
    service = container.ingest_service()
    both_inside = threading.Barrier(2, timeout=10)

    class Rendezvous:
        def insert_events(self, rows):
            both_inside.wait()  # with a per-tenant lock the second batch never gets here: BrokenBarrier
            env.store.insert_events(rows)

        def __getattr__(self, name):
            return getattr(env.store, name)

    service.store = Rendezvous()
    # When two batches of the same tenant arrive together
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(ingest, [events("a", 20), events("b", 20, day=4)]))
    # Then both were stored, in parallel
    assert [len(r.accepted) for r in results] == [20, 20]
    assert rows(env) == (40, 40) and counter() == 40


def test_quota_is_exact_when_many_multi_query_batches_race(env):
    # Given quota 25, When 10 batches of 5 queries (and 1 embedding each) race
    make_tenant(quota=25)
    batches = [events(f"b{b}", 6, day=1 + b, every=6) for b in range(10)]
    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(ingest, batches))
    # Then exactly 25 queries are stored and counted, every embedding is stored
    assert stored_queries(env) == 25 == counter()
    assert rows(env, "type = 'embedding'") == (10, 10)
    # And each batch admitted a prefix of its queries in timestamp order; the rest are named
    for batch, result in zip(batches, results, strict=True):
        queries = [e.event_id for e in batch if e.queries]
        if isinstance(result, BillingError):
            pytest.fail(f"unexpected {result.status}: {result}")
        taken = [q for q in queries if q in result.accepted]
        assert taken == queries[: len(taken)]
        assert sorted(r["event_id"] for r in result.rejected_for_quota) == sorted(set(queries) - set(taken))


def test_overlapping_copies_of_a_batch_racing_store_each_event_once(env):
    # Given 6 writers sending the same mixed batch of 120 events (retries racing the original)
    make_tenant(quota=1000)
    batch = events("same", 120, every=4)
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(ingest, [batch] * 6))
    # Then every event is stored once, by exactly one request, and the others call it a duplicate
    assert all(not isinstance(r, BillingError) for r in results), results
    assert sum(len(r.accepted) for r in results) == 120
    for event in batch:
        owners = [r for r in results if event.event_id in r.accepted]
        assert len(owners) == 1
        assert all(event.event_id in r.duplicates for r in results if r is not owners[0])
    assert rows(env) == (120, 120)
    assert counter() == stored_queries(env) == 90


def crash_on(monkeypatch, obj: Any, name: str, call: int = 0) -> None:
    """The ``call``-th (0-based) call of obj.name kills the process instead of running."""
    real, calls = getattr(obj, name), {"n": 0}

    def dying(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] - 1 == call:
            raise Crash(name)
        return real(*args, **kwargs)

    monkeypatch.setattr(obj, name, dying)


def retry_after_the_lease(batch: list[UsageEvent], monkeypatch):
    """The client retries; a first try inside the dead request's lease waits, then gets 503 naming
    nothing kept; once the lease has run out the retry takes the claims over."""
    service = container.ingest_service()
    service.claim_wait_seconds = 0.1
    early = ingest(batch)
    assert isinstance(early, BillingError) and early.status == 503
    assert early.extra["kept"] == []
    monkeypatch.setattr(service, "now_s", lambda: 4_000_000_000.0)
    return ingest(batch)


def test_a_crash_between_the_counted_claims_and_the_rest_of_the_batch_counts_once(env, monkeypatch):
    # Given a batch of 150 queries (two counter transactions) and 50 embeddings; the process dies
    # after the first counter transaction, before the second
    make_tenant(quota=1000)
    batch = events("c", 200, every=4)
    ledger = container.ingest_service().ledger
    crash_on(monkeypatch, ledger, "claim_counted", call=1)
    with pytest.raises(Crash):
        container.ingest_service().ingest(batch)
    # The counter holds exactly the claims written with it (99), nothing is stored
    assert counter() == 99 and rows(env) == (0, 0)
    monkeypatch.undo()
    # When the client retries after the lease
    result = retry_after_the_lease(batch, monkeypatch)
    # Then everything is stored once and counted once
    assert len(result.accepted) == 200
    assert rows(env) == (200, 200) and counter() == stored_queries(env) == 150


def test_a_crash_between_insert_and_commit_is_settled_by_the_retry_without_a_second_row(env, monkeypatch):
    # Given the process dies after ClickHouse took the batch, before the commit record
    make_tenant(quota=1000)
    batch = events("i", 40, every=5)
    crash_on(monkeypatch, container.ingest_service().ledger, "commit_batch")
    with pytest.raises(Crash):
        container.ingest_service().ingest(batch)
    assert rows(env) == (40, 40) and counter() == 32
    monkeypatch.undo()
    # When the client retries after the lease
    result = retry_after_the_lease(batch, monkeypatch)
    # Then the taken-over events are found in ClickHouse and not inserted again; counted once
    assert len(result.accepted) == 40
    assert rows(env) == (40, 40) and counter() == stored_queries(env) == 32


def test_a_failure_that_is_not_a_crash_gives_the_claims_up_so_the_retry_need_not_wait(env, monkeypatch):
    # Given DynamoDB fails at the commit (the request answers, it does not die)
    make_tenant(quota=1000)
    batch = events("g", 10)
    ledger = container.ingest_service().ledger
    real = ledger.commit_batch
    monkeypatch.setattr(
        ledger, "commit_batch", lambda *a, **k: (_ for _ in ()).throw(ConnectionError("down"))
    )
    with pytest.raises(ServiceUnavailable) as answer:
        container.ingest_service().ingest(batch)
    # (its 503 names the events it may have stored: they are settled by the retry)
    assert sorted(answer.value.extra["unsettled"]) == sorted(e.event_id for e in batch)
    assert answer.value.headers["Retry-After"] == "1"
    monkeypatch.setattr(ledger, "commit_batch", real)
    # When the client retries at once, Then it takes the given-up claims over without waiting
    container.ingest_service().claim_wait_seconds = 0.1
    result = ingest(batch)
    assert not isinstance(result, BillingError) and len(result.accepted) == 10
    assert rows(env) == (10, 10) and counter() == 10


def test_a_counter_transaction_whose_answer_was_lost_is_recognised_as_our_own(env, monkeypatch):
    # Given the first counter transaction is applied but its answer lost: the SDK's retry of it
    # then conflicts with the claims it wrote itself
    from billing.metering.exactly_once import ClaimResult

    make_tenant(quota=1000)
    ledger = container.ingest_service().ledger
    real, calls = ledger.claim_counted, {"n": 0}

    def applied_then_conflicted(tenant_id, month, claims, *args, **kwargs):
        calls["n"] += 1
        outcome = real(tenant_id, month, claims, *args, **kwargs)
        if calls["n"] == 1:
            return ClaimResult(written=False, conflicts=frozenset(claims))
        return outcome

    monkeypatch.setattr(ledger, "claim_counted", applied_then_conflicted)
    container.ingest_service().claim_wait_seconds = 0.5
    batch = events("l", 30, every=3)
    # When the batch is ingested, Then it is accepted without waiting for itself, counted once
    result = ingest(batch)
    assert not isinstance(result, BillingError) and len(result.accepted) == 30
    assert rows(env) == (30, 30) and counter() == stored_queries(env) == 20


def statement_event(statement: dict[str, Any]) -> str:
    """The event id a claim INSERT statement claims."""
    return statement["Parameters"][0]["S"].rsplit("#", 1)[1]


def route_claim_statements(monkeypatch, answer) -> Any:
    """The ledger's ``BatchExecuteStatement`` goes through ``answer(real, statements)``; returns a
    function that puts the real one back."""
    client = container.ingest_service().ledger.client
    real = client.batch_execute_statement
    monkeypatch.setattr(
        client, "batch_execute_statement", lambda **request: answer(real, request["Statements"])
    )
    return lambda: monkeypatch.setattr(client, "batch_execute_statement", real)


def test_a_claim_write_failing_part_way_gives_up_the_claims_written_beside_it(env, monkeypatch):
    # Given a batch of 30 queries and 30 embeddings; the embeddings' claims are PartiQL INSERTs, 25
    # to a BatchExecuteStatement, the requests sent in parallel, and DynamoDB fails the one that
    # carries p-0058 while the other is written
    from botocore.exceptions import ClientError

    make_tenant(quota=1000)
    batch = events("p", 60, every=2)

    def failing(real, statements):
        if "p-0058" in map(statement_event, statements):
            error = {"Error": {"Code": "InternalServerError", "Message": "down"}}
            raise ClientError(error, "BatchExecuteStatement")
        return real(Statements=statements)

    healthy = route_claim_statements(monkeypatch, failing)
    with pytest.raises(ServiceUnavailable):
        container.ingest_service().ingest(batch)
    healthy()
    assert rows(env) == (0, 0)
    # When the client retries at once, Then it takes over every claim the failed request wrote
    # (none is left under a running lease) and stores each event once, counted once
    container.ingest_service().claim_wait_seconds = 0.1
    result = ingest(batch)
    assert not isinstance(result, BillingError) and len(result.accepted) == 60
    assert rows(env) == (60, 60) and counter() == stored_queries(env) == 30


def test_claim_statements_dynamodb_did_not_run_are_sent_again(env, monkeypatch):
    # Given DynamoDB answers the first BatchExecuteStatement of a batch with a statement it
    # throttled (p-0002) and one that hit an internal error after it was applied (p-0004): the
    # request succeeds, those two statements report errors
    make_tenant(quota=1000)
    batch = events("p", 10, every=2)
    calls = []

    def flaky(real, statements):
        calls.append([statement_event(s) for s in statements])
        if len(calls) > 1:
            return real(Statements=statements)
        applied = iter(
            real(Statements=[s for s in statements if statement_event(s) != "p-0002"])["Responses"]
        )
        out = []
        for event_id in calls[0]:
            if event_id == "p-0002":
                out.append({"Error": {"Code": "ThrottlingError", "Message": "slow down"}})
            elif event_id == "p-0004":
                next(applied)
                out.append({"Error": {"Code": "InternalServerError", "Message": "answer lost"}})
            else:
                out.append(next(applied))
        return {"Responses": out}

    route_claim_statements(monkeypatch, flaky)
    # When the batch is ingested
    result = ingest(batch)
    # Then only the two statements are sent again; p-0004's own claim (DuplicateItem on the second
    # try) is recognised as ours, and every event is stored once, counted once
    assert calls[1] == ["p-0002", "p-0004"]
    assert not isinstance(result, BillingError) and len(result.accepted) == 10 and not result.duplicates
    assert rows(env) == (10, 10) and counter() == stored_queries(env) == 5


def test_a_forked_process_writes_claims_with_threads_of_its_own(env):
    # Given the ledger's claim threads have run in this process (40 embeddings' claims: many threads)
    import multiprocessing

    from billing.metering.exactly_once import Claim

    make_tenant(quota=None)
    assert len(ingest(events("parent", 80, every=2)).accepted) == 80
    ledger = container.ledger()

    def child(out):
        claims = [Claim("acme-corp", f"child-{i}") for i in range(2)]
        result = ledger.claim(claims, "b-child", dict.fromkeys(claims, 2_000_000_000), lease_until=0)
        out.put(result.written)

    # When a forked child (a worker process) writes several claims in parallel
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    process = context.Process(target=child, args=(out,))
    process.start()
    try:
        # Then it does not wait for the parent's threads, which it does not have
        assert out.get(timeout=30) is True
    finally:
        process.kill()
        process.join()
