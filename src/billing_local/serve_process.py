"""Dev only: `billing serve` in a subprocess, for what drives it from outside (the usage tracker's
tests against it, ``bench/tracker_bench.py``): started on port 0 (or a given one) on a data
directory (fresh, or one a stopped or killed server left) with a platform key, its URL read from
its banner, every line it prints kept."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

_OWN_KEY: Any = object()  # ``call``'s default: the key the server was started with


class ServeProcess:
    def __init__(self, data: Path, key: str, *, cwd: Path | None = None, timeout: float = 180, port: int = 0):
        self.data, self.key = data, key
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from billing_cli import main; main()", "serve"]
            + ["--port", str(port), "--data", str(data), "--api-key", key],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.url = ""
        deadline = time.monotonic() + timeout
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"billing serve exited: {''.join(self.lines)}")
            self.lines.append(line)
            if line.startswith("billing serve: http"):
                self.url = line.split()[-1]
            if line.startswith("platform key:"):
                if line.split()[-1] != key:
                    raise RuntimeError(f"billing serve started with another key: {line.strip()}")
                break
        else:
            self.process.kill()
            raise RuntimeError(f"billing serve did not start within {timeout:.0f} s")
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def call(self, method: str, path: str, body: Any = None, key: str | None = _OWN_KEY) -> tuple[int, Any]:
        """One JSON request with ``key`` (default: the server's platform key; None: no key)."""
        key = self.key if key is _OWN_KEY else key
        request = urllib.request.Request(
            self.url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **({"x-api-key": key} if key else {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def kill(self) -> int:
        """SIGKILL: the server gets no chance to save or close anything (a crash)."""
        self.process.kill()
        return self.process.wait(60)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGCONT)  # a test may have stopped it
        self.process.terminate()
        return self.process.wait(60)
