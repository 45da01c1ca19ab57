"""usage_tracker: the caller's cost of track() and end-to-end events/s to an API.

1. Caller cost: p50/p90/p99/p99.9/max microseconds of each track() call on the calling thread,
   per durability mode ("batch" is the default: written to the spool at the call, fsync per batch),
   while the sender thread posts in the background. Goal: p99 < 20 us in the default mode.
2. End to end: N events tracked as fast as one thread can, until flush() returns (every event
   acknowledged), next to the same number of events posted directly in batches of 1,000 over one
   keep-alive connection, in the same run. Goal: tracker >= 90% of direct.

Without --endpoint both run against usage_tracker.testing.FakeBillingAPI in a subprocess (so the
server does not share this process's GIL); with --endpoint (e.g. a `billing serve`) against that,
with --api-key and a --tenant that exists there.

    .venv/bin/python bench/tracker_bench.py [--calls 50000] [--events 100000] [--endpoint URL --api-key K]
                                            [--serve-events 5000 | --no-serve] [--caller-only]
                                            [--modes batch,buffered,event] [--pin CPU]

The caller-cost table is wall time (what the app waits); a second table times the default mode by
the calling thread's CPU time, which another process taking the core does not inflate, so it is the
figure to compare across runs on a shared, loaded machine. --pin runs this process on one CPU.
Both tables end with the calling thread's minor page faults per 1,000 calls (getrusage
RUSAGE_THREAD around the timed loop): faults on the spool mapping, plus the loop's own few.

3. The same end-to-end comparison against `billing serve` (started here in a subprocess on a fresh
   data directory, a tenant on the enterprise plan): the real handlers, moto and embedded
   ClickHouse, so the server's ingest cost dominates both figures (--serve-events, default 5,000).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import urlsplit

from usage_tracker import Tracker


def percentile(sorted_values: list[int], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))] / 1000


def caller_cost(
    endpoint: str,
    api_key: str,
    tenant: str,
    model: str,
    durability: str,
    calls: int,
    pause_every: int,
    cpu: bool = False,
) -> dict[str, float]:
    """Per-call wall time (perf_counter), or with ``cpu`` the calling thread's CPU time
    (thread_time: what the call itself cost, without the time another process or thread held the
    core or the GIL; each reading is a system call, inside the measured span)."""
    with tempfile.TemporaryDirectory() as spool:
        tracker = Tracker(endpoint, api_key, spool, durability=durability)
        for _ in range(200):  # warm up
            tracker.track(tenant, "query", model, 1200, 300)
        tracker.flush(30)
        latencies = []
        perf = time.thread_time_ns if cpu else time.perf_counter_ns
        track = tracker.track
        faults = _thread_minor_faults()
        for n in range(calls):
            start = perf()
            track(tenant, "query", model, 1200, 300)
            latencies.append(perf() - start)
            if pause_every and n % pause_every == 0:
                time.sleep(0.0005)  # an app does other work between calls; the sender runs meanwhile
        faults = _thread_minor_faults() - faults
        drained = tracker.flush(60).complete
        stats = tracker.stats()
        tracker.close()
    latencies.sort()
    return {
        "p50": percentile(latencies, 0.50),
        "p90": percentile(latencies, 0.90),
        "p99": percentile(latencies, 0.99),
        "p99.9": percentile(latencies, 0.999),
        "max": latencies[-1] / 1000,
        "faults": faults * 1000 / calls,
        "sent": stats.sent,
        "rejected": stats.rejected,
        "drained": drained,
    }


def _thread_minor_faults() -> int:
    """Minor page faults the calling thread has taken (Linux; 0 elsewhere). Around the timed loop, so
    it counts the loop's own few (its list growing) with the calls' faults on the spool mapping."""
    who = getattr(resource, "RUSAGE_THREAD", None)
    return 0 if who is None else resource.getrusage(who).ru_minflt


def clock_floor(cpu: bool, calls: int = 20_000) -> float:
    """p50 of an empty span read with the same clock (microseconds): the reading's own cost."""
    perf = time.thread_time_ns if cpu else time.perf_counter_ns
    spans = []
    for _ in range(calls):
        start = perf()
        spans.append(perf() - start)
    spans.sort()
    return percentile(spans, 0.50)


def tracker_throughput(
    endpoint: str, api_key: str, tenant: str, model: str, events: int
) -> tuple[float, bool]:
    with tempfile.TemporaryDirectory() as spool:
        tracker = Tracker(endpoint, api_key, spool, timeout=300)
        start = time.perf_counter()
        for _ in range(events):
            tracker.track(tenant, "query", model, 1200, 300)
        drained = tracker.flush(600).complete
        elapsed = time.perf_counter() - start
        ok = drained and tracker.stats().sent == events
        tracker.close()
    return events / elapsed, ok


def direct_throughput(
    endpoint: str, api_key: str, tenant: str, model: str, events: int
) -> tuple[float, bool]:
    parts = urlsplit(endpoint)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname, parts.port, timeout=300)
    headers = {"content-type": "application/json", "x-api-key": api_key}
    ok = True
    start = time.perf_counter()
    for offset in range(0, events, 1000):
        # to the millisecond: a timestamp cut to the second can fall before a plan that began
        # within that second (a tenant signed up just now), and ingest refuses it
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        batch = [
            {
                "event_id": str(uuid.uuid4()),
                "tenant_id": tenant,
                "timestamp": now,
                "type": "query",
                "model": model,
                "input_tokens": 1200,
                "output_tokens": 300,
                "bytes": 0,
            }
            for _ in range(min(1000, events - offset))
        ]
        conn.request(
            "POST", parts.path.rstrip("/") + "/v1/events", body=json.dumps({"events": batch}), headers=headers
        )
        response = conn.getresponse()
        response.read()
        ok = ok and response.status == 202
    elapsed = time.perf_counter() - start
    conn.close()
    return events / elapsed, ok


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=50_000, help="track() calls timed per durability mode")
    parser.add_argument("--events", type=int, default=100_000, help="events for the end-to-end comparison")
    parser.add_argument("--endpoint", help="API base URL (default: a FakeBillingAPI subprocess)")
    parser.add_argument("--api-key", default="bench-key")
    parser.add_argument("--tenant", default="bench-tenant")
    parser.add_argument("--model", default="gpt-4o-mini")
    parser.add_argument(
        "--pause-every",
        type=int,
        default=100,
        help="sleep 0.5 ms every N calls in the caller-cost run (0: back to back)",
    )
    parser.add_argument(
        "--serve-events", type=int, default=5_000, help="events end to end against billing serve"
    )
    parser.add_argument("--no-serve", action="store_true", help="skip the run against billing serve")
    parser.add_argument(
        "--caller-only", action="store_true", help="only the caller-cost tables (no end-to-end runs)"
    )
    parser.add_argument(
        "--modes",
        default="batch,buffered,event",
        help="durability modes timed on the calling thread, comma-separated (default: all three)",
    )
    parser.add_argument(
        "--pin",
        type=int,
        metavar="CPU",
        help="run this process (caller and sender threads) on that one CPU (Linux sched_setaffinity)",
    )
    args = parser.parse_args()
    if args.pin is not None:
        os.sched_setaffinity(0, {args.pin})
    print(
        f"cpus={os.cpu_count()} load={' '.join(f'{x:.2f}' for x in os.getloadavg())} python={sys.version.split()[0]}"
        + ("" if args.pin is None else f" pinned to cpu {args.pin}")
    )
    server = None
    endpoint = args.endpoint
    if endpoint is None:
        server = subprocess.Popen(
            [sys.executable, "-m", "usage_tracker.testing", "--api-key", args.api_key],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        endpoint = server.stdout.readline().strip()  # type: ignore[union-attr]
        print(f"endpoint: FakeBillingAPI subprocess at {endpoint}")
    else:
        print(f"endpoint: {endpoint}")
    try:
        print(f"\ntrack() on the calling thread, {args.calls} calls per mode (microseconds):")
        print(
            f"{'durability':<12}{'p50':>8}{'p90':>8}{'p99':>8}{'p99.9':>8}{'max':>10}{'faults/1k':>10}  delivered"
        )
        modes = [m.strip() for m in args.modes.split(",") if m.strip()]
        for mode in modes:
            calls = args.calls if mode != "event" else max(100, args.calls // 50)
            r = caller_cost(endpoint, args.api_key, args.tenant, args.model, mode, calls, args.pause_every)
            label = mode + (" *" if mode == "batch" else "")
            print(
                f"{label:<12}{r['p50']:>8.1f}{r['p90']:>8.1f}{r['p99']:>8.1f}{r['p99.9']:>8.1f}{r['max']:>10.1f}"
                f"{r['faults']:>10.1f}  {r['sent']}/{calls + 200}{'' if r['drained'] else ' (not drained)'}"
            )
        print("* default; goal p99 < 20 us, p99.9 < 100 us")
        if "batch" in modes:
            # The machine's load moves wall-time tails; the thread's CPU time shows the call's own work.
            r = caller_cost(
                endpoint,
                args.api_key,
                args.tenant,
                args.model,
                "batch",
                args.calls,
                args.pause_every,
                cpu=True,
            )
            print(
                f"\nthe same, default mode, CPU time of the calling thread (thread_time; an empty span "
                f"reads {clock_floor(True):.1f} us, a wall one {clock_floor(False):.2f} us):"
            )
            print(
                f"{'batch cpu':<12}{r['p50']:>8.1f}{r['p90']:>8.1f}{r['p99']:>8.1f}{r['p99.9']:>8.1f}{r['max']:>10.1f}"
                f"{r['faults']:>10.1f}  {r['sent']}/{args.calls + 200}{'' if r['drained'] else ' (not drained)'}"
            )
        if args.caller_only:
            return 0
        print(f"\nend to end, {args.events} events:")
        end_to_end(endpoint, args.api_key, (args.tenant, args.tenant), args.model, args.events)
    finally:
        if server is not None:
            server.stdin.close()  # type: ignore[union-attr]
            server.wait(10)
    if not args.no_serve and not args.caller_only and args.endpoint is None:
        against_billing_serve(args.serve_events, args.model)
    return 0


def end_to_end(endpoint: str, key: str, tenants: tuple[str, str], model: str, events: int) -> None:
    """Direct batches of 1,000 (as the first tenant), then the tracker (as the second), and the ratio."""
    direct, direct_ok = direct_throughput(endpoint, key, tenants[0], model, events)
    tracked, tracked_ok = tracker_throughput(endpoint, key, tenants[1], model, events)
    print(
        f"  direct POST, batches of 1,000, one connection: {direct:>10,.0f} events/s{'' if direct_ok else ' (errors)'}"
    )
    print(
        f"  tracker: track() x N, then flush()           : {tracked:>10,.0f} events/s"
        f"{'' if tracked_ok else ' (not all acknowledged)'}"
    )
    print(f"  tracker / direct: {tracked / direct:.0%} (goal >= 90%)")


def against_billing_serve(events: int, model: str) -> None:
    """End to end against `billing serve` in a subprocess: direct batches of 1,000, then the tracker."""
    from pathlib import Path

    from billing_local.serve_process import ServeProcess

    key = "bench-serve-key"
    with tempfile.TemporaryDirectory(prefix="tracker-bench-serve-") as tmp:
        serve = ServeProcess(Path(tmp), key)
        try:
            for tenant in ("bench-direct", "bench-tracked"):
                body = {"id": tenant, "name": tenant, "email": f"{tenant}@example.com", "plan": "enterprise"}
                status, answer = serve.call("POST", "/v1/tenants", body)
                if status not in (200, 201):
                    raise SystemExit(f"signing up {tenant} failed: {status} {answer}")
            print(
                f"\nend to end against billing serve ({serve.url}; real handlers, moto, embedded ClickHouse), {events} events:"
            )
            end_to_end(serve.url, key, ("bench-direct", "bench-tracked"), model, events)
        finally:
            serve.stop()


if __name__ == "__main__":
    sys.exit(main())
