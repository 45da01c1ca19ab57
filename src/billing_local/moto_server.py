"""Dev only: moto's DynamoDB/SQS/S3 as an HTTP server in its own process, with conditional writes
and transactions atomic as in DynamoDB (billing_local.aws.make_moto_dynamodb_atomic).

    python -m billing_local.moto_server --port 5123     # then AWS_ENDPOINT_URL=http://127.0.0.1:5123
"""

from __future__ import annotations

import argparse
import signal
import threading


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5123)
    args = parser.parse_args()
    from moto.server import ThreadedMotoServer

    from billing_local.aws import make_moto_dynamodb_atomic

    make_moto_dynamodb_atomic()
    server = ThreadedMotoServer(ip_address=args.host, port=args.port, verbose=False)
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"moto listening on http://{args.host}:{args.port}", flush=True)
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
