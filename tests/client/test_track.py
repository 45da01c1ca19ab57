"""track(): returns at once with a client-side UUIDv7, validates at the call, never raises otherwise."""

from __future__ import annotations

import json
import re
import threading
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from tests.client.conftest import wait_until
from usage_tracker import Tracker

RFC3339_MS_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def segment_lines(spool: Path) -> list[str]:
    """The lines of every segment (the active one is preallocated: its file ends in NUL bytes)."""
    return [
        line
        for path in sorted(spool.glob("p-*/*.jsonl"))
        for line in path.read_bytes().rstrip(b"\0").decode().splitlines()
    ]


def spool_lines(spool: Path) -> list[dict]:
    return [json.loads(line) for line in segment_lines(spool)]


def test_track_returns_time_ordered_uuid7_ids_while_the_server_hangs(api, make_tracker, tmp_path):
    # Given a server that accepts connections but never answers
    api.pause()
    tracker = make_tracker()
    try:
        # When the app tracks 2,000 events from one thread
        ids = [tracker.track("acme", "query", "gpt-4o-mini", 10, 2) for _ in range(2000)]
        # Then every call returned an RFC 9562 version-7 id, strictly increasing, all distinct,
        assert all(uuid.UUID(i).version == 7 for i in ids)
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        # and every event is already in the spool, though nothing was acknowledged
        assert [line["event_id"] for line in spool_lines(tmp_path / "spool")] == ids
        stats = tracker.stats()
        assert (stats.spooled, stats.sent, stats.queued) == (2000, 0, 2000)
    finally:
        api.resume()
    assert tracker.flush(10)
    assert set(api.stored_ids()) == set(ids)


def test_event_is_written_in_the_wire_format_with_the_timestamp_of_the_call(make_tracker, tmp_path):
    tracker = make_tracker()
    before = datetime.now(UTC)
    event_id = tracker.track(
        tenant_id="acme", type="query", model="gpt-4o-mini", input_tokens=1200, output_tokens=300
    )
    after = datetime.now(UTC)
    [line] = spool_lines(tmp_path / "spool")
    assert line == {
        "event_id": event_id,
        "tenant_id": "acme",
        "timestamp": line["timestamp"],
        "type": "query",
        "model": "gpt-4o-mini",
        "input_tokens": 1200,
        "output_tokens": 300,
        "bytes": 0,
    }
    assert RFC3339_MS_UTC.fullmatch(line["timestamp"])
    stamp = datetime.strptime(line["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert before - timedelta(milliseconds=1) <= stamp <= after


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(tenant_id="acme corp"), "tenant_id"),
        (dict(tenant_id=""), "tenant_id"),
        (dict(tenant_id="a" * 129), "tenant_id"),
        (dict(tenant_id="acme", type="Queries"), "type"),
        (dict(tenant_id="acme", type="gpu-job"), "type"),
        (dict(tenant_id="acme", type=""), "type"),
        (dict(tenant_id="acme", type=["query"]), "type"),
        (dict(tenant_id="acme", type="g" * 65), "type"),
        (
            dict(tenant_id="acme", type="gpu_job", model="m"),
            "gpu_job events carry their measures in properties",
        ),
        (
            dict(tenant_id="acme", type="gpu_job", bytes=5),
            "gpu_job events carry their measures in properties",
        ),
        (dict(tenant_id="acme", input_tokens=-1, model="m"), "input_tokens"),
        (dict(tenant_id="acme", output_tokens=True, model="m"), "output_tokens"),
        (dict(tenant_id="acme", output_tokens=1.5, model="m"), "output_tokens"),
        (dict(tenant_id="acme", bytes="10"), "bytes"),
        (dict(tenant_id="acme", input_tokens=10), "model is required"),
        (dict(tenant_id="acme", type="storage", model="m", input_tokens=1), "storage"),
        (dict(tenant_id="acme", type="embedding", model="m", input_tokens=1, bytes=5), "embedding"),
        (dict(tenant_id="acme", model=""), "model"),
        (dict(tenant_id="acme", event_id="id with spaces"), "event_id"),
        (dict(tenant_id="acme", timestamp=datetime(2025, 11, 3, 12, 0)), "timezone-aware"),
        (dict(tenant_id="acme", properties=[("region", "eu")]), "mapping"),
        (dict(tenant_id="acme", properties={"Region": "eu"}), "property names"),
        (dict(tenant_id="acme", properties={"a" * 65: 1}), "property names"),
        (dict(tenant_id="acme", properties={f"p{i}": i for i in range(33)}), "at most 32 properties"),
        (dict(tenant_id="acme", properties={"note": "x" * 257}), "'note' holds at most 256"),
        (dict(tenant_id="acme", properties={"note": "\ud800"}), "'note' is not valid Unicode"),
        (dict(tenant_id="acme", properties={"on": True}), "'on' must be a str, int, Decimal or float"),
        (dict(tenant_id="acme", properties={"n": None}), "'n' must be a str"),
        (dict(tenant_id="acme", properties={"n": 10**20}), "'n' must be below 10"),
        (dict(tenant_id="acme", properties={"n": Decimal("-1E+20")}), "'n' must be below 10"),
        (dict(tenant_id="acme", properties={"n": Decimal("0.0000000000000000001")}), "more than 18 digits"),
        (dict(tenant_id="acme", properties={"n": float("nan")}), "'n' must be a finite number"),
        (dict(tenant_id="acme", properties={"n": Decimal("Infinity")}), "'n' must be a finite number"),
    ],
)
def test_a_bad_argument_is_a_value_error_at_the_call_and_nothing_is_spooled(make_tracker, kwargs, field):
    tracker = make_tracker()
    with pytest.raises(ValueError, match=field):
        tracker.track(**kwargs)
    assert tracker.stats().spooled == 0


def test_properties_are_spooled_and_sent_exactly_as_given(api, make_tracker, tmp_path):
    # Given text, ints, exact decimals (38 digits among them) and a float
    properties = {
        "region": "eu-west",
        "note": 'line\nbreak "quoted" é😀',
        "images": 3,
        "seconds": Decimal("12345678901234567890.123456789012345678"),
        "tiny": Decimal("1E-18"),
        "ratio": 0.1,
    }
    tracker = make_tracker()
    # When an event is tracked with them
    event_id = tracker.track("acme", "query", properties=properties)
    # Then the spooled line carries them as exact JSON numbers and text
    [raw] = segment_lines(tmp_path / "spool")
    assert json.loads(raw, parse_float=Decimal)["properties"] == {**properties, "ratio": Decimal("0.1")}
    assert '"seconds":12345678901234567890.123456789012345678' in raw and '"ratio":0.1' in raw
    # And the server receives them unchanged
    assert tracker.flush(10)
    assert api.stored[("acme", event_id)]["properties"] == {**properties, "ratio": Decimal("0.1")}
    # And an event without properties is written as before (no properties key)
    tracker.track("acme", "query", properties={})
    tracker.track("acme", "query")
    assert tracker.flush(10)
    assert [e for e in api.stored.values() if "properties" not in e].__len__() == 2


def test_a_declared_usage_type_is_tracked_with_its_properties(make_tracker, api, problems):
    # Given a server whose catalog declares gpu_job (the tracker cannot know it: any well-shaped name goes)
    api.usage_types.add("gpu_job")
    tracker = make_tracker()
    # When a GPU job and a type the server does not know are tracked
    job = tracker.track("acme", type="gpu_job", properties={"gpu_seconds": Decimal("12.5"), "gpu": "h100"})
    unknown = tracker.track("acme", type="video", properties={"seconds": 3})
    # Then the job is stored as sent, and the server refuses the other, naming its type
    assert not tracker.flush(10)
    stored = api.stored[("acme", job)]
    assert (stored["type"], stored["properties"]) == (
        "gpu_job",
        {"gpu_seconds": Decimal("12.5"), "gpu": "h100"},
    )
    assert "model" not in stored and stored["input_tokens"] == stored["bytes"] == 0
    [rejected] = [p for p in problems if p.kind == "rejected"]
    assert [e["event_id"] for e in rejected.events] == [unknown]
    assert "unknown usage type 'video'" in rejected.events[0]["_reason"]


def test_explicit_event_id_and_timestamp_make_a_retried_call_a_duplicate(api, make_tracker):
    # Given the app retries its own work and tracks it twice under one event id
    tracker = make_tracker()
    at = datetime(2025, 11, 3, 13, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    tracker.track("acme", model="gpt-4o-mini", input_tokens=5, event_id="req-42", timestamp=at)
    assert tracker.flush(5)
    tracker.track("acme", model="gpt-4o-mini", input_tokens=5, event_id="req-42", timestamp=at)
    assert tracker.flush(5)
    # Then the server has it once, timestamp in UTC with milliseconds, the second was a duplicate
    assert api.stored == {("acme", "req-42"): api.stored[("acme", "req-42")]}
    assert api.stored[("acme", "req-42")]["timestamp"] == "2025-11-03T12:00:00.123Z"
    stats = tracker.stats()
    assert (stats.sent, stats.duplicates) == (2, 1)


def test_a_full_spool_drops_new_events_reports_them_and_never_raises(api, make_tracker, problems):
    # Given the server is down and the spool may hold about 20 events
    api.stop()
    tracker = make_tracker(max_spool_bytes=4000)
    # When the app tracks 50
    ids = [tracker.track("acme", "query") for _ in range(50)]
    # Then the first ones are kept, the rest are counted and reported as dropped; no call raised
    stats = tracker.stats()
    assert stats.spooled + stats.dropped == 50 and 10 < stats.spooled < 30
    assert stats.spool_bytes <= 4000
    dropped = [p for p in problems if p.kind == "dropped"]
    assert len(dropped) == stats.dropped and all(p.reason == "spool_full" for p in dropped)
    kept = ids[: stats.spooled]
    # And once the server is back, the kept ones are delivered
    api.start()
    assert tracker.flush(10)
    assert sorted(api.stored_ids()) == sorted(kept)


def test_an_error_callback_that_raises_does_not_reach_the_caller(api, make_tracker):
    def callback(problem):
        raise RuntimeError("bug in the app's callback")

    api.stop()
    tracker = make_tracker(max_spool_bytes=300, on_error=callback)
    for _ in range(5):
        tracker.track("acme")
    assert tracker.stats().dropped >= 3


def test_track_after_close_is_counted_as_dropped(make_tracker, problems):
    tracker = make_tracker()
    tracker.close()
    tracker.track("acme")
    assert tracker.stats().dropped == 1
    assert problems[-1].kind == "dropped" and problems[-1].reason == "closed"


def test_many_threads_tracking_at_once_lose_nothing(api, make_tracker):
    tracker = make_tracker()
    ids: list[list[str]] = [[] for _ in range(8)]

    def work(n: int) -> None:
        for _ in range(500):
            ids[n].append(tracker.track(f"tenant-{n}", "query"))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tracker.flush(20)
    everything = [i for chunk in ids for i in chunk]
    assert len(set(everything)) == 4000
    assert sorted(api.stored_ids()) == sorted(everything)
    assert all(chunk == sorted(chunk) for chunk in ids)


def test_close_at_the_end_leaves_an_empty_spool(api, make_tracker, tmp_path):
    tracker = make_tracker()
    for _ in range(10):
        tracker.track("acme")
    assert tracker.close(timeout=5) is True
    assert len(api.stored) == 10
    assert list((tmp_path / "spool").iterdir()) == []


def test_events_are_sent_by_age_without_flush(api, make_tracker):
    tracker = make_tracker(flush_interval=0.2)
    event_id = tracker.track("acme")
    wait_until(lambda: api.stored_ids() == [event_id], what="the event sent by age")


def test_bad_settings_are_value_errors(api, tmp_path):
    with pytest.raises(ValueError, match="durability"):
        Tracker(api.url, "k", tmp_path, durability="sometimes")
    with pytest.raises(ValueError, match="max_batch_events"):
        Tracker(api.url, "k", tmp_path, max_batch_events=1001)
    with pytest.raises(ValueError, match="endpoint"):
        Tracker("ftp://x", "k", tmp_path)


def test_a_disk_error_in_track_is_reported_as_dropped_and_never_raised(make_tracker, problems):
    # Given the spool file cannot be written any more (here: its descriptor is gone, and with it
    # the preallocated mapping, which a full disk cannot fail)
    tracker = make_tracker()
    fd, mapped = tracker._spool.active.write_fd, tracker._spool.active.mapped
    tracker._spool.active.write_fd, tracker._spool.active.mapped = 10_000, None
    try:
        # When the app tracks, the call returns normally and the loss is reported
        tracker.track("acme")
        assert tracker.stats().dropped == 1
        assert problems[-1].kind == "dropped" and problems[-1].reason == "disk"
    finally:
        tracker._spool.active.write_fd, tracker._spool.active.mapped = fd, mapped
