"""The sender against the documented answers of POST /v1/events: batching, retries, final refusals."""

from __future__ import annotations

import pytest

from tests.client.conftest import wait_until


def test_batches_are_cut_at_1000_events(api, make_tracker):
    # Given 2,500 events tracked while the server is paused
    api.pause()
    tracker = make_tracker()
    ids = [tracker.track("acme", "query") for _ in range(2500)]
    # When it answers again
    api.resume()
    assert tracker.flush(10)
    # Then they went in requests of at most 1,000 events, each stored once
    sizes = [r.events for r in api.posts()]
    assert max(sizes) == 1000 and sum(sizes) == 2500
    assert sorted(api.stored_ids()) == sorted(ids)


def test_batches_are_cut_below_the_byte_limit(api, make_tracker):
    tracker = make_tracker(max_batch_bytes=20_000)
    api.pause()
    for _ in range(500):
        tracker.track("acme", "query", "gpt-4o-mini", 1200, 300)
    api.resume()
    assert tracker.flush(10)
    posts = api.posts()
    assert all(r.size <= 20_000 for r in posts) and len(posts) >= 5
    assert sum(r.events for r in posts) == 500 == len(api.stored)


def test_default_batches_stay_under_1_mb_and_1000_events(api, make_tracker):
    tracker = make_tracker()
    api.pause()
    long_model = "m" * 128
    api.models.add(long_model)
    for _ in range(3000):
        tracker.track(
            "tenant-with-a-rather-long-identifier-" + "x" * 80, "query", long_model, 10**12, 10**12, 10**12
        )
    api.resume()
    assert tracker.flush(20)
    assert all(r.size < 1_000_000 and r.events <= 1000 for r in api.posts())
    assert len(api.stored) == 3000


@pytest.mark.parametrize(
    "fault, retry_after", [(503, 0.3), (429, 0.3), (500, None), (502, None), ("drop", None)]
)
def test_transient_failures_are_retried_until_stored(api, make_tracker, problems, fault, retry_after):
    # Given the server fails the next two requests
    api.script(fault, times=2, retry_after=retry_after)
    tracker = make_tracker()
    ids = [tracker.track("acme", "query") for _ in range(5)]
    # When the tracker flushes
    assert tracker.flush(10)
    # Then the batch was sent three times and stored once
    posts = api.posts()
    assert len(posts) == 3 and sorted(api.stored_ids()) == sorted(ids)
    assert tracker.stats().retried == 2 and tracker.stats().sent == 5
    assert [p.kind for p in problems] == ["retry", "retry"]
    if retry_after:
        # and each retry waited at least the Retry-After the server asked for
        gaps = [b.at - a.at for a, b in zip(posts, posts[1:])]
        assert all(gap >= retry_after for gap in gaps)


def test_a_batch_stored_whose_answer_was_lost_is_acknowledged_as_duplicates(api, make_tracker):
    api.script("apply_then_drop")
    tracker = make_tracker()
    ids = [tracker.track("acme", "query") for _ in range(3)]
    assert tracker.flush(10)
    assert sorted(api.stored_ids()) == sorted(ids)
    assert all(api.received[i] == 2 for i in ids)
    stats = tracker.stats()
    assert (stats.sent, stats.duplicates, stats.retried, stats.rejected) == (3, 3, 1, 0)


def test_connection_refused_keeps_events_until_the_server_starts(api, make_tracker):
    # Given the server is not listening
    api.stop()
    tracker = make_tracker()
    ids = [tracker.track("acme", "query") for _ in range(20)]
    # When the tracker has failed a few times and the server comes up on the same port
    wait_until(lambda: tracker.stats().retried >= 2, what="retries against a closed port")
    assert api.stored == {}
    api.start()
    # Then everything is delivered
    assert tracker.flush(10)
    assert sorted(api.stored_ids()) == sorted(ids)


def test_a_400_naming_events_refuses_those_and_resends_the_rest(api, make_tracker, problems):
    # Given a batch of 10 where event 3 names a model the price book does not know
    api.pause()
    tracker = make_tracker()
    ids = [
        tracker.track("acme", model="gpt-4o-mini" if n != 3 else "gpt-9", input_tokens=5) for n in range(10)
    ]
    api.resume()
    result = tracker.flush(10)
    # Then the flush does not read as success: 9 delivered, 1 refused
    assert not result and (result.complete, result.delivered, result.refused) == (True, 9, 1)
    # and the other 9 are stored, the bad one is refused once (never retried) and reported
    assert sorted(api.stored_ids()) == sorted(ids[:3] + ids[4:])
    assert api.received[ids[3]] == 1
    [rejected] = [p for p in problems if p.kind == "rejected"]
    assert rejected.status == 400 and [e["event_id"] for e in rejected.events] == [ids[3]]
    assert "model" in rejected.events[0]["_reason"]
    stats = tracker.stats()
    assert (stats.sent, stats.rejected, stats.queued, stats.retried) == (9, 1, 0, 0)


def test_a_404_for_an_unknown_tenant_holds_its_events_and_delivers_them_once_it_exists(
    api, make_tracker, problems
):
    # Given ghost is not a tenant yet (the app tracked before the SaaS created it)
    api.tenants = {"acme"}
    api.pause()
    tracker = make_tracker(unknown_tenant_retention=30)
    good = [tracker.track("acme") for _ in range(4)]
    bad = [tracker.track("ghost") for _ in range(2)]
    api.resume()
    # When the tracker flushes
    result = tracker.flush(10)
    # Then acme's events are stored, ghost's are held (not refused, not reported as success)
    assert sorted(api.stored_ids()) == sorted(good)
    assert not result and (result.delivered, result.refused, result.held) == (4, 0, 2)
    assert tracker.stats().held == 2 and tracker.stats().rejected == 0
    assert "rejected" not in {p.kind for p in problems}
    held = [e["event_id"] for p in problems if p.kind == "held" for e in p.events]
    assert set(held) == set(bad)
    # When the tenant is created, the held events are delivered on a retry
    api.tenants.add("ghost")
    wait_until(lambda: len(api.stored) == 6, what="held events delivered")
    assert tracker.flush(10)
    stats = tracker.stats()
    assert (stats.sent, stats.rejected, stats.held, stats.queued, stats.spooled) == (6, 0, 0, 0, 6)


def test_a_404_for_an_unknown_tenant_refuses_its_events_after_the_retention(api, make_tracker, problems):
    # Given ghost never becomes a tenant and events are held for 0.3 s
    api.tenants = {"acme"}
    tracker = make_tracker(unknown_tenant_retention=0.3)
    ok = tracker.track("acme")
    bad = [tracker.track("ghost") for _ in range(2)]
    # When the retention has passed
    wait_until(lambda: tracker.stats().rejected == 2, what="held events refused")
    # Then they are refused as final, counted and reported, and flush() says so
    result = tracker.flush(10)
    assert not result and (result.delivered, result.refused, result.held) == (1, 2, 0)
    assert api.stored_ids() == [ok]
    refused = [e["event_id"] for p in problems if p.kind == "rejected" for e in p.events]
    assert sorted(refused) == sorted(bad)
    assert {p.reason for p in problems if p.kind == "rejected"} == {"unknown_tenant"}
    assert tracker.stats().queued == 0 and tracker.close()


def test_a_suspended_tenant_402_refuses_its_events(api, make_tracker):
    api.suspended = {"late-payer"}
    tracker = make_tracker()
    tracker.track("late-payer")
    ok = tracker.track("acme")
    result = tracker.flush(10)
    assert not result and (result.delivered, result.refused) == (1, 1)
    assert api.stored_ids() == [ok] and tracker.stats().rejected == 1


def test_quota_refusals_are_final_in_a_202_and_in_a_429(api, make_tracker, problems):
    # Given acme may make 3 queries
    api.quotas["acme"] = 3
    api.pause()
    tracker = make_tracker()
    first = [tracker.track("acme") for _ in range(5)]
    api.resume()
    result = tracker.flush(10)
    # Then 3 are stored and 2 refused inside the 202, and the flush does not read as success
    assert not result and (result.complete, result.delivered, result.refused) == (True, 3, 2)
    assert sorted(api.stored_ids()) == sorted(first[:3])
    # When two more arrive alone, the server answers 429 (with a Retry-After of weeks)
    later = [tracker.track("acme") for _ in range(2)]
    assert tracker.flush(10).refused == 2
    assert [r.status for r in api.posts()] == [202, 429]
    # Then they are refused too, never retried, and reported with reason "quota"
    assert all(api.received[i] == 1 for i in later)
    stats = tracker.stats()
    assert (stats.sent, stats.rejected, stats.retried) == (3, 4, 0)
    assert {p.reason for p in problems if p.kind == "rejected"} == {"quota"}


def test_a_429_quota_answer_acknowledges_its_duplicates_and_resends_nothing_else(api, make_tracker):
    api.quotas["acme"] = 1
    tracker = make_tracker()
    first = tracker.track("acme", event_id="q-1")
    assert tracker.flush(5)
    api.pause()
    tracker.track("acme", event_id="q-1")
    over = tracker.track("acme", event_id="q-2")
    api.resume()
    result = tracker.flush(5)
    assert not result and (result.delivered, result.refused) == (1, 1)
    assert api.stored_ids() == [first] and api.received[over] == 1
    stats = tracker.stats()
    assert (stats.sent, stats.duplicates, stats.rejected) == (2, 1, 1)


def test_a_wrong_key_keeps_events_and_retries_until_the_key_works(api, make_tracker, problems):
    # Given a tracker whose key the API does not accept
    tracker = make_tracker(api_key="wrong-key")
    ids = [tracker.track("acme") for _ in range(3)]
    wait_until(lambda: tracker.stats().retried >= 2, what="auth retries")
    # Then nothing is dropped: the events wait and each failure is reported as "auth"
    assert tracker.stats().rejected == 0 and {p.kind for p in problems} == {"auth"}
    # When the key becomes valid (rotated on the API side), they go through
    api.api_key = "wrong-key"
    assert tracker.flush(10)
    assert sorted(api.stored_ids()) == sorted(ids)


def test_a_413_splits_the_batch_until_it_fits(api, make_tracker):
    api.script(413, times=2)
    api.pause()
    tracker = make_tracker()
    ids = [tracker.track("acme") for _ in range(8)]
    api.resume()
    assert tracker.flush(10)
    assert sorted(api.stored_ids()) == sorted(ids)
    assert [r.events for r in api.posts()] == [0, 0, 2, 2, 4]


def test_an_unattributed_400_is_bisected_down_to_the_single_event(api, make_tracker, problems):
    # Given the server refuses the batch and then its first half without naming an event
    body = {
        "error": "invalid_request",
        "message": "request body is not valid JSON",
        "details": [{"index": None, "field": "body", "reason": "bad"}],
    }
    api.script(400, times=1, body=body)
    api.pause()
    tracker = make_tracker()
    ids = [tracker.track("acme") for _ in range(2)]
    api.script(400, times=1, body=body)
    api.resume()
    assert tracker.flush(10).refused == 1
    # Then the second half is stored and the first event, refused on its own, is final
    assert api.stored_ids() == [ids[1]]
    assert [e["event_id"] for p in problems if p.kind == "rejected" for e in p.events] == [ids[0]]


def test_an_unexpected_error_in_the_sender_is_reported_and_the_batch_sent_again(api, make_tracker, problems):
    # Given the sender hits a bug once while posting a batch
    tracker = make_tracker()
    real_post = tracker._transport.post_events
    calls = []

    def flaky(body, timeout=None):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("unexpected")
        return real_post(body, timeout)

    tracker._transport.post_events = flaky
    ids = [tracker.track("acme") for _ in range(5)]
    # Then it is reported, the thread carries on, and the batch is read again from the spool
    assert tracker.flush(10)
    assert sorted(api.stored_ids()) == sorted(ids)
    assert [p.kind for p in problems] == ["internal"]
    assert tracker.stats().sent == 5 and tracker.stats().queued == 0


def test_a_404_naming_nothing_is_a_wrong_endpoint_and_keeps_the_events(api, make_tracker, problems):
    # Given a proxy in front of the API answers 404 (no details) for a while
    api.script(404, times=2, body={"message": "Not Found"})
    tracker = make_tracker()
    ids = [tracker.track("acme") for _ in range(3)]
    # Then nothing is refused: the events wait, each failure is reported as "config"
    assert tracker.flush(10)
    assert sorted(api.stored_ids()) == sorted(ids)
    assert [p.kind for p in problems] == ["config", "config"] and tracker.stats().rejected == 0
