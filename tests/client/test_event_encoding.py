"""The caller's-thread parts of track(): event ids (UUIDv7, random bits made ahead in bulk, never
shared with a forked child), the per-millisecond timestamp, and the wire line (byte for byte what
it was before the encoding was made cheaper)."""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from decimal import Decimal

import pytest

from usage_tracker._events import Clock, EventIds, encode_event

TAIL = re.compile(r"[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def check_v7(ids: list[str], ms: int) -> None:
    """RFC 9562 version 7, variant 10, the given millisecond (or the next ones when the counter ran
    over), strictly increasing and distinct."""
    for text in ids:
        value = uuid.UUID(text)
        assert str(value) == text and value.version == 7 and value.variant == uuid.RFC_4122
        assert ms <= value.int >> 80 <= ms + len(ids) // 4096 + 1
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


@pytest.mark.parametrize("made_ahead", [True, False], ids=["tails made ahead", "tails made at the call"])
def test_ids_are_version_7_strictly_increasing_and_distinct(made_ahead):
    # Given an id source with its random tails made in bulk beforehand, or none made
    ids = EventIds()
    if made_ahead:
        ids.top_up(chunk=10_000, capacity=10_000)
        assert ids.ready() == 10_000
    # When 10,000 ids are made in one millisecond (the 12-bit counter overflows into the next ones)
    ms = time.time_ns() // 1_000_000
    made = [ids.next(ms) for _ in range(10_000)]
    # Then each is a version-7 UUID of that time, strictly increasing, none repeated
    check_v7(made, ms)
    assert ids.ready() == 0
    # and the random tails are all different (62 random bits each)
    assert len({text[19:] for text in made}) == len(made) and all(TAIL.fullmatch(text[19:]) for text in made)


def test_top_up_stops_at_its_capacity_and_makes_at_most_a_chunk_per_call():
    ids = EventIds()
    ids.top_up(chunk=100, capacity=250)
    ids.top_up(chunk=100, capacity=250)
    ids.top_up(chunk=100, capacity=250)
    assert ids.ready() == 250
    ids.top_up(chunk=100, capacity=250)
    assert ids.ready() == 250


def test_ids_made_from_several_threads_are_distinct():
    ids = EventIds()
    ids.top_up(chunk=2_000, capacity=2_000)  # some from the bulk tails, the rest made at the call
    made: list[list[str]] = [[] for _ in range(4)]

    def work(out: list[str]) -> None:
        for _ in range(2_000):
            out.append(ids.next(time.time_ns() // 1_000_000))

    threads = [threading.Thread(target=work, args=(out,)) for out in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [i for out in made for i in out]
    assert len(set(everything)) == 8_000
    assert all(out == sorted(out) for out in made)  # each thread sees them in order


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_a_forked_child_never_uses_the_parents_tails_or_random_stream():
    # Given tails made ahead in the parent
    ids = EventIds()
    ids.top_up(chunk=500, capacity=500)
    ms = time.time_ns() // 1_000_000
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what it holds right after the fork, and 500 ids
        try:
            ready = ids.ready()
            child = [ids.next(ms) for _ in range(500)]
            os.write(write, json.dumps({"ready": ready, "ids": child}).encode())
        finally:
            os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 1 << 16):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    answer = json.loads(b"".join(chunks))
    # When the parent makes its 500 ids from the same tails
    parent = [ids.next(ms) for _ in range(500)]
    # Then the child started with none of the parent's tails, and no random part is shared
    assert answer["ready"] == 0
    check_v7(answer["ids"], ms)
    assert {i[19:] for i in answer["ids"]}.isdisjoint({i[19:] for i in parent})
    assert set(answer["ids"]).isdisjoint(parent)


def test_the_trackers_sender_makes_the_tails(make_tracker):
    tracker = make_tracker()
    deadline = time.monotonic() + 5
    while tracker._ids.ready() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert tracker._ids.ready() > 0
    made = [tracker.track("acme", "query", "gpt-4o-mini", 1, 1) for _ in range(100)]
    assert made == sorted(made) and all(uuid.UUID(i).version == 7 for i in made)


def test_the_clock_formats_the_current_millisecond():
    clock = Clock()
    before = time.time_ns() // 1_000_000
    ms, stamp = clock.now()
    after = time.time_ns() // 1_000_000
    assert before <= ms <= after
    expected = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"
    assert stamp == expected
    for _ in range(2_000):  # across milliseconds and seconds, the text follows the number
        ms, stamp = clock.now()
        assert stamp == time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


# Lines made by encode_event before it built a template per shape: the wire output must not change.
WIRE = [
    (
        ("e-1", "acme", "2026-12-08T00:00:00.000Z", "query", "gpt-4o-mini", 1200, 300, 0, None),
        b'{"event_id":"e-1","tenant_id":"acme","timestamp":"2026-12-08T00:00:00.000Z","type":"query",'
        b'"model":"gpt-4o-mini","input_tokens":1200,"output_tokens":300,"bytes":0}\n',
    ),
    (
        ("e-2", "acme", "2026-12-08T00:00:00.001Z", "query", None, 0, 0, 0, None),
        b'{"event_id":"e-2","tenant_id":"acme","timestamp":"2026-12-08T00:00:00.001Z","type":"query",'
        b'"input_tokens":0,"output_tokens":0,"bytes":0}\n',
    ),
    (
        (
            "e-3",
            "a.b:c@d/e+f=g-h_",
            "2026-12-08T23:59:59.999Z",
            "embedding",
            "text-embedding-3-small",
            5,
            0,
            0,
        ),
        b'{"event_id":"e-3","tenant_id":"a.b:c@d/e+f=g-h_","timestamp":"2026-12-08T23:59:59.999Z",'
        b'"type":"embedding","model":"text-embedding-3-small","input_tokens":5,"output_tokens":0,"bytes":0}\n',
    ),
    (
        ("e-4", "acme", "2026-12-08T00:00:00.000Z", "storage", None, 0, 0, 10**12, None),
        b'{"event_id":"e-4","tenant_id":"acme","timestamp":"2026-12-08T00:00:00.000Z","type":"storage",'
        b'"input_tokens":0,"output_tokens":0,"bytes":1000000000000}\n',
    ),
    (
        (
            "e-5",
            "acme",
            "2026-12-08T00:00:00.000Z",
            "gpu_job",
            None,
            0,
            0,
            0,
            {"gpu": "h100", "gpu_seconds": Decimal("12.5")},
        ),
        b'{"event_id":"e-5","tenant_id":"acme","timestamp":"2026-12-08T00:00:00.000Z","type":"gpu_job",'
        b'"input_tokens":0,"output_tokens":0,"bytes":0,"properties":{"gpu":"h100","gpu_seconds":12.5}}\n',
    ),
    (
        (
            "e-6",
            "acme",
            "2026-12-08T00:00:00.000Z",
            "query",
            'mo"del%s\u00e9\\',
            1,
            2,
            3,
            {"n": 1, "f": 0.1, "t": 'x"%d\u2603', "d": Decimal("1E-18")},
        ),
        b'{"event_id":"e-6","tenant_id":"acme","timestamp":"2026-12-08T00:00:00.000Z","type":"query",'
        b'"model":"mo\\"del%s\\u00e9\\\\","input_tokens":1,"output_tokens":2,"bytes":3,'
        b'"properties":{"n":1,"f":0.1,"t":"x\\"%d\\u2603","d":1E-18}}\n',
    ),
    (
        ("e-7", "acme", "2026-12-08T00:00:00.000Z", "query", "m%%d", 7, 0, 0, {}),
        b'{"event_id":"e-7","tenant_id":"acme","timestamp":"2026-12-08T00:00:00.000Z","type":"query",'
        b'"model":"m%%d","input_tokens":7,"output_tokens":0,"bytes":0}\n',
    ),
]


@pytest.mark.parametrize("args, line", WIRE, ids=[args[0] for args, _ in WIRE])
def test_the_wire_line_is_byte_for_byte_what_it_was(args, line):
    # twice: the first call builds the shape's template, the second uses it
    assert encode_event(*args) == line
    assert encode_event(*args) == line
    assert json.loads(line)["event_id"] == args[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (("e", "acme", "t", "query", None, 1, 0, 0), "model is required"),
        (("e", "acme", "t", "storage", "m", 1, 0, 0), "storage events carry bytes only"),
        (("e", "acme", "t", "embedding", None, 0, 0, 5), "embedding events carry tokens only"),
        (("e", "acme", "t", "embedding", "m", 0, 0, 5), "embedding events carry tokens only"),
        (("e", "acme", "t", "gpu_job", None, 0, 0, 5), "gpu_job events carry their measures"),
        (("e", "acme", "t", "query", "m", -1, 0, 0), "input_tokens must be a non-negative int"),
        (("e", "acme", "t", "query", "m", 0, True, 0), "output_tokens must be a non-negative int"),
        (("e", "acme", "t", "query", "m", 0, 0, 1.0), "bytes must be a non-negative int"),
    ],
)
def test_the_count_rules_hold_for_a_shape_already_seen(args, message):
    encode_event("ok", args[1], "t", args[3], args[4], 0, 0, 0)  # the shape is cached now
    with pytest.raises(ValueError, match=message):
        encode_event(*args)
