"""Dev only: what ``billing serve`` takes before anything else, so that a second server, or a port
taken, is refused with its real cause before any state is opened.

Invariants:
- one ``billing serve`` per data directory: ``DIR/serve.lock`` is held (``flock``) for the process's
  life and names its pid; the kernel releases it when the process ends, ``kill -9`` included, so a
  crash never leaves the directory locked;
- the port is bound (and listening) before the slow start, and handed to the HTTP server as is.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from billing_local.http_api import LISTEN_BACKLOG

LOCK_NAME = "serve.lock"


class ServeError(Exception):
    """Why ``billing serve`` cannot start, and which flag to change (printed as it is)."""


def lock_data_dir(data_dir: Path) -> int:
    """Hold ``DIR/serve.lock`` (returns its descriptor; closing it releases the lock)."""
    path = data_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise ServeError(
            f"another billing serve (pid {holder}) is using data dir {data_dir}; "
            "stop it or pass --data with another directory"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def bind_port(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); a port in use is refused naming who holds it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free
    try:
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as error:
        sock.close()
        if error.errno == 98:  # EADDRINUSE
            raise ServeError(
                f"port {port} is in use (by {port_owner(port)}); pass --port with another port (0: any free port)"
            ) from None
        raise ServeError(
            f"cannot listen on {host}:{port} ({error.strerror}); pass --host or --port"
        ) from None
    return sock


def port_owner(port: int) -> str:
    """Who listens on ``port``, as far as /proc tells (Linux, this user's processes)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") not in inodes:
                    continue
                raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            command = " ".join(raw.decode(errors="replace").split("\0")).strip()
            if "billing" in command and " serve" in command:
                return f"another billing serve, pid {pid}"
            return f"pid {pid}: {command[:80]}"
    return "another program"
