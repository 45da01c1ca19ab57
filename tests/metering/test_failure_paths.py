"""Every way an ingest request can fail lets its claims go before it answers (a fault
property of the lock-free ledger): a client retrying at once proceeds, the quota counter
equals the stored queries plus what the 503 names ``unsettled``, and when DynamoDB itself is down so
that nothing can be let go, ``Retry-After`` is the end of the claims' lease, not "at once"."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ConnectionClosedError, ReadTimeoutError

from billing.metering.exactly_once import Claim
from billing.runtime import container
from billing_local.faults import OutageStore
from billing_local.runner import drain_queue
from tests.metering.conftest import make_tenant, usage
from tests.metering.test_outages_and_bounds import (
    FlakyQueue,
    batch,
    counter,
    queue_depth,
    raw_rows,
    stored_queries,
)


class FailingCalls:
    """The real ledger; the calls named in ``down`` raise (DynamoDB unreachable), the first ``times``
    of them (None: every one). With ``applied``, they run first and then raise (the write happened,
    its answer was lost)."""

    def __init__(self, ledger: Any, *down: str, applied: bool = False, times: int | None = None):
        self.ledger, self.down, self.applied, self.times = ledger, set(down), applied, times

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.ledger, name)
        if name not in self.down:
            return real

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.times is not None:
                if self.times == 0:
                    return real(*args, **kwargs)
                self.times -= 1
            if self.applied:
                real(*args, **kwargs)
            raise ConnectionError(f"injected: DynamoDB unreachable at {name}")

        return call


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of about 3 events, so a batch of 12 is cut into several."""
    from billing.metering import fallback

    monkeypatch.setattr(fallback, "MAX_MESSAGE_BYTES", 800)


@pytest.fixture
def clock():
    """The injected clock, which ingest's claim leases follow; ``clock.advance(s)`` moves it."""

    class Clock:
        def __init__(self) -> None:
            self.now = container.clock()()

        def __call__(self):
            return self.now

        def advance(self, seconds: float) -> None:
            self.now += timedelta(seconds=seconds)

    at = Clock()
    container.override(clock=at)
    yield at
    container.override(clock=None)


def test_dynamodb_failing_while_claiming_gives_the_counted_queries_back_at_once(env, post):
    # Given DynamoDB fails at the plain-claims transaction, after the batch's queries were counted
    make_tenant(quota=100)
    service = container.ingest_service()
    service.ledger = FailingCalls(service.ledger, "claim", times=1)
    storage = {
        "event_id": "s-1",
        "tenant_id": "acme-corp",
        "timestamp": "2025-11-03T12:00:00Z",
        "type": "storage",
        "bytes": 10,
    }
    body = {"events": [usage("q-1"), usage("q-2", ts="2025-11-03T12:00:01Z"), storage]}
    # When the batch arrives
    status, answer, headers = post(body)
    # Then 503, and the queries are given back (claim and counter): nothing is held, nothing named
    assert status == 503 and headers["Retry-After"] == "1" and answer["unsettled"] == []
    assert counter() == 0
    # And the client's immediate retry is accepted in full, counted once
    service.ledger = service.ledger.ledger
    service.claim_wait_seconds = 0
    status, answer, _ = post(body)
    assert status == 202 and answer["accepted"] == 3
    assert stored_queries(env) == counter() == 2


def test_a_claim_write_whose_answer_was_lost_is_given_up_too(env, post):
    # Given DynamoDB applies the queries' counter transaction and then times out (answer lost)
    make_tenant(quota=100)
    service = container.ingest_service()
    service.ledger = FailingCalls(service.ledger, "claim_counted", applied=True, times=1)
    body = {"events": [usage("q-1"), usage("q-2", ts="2025-11-03T12:00:01Z")]}
    # When the batch arrives
    status, answer, headers = post(body)
    # Then 503 naming both unsettled: the claims it may have written are given up (lease 0, counted)
    assert status == 503 and headers["Retry-After"] == "1"
    assert sorted(answer["unsettled"]) == ["q-1", "q-2"] and counter() == 2
    # And the client's immediate retry takes them over without waiting for a lease, counted once
    service.ledger = service.ledger.ledger
    service.claim_wait_seconds = 0
    status, answer, _ = post(body)
    assert status == 202 and answer["accepted"] == 2
    assert stored_queries(env) == raw_rows(env) == 2 == counter()


def test_dynamodb_failing_in_a_503s_bookkeeping_still_lets_every_claim_go(env, post, small_blocks):
    # Given ClickHouse takes block 0 and then fails, SQS is down, and DynamoDB fails when the 503
    # gives back the claims of the blocks that were not stored
    make_tenant(quota=40)
    service = container.ingest_service()
    service.store = OutageStore(env.store, lambda n: "ok" if n == 0 else "fail")
    service.fallback = FlakyQueue(container.fallback_queue(), lambda n: True)
    service.ledger = FailingCalls(service.ledger, "release")
    # When a batch of 12 queries arrives
    status, answer, headers = post(batch())
    # Then 503 naming every event it holds as unsettled (their claims given up, lease 0)
    assert status == 503 and headers["Retry-After"] == "1"
    assert answer["kept"] == [] and len(answer["unsettled"]) == 12
    assert stored_queries(env) > 0 and counter() == 12
    # When everything is back and the client retries at once (no waiting for a lease)
    service.store, service.fallback, service.ledger = (
        env.store,
        container.fallback_queue(),
        service.ledger.ledger,
    )
    service.claim_wait_seconds = 0
    status, answer, _ = post(batch())
    # Then every event is stored exactly once and counted once
    assert status == 202 and answer["accepted"] == 12
    assert stored_queries(env) == raw_rows(env) == 12 == counter()


def test_an_event_taken_over_from_a_dead_request_is_never_given_back(env, post, replay_app):
    # Given a request queued e-1 (ClickHouse was down), counted it, and died before committing
    from billing.metering import fallback
    from billing.metering.events import UsageEvent

    make_tenant(quota=1)
    service = container.ingest_service()
    event = UsageEvent.model_validate(usage("e-1"))
    cost = service.price_book.cost(event)
    claim = Claim("acme-corp", "e-1")
    assert (
        container.ledger()
        .claim_counted(
            "acme-corp",
            "2025-11",
            [claim],
            "dead-batch",
            {claim: 2_000_000_000},
            lease_until=0,
            max_used=0,
            counter_expires_at=2_000_000_000,
            previous={},
        )
        .written
    )
    container.fallback_queue().send(
        fallback.encode_block(
            "dead-batch", [event.stored(cost.cost_usd, cost.price_version, service.clock())]
        )
    )
    # And its retry takes e-1 over while ClickHouse and SQS are both down
    service.store = OutageStore(env.store, lambda n: "fail")
    service.fallback = FlakyQueue(container.fallback_queue(), lambda n: True)
    status, answer, _ = post({"events": [usage("e-1")]})
    # Then the 503 names e-1 unsettled (the dead request may have stored it), still counted
    assert status == 503 and answer["unsettled"] == ["e-1"] and counter() == 1
    # When the replay stores the dead request's block, another query meets the full quota, and the
    # client retries e-1
    service.store, service.fallback = env.store, container.fallback_queue()
    from billing_local.runner import drain_queue

    assert drain_queue(env.settings.fallback_queue_url, "fallback_replay") == (1, 0)
    assert post({"events": [usage("e-2", ts="2025-11-04T00:00:00Z")]})[0] == 429
    status, answer, _ = post({"events": [usage("e-1")]})
    # Then e-1 is accepted, stored once, and the counter equals the stored queries, within the quota
    assert status == 202 and answer["accepted"] == 1
    assert stored_queries(env) == raw_rows(env) == 1 == counter()
    assert queue_depth(env) == 0


def test_when_dynamodb_is_down_the_503_says_when_the_claims_lease_ends(env, post, clock):
    # Given DynamoDB fails at the commit, and also when the request tries to give its claims up
    make_tenant(quota=100)
    service = container.ingest_service()
    service.ledger = FailingCalls(service.ledger, "commit_batch", "claim")
    body = {"events": [usage("q-1"), usage("q-2", ts="2025-11-03T12:00:01Z")]}
    # When the batch arrives
    status, answer, headers = post(body)
    # Then 503 naming both unsettled, with Retry-After the rest of their lease (not "at once")
    assert status == 503 and sorted(answer["unsettled"]) == ["q-1", "q-2"]
    assert int(headers["Retry-After"]) == service.claim_lease_seconds
    assert "held until" in answer["message"]
    # And a retry before then is told to come back when the lease has run out
    service.ledger = service.ledger.ledger
    service.claim_wait_seconds = 0
    clock.advance(10)
    status, answer, headers = post(body)
    assert status == 503 and int(headers["Retry-After"]) == service.claim_lease_seconds - 10
    # When the client comes back after Retry-After, Then each event is stored and counted once
    clock.advance(int(headers["Retry-After"]))
    status, answer, _ = post(body)
    assert status == 202 and answer["accepted"] == 2
    assert stored_queries(env) == raw_rows(env) == 2 == counter()


@pytest.mark.parametrize("ledger_kind", ["dynamodb", "memory"])
def test_a_claim_given_back_is_never_recreated_by_its_batch_giving_it_up(env, ledger_kind):
    # Given a counted claim whose release was applied (its answer lost: the batch does not know)
    from billing_local.memory import MemoryLedger

    ledger = container.ledger() if ledger_kind == "dynamodb" else MemoryLedger()
    claim = Claim("acme-corp", "e-1")
    expiry = {claim: 2_000_000_000}
    assert ledger.claim_counted(
        "acme-corp",
        "2025-11",
        [claim],
        "b1",
        expiry,
        lease_until=10**10,
        max_used=None,
        counter_expires_at=2_000_000_000,
        previous={},
    ).written
    ledger.release([claim], "b1", {claim: "2025-11"})
    # When the batch then gives the claim up (lease 0, still counted) as a failing request does
    outcome = ledger.claim(
        [claim], "b1", expiry, lease_until=0, counted={claim: "2025-11"}, previous={claim: "b1"}
    )
    # Then it is a conflict: no counted claim appears without its query on the counter
    assert not outcome.written and outcome.conflicts == {claim}
    assert ledger.lookup([claim]) == {} and ledger.quota_used("acme-corp", "2025-11")[0] == 0


class SendAppliedAnswerLost:
    """A botocore hook on the real SQS client: ``SendMessage`` reaches the queue (moto takes the
    message), then the call raises ``error`` as if the answer had been lost on the way back (a read
    timeout, a connection reset after SQS accepted the request)."""

    def __init__(self, error: Exception):
        self.error, self.sends = error, 0
        self.client = container.fallback_queue().client

    def __enter__(self) -> SendAppliedAnswerLost:
        self.client.meta.events.register("after-call.sqs.SendMessage", self._lose)
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.meta.events.unregister("after-call.sqs.SendMessage", self._lose)

    def _lose(self, http_response: Any, **_: Any) -> None:
        assert http_response.status_code == 200  # the message was queued
        self.sends += 1
        raise self.error


LOST_ANSWERS = {
    "read timeout": lambda: ReadTimeoutError(endpoint_url="https://sqs.us-east-1.amazonaws.com/"),
    "connection reset": lambda: ConnectionClosedError(endpoint_url="https://sqs.us-east-1.amazonaws.com/"),
}


@pytest.mark.parametrize("lost", sorted(LOST_ANSWERS))
@pytest.mark.parametrize("order", ["replay, then retry", "retry, then replay"])
def test_a_block_sqs_queued_although_the_send_raised_stays_counted_until_it_is_settled(
    env, post, lost, order
):
    # Given a quota of 2, ClickHouse refusing inserts (its reads still answer), and SQS queueing the
    # block but the send raising afterwards: the answer was lost
    make_tenant(quota=2)
    service = container.ingest_service()
    service.store = OutageStore(env.store, lambda n: "fail")
    body = {"events": [usage("q-1"), usage("q-2", ts="2025-11-03T12:00:01Z")]}
    # When the batch arrives
    with SendAppliedAnswerLost(LOST_ANSWERS[lost]()) as sqs:
        status, answer, headers = post(body)
    # Then 503 naming both events unsettled: the block may be queued, so they stay claimed and counted
    assert sqs.sends == 1 and queue_depth(env) == 1
    assert status == 503 and headers["Retry-After"]
    assert answer["kept"] == [] and sorted(answer["unsettled"]) == ["q-1", "q-2"]
    assert "unsettled" in answer["message"]
    assert counter() == stored_queries(env) + len(answer["unsettled"]) == 2
    # And another query meanwhile meets the full quota (the queued block will be stored)
    status, refused, _ = post({"events": [usage("q-3", ts="2025-11-04T00:00:00Z")]})
    assert status == 429 and counter() == 2
    service.store = env.store
    service.claim_wait_seconds = 0
    if order == "replay, then retry":
        # When the replay stores the queued block, Then the counter equals the stored queries
        assert drain_queue(env.settings.fallback_queue_url, "fallback_replay") == (1, 0)
        assert stored_queries(env) == raw_rows(env) == 2 == counter()
    # When the client retries the request
    status, answer, _ = post(body)
    # Then it is accepted, each event stored once and counted once
    assert status == 202 and answer["accepted"] + len(answer["duplicates"]) == 2
    assert stored_queries(env) == raw_rows(env) == 2 == counter()
    if order == "retry, then replay":
        # When the replay then runs over the queued block, Then it stores nothing again
        assert drain_queue(env.settings.fallback_queue_url, "fallback_replay") == (1, 0)
    # And at the end: every event once, the counter equals the stored queries, the queue is empty
    assert stored_queries(env) == raw_rows(env) == 2 == counter()
    assert queue_depth(env) == 0
    # And a second retry is all duplicates
    status, answer, _ = post(body)
    assert status == 202 and sorted(answer["duplicates"]) == ["q-1", "q-2"]
    assert stored_queries(env) == 2 == counter()
