"""The spool: SIGKILL mid-send loses nothing track() returned for, replay on start, several processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.client.conftest import wait_until
from usage_tracker import Tracker

APP = Path(__file__).with_name("app.py")
ROOT = Path(__file__).resolve().parents[2]


def run_app(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(APP), *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_two_apps_killed_mid_send_and_a_restart_deliver_every_event_exactly_once(api, tmp_path):
    # Given a slow API (each request takes 150 ms) and two app processes sharing one spool root
    api.delay = 0.15
    spool = tmp_path / "spool"
    id_files = [tmp_path / "ids-1.txt", tmp_path / "ids-2.txt"]
    apps = [run_app("track", api.url, api.api_key, str(spool), str(f)) for f in id_files]
    try:
        # When both have had batches acknowledged and a request is in flight, they get SIGKILL
        wait_until(
            lambda: len([r for r in api.posts() if r.status == 202]) >= 4 and api.in_flight > 0,
            timeout=30,
            what="acknowledged batches and one in flight",
        )
        for app in apps:
            os.kill(app.pid, signal.SIGKILL)
    finally:
        for app in apps:
            app.kill()
            app.wait()
    tracked = [line for f in id_files for line in f.read_text().splitlines()]
    wait_until(lambda: api.in_flight == 0, what="the server to finish the orphaned request")
    assert len(tracked) > len(api.stored), "some tracked events were still unsent at the kill"
    assert len(list(spool.glob("p-*"))) == 2
    # Then a restarted app on the same spool replays both dead processes' spools
    api.delay = 0.0
    drain = run_app("drain", api.url, api.api_key, str(spool))
    out, err = drain.communicate(timeout=60)
    assert drain.returncode == 0, err
    stats = json.loads(out)
    # and every event whose track() returned is stored, once, under the id track() returned;
    # at most one more per app: written to the spool, killed before its id reached the ids file
    stored = api.stored_ids()
    assert len(stored) == len(set(stored))
    assert set(tracked) <= set(stored)
    assert len(set(stored) - set(tracked)) <= 2
    # and the batch in flight at the kill was sent again and acknowledged as duplicates
    assert stats["replayed"] > 0 and stats["duplicates"] > 0 and stats["rejected"] == 0
    assert max(api.received.values()) == 2
    # and nothing is left in the spool
    assert list(spool.iterdir()) == []


def test_a_spool_left_by_a_closed_tracker_is_replayed_by_the_next_one(api, make_tracker, tmp_path):
    # Given a tracker that closed while the API was down
    api.stop()
    first = make_tracker()
    ids = [first.track("acme") for _ in range(50)]
    assert first.close(timeout=0.2) is False
    [left] = list((tmp_path / "spool").glob("p-*"))
    # When the API is back and the app starts again on the same spool
    api.start()
    second = make_tracker()
    assert second.flush(10)
    # Then the events are delivered once and the old directory is gone
    assert sorted(api.stored_ids()) == sorted(ids)
    assert second.stats().replayed == 50 and not left.exists()


def test_replay_resumes_after_the_acknowledged_prefix(api, make_tracker, tmp_path):
    # Given a tracker that had 1,000 of its events acknowledged before the API went down
    first = make_tracker()
    for _ in range(1000):
        first.track("acme")
    assert first.flush(10)
    api.stop()
    rest = [first.track("acme") for _ in range(30)]
    first.close(timeout=0.2)
    # When the next tracker replays, it starts at the ack cursor: no acknowledged event is resent
    api.start()
    second = make_tracker()
    assert second.flush(10)
    assert second.stats().replayed == 30 and second.stats().duplicates == 0
    assert set(rest) <= set(api.stored_ids()) and len(api.stored) == 1030


def test_live_trackers_never_take_each_others_spool(api, make_tracker, tmp_path):
    # Given two live trackers on one spool root while the API is down
    api.stop()
    a, b = make_tracker(adopt_interval=0.05), make_tracker(adopt_interval=0.05)
    ids_a = [a.track("acme") for _ in range(5)]
    ids_b = [b.track("beta") for _ in range(5)]
    wait_until(lambda: a.stats().retried >= 3 and b.stats().retried >= 3, what="a few rescans")
    # Then each still holds only its own events
    assert a.stats().replayed == b.stats().replayed == 0
    api.start()
    assert a.flush(10) and b.flush(10)
    assert (a.stats().sent, b.stats().sent) == (5, 5)
    assert sorted(api.stored_ids()) == sorted(ids_a + ids_b)


@pytest.mark.parametrize("tail", [b"", b"\0" * 70_000], ids=["appended", "preallocated"])
def test_a_torn_last_line_of_a_killed_process_is_skipped_and_reported(
    api, make_tracker, problems, tmp_path, tail
):
    # Given a dead process's spool whose last line was cut by the kill (its active segment written
    # through a preallocated mapping ends in NUL bytes after it)
    spool = tmp_path / "spool"
    dead = spool / "p-999999-deadbeef"
    dead.mkdir(parents=True)
    lines = [
        json.dumps(
            {
                "event_id": f"e-{n}",
                "tenant_id": "acme",
                "timestamp": "2025-11-03T12:00:00.000Z",
                "type": "query",
                "input_tokens": 0,
                "output_tokens": 0,
                "bytes": 0,
            }
        )
        for n in range(3)
    ]
    (dead / "000000000001.jsonl").write_bytes(("\n".join(lines) + "\n" + lines[0][:20]).encode() + tail)
    # When a tracker starts on that spool
    tracker = make_tracker()
    assert tracker.flush(10)
    # Then the complete lines are delivered and the torn one is counted as dropped
    assert sorted(api.stored_ids()) == ["e-0", "e-1", "e-2"]
    assert tracker.stats().dropped == 1 and any(p.reason == "torn" for p in problems)
    assert not dead.exists()


def test_buffered_mode_delivers_and_close_writes_what_is_in_memory(api, make_tracker, tmp_path):
    api.stop()
    first = make_tracker(durability="buffered")
    ids = [first.track("acme") for _ in range(100)]
    first.close(timeout=0.1)
    api.start()
    second = make_tracker()
    assert second.flush(10)
    assert sorted(api.stored_ids()) == sorted(ids)


def test_event_mode_fsyncs_each_call_and_delivers(api, make_tracker):
    tracker = make_tracker(durability="event")
    ids = [tracker.track("acme") for _ in range(20)]
    assert tracker.flush(10)
    assert sorted(api.stored_ids()) == sorted(ids)


def test_segments_rotate_and_are_deleted_once_acknowledged(api, make_tracker, tmp_path):
    # Given small segments (about 10 events each) and an API that is down
    api.stop()
    tracker = make_tracker(segment_bytes=2000)
    for _ in range(100):
        tracker.track("acme")
    wait_until(lambda: tracker.stats().retried >= 2, what="retries")
    own = next((tmp_path / "spool").glob("p-*"))
    wait_until(lambda: len(list(own.glob("*.jsonl"))) >= 2, what="rotation")
    # When the API is back
    api.start()
    assert tracker.flush(10)
    # Then only the active segment remains
    assert len(list(own.glob("*.jsonl"))) == 1 and len(api.stored) == 100


def test_a_forked_child_gets_its_own_spool_and_sender(api, make_tracker, tmp_path):
    tracker = make_tracker()
    parent_id = tracker.track("acme")
    pid = os.fork()
    if pid == 0:  # the child: track, flush, leave without running the parent's atexit handlers
        try:
            child_id = tracker.track("acme")
            ok = bool(tracker.flush(10))
            (tmp_path / "child.txt").write_text(f"{child_id} {ok}")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    child_id, ok = (tmp_path / "child.txt").read_text().split()
    assert ok == "True"
    assert tracker.flush(10)
    assert sorted(api.stored_ids()) == sorted([parent_id, child_id])
    assert isinstance(tracker, Tracker)


def test_close_while_the_server_hangs_returns_and_keeps_the_events(api, make_tracker):
    # Given a server that stopped answering (as under SIGSTOP) with a request in flight
    api.pause()
    first = make_tracker(timeout=30)
    ids = [first.track("acme") for _ in range(10)]
    wait_until(lambda: api.in_flight == 1, what="the request to hang")
    # When the app closes with a short deadline, the hanging request is cut off
    assert first.close(timeout=0.2) is False
    # Then the events are still spooled, and the next tracker delivers them once the server answers
    api.resume()
    second = make_tracker()
    assert second.flush(10)
    assert sorted(api.stored_ids()) == sorted(ids) and second.stats().replayed == 10


def test_a_long_stall_is_retried_after_the_request_timeout_and_tracking_goes_on(api, make_tracker):
    # Given a tracker with a 0.3 s request timeout and a server that stalls for a while
    tracker = make_tracker(timeout=0.3)
    api.pause()
    ids = [tracker.track("acme") for _ in range(100)]
    wait_until(lambda: tracker.stats().retried >= 2, what="timeouts")
    # When the app keeps tracking through the stall and the server comes back
    ids += [tracker.track("acme") for _ in range(1000)]
    api.resume()
    # Then everything is delivered exactly once (stalled copies become duplicates)
    assert tracker.flush(10)
    assert sorted(api.stored_ids()) == sorted(ids)
    stats = tracker.stats()
    assert stats.sent == 1100 and stats.rejected == 0 and stats.queued == 0


def test_the_app_keeps_tracking_while_the_api_process_is_stopped_and_nothing_is_lost(tmp_path):
    # Given the API (the fake, in its own process) and an app process tracking continuously
    server = subprocess.Popen(
        [sys.executable, "-m", "usage_tracker.testing", "--api-key", "k"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    url = server.stdout.readline().strip()
    spool, ids_file = tmp_path / "spool", tmp_path / "ids.txt"

    def state() -> dict:
        with urllib.request.urlopen(url + "/_fake/state", timeout=5) as response:
            return json.loads(response.read())

    def tracked() -> int:
        return len(ids_file.read_text().splitlines()) if ids_file.exists() else 0

    app = run_app("track", url, "k", str(spool), str(ids_file))
    try:
        wait_until(lambda: len(state()["stored"]) >= 500, timeout=30, what="the app's first batches")
        # When the API process is stopped (SIGSTOP) for a while
        os.kill(server.pid, signal.SIGSTOP)
        at_stop = tracked()
        time.sleep(1.0)
        wait_until(lambda: tracked() >= at_stop + 2000, timeout=30, what="tracking during the stop")
        # Then the app kept tracking; and after SIGCONT its backlog is delivered
        os.kill(server.pid, signal.SIGCONT)
        during = tracked()
        wait_until(lambda: len(state()["stored"]) >= during, timeout=30, what="the backlog delivered")
        os.kill(app.pid, signal.SIGKILL)
        app.wait()
        drain = run_app("drain", url, "k", str(spool))
        _, err = drain.communicate(timeout=60)
        assert drain.returncode == 0, err
        ids = ids_file.read_text().splitlines()
        stored = state()["stored"]
        assert (
            len(stored) == len(set(stored)) and set(ids) <= set(stored) and len(set(stored) - set(ids)) <= 1
        )
    finally:
        os.kill(server.pid, signal.SIGCONT)
        app.kill()
        app.wait()
        server.stdin.close()
        server.wait(10)
