"""The default mode's sync: the sender makes the written range durable, the pages ahead stay writable.

A crash after a sync leaves every synced line in the segment file, read back by the next owner; the
caller's writes after a sync do not fault on pages the sender faulted in ahead.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from usage_tracker import _spool
from usage_tracker._spool import Spool

ROOT = Path(__file__).resolve().parents[2]
LINUX = sys.platform.startswith("linux")


def lines(count: int, start: int = 0) -> list[bytes]:
    return [b'{"event_id":"e-%06d","pad":"%s"}\n' % (n, b"x" * 200) for n in range(start, start + count)]


def new_spool(root: Path) -> Spool:
    return Spool(str(root), durability="batch", segment_bytes=4 << 20, max_bytes=64 << 20)


@pytest.mark.skipif(not LINUX, reason="msync of the written range is the Linux path")
def test_a_sync_covers_the_written_range_without_a_whole_file_fsync(tmp_path, monkeypatch):
    # Given a default-mode spool holding lines written through its mapping
    spool = new_spool(tmp_path)
    assert spool.active.mapped_address, "the segment is mapped and msync can be called"
    for line in lines(50):
        spool.append(line)
    fsyncs: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(_spool.os, "fsync", lambda fd: fsyncs.append(fd) or real_fsync(fd))
    # When the sender syncs, twice with more lines in between (the second from the first's page)
    spool.sync()
    for line in lines(50, start=50):
        spool.append(line)
    spool.sync()
    # Then the range sync was used, never fsync, and the file holds every line
    assert fsyncs == []
    assert spool.active.synced == spool.active.size
    with open(spool.active.path, "rb") as handle:
        assert handle.read(spool.active.size) == b"".join(lines(100))
    spool.close()


@pytest.mark.skipif(not LINUX, reason="RUSAGE_THREAD and MADV_POPULATE_WRITE are Linux's")
def test_a_sync_leaves_the_pages_faulted_in_ahead_writable(tmp_path, monkeypatch):
    # Given a default-mode spool whose pages ahead were faulted in at its creation, written and
    # synced once, with nothing faulting pages in again after the sync
    spool = new_spool(tmp_path)
    if _spool._POPULATE_WRITE is None:
        pytest.skip("this kernel cannot fault pages in ahead")
    monkeypatch.setattr(_spool, "populate_ahead", lambda segment: None)
    for line in lines(10):
        spool.append(line)
    spool.sync()
    batch = lines(300, start=10)  # about 17 more pages, all faulted in ahead
    # When the caller writes the next lines
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for line in batch:
        spool.append(line)
    faults = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before
    # Then only the page the sync wrote back can fault (a whole-file fsync write-protects them all)
    assert faults <= 3, f"{faults} page faults writing {len(batch)} lines after a sync"
    spool.close()


CHILD = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, sys.argv[2])
    from usage_tracker._spool import Spool
    from tests.client.test_spool_sync import lines
    spool = Spool(sys.argv[1], durability="batch", segment_bytes=4 << 20, max_bytes=64 << 20)
    for line in lines(200):
        spool.append(line)
    spool.sync()
    for line in lines(100, start=200):
        spool.append(line)
    spool.sync()
    print("synced", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_lines_synced_before_a_crash_are_read_back_by_the_next_owner(tmp_path):
    # Given a process that wrote and synced 300 lines through the mapping, then was killed
    root = tmp_path / "spool"
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(root), str(ROOT / "clients" / "python")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == -signal.SIGKILL and child.stdout.strip() == "synced", child.stderr
    # When a new spool on that directory adopts it
    spool = new_spool(root)
    assert spool.adopt_orphans() == 1
    batch = spool.read(1000, 1 << 20)
    # Then every line is read back, in order, and nothing else (the preallocated tail is trimmed)
    assert [line + b"\n" for line in batch.lines] == lines(300)
    assert batch.replayed == 300 and batch.skipped == 0
    spool.close()
