"""tracker.query(): the quota is checked before the work, the query tracked after it."""

from __future__ import annotations

import logging
import threading
from decimal import Decimal

import pytest

from usage_tracker import QuotaExceeded, QuotaUnavailable, TenantSuspended


def test_a_query_within_quota_runs_and_is_tracked_with_its_tokens(api, make_tracker):
    api.quotas["acme"] = 10
    tracker = make_tracker()
    with tracker.query("acme", model="gpt-4o-mini") as q:
        assert q.quota is not None and (q.quota.limit, q.quota.used, q.quota.remaining) == (10, 0, 10)
        q.record(input_tokens=1200, output_tokens=300)
    assert tracker.flush(5)
    stored = api.stored[("acme", q.event_id)]
    assert (stored["type"], stored["model"], stored["input_tokens"], stored["output_tokens"]) == (
        "query",
        "gpt-4o-mini",
        1200,
        300,
    )


def test_an_exhausted_quota_raises_before_the_work_and_tracks_nothing(api, make_tracker):
    # Given acme has used its 2 queries
    api.quotas["acme"] = 2
    tracker = make_tracker()
    for _ in range(2):
        tracker.track("acme")
    assert tracker.flush(5)
    work_done = []
    # When the app gates a third query
    with pytest.raises(QuotaExceeded) as refused:
        with tracker.query("acme", model="gpt-4o-mini"):
            work_done.append(True)  # the paid call that must not happen
    # Then the work never ran, the quota says why, and nothing more was tracked
    assert work_done == []
    assert (refused.value.quota.limit, refused.value.quota.remaining) == (2, 0)
    assert refused.value.quota.resets_at.endswith("T00:00:00Z")
    assert tracker.stats().spooled == 2


def test_a_suspended_tenant_is_refused_before_the_work(api, make_tracker):
    api.suspended = {"acme"}
    tracker = make_tracker()
    with pytest.raises(TenantSuspended):
        with tracker.query("acme"):
            pytest.fail("the work ran")


def test_an_unlimited_plan_always_passes(api, make_tracker):
    tracker = make_tracker()
    with tracker.query("acme") as q:
        assert q.quota is not None and q.quota.limit is None and not q.quota.exhausted
    assert tracker.flush(5) and len(api.stored) == 1


@pytest.mark.parametrize("outage", ["server_down", "no_quota_route"])
def test_an_unreadable_quota_fails_open_by_default_and_is_reported(api, make_tracker, problems, outage):
    tracker = make_tracker()
    if outage == "server_down":
        api.stop()
    else:
        api.tenants = set()  # the quota route answers 404
    with tracker.query("acme") as q:
        assert q.quota is None
    assert [p.kind for p in problems][:1] == ["quota_check"]
    assert tracker.stats().spooled == 1


def test_an_outage_logs_one_warning_then_one_summary_not_one_line_per_request(
    api, make_tracker, problems, caplog
):
    # Given the quota route cannot be read
    tracker = make_tracker(quota_timeout=0.5)
    api.stop()
    caplog.set_level(logging.WARNING, logger="usage_tracker")
    # When five gated requests run during the outage
    for _ in range(5):
        with tracker.query("acme") as q:
            assert q.quota is None
    # Then the app's log has one warning about it, while on_error still hears of every failure
    failed = [r for r in caplog.records if "quota check failed" in r.getMessage()]
    assert len(failed) == 1
    assert [p.kind for p in problems].count("quota_check") == 5
    # When the API is back, one line sums the outage up, and the next outage logs again
    api.start()
    with tracker.query("acme") as q:
        assert q.quota is not None
    summaries = [r for r in caplog.records if "failed during the outage" in r.getMessage()]
    assert len(summaries) == 1 and "5 quota check(s) failed" in summaries[0].getMessage()
    with tracker.query("acme"):
        pass
    assert len([r for r in caplog.records if "failed during the outage" in r.getMessage()]) == 1


def test_fail_closed_raises_quota_unavailable(api, make_tracker):
    api.stop()
    tracker = make_tracker(fail_open=False, quota_timeout=0.5)
    with pytest.raises(QuotaUnavailable):
        with tracker.query("acme"):
            pytest.fail("the work ran")


def test_a_block_that_fails_before_recording_tracks_nothing_after_recording_tracks(make_tracker):
    tracker = make_tracker()
    with pytest.raises(RuntimeError):
        with tracker.query("acme", model="gpt-4o-mini"):
            raise RuntimeError("the provider timed out")
    assert tracker.stats().spooled == 0
    with pytest.raises(RuntimeError):
        with tracker.query("acme", model="gpt-4o-mini") as q:
            q.record(input_tokens=10)
            raise RuntimeError("the stream broke after 10 tokens")
    assert tracker.stats().spooled == 1
    with tracker.query("acme") as q:
        q.cancel()
    assert tracker.stats().spooled == 1


def test_record_adds_up_and_checks_its_arguments_at_the_call(api, make_tracker):
    tracker = make_tracker()
    with tracker.query("acme") as q:
        with pytest.raises(ValueError, match="model is required"):
            q.record(input_tokens=5)
        q.record(input_tokens=5, model="gpt-4o-mini")
        q.record(output_tokens=7)
        with pytest.raises(ValueError, match="output_tokens"):
            q.record(output_tokens=-1)
    assert tracker.flush(5)
    stored = api.stored[("acme", q.event_id)]
    assert (stored["input_tokens"], stored["output_tokens"]) == (5, 7)
    with pytest.raises(ValueError, match="tenant_id"):
        tracker.query("not a tenant")


def test_concurrent_gates_in_one_process_count_each_other_so_none_overshoots(api, make_tracker):
    # Given acme has exactly one query left
    api.quotas["acme"] = 1
    tracker = make_tracker()
    all_checked = threading.Barrier(5)
    passed, refused = [], []

    def request() -> None:
        try:
            with tracker.query("acme") as q:
                passed.append(q.event_id)
                all_checked.wait(timeout=5)
        except QuotaExceeded:
            refused.append(True)
            all_checked.wait(timeout=5)

    # When five requests of this process reach the gate while none has finished its work
    threads = [threading.Thread(target=request) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then one runs: the others see its reservation (held until the server counted its event)
    assert len(passed) == 1 and len(refused) == 4
    assert tracker.flush(5)
    assert api.stored_ids() == passed and tracker.stats().rejected == 0


def test_a_reservation_ends_when_the_server_counted_the_query(api, make_tracker):
    api.quotas["acme"] = 2
    tracker = make_tracker()
    with tracker.query("acme"):
        pass
    assert tracker.flush(5)
    with tracker.query("acme") as q:  # server: 1 used, 1 left; nothing held here any more
        assert q.quota.remaining == 1
    with pytest.raises(QuotaExceeded):  # the second one is held here until it is acknowledged
        with tracker.query("acme"):
            pass
    assert tracker.flush(5)
    with pytest.raises(QuotaExceeded):
        with tracker.query("acme"):
            pass
    assert len(api.stored) == 2


def test_the_documented_race_across_processes_overshoots_the_gate_but_ingest_is_exact(api, make_tracker):
    # Given acme has one query left and three app processes (three trackers) serve it
    api.quotas["acme"] = 1
    trackers = [make_tracker() for _ in range(3)]
    # When each checks the gate before any of them has sent its event (check, then work, then event)
    scopes = [t.query("acme") for t in trackers]
    for scope in scopes:
        scope.__enter__()
    for scope in scopes:
        scope.__exit__(None, None, None)
    # Then all three did the work (overshoot = the number in flight), but ingest stored exactly one
    results = [t.flush(5) for t in trackers]
    assert all(r.complete for r in results) and sum(r.refused for r in results) == 2
    assert len(api.stored) == 1
    assert sum(t.stats().rejected for t in trackers) == 2
    # and every process is refused before the work from now on
    for tracker in trackers:
        with pytest.raises(QuotaExceeded):
            with tracker.query("acme"):
                pass


def test_a_gated_embedding_neither_holds_nor_needs_a_query_of_the_quota(api, make_tracker):
    api.quotas["acme"] = 1
    tracker = make_tracker()
    with tracker.query("acme", model="text-embedding-3-small", type="embedding") as q:
        q.record(input_tokens=100)
    with tracker.query("acme"):  # the one query left is still there
        pass
    assert tracker.flush(5)
    with tracker.query("acme", model="text-embedding-3-small", type="embedding") as q:  # quota used up
        q.record(input_tokens=100)
    assert tracker.flush(5)
    assert sorted(e["type"] for e in api.stored.values()) == ["embedding", "embedding", "query"]


def test_a_gated_query_carries_its_properties_merged_by_record(api, make_tracker):
    # Given a gated query opened with properties, to which record() adds and overrides some
    tracker = make_tracker()
    with pytest.raises(ValueError, match="property names"):
        tracker.query("acme", properties={"Bad": 1})
    with tracker.query("acme", model="gpt-4o-mini", properties={"region": "eu", "images": 1}) as q:
        q.record(input_tokens=5, properties={"images": 2, "seconds": Decimal("0.25")})
        with pytest.raises(ValueError, match="'n' must be a finite number"):
            q.record(properties={"n": float("inf")})
    # When it is tracked, Then the server receives the merged properties, exactly
    assert tracker.flush(5)
    stored = api.stored[("acme", q.event_id)]
    assert stored["properties"] == {"region": "eu", "images": 2, "seconds": Decimal("0.25")}
    assert stored["input_tokens"] == 5
