"""Stripe webhook handler latency, in-process: p50/p99 over N signed deliveries (default 10,000).

Runs the real handler (functions/stripe_webhook/app.py) end to end - signature check with the
Stripe SDK, one partition query, invoice record CAS, standing + audit CAS, event-id put - against
in-process DynamoDB (moto). moto's Query scans the whole table (DynamoDB reads one partition), so
the bench moves to fresh tables every ``--round`` deliveries to keep that artifact out. A month: per invoice finalized, then for a share of them
payment_failed (+ Stripe's own retries), paid/voided/uncollectible, plus ~5% redeliveries and
~2% event types we ignore. Target: p99 < 50 ms.

    .venv/bin/python bench/webhook_bench.py [--events 10000] [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")

T0 = datetime(2025, 12, 1, 9, 0, tzinfo=UTC)
SECRET = "whsec_bench_0123456789abcdef"


TENANTS_PER_ROUND = 20


def build_stream(n: int, rng: random.Random, round_no: int) -> list[dict[str, Any]]:
    from tests.dunning.support import invoice_event

    events: list[dict[str, Any]] = []
    k = 0
    while len(events) < n:
        k += 1
        tenant, inv = f"bench-{round_no}-{k % TENANTS_PER_ROUND}", f"in_bench_{round_no}_{k}"
        at = T0 + timedelta(minutes=rng.randint(0, 600))
        story = [("invoice.finalized", at)]
        roll = rng.random()
        if roll < 0.3:
            story += [("invoice.payment_failed", at + timedelta(minutes=1))]
            story += [
                ("invoice.payment_failed", at + timedelta(days=d)) for d in (3, 7) if rng.random() < 0.5
            ]
            story += [
                (
                    rng.choice(["invoice.paid", "invoice.voided", "invoice.marked_uncollectible"]),
                    at + timedelta(days=8),
                )
            ]
        else:
            story += [("invoice.paid", at + timedelta(minutes=1))]
        for j, (kind, when) in enumerate(story):
            events.append(invoice_event(f"evt_{round_no}_{k}_{j}", kind, inv, tenant, when))
        if rng.random() < 0.02:
            ignored = invoice_event(f"evt_{round_no}_{k}_up", "invoice.finalized", inv, tenant, at)
            ignored["type"] = "invoice.upcoming"
            events.append(ignored)
    events = events[:n]
    events += rng.sample(events, n // 20)  # redeliveries
    rng.shuffle(events)
    return events[:n]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument(
        "--round",
        type=int,
        default=100,
        help="deliveries per set of fresh tables (moto's Query scans the whole table)",
    )
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    import importlib.util

    import boto3

    from billing.adapters.dynamodb.items import dynamodb_client
    from billing.runtime import container
    from billing.tenants.tenant import Tenant
    from billing_local.aws import create_resources, local_aws
    from billing_local.webhook_delivery import stripe_delivery

    spec = importlib.util.spec_from_file_location("webhook_app", ROOT / "functions/stripe_webhook/app.py")
    app = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(app)  # type: ignore[union-attr]
    from billing_local.runner import LocalContext

    ctx = LocalContext(function_name="bench")
    rng = random.Random(7)
    aws = {"calls": 0, "s": 0.0, "t": 0.0, "cpu": 0.0, "c": 0.0}

    def before(**_: Any) -> None:
        aws["t"], aws["c"] = time.perf_counter(), time.thread_time()

    def after(**_: Any) -> None:
        aws["calls"] += 1
        aws["s"] += time.perf_counter() - aws["t"]
        aws["cpu"] += time.thread_time() - aws["c"]

    latencies: list[float] = []
    cpu: list[float] = []
    own: list[float] = []
    own_cpu: list[float] = []
    calls: list[int] = []
    statuses: dict[Any, int] = {}
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
    wall = 0.0
    with local_aws(prefix="bench0") as first:
        boto3.client("secretsmanager").create_secret(
            Name="billing/stripe-webhook-secret", SecretString=SECRET
        )
        rounds = -(-args.events // args.round)
        for round_no in range(rounds):
            res = first if round_no == 0 else create_resources(prefix=f"bench{round_no}")
            for key, setting in (
                ("TENANTS_TABLE", "tenants_table"),
                ("LEDGER_TABLE", "ledger_table"),
                ("BILLING_TABLE", "billing_table"),
            ):
                os.environ[key] = res[setting]
            container.reset()
            container.override(clock=lambda: T0)
            for t in range(TENANTS_PER_ROUND):
                tid = f"bench-{round_no}-{t}"
                container.tenants().create(Tenant(id=tid, stripe_customer_id=f"cus_{tid}"))
            size = min(args.round, args.events - round_no * args.round)
            requests = []
            for event in build_stream(size + 1, rng, round_no):
                requests.append(
                    stripe_delivery(json.dumps(event), secret=SECRET, at=T0, base64=rng.random() < 0.1)
                )
            app.handler(requests[0], ctx)  # warm the new clients (not the steady state)
            hooks = dynamodb_client().meta.events
            hooks.register("before-call.dynamodb", before)
            hooks.register("after-call.dynamodb", after)
            if profiler:
                profiler.enable()
            started = time.perf_counter()
            for request in requests[1:]:
                aws["calls"], aws["s"], aws["cpu"] = 0, 0.0, 0.0
                c = time.thread_time()
                t = time.perf_counter()
                response = app.handler(request, ctx)
                elapsed = time.perf_counter() - t
                latencies.append(elapsed * 1000)
                cpu.append((time.thread_time() - c) * 1000)
                own_cpu.append((cpu[-1] / 1000 - aws["cpu"]) * 1000)
                own.append((elapsed - aws["s"]) * 1000)
                calls.append(aws["calls"])
                status = json.loads(response["body"]).get("status", response["statusCode"])
                statuses[status] = statuses.get(status, 0) + 1
            wall += time.perf_counter() - started
            if profiler:
                profiler.disable()
    if profiler:
        import pstats

        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)

    def line(name: str, values: list[float]) -> None:
        values = sorted(values)
        q = statistics.quantiles(values, n=100)
        print(
            f"  {name:<34} p50 {q[49]:7.2f} ms   p90 {q[89]:7.2f} ms   p99 {q[98]:7.2f} ms   "
            f"max {values[-1]:7.2f} ms"
        )

    q = statistics.quantiles(sorted(latencies), n=100)
    print(
        f"webhook handler, in-process (moto DynamoDB), {len(latencies)} deliveries in {wall:.1f} s "
        f"({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; fresh tables every {args.round})"
    )
    line("wall clock, end to end", latencies)
    line("CPU time of the request (thread)", cpu)
    line("wall clock outside DynamoDB calls", own)
    line("CPU time outside DynamoDB calls", own_cpu)
    print(f"  DynamoDB requests per delivery: mean {statistics.fmean(calls):.2f}, max {max(calls)}")
    print(f"  outcomes: {dict(sorted(statuses.items(), key=str))}")
    own_p99 = statistics.quantiles(sorted(own_cpu), n=100)[98]
    print(
        f"  target p99 < 50 ms: end to end against moto {'met' if q[98] < 50 else 'NOT met'} "
        f"({q[98]:.1f} ms); the handler's own work {'met' if own_p99 < 50 else 'NOT met'} ({own_p99:.1f} ms CPU)"
    )


if __name__ == "__main__":
    main()
