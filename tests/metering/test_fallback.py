"""ClickHouse outages: accepted batches go to SQS and are replayed; nothing is lost or doubled."""

from __future__ import annotations

import random

import boto3

from billing.runtime import container
from billing_local.faults import OutageStore
from billing_local.runner import drain_queue
from tests.metering.conftest import make_tenant, stored, usage


def drain(env, *_: object) -> int:
    """Run the replay Lambda over the fallback queue, as the SQS event source mapping would."""
    processed, failed = drain_queue(env.settings.fallback_queue_url, "fallback_replay")
    assert failed == 0
    return processed


def test_an_outage_queues_the_batch_with_202_and_the_replay_stores_it(env, post, replay_app, lambda_context):
    # Given ClickHouse refuses inserts
    make_tenant(quota=100)
    service = container.ingest_service()
    service.store = OutageStore(env.store, lambda n: "fail")
    # When a batch arrives, Then it is acknowledged as queued
    status, body, _ = post({"events": [usage("e-1"), usage("e-2", ts="2025-11-03T12:00:01Z")]})
    assert status == 202 and body["queued"] is True and body["status"] == "queued"
    assert stored(env)["events"] == 0
    # When the replay Lambda runs, Then the events are stored
    assert drain(env, replay_app, lambda_context) == 1
    assert stored(env)["events"] == 2
    # And a client retry of the queued batch is a duplicate, not a second copy
    service.store = env.store
    status, body, _ = post({"events": [usage("e-1"), usage("e-2", ts="2025-11-03T12:00:01Z")]})
    assert body["accepted"] == 0 and sorted(body["duplicates"]) == ["e-1", "e-2"]
    assert stored(env)["events"] == 2


def test_fault_injection_stream_every_event_lands_exactly_once(env, post, replay_app, lambda_context):
    # Given ClickHouse fails, or applies an insert and then times out, for part of a stream of batches
    make_tenant(quota=None)
    rng = random.Random(7)
    modes = {}
    service = container.ingest_service()
    service.store = OutageStore(
        env.store, lambda n: modes.setdefault(n, rng.choice(["ok", "ok", "fail", "lost_ack"]))
    )
    expected = 0
    # When 30 batches of 20 events arrive, with client retries of some batches
    for b in range(30):
        batch = {
            "events": [
                usage(f"b{b}-{i}", ts=f"2025-11-{1 + b % 28:02d}T{i % 24:02d}:00:00Z", input_tokens=i + 1)
                for i in range(20)
            ]
        }
        status, body, _ = post(batch)
        assert status == 202
        expected += 20
        if b % 5 == 0:
            post(batch)
    # And the replay Lambda drains the queue (replayed twice to prove replay is idempotent too)
    assert drain(env, replay_app, lambda_context) > 0
    # Then every event is in ClickHouse exactly once, in raw rows, FINAL and the rollups
    raw = env.store.query("SELECT count(), uniqExact(tenant_id, event_id) FROM usage_events")[0]
    assert raw == (expected, expected)
    assert stored(env)["events"] == expected
    assert env.store.query("SELECT sum(events) FROM usage_hourly")[0][0] == expected
    assert env.store.query("SELECT sum(events) FROM usage_daily")[0][0] == expected
    tokens = env.store.query("SELECT sum(input_tokens) FROM usage_events")[0][0]
    assert env.store.query("SELECT sum(input_tokens) FROM usage_daily")[0][0] == tokens


def test_a_replayed_message_delivered_twice_is_stored_once(env, post, replay_app, lambda_context):
    make_tenant(quota=None)
    service = container.ingest_service()
    service.store = OutageStore(env.store, lambda n: "fail")
    post({"events": [usage("e-1")]})
    sqs = boto3.client("sqs")
    body = sqs.receive_message(QueueUrl=env.settings.fallback_queue_url)["Messages"][0]["Body"]
    record = {
        "messageId": "m1",
        "receiptHandle": "r",
        "body": body,
        "attributes": {},
        "messageAttributes": {},
        "md5OfBody": "x",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:1:q",
        "awsRegion": "us-east-1",
    }
    for _ in range(2):  # SQS is at-least-once
        assert replay_app.handler({"Records": [record]}, lambda_context) == {"batchItemFailures": []}
    assert stored(env)["events"] == 1
    assert env.store.query("SELECT sum(events) FROM usage_daily")[0][0] == 1


def test_a_replay_that_fails_is_reported_for_retry_and_later_succeeds(env, post, replay_app, lambda_context):
    make_tenant(quota=None)
    service = container.ingest_service()
    service.store = OutageStore(env.store, lambda n: "fail")
    post({"events": [usage("e-1")]})
    body = boto3.client("sqs").receive_message(QueueUrl=env.settings.fallback_queue_url)["Messages"][0][
        "Body"
    ]
    record = {
        "messageId": "m1",
        "receiptHandle": "r",
        "body": body,
        "attributes": {},
        "messageAttributes": {},
        "md5OfBody": "x",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:1:q",
        "awsRegion": "us-east-1",
    }
    # Given ClickHouse is still down for the replay
    container.usage_store().client.command("RENAME TABLE usage_events TO usage_events_away")
    try:
        assert replay_app.handler({"Records": [record]}, lambda_context) == {
            "batchItemFailures": [{"itemIdentifier": "m1"}]
        }
    finally:
        container.usage_store().client.command("RENAME TABLE usage_events_away TO usage_events")
    assert replay_app.handler({"Records": [record]}, lambda_context) == {"batchItemFailures": []}
    assert stored(env)["events"] == 1


def test_when_sqs_is_down_too_the_answer_is_503_and_nothing_is_kept(env, post):
    # Given ClickHouse and the fallback queue both fail
    make_tenant(quota=5)
    service = container.ingest_service()
    service.store = OutageStore(env.store, lambda n: "fail")
    good_queue = service.fallback
    from billing.adapters.aws.queues import SqsFallbackQueue

    service.fallback = SqsFallbackQueue(env.settings.fallback_queue_url + "-missing")
    # When a batch arrives, Then 503 and nothing is acknowledged
    status, body, headers = post({"events": [usage("e-1"), usage("e-2", ts="2025-11-03T12:00:01Z")]})
    assert status == 503 and "Retry-After" in headers
    assert stored(env)["events"] == 0
    # And the claims and quota were given back: the client's retry is accepted in full later
    assert container.ledger().quota_used("acme-corp", "2025-11")[0] == 0
    service.store, service.fallback = env.store, good_queue
    status, body, _ = post({"events": [usage("e-1"), usage("e-2", ts="2025-11-03T12:00:01Z")]})
    assert status == 202 and body["accepted"] == 2
    assert stored(env)["events"] == 2


def test_a_request_that_died_holding_a_claim_does_not_block_its_retry_past_the_lease(env, post):
    # Given a request claimed its event and died (no commit, no release; its lease still runs)
    from datetime import timedelta

    from billing.metering.exactly_once import Claim

    make_tenant(quota=None)
    now = [container.clock()()]
    container.override(clock=lambda: now[0])
    claim = Claim("acme-corp", "e-1")
    service = container.ingest_service()
    container.ledger().claim(
        [claim], "dead-batch", {claim: 2_000_000_000}, lease_until=service.now_s() + 90, counted=None
    )
    # While its lease is live, a retry waits and then gets 503 naming nothing kept, with a
    # Retry-After that is the rest of the dead request's lease
    service.claim_wait_seconds = 0.2
    now[0] += timedelta(seconds=30)
    status, body, headers = post({"events": [usage("e-1")]})
    assert status == 503 and headers["Retry-After"] == "60" and body["kept"] == []
    # When the client comes back after Retry-After, Then the retry takes the abandoned claim over
    now[0] += timedelta(seconds=60)
    status, body, _ = post({"events": [usage("e-1")]})
    assert status == 202 and body["accepted"] == 1 and stored(env)["events"] == 1
