"""Fault injection, property-based: random outages of ClickHouse (refused, "applied but
timed out", reads failing), of SQS (refused, unreachable, or the message queued and the answer lost)
and of DynamoDB at any ledger call (refused, or applied with the answer lost), and crashes at any of
those calls (the request dies there and answers nothing), with a client that retries as
``usage_tracker`` does: after ``Retry-After`` when the answer gives one, else after an exponential
backoff; time is the injected clock (``container.override(clock=...)``), advanced instead of slept, so a claim
left under lease by a dead request runs out as it would.

After every answer (and the replay, which may run between any two), the quota counter is never below
the stored queries. Afterwards, whatever the faults: every batch got through (202 or 429) within a
bounded number of retries once the faults stopped, every event that got a 202 is stored exactly once,
nothing is stored that was not acknowledged or named ``kept`` / ``unsettled``, nothing refused for
quota is stored, and every quota counter equals its stored queries."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from billing.kernel.errors import QueueRefused, StoreUnavailable
from billing.runtime import container
from billing.tenants.tenant import Tenant
from billing_local.runner import LocalContext, api_gateway_event, drain_queue, load_module, response_headers
from tests.fuzz.support import EXAMPLES, FUZZ

LEDGER_CALLS = ("lookup", "claim", "claim_counted", "release", "commit_batch", "quota_used")
LEDGER_WRITES = ("claim", "claim_counted", "release", "commit_batch")
FAULTY_ATTEMPTS = 5  # then the dependencies are healthy again


class Crash(BaseException):
    """The request dies here (Lambda timeout, out of memory): no ``except Exception`` sees it and the
    client gets no answer."""


class Faults:
    """Decides, call by call, whether a dependency fails (``rate``: the share of calls that do; of
    those, ``crash_share`` kill the request instead)."""

    def __init__(self, seed: int, rate: float, crash_share: float):
        self.rng, self.rate, self.crash_share, self.enabled = random.Random(seed), rate, crash_share, True

    def fails(self) -> bool:
        return self.enabled and self.rng.random() < self.rate

    def strike(self, error: Exception) -> None:
        """Maybe fail here: raise ``error``, or crash."""
        if self.fails():
            raise Crash() if self.rng.random() < self.crash_share else error


class FaultyStore:
    def __init__(self, store, faults: Faults):
        self.store, self.faults = store, faults

    def insert_events(self, events):
        self.faults.strike(StoreUnavailable("injected: connection refused"))
        self.store.insert_events(events)
        self.faults.strike(StoreUnavailable("injected: timed out after the insert was applied"))

    def existing_event_ids(self, tenant_id, event_ids):
        self.faults.strike(StoreUnavailable("injected: reads refused"))
        return self.store.existing_event_ids(tenant_id, event_ids)


class FaultyQueue:
    def __init__(self, queue, faults: Faults):
        self.queue, self.faults = queue, faults

    def send(self, body: str) -> None:
        self.faults.strike(QueueRefused("injected: SQS refused the message"))
        self.faults.strike(ConnectionError("injected: SQS unreachable"))
        self.queue.send(body)
        self.faults.strike(ConnectionError("injected: SQS queued the message, its answer lost"))


class FaultyLedger:
    """The real ledger; any call may fail before it runs, and a write may be applied with its answer
    lost (DynamoDB timed out after committing it)."""

    def __init__(self, ledger, faults: Faults):
        self.ledger, self.faults = ledger, faults

    def __getattr__(self, name):
        real = getattr(self.ledger, name)
        if name not in LEDGER_CALLS:
            return real

        def call(*args, **kwargs):
            self.faults.strike(ConnectionError(f"injected: DynamoDB unreachable at {name}"))
            result = real(*args, **kwargs)
            if name in LEDGER_WRITES:
                self.faults.strike(ConnectionError(f"injected: {name} applied, its answer lost"))
            return result

        return call


class Clock:
    """The injected clock: the client's waits advance it."""

    def __init__(self):
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def client_wait(response: dict | None, failures: int, rng: random.Random) -> float:
    """How long ``usage_tracker`` waits before retrying (``_sender._backoff``, defaults): Retry-After
    (x 1.0-1.2) when the answer has one, else a full-jitter backoff of 0.5 s x 2^n, at most 30 s."""
    retry_after = response_headers(response).get("Retry-After") if response else None
    if retry_after is not None:
        return min(float(retry_after), 300.0) * rng.uniform(1.0, 1.2)
    return rng.uniform(0, min(30.0, 0.5 * 2 ** min(failures - 1, 30)))


@pytest.fixture(scope="module")
def ingest():
    return load_module("ingest")


batches = st.lists(st.lists(st.integers(0, 24), min_size=1, max_size=10, unique=True), min_size=1, max_size=4)


@given(
    schedule=batches,
    seed=st.integers(0, 2**32),
    rate=st.sampled_from([0.1, 0.3, 0.5]),
    crash_share=st.sampled_from([0.0, 0.3]),
    quota=st.sampled_from([None, 8]),
)
@settings(FUZZ, max_examples=max(3, EXAMPLES // 2))
# SQS queues a block and the send raises (its answer lost) while ClickHouse refuses inserts but
# answers reads; the replay then runs before the retry (a block given back would be stored uncounted)
@example(schedule=[list(range(10)), list(range(5, 15))], seed=43, rate=0.3, crash_share=0.0, quota=8)
def test_whatever_fails_a_retrying_client_gets_every_event_stored_once_and_quotas_match(
    env, ingest, monkeypatch, schedule, seed, rate, crash_share, quota
):
    run_with_faults(env, ingest, monkeypatch, schedule, seed, rate, crash_share, quota)


def run_with_faults(env, ingest, monkeypatch, schedule, seed, rate, crash_share, quota):
    """Given a tenant (quota ``quota`` or none) and faults drawn from ``seed``, When a client sends
    each batch of ``schedule`` and retries it until it gets through, Then the invariants hold."""
    from billing.metering import fallback

    monkeypatch.setattr(fallback, "MAX_MESSAGE_BYTES", 700)  # several blocks per batch
    clock = Clock()
    container.override(clock=clock)
    tenant_id = f"t-{uuid.uuid4().hex[:10]}"
    container.tenants().create(Tenant(id=tenant_id, query_quota=quota))
    service = container.ingest_service()
    # one client, no concurrency: a claim found under lease is a dead request's, and waiting for it
    # in real time would only slow the test down (the injected clock does not move while we wait)
    service.claim_wait_seconds = 0
    faults = Faults(seed, rate, crash_share)
    real = (service.store, service.fallback, service.ledger)
    service.store = FaultyStore(real[0], faults)
    service.fallback = FaultyQueue(real[1], faults)
    service.ledger = FaultyLedger(real[2], faults)
    acknowledged: set[str] = set()
    refused_for_quota: set[str] = set()
    named: set[str] = set()
    waits = random.Random(seed + 1)
    replays = random.Random(seed + 2)

    def stored_ids() -> dict[str, int]:
        rows = env.store.query(
            "SELECT event_id, count() FROM usage_events FINAL WHERE tenant_id = {t:String} GROUP BY event_id",
            {"t": tenant_id},
        )
        return {r[0]: r[1] for r in rows}

    def counted_at_least_stored() -> None:
        """The replay may run between any two answers (it is its own Lambda); whenever it has, no
        stored query is missing from the counter (a block queued by a send whose answer was lost
        was not given back)."""
        if replays.random() < 0.5:
            drain_queue(env.settings.fallback_queue_url, "fallback_replay")
        queries = sum(1 for e in stored_ids() if int(e[1:]) % 4)
        assert container.ledger().quota_used(tenant_id, "2025-11")[0] >= queries

    try:
        for batch in schedule:
            events = [
                {
                    "event_id": f"e{i}",
                    "tenant_id": tenant_id,
                    "timestamp": f"2025-11-{1 + i % 28:02d}T00:00:00Z",
                    "type": "query" if i % 4 else "embedding",
                    "model": "gpt-4o-mini",
                    "input_tokens": i + 1,
                }
                for i in batch
            ]
            history = []
            for attempt in range(2 * FAULTY_ATTEMPTS + 2):
                faults.enabled = attempt < FAULTY_ATTEMPTS
                try:
                    response = ingest.handler(api_gateway_event({"events": events}), LocalContext())
                except Crash:
                    response = None  # the client's request timed out: no answer
                counted_at_least_stored()
                if response is None:
                    history.append("no answer")
                    clock.sleep(client_wait(None, attempt + 1, waits))
                    continue
                status, body = response["statusCode"], json.loads(response["body"])
                history.append(
                    f"{status} {response_headers(response).get('Retry-After')} {body.get('message')}"
                )
                assert status in (202, 429, 503), body
                named |= set(body.get("kept", [])) | set(body.get("unsettled", []))
                if status == 202:
                    acknowledged |= {e["event_id"] for e in events} - {
                        r["event_id"] for r in body["rejected_for_quota"]
                    }
                    refused_for_quota |= {r["event_id"] for r in body["rejected_for_quota"]}
                    break
                if status == 429:
                    refused_for_quota |= {r["event_id"] for r in body["details"]["rejected_for_quota"]}
                    acknowledged |= set(body["details"]["duplicates"])
                    break
                clock.sleep(client_wait(response, attempt + 1, waits))
            else:
                pytest.fail(f"batch {sorted(batch)} never got through:\n" + "\n".join(history))
    finally:
        service.store, service.fallback, service.ledger = real
    processed, failed = drain_queue(env.settings.fallback_queue_url, "fallback_replay")
    assert failed == 0
    stored = stored_ids()
    # Every acknowledged event is stored exactly once
    assert acknowledged <= set(stored) and all(n == 1 for n in stored.values())
    # Nothing else is stored, unless an answer named it kept or unsettled
    assert set(stored) <= acknowledged | named
    assert not (set(stored) & (refused_for_quota - acknowledged))
    # And the quota counter equals the stored queries of the month
    queries = sum(1 for e in stored if int(e[1:]) % 4)
    assert container.ledger().quota_used(tenant_id, "2025-11")[0] == queries
    if quota is not None:
        assert queries <= quota
