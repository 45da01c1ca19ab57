"""A real HTTP receiver for outgoing webhooks, verifying every request with our helper and with
the ``standardwebhooks`` library; its answers are scripted."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks import Webhook

from tests.dunning.support import handlers, stripe  # noqa: F401 - the Stripe fixtures
from usage_tracker import verify_signature


class Receiver:
    """A receiver whose answers are scripted: each request takes the next of ``script`` ("hang",
    or a status), then 200 forever; it records what verified."""

    def __init__(self) -> None:
        self.script: list[str | int] = []
        self.secret = ""
        self.verified: list[dict] = []
        self.ids: list[str] = []
        self.bodies: list[bytes] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.ids.append(headers["webhook-id"])
                receiver.bodies.append(body)
                step = receiver.script.pop(0) if receiver.script else 200
                if step == "hang":
                    time.sleep(1.0)
                    step = 200  # too late: the sender has given up on this attempt
                if step == 200:
                    ours = verify_signature(body, headers, receiver.secret)
                    assert Webhook(receiver.secret).verify(body, headers) == ours
                    receiver.verified.append(ours)
                self.send_response(int(step))
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/billing/webhooks"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    thread = threading.Thread(target=r.server.serve_forever, daemon=True)
    thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()
