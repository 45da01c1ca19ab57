"""Dev only: moto's DynamoDB/SQS/S3 as an HTTP server in its own process, with conditional writes
and transactions atomic as in DynamoDB (billing_local.aws.make_moto_dynamodb_atomic), connections
kept alive between requests as DynamoDB's are (moto's own server closes each one: a TCP connect, a
server thread and a close per call, CPU that a Lambda talking to DynamoDB never spends).

    python -m billing_local.moto_server --port 5123     # then AWS_ENDPOINT_URL=http://127.0.0.1:5123
"""

from __future__ import annotations

import argparse
import functools
import signal
import threading
from typing import Any


def skip_per_request_bookkeeping() -> None:
    """moto's server re-lists its own package directory (one ``stat`` per service) and re-inspects
    the handler class on every request: about 0.5 ms of CPU per call that DynamoDB does not spend,
    and in the scale model this one process serves every writer. Both answers never change while
    the server runs, so they are computed once."""
    import moto.backends
    import moto.core.responses

    modules = tuple(moto.backends.list_of_moto_modules())
    moto.backends.list_of_moto_modules = lambda: modules  # type: ignore[assignment]
    moto.core.responses.method_names_from_class = functools.cache(  # type: ignore[assignment]
        moto.core.responses.method_names_from_class
    )


class _NothingToDrain:
    """After each response werkzeug reads whatever else the client has sent (an unread body), which
    on a kept-alive connection would swallow the next request; moto reads every body whole."""

    def register(self, *_: Any) -> None:
        pass

    def select(self, timeout: float | None = None) -> list[Any]:
        return []

    def close(self) -> None:
        pass


def keep_alive_handler() -> Any:
    """moto's request handler, minus werkzeug's ``Connection: close`` on every response (werkzeug
    closes because ``http.server`` cannot drain an unread body; moto reads every body whole)."""
    import selectors
    import types

    import werkzeug.serving
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    werkzeug.serving.selectors = types.SimpleNamespace(  # type: ignore[assignment]
        DefaultSelector=_NothingToDrain, EVENT_READ=selectors.EVENT_READ
    )

    class KeepAlive(MotoRequestHandler):  # type: ignore[misc]
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # werkzeug sends headers and body apart: no delayed-ACK stall

        def log_request(self, *_: Any) -> None:  # a stderr line per call (CPU), nobody reads it
            pass

        def send_header(self, keyword: str, value: str) -> None:
            if keyword.lower() == "connection" and value.lower() == "close":
                return
            super().send_header(keyword, value)

    return KeepAlive


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5123)
    args = parser.parse_args()
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    from billing_local.aws import make_moto_dynamodb_atomic

    make_moto_dynamodb_atomic()
    skip_per_request_bookkeeping()
    server = make_server(
        args.host,
        args.port,
        DomainDispatcherApplication(create_backend_app),
        threaded=True,
        request_handler=keep_alive_handler(),
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"moto listening on http://{args.host}:{args.port}", flush=True)
    stop.wait()
    server.shutdown()


if __name__ == "__main__":
    main()
