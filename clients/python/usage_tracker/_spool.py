"""The disk spool: append-only segments of wire-format event lines, one directory per live tracker.

Layout under ``spool_dir``::

    p-<pid>-<random>/          one per Tracker; flock(2) on its .lock is held for the tracker's life
        .lock
        000000000001.jsonl     segments: one event per line, exactly the JSON the API takes
        000000000002.jsonl
        ack                    "<segment> <offset>": everything before it is resolved

Invariants:
- A line is in a segment before ``track()`` returns (durability "batch"/"event"), or before the
  sender reads it (durability "buffered"). With "batch" the active segment's file is preallocated
  (``posix_fallocate``) and mapped shared: ``append`` copies the line into the mapping, which is the
  file's page cache, so the line survives the process (kill -9) exactly as a ``write(2)`` would,
  without a system call that lets go of the GIL on the caller's thread. The sender makes the lines
  since its last sync durable: on Linux with ``msync(MS_SYNC)`` of their pages (the kernel runs it
  as ``fdatasync`` of that range: the data, the extents it converts and the length fixed by the
  preallocation), called through ctypes so the GIL is let go during the disk write; elsewhere, or
  when that cannot be done, with ``fsync``. A whole-file sync would also write back, and
  write-protect, the pages faulted in ahead of the writes, so the caller's next write to each would
  fault again. A line past the mapping is written with ``pwrite`` and synced with ``fsync``. A segment is truncated to its lines when sealed; one left by a killed process ends in
  NUL bytes (JSON lines hold none), which adoption trims.
- A segment is deleted only when it is sealed (no more writes) and every line in it is resolved:
  acknowledged by the server (accepted, or a listed duplicate) or refused by it as final.
- A directory is worked on only by whoever holds the flock on its .lock. A directory whose owner
  died has a free lock; any tracker that takes it adopts it and replays it from its ack cursor.
  Replaying an acknowledged line is harmless: the server answers "duplicate" (same event_id).

Length: one module because the invariants above span its parts: the append on callers' threads, the
segment files and their mapping, reading and resolving on the sender thread, and adoption share one
lock and one on-disk layout, and each part is only correct together with the others.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import sys
import threading
from typing import Any, List, Optional, Tuple

DIR_PREFIX = "p-"
LOCK_NAME = ".lock"
ACK_NAME = "ack"
SEGMENT_SUFFIX = ".jsonl"
_OPEN_FLAGS = getattr(os, "O_CLOEXEC", 0)
_MAP_HEADROOM = 1 << 20  # mapped beyond segment_bytes: lines appended before the sender rotates
# Linux's MADV_POPULATE_WRITE (5.14+; Python 3.11's mmap module does not name it): takes the write
# faults of a range of the mapping now, on the sender thread, not on the first track() into each page.
_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23 if sys.platform.startswith("linux") else None)
# The sender populates again after each sync, and a sync writes back only the lines' pages, so the
# window costs no disk writes: a wide one (the headroom, several batches of lines) keeps a caller
# that runs ahead of a slow sender on pages already writable.
_POPULATE_AHEAD = _MAP_HEADROOM
_POPULATE_STEP = 32 << 10  # one madvise holds the GIL: a few pages at a time
_MS_SYNC = 4  # Linux's value; the mmap module does not name it
_msync: Any = None  # libc's msync through ctypes, loaded with the first mapped segment
_msync_loaded = False


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | _OPEN_FLAGS)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _try_lock(path: str) -> Optional[int]:
    """An fd holding an exclusive flock on ``path``, or None if someone else holds it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | _OPEN_FLAGS, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    return fd


class Segment:
    """One segment file. ``size`` counts bytes of complete lines; ``acked`` is the resolved prefix."""

    def __init__(self, directory: SpoolDir, name: str, size: int, sealed: bool, acked: int = 0) -> None:
        self.directory = directory
        self.name = name
        self.path = os.path.join(directory.path, name)
        self.size = size
        self.sealed = sealed
        self.read_offset = acked
        self.acked = acked
        self.write_fd: Optional[int] = None
        self.mapped: Optional[mmap.mmap] = None  # durability "batch": the preallocated file, mapped
        self.mapped_end = 0  # len(mapped)
        self.mapped_address = 0  # where ``mapped`` starts in memory, for msync; 0: fsync instead
        self.synced = size
        self._read_fd: Optional[int] = None

    def pread(self, length: int, offset: int) -> bytes:
        if self._read_fd is None:
            self._read_fd = os.open(self.path, os.O_RDONLY | _OPEN_FLAGS)
        return os.pread(self._read_fd, length, offset)

    def seal_file(self) -> None:
        """No more writes: unmap, cut the preallocated tail off (the file then holds its lines
        only), fsync what is not yet synced, close the write descriptor."""
        fd = self.write_fd
        if fd is None:
            return
        if self.mapped is not None:
            self.mapped_address = 0
            self.mapped.close()
            self.mapped = None
            os.ftruncate(fd, self.size)
        if self.synced < self.size:
            os.fsync(fd)
            self.synced = self.size
        os.close(fd)
        self.write_fd = None

    def close(self) -> None:
        self.mapped_address = 0
        if self.mapped is not None:
            try:
                self.mapped.close()
            except (OSError, ValueError):
                pass
            self.mapped = None
        for fd in (self.write_fd, self._read_fd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.write_fd = self._read_fd = None


class SpoolDir:
    def __init__(self, path: str, lock_fd: int, adopted: bool) -> None:
        self.path = path
        self.name = os.path.basename(path)
        self.lock_fd = lock_fd
        self.adopted = adopted
        self.segments: List[Segment] = []

    def write_ack(self, segment: Segment) -> None:
        """Record the resolved prefix; lost on a crash it only means more duplicates on replay."""
        tmp = os.path.join(self.path, ACK_NAME + ".tmp")
        with open(tmp, "w") as handle:
            handle.write(f"{segment.name} {segment.acked}\n")
        os.replace(tmp, os.path.join(self.path, ACK_NAME))

    def read_ack(self) -> Tuple[str, int]:
        try:
            with open(os.path.join(self.path, ACK_NAME)) as handle:
                name, offset = handle.read().split()
            return name, int(offset)
        except (OSError, ValueError):
            return "", 0

    def remove(self) -> None:
        """Delete the (fully resolved) directory, then let go of its lock."""
        for name in (ACK_NAME, ACK_NAME + ".tmp", LOCK_NAME):
            try:
                os.unlink(os.path.join(self.path, name))
            except OSError:
                pass
        try:
            os.rmdir(self.path)
        except OSError:
            pass
        self.release()

    def release(self) -> None:
        for segment in self.segments:
            segment.close()
        if self.lock_fd >= 0:
            try:
                os.close(self.lock_fd)
            except OSError:
                pass
            self.lock_fd = -1


class SpoolFull(Exception):
    pass


class Batch:
    """Lines read for one request, and where they came from."""

    def __init__(self) -> None:
        self.lines: List[bytes] = []
        self.parts: List[Tuple[Segment, int]] = []
        self.skipped = 0  # torn lines passed over
        self.own = 0  # lines of this tracker's own directory
        self.replayed = 0  # lines of adopted directories


class Spool:
    """Segments of this tracker's own directory (written) and of adopted ones (replayed).

    ``append`` runs on callers' threads; everything else on the sender thread. ``lock`` guards the
    active segment, the byte count and the buffer.
    """

    def __init__(self, root: str, *, durability: str, segment_bytes: int, max_bytes: int) -> None:
        self.root = os.path.abspath(root)
        self.durability = durability
        self.segment_bytes = segment_bytes
        self.max_bytes = max_bytes
        self.lock = threading.Lock()
        self.bytes = 0
        self.buffer: List[bytes] = []
        self.lines_written = 0
        self.own_read = 0  # own lines the sender has read (sender thread only)
        self.closed = False
        self.dirs: List[SpoolDir] = []  # adopted ones first, own last
        os.makedirs(self.root, exist_ok=True)
        self.own = self._create_own_dir()
        self.active = self._new_segment(self.own)

    # -- caller threads ----------------------------------------------------------------------
    def append(self, line: bytes) -> int:
        """Put one line in the spool (SpoolFull when the size limit would be passed); returns how
        many own lines the sender has not read yet, this one included."""
        length = len(line)
        with self.lock:
            total = self.bytes + length
            if total > self.max_bytes:
                raise SpoolFull
            active = self.active
            mapped = active.mapped  # only with durability "batch"
            size = active.size
            end = size + length
            if mapped is not None and end <= active.mapped_end:
                mapped[size:end] = line
                active.size = end
            elif self.durability == "buffered":
                self.buffer.append(line)
            else:
                if os.pwrite(active.write_fd, line, size) != length:  # type: ignore[arg-type]
                    raise OSError("short write to the spool (disk full?)")
                active.size = end
                if self.durability == "event":
                    os.fsync(active.write_fd)  # type: ignore[arg-type]
                    active.synced = end
            self.bytes = total
            written = self.lines_written = self.lines_written + 1
            return written - self.own_read

    # -- sender thread -------------------------------------------------------------------------
    def write_buffer(self) -> None:
        """Buffered mode: move lines from memory into the active segment."""
        with self.lock:
            if not self.buffer:
                return
            data = b"".join(self.buffer)
            active = self.active
            try:
                written = 0
                while written < len(data):
                    written += os.pwrite(active.write_fd, data[written:], active.size + written)  # type: ignore[arg-type]
            except OSError:
                os.ftruncate(active.write_fd, active.size)  # type: ignore[arg-type]
                raise  # the lines stay in the buffer for the next attempt
            self.buffer = []
            active.size += len(data)

    def sync(self) -> None:
        """fsync what the active segment holds beyond its last fsync (durability batch/buffered)."""
        active = self.active
        size = active.size
        if size > active.synced and active.write_fd is not None:
            if not _sync_range(active, size):
                os.fsync(active.write_fd)
            active.synced = size
            populate_ahead(active)

    def rotate_if_full(self) -> None:
        if self.active.size < self.segment_bytes:
            return
        new = self._new_segment(self.own)
        with self.lock:
            old, self.active = self.active, new
            old.sealed = True
        old.seal_file()

    def readable(self) -> bool:
        return any(s.read_offset < s.size for d in self.dirs for s in d.segments)

    def read(self, max_events: int, max_bytes: int) -> Batch:
        batch = self._read(max_events, max_bytes)
        self.own_read += batch.own
        return batch

    def _read(self, max_events: int, max_bytes: int) -> Batch:
        """Up to ``max_events`` unread lines, oldest first, each counted as its length + 1 against
        ``max_bytes``.

        The batch covers its segments up to the offsets in ``parts``; ``skipped`` counts torn last
        lines (no newline) of sealed segments, which a killed process was writing when it died, so
        no track() call returned for them.
        """
        batch = Batch()
        lines = batch.lines
        parts = batch.parts
        total = 0
        for directory in list(self.dirs):
            for segment in list(directory.segments):
                while segment.read_offset < segment.size:
                    if len(lines) >= max_events or total >= max_bytes:
                        return batch
                    available = segment.size - segment.read_offset
                    chunk = segment.pread(min(available, max_bytes - total + 4096), segment.read_offset)
                    end = chunk.rfind(b"\n") + 1
                    if end == 0:
                        if segment.sealed and len(chunk) == available:
                            segment.read_offset = segment.size
                            parts.append((segment, segment.size))
                            batch.skipped += 1
                        break
                    consumed = 0
                    full = False
                    for raw in chunk[:end].split(b"\n")[:-1]:
                        if len(lines) >= max_events or total + len(raw) + 1 > max_bytes:
                            full = True
                            break
                        consumed += len(raw) + 1
                        if raw.strip():
                            lines.append(raw)
                            total += len(raw) + 1
                            if directory.adopted:
                                batch.replayed += 1
                            else:
                                batch.own += 1
                    if consumed:
                        segment.read_offset += consumed
                        parts.append((segment, segment.read_offset))
                    if full:
                        return batch
        return batch

    def resolved(self, parts: List[Tuple[Segment, int]]) -> None:
        """Every line of a batch is resolved: advance cursors, delete finished segments and dirs."""
        if self.closed:  # an answer arriving after close(): the next owner replays, duplicates are fine
            return
        touched = []
        for segment, end in parts:
            segment.acked = max(segment.acked, end)
            if segment.directory not in touched:
                touched.append(segment.directory)
        for directory in touched:
            last = None
            for segment in list(directory.segments):
                if segment.sealed and segment.acked >= segment.size:
                    self._delete_segment(segment)
                elif segment.acked > 0:
                    last = segment
            if directory.adopted and not directory.segments:
                self.dirs.remove(directory)
                directory.remove()
            elif last is not None:
                try:
                    directory.write_ack(last)
                except OSError:
                    pass

    def adopt_orphans(self) -> int:
        """Take over directories whose owner died; returns the number of segments adopted."""
        adopted = 0
        try:
            names = sorted(os.listdir(self.root))
        except OSError:
            return 0
        known = {d.name for d in self.dirs}
        for name in names:
            if not name.startswith(DIR_PREFIX) or name in known:
                continue
            path = os.path.join(self.root, name)
            if not os.path.isdir(path):
                continue
            fd = _try_lock(os.path.join(path, LOCK_NAME))
            if fd is None:
                continue
            directory = SpoolDir(path, fd, adopted=True)
            ack_name, ack_offset = directory.read_ack()
            try:
                files = sorted(f for f in os.listdir(path) if f.endswith(SEGMENT_SUFFIX))
            except OSError:
                files = []
            for file in files:
                file_path = os.path.join(path, file)
                if ack_name and file < ack_name:
                    os.unlink(file_path)  # resolved, its deletion was lost in a crash
                    continue
                size = _written_size(file_path)
                acked = min(ack_offset, size) if file == ack_name else 0
                directory.segments.append(Segment(directory, file, size, sealed=True, acked=acked))
            if not directory.segments:
                directory.remove()
                continue
            with self.lock:
                self.bytes += sum(s.size for s in directory.segments)
            self.dirs.insert(len(self.dirs) - 1, directory)
            adopted += len(directory.segments)
        return adopted

    def close(self) -> bool:
        """Seal and sync; delete every directory whose lines are all resolved, release the others.
        True if nothing unresolved is left."""
        with self.lock:
            active = self.active
            active.sealed = True
        self.closed = True
        if self.durability == "buffered":
            self.write_buffer()
        active.seal_file()
        clean = True
        for directory in list(self.dirs):
            for segment in list(directory.segments):
                if segment.acked >= segment.size:
                    self._delete_segment(segment)
            if directory.segments:
                clean = False
                directory.release()  # the next tracker on this spool_dir adopts it
            else:
                directory.remove()
        return clean

    def forget_after_fork(self) -> None:
        """In a forked child: close the parent's fds without touching its files or its locks."""
        for directory in self.dirs:
            for segment in directory.segments:
                segment.close()
            if directory.lock_fd >= 0:
                os.close(directory.lock_fd)
                directory.lock_fd = -1

    # -- internals -----------------------------------------------------------------------------
    def _create_own_dir(self) -> SpoolDir:
        # Built under a name scanners ignore, locked, then renamed: nobody can adopt it half-made.
        name = f"{DIR_PREFIX}{os.getpid()}-{os.urandom(4).hex()}"
        staging = os.path.join(self.root, "." + name)
        os.mkdir(staging, 0o700)
        fd = _try_lock(os.path.join(staging, LOCK_NAME))
        if fd is None:
            raise OSError(f"cannot lock a fresh spool directory {staging}")
        path = os.path.join(self.root, name)
        os.rename(staging, path)
        if self.durability != "buffered":
            _fsync_dir(self.root)
        own = SpoolDir(path, fd, adopted=False)
        self.dirs.append(own)
        return own

    def _new_segment(self, directory: SpoolDir) -> Segment:
        number = int(directory.segments[-1].name.split(".")[0]) + 1 if directory.segments else 1
        segment = Segment(directory, f"{number:012d}{SEGMENT_SUFFIX}", 0, sealed=False)
        # every write names its offset (pwrite), so no O_APPEND: the file is longer than its lines
        segment.write_fd = os.open(segment.path, os.O_RDWR | os.O_CREAT | _OPEN_FLAGS, 0o600)
        if self.durability == "batch":
            segment.mapped = _preallocated_map(segment.write_fd, self.segment_bytes + _MAP_HEADROOM)
            segment.mapped_end = 0 if segment.mapped is None else len(segment.mapped)
            segment.mapped_address = _map_address(segment.mapped)
            populate_ahead(segment)
        if self.durability != "buffered":
            _fsync_dir(directory.path)  # the file's name must survive a power loss with its lines
        directory.segments.append(segment)
        return segment

    def _delete_segment(self, segment: Segment) -> None:
        segment.close()
        try:
            os.unlink(segment.path)
        except FileNotFoundError:
            pass
        segment.directory.segments.remove(segment)
        with self.lock:
            self.bytes -= segment.size


def _preallocated_map(fd: int, length: int) -> Optional[mmap.mmap]:
    """The file's first ``length`` bytes, allocated on disk (a write into the mapping can then never
    meet a full disk, which would be SIGBUS rather than an error) and mapped shared; None where that
    cannot be done (no space, no posix_fallocate), and the segment is written with pwrite."""
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is None:
        return None
    try:
        fallocate(fd, 0, length)
        return mmap.mmap(fd, length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    except (OSError, ValueError):
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        return None


def _map_address(mapped: Optional[mmap.mmap]) -> int:
    """Where ``mapped`` starts in memory; 0 where msync cannot be called (not Linux, no ctypes)."""
    global _msync, _msync_loaded
    if mapped is None or not sys.platform.startswith("linux"):
        return 0
    try:
        import ctypes

        if not _msync_loaded:
            _msync_loaded = True
            function = ctypes.CDLL(None, use_errno=True).msync  # CDLL calls let go of the GIL
            function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            function.restype = ctypes.c_int
            _msync = function
        if _msync is None:
            return 0
        view = ctypes.c_char.from_buffer(mapped)
        address = ctypes.addressof(view)
        del view  # an exported buffer would keep mmap.close() from unmapping
        return address
    except (ImportError, OSError, AttributeError, TypeError, ValueError):
        return 0


def _sync_range(segment: Segment, size: int) -> bool:
    """Make the segment's bytes from its last sync to ``size`` durable with msync(MS_SYNC) of their
    pages; False where that cannot be done (no address, lines past the mapping), and the caller
    fsyncs the whole file. A failed msync raises as fsync would: it has consumed the file's
    write-back error, so an fsync after it could return success for lost pages. Sender thread
    only, like seal_file: the mapping is live."""
    address = segment.mapped_address
    if not address or _msync is None or size > segment.mapped_end:
        return False
    start = segment.synced - segment.synced % mmap.PAGESIZE
    if _msync(address + start, size - start, _MS_SYNC) != 0:
        import ctypes

        code = ctypes.get_errno()
        raise OSError(code, f"msync of the spool: {os.strerror(code)}")
    return True


def _written_size(path: str) -> int:
    """A segment's length without the NUL bytes a killed process's preallocated tail left."""
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        while size > 0:
            start = max(0, size - (1 << 20))
            handle.seek(start)
            chunk = handle.read(size - start).rstrip(b"\0")
            if chunk:
                return start + len(chunk)
            size = start
    return 0


def populate_ahead(segment: Segment) -> None:
    """Fault in, writable, the pages the next lines will be copied to (a write-back makes them
    read-only again: the last, partly written page after each sync, any after the kernel's own). Content is unchanged; where the kernel cannot, nothing."""
    global _POPULATE_WRITE
    mapped = segment.mapped
    if mapped is None or _POPULATE_WRITE is None:
        return
    start = segment.size - segment.size % mmap.PAGESIZE
    end = min(len(mapped), start + _POPULATE_AHEAD)
    try:
        for offset in range(start, end, _POPULATE_STEP):
            mapped.madvise(_POPULATE_WRITE, offset, min(_POPULATE_STEP, end - offset))
    except (OSError, ValueError):  # an older kernel: the first write to a page takes its fault
        _POPULATE_WRITE = None
