"""Ingest throughput: usage events through the ingest code path in batches of 500, next to a raw
clickhouse-connect insert of the same rows, in the same run and the same ClickHouse.

    python bench/ingest_bench.py                      # 20,000 events per path (a quick run)
    python bench/ingest_bench.py --events 1000000     # the issue's full size (slow: see below)
    python bench/ingest_bench.py --paths raw,service  # skip the Lambda handler path

Paths, each on its own rows (event ids differ, the priced content is the same):
  raw      clickhouse-connect ``client.insert`` of the priced rows into a fresh usage_events
           (materialized views included), 500 rows a call; no validation, dedup or quota.
  service  ``billing.runtime.container.ingest_service().ingest(events)`` after ``parse_batch``: validation,
           pricing, DynamoDB ledger claims + quota compare-and-set, ClickHouse insert, batch commit.
  handler  ``functions/ingest/app.py`` ``handler(event, context)`` with an API Gateway event whose body
           is the JSON batch: Powertools resolver, parsing, the same service, the 202 response.

AWS is moto, in process (billing_local.aws.local_aws); ClickHouse is embedded chdb unless --url.
moto's DynamoDB is much slower per call than the real service and runs in this same process, so
the figures break the time down: DynamoDB ledger calls, ClickHouse inserts, everything else.
Peak memory: the process's peak RSS after each path, and tracemalloc's peak over a sample of
handler batches. Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import random
import resource
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from billing.adapters.clickhouse.usage_store import EVENT_COLUMNS, ClickHouseUsageStore
from billing.kernel.periods import Month, iso
from billing.metering.events import (
    parse_batch,
)
from billing.runtime import container
from billing.tenants.tenant import PlanAssignment, Tenant
from billing_local.aws import local_aws
from billing_local.aws_meter import DynamoMeter, Usage
from billing_local.runner import LocalContext

ROOT = Path(__file__).resolve().parents[1]
MONTH = Month(2025, 11)
MODELS = ["gpt-4o-mini", "gpt-4o", "claude-3-5-haiku"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--events", type=int, default=20_000, help="events per path (default 20,000; issue: 1,000,000)"
    )
    p.add_argument("--batch", type=int, default=500, help="events per batch (default 500)")
    p.add_argument("--tenants", type=int, default=20, help="tenants the events spread over (default 20)")
    p.add_argument("--paths", default="raw,service,handler", help="comma list of raw, service, handler")
    p.add_argument(
        "--url", default=None, help="CLICKHOUSE_URL (default: a fresh embedded chdb in a temp dir)"
    )
    p.add_argument(
        "--tracemalloc-batches",
        type=int,
        default=3,
        help="handler batches measured with tracemalloc afterwards (default 3; 0 = skip)",
    )
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------- data
def wire_batch(prefix: str, index: int, size: int, tenants: int) -> list[dict[str, Any]]:
    """Deterministic wire-format events of batch ``index`` (the same content for every path)."""
    rng = random.Random(index)
    events = []
    for i in range(size):
        ts = MONTH.start + timedelta(seconds=rng.randrange(MONTH.seconds))
        kind = rng.random()
        event: dict[str, Any] = {
            "event_id": f"{prefix}-{index}-{i}",
            "tenant_id": f"bench-{rng.randrange(tenants):03d}",
            "timestamp": iso(ts),
        }
        if kind < 0.7:
            event.update(
                type="query",
                model=rng.choice(MODELS),
                input_tokens=rng.randrange(4000),
                output_tokens=rng.randrange(1000),
                bytes=rng.randrange(8192),
            )
        elif kind < 0.9:
            event.update(type="embedding", model="text-embedding-3-small", input_tokens=rng.randrange(4000))
        else:
            event.update(type="storage", bytes=rng.randrange(10**8))
        events.append(event)
    return events


def priced_rows(raw: list[dict[str, Any]]) -> list[list[Any]]:
    book = container.price_book()
    now = MONTH.end
    rows = []
    for event in parse_batch(raw, len(raw)):
        cost = book.cost(event)
        stored = event.stored(cost.cost_usd, cost.price_version, now)
        rows.append([getattr(stored, c) for c in EVENT_COLUMNS])
    return rows


# ---------------------------------------------------------------------------------------------- timing
class Busy:
    """Wall-clock seconds during which at least one call of a kind was in flight (the ledger makes
    DynamoDB calls from a thread pool, so summing per-call times would overstate it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._since = 0.0
        self.seconds = 0.0
        self.calls = 0

    def __enter__(self) -> None:
        with self._lock:
            if self._active == 0:
                self._since = time.perf_counter()
            self._active += 1
            self.calls += 1

    def __exit__(self, *exc: Any) -> None:
        with self._lock:
            self._active -= 1
            if self._active == 0:
                self.seconds += time.perf_counter() - self._since


class Clock:
    """Instruments, for the whole run, every botocore DynamoDB call and every ClickHouseUsageStore call."""

    def __init__(self) -> None:
        from botocore.client import BaseClient

        self.dynamodb, self.clickhouse = Busy(), Busy()
        original_api_call = BaseClient._make_api_call
        dynamodb = self.dynamodb

        def api_call(client: Any, operation: str, params: Any) -> Any:
            if client.meta.service_model.service_name != "dynamodb":
                return original_api_call(client, operation, params)
            with dynamodb:
                return original_api_call(client, operation, params)

        BaseClient._make_api_call = api_call  # type: ignore[method-assign]
        for name in ("insert_events", "query", "existing_event_ids"):
            original = getattr(ClickHouseUsageStore, name)

            def timed(*args: Any, __original: Any = original, **kwargs: Any) -> Any:
                with self.clickhouse:
                    return __original(*args, **kwargs)

            setattr(ClickHouseUsageStore, name, timed)

    def snapshot(self) -> tuple[float, float]:
        return self.dynamodb.seconds, self.clickhouse.seconds


@dataclass
class Result:
    path: str
    events: int
    seconds: float
    breakdown: dict[str, float]
    peak_rss_mb: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_batches(n_batches: int, prepare: Callable[[int], Any], work: Callable[[Any], None]) -> float:
    """Seconds spent in ``work`` only (data preparation is outside the timer)."""
    total = 0.0
    step = max(1, n_batches // 10)
    for index in range(n_batches):
        item = prepare(index)
        start = time.perf_counter()
        work(item)
        total += time.perf_counter() - start
        if n_batches >= 50 and (index + 1) % step == 0:
            print(f"    ... {index + 1}/{n_batches} batches, {total:.0f} s", file=sys.stderr, flush=True)
    return total


# ---------------------------------------------------------------------------------------------- paths
def bench_raw(args: argparse.Namespace, url: str, n_batches: int) -> Result:
    store = ClickHouseUsageStore.from_url(url, f"bench_raw_{uuid.uuid4().hex[:6]}", timeout_s=600)
    store.migrate()
    client = store.client
    seconds = run_batches(
        n_batches,
        lambda i: priced_rows(wire_batch("raw", i, args.batch, args.tenants)),
        lambda rows: client.insert("usage_events", rows, column_names=EVENT_COLUMNS),
    )
    stored = store.query("SELECT count() FROM usage_events")[0][0]
    assert stored == n_batches * args.batch, f"raw path stored {stored}"
    return Result("raw", stored, seconds, {"clickhouse insert": seconds}, peak_rss_mb())


def breakdown(total: float, clock: Clock, before: tuple[float, float]) -> dict[str, float]:
    ddb, ch = (now - then for now, then in zip(clock.snapshot(), before))
    return {
        "dynamodb calls (moto, in process)": ddb,
        "clickhouse calls (insert, dedup lookups)": ch,
        "everything else (validation, pricing, quota logic, HTTP, logging)": total - ddb - ch,
    }


def bench_service(args: argparse.Namespace, n_batches: int, clock: Clock) -> Result:
    service = container.ingest_service()

    def work(raw: list[dict[str, Any]]) -> None:
        result = service.ingest(parse_batch(raw, container.settings().max_batch_events), None)
        if len(result.accepted) != len(raw):
            raise RuntimeError(f"service accepted {len(result.accepted)} of {len(raw)}: {result.body()}")

    before = clock.snapshot()
    seconds = run_batches(n_batches, lambda i: wire_batch("svc", i, args.batch, args.tenants), work)
    return Result(
        "service", n_batches * args.batch, seconds, breakdown(seconds, clock, before), peak_rss_mb()
    )


def load_handler() -> Any:
    spec = importlib.util.spec_from_file_location(
        "bench_ingest_app", ROOT / "functions" / "ingest" / "app.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def api_event(body: str) -> dict[str, Any]:
    event = json.loads((ROOT / "events" / "ingest.json").read_text())
    event["headers"] = {"Content-Type": "application/json", "x-api-key": "bench"}
    event["requestContext"]["identity"]["apiKeyId"] = "platform-key"
    event["body"] = body
    return event


def bench_handler(
    args: argparse.Namespace, n_batches: int, clock: Clock, app: Any, prefix: str = "hdl"
) -> Result:
    context = LocalContext(function_name="bench-ingest", memory_limit_in_mb=1024)

    def work(event: dict[str, Any]) -> None:
        response = app.handler(event, context)
        if response["statusCode"] != 202:
            raise RuntimeError(f"handler answered {response['statusCode']}: {response['body'][:300]}")

    def prepare(i: int) -> dict[str, Any]:
        return api_event(json.dumps({"events": wire_batch(prefix, i, args.batch, args.tenants)}))

    before = clock.snapshot()
    seconds = run_batches(n_batches, prepare, work)
    return Result(
        "handler", n_batches * args.batch, seconds, breakdown(seconds, clock, before), peak_rss_mb()
    )


# ---------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    n_batches = max(1, args.events // args.batch)
    url = args.url or f"chdb://{Path(tempfile.gettempdir()) / f'billing-ingest-bench-{uuid.uuid4().hex[:8]}'}"
    results: list[Result] = []
    calls: dict[str, int] = {}
    metered: dict[str, Usage] = {}
    print(
        f"{n_batches * args.batch:,} events per path in batches of {args.batch}, {args.tenants} tenants, "
        f"ClickHouse {url.split('@')[-1]}, AWS = moto (in process); {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}"
    )

    with local_aws(prefix=f"bench{uuid.uuid4().hex[:6]}") as resources:
        os.environ.update(
            {
                "CLICKHOUSE_URL": url,
                "CLICKHOUSE_DATABASE": f"bench_ingest_{uuid.uuid4().hex[:6]}",
                "TENANTS_TABLE": resources["tenants_table"],
                "LEDGER_TABLE": resources["ledger_table"],
                "BILLING_TABLE": resources["billing_table"],
                "FALLBACK_QUEUE_URL": resources["fallback_queue_url"],
                "INVOICING_QUEUE_URL": resources["invoicing_queue_url"],
                "INVOICES_BUCKET": resources["invoices_bucket"],
                "PLATFORM_API_KEY_IDS": '["platform-key"]',
                "CLICKHOUSE_INSERT_TIMEOUT_S": "600",
                "POWERTOOLS_METRICS_NAMESPACE": "Billing",
                "POWERTOOLS_TRACE_DISABLED": "true",
                "POWERTOOLS_LOG_LEVEL": "WARNING",
                "POWERTOOLS_METRICS_DISABLED": "true",
            }
        )
        container.reset()
        container.usage_store().migrate()
        for t in range(args.tenants):  # enterprise: a 1,000,000-query monthly quota each
            container.tenants().create(
                Tenant(
                    id=f"bench-{t:03d}",
                    plans=[PlanAssignment(plan="enterprise", effective_at=MONTH.start - timedelta(days=31))],
                )
            )
        clock = Clock()
        from billing.adapters.aws.clients import dynamodb_client

        meter = DynamoMeter().attach(dynamodb_client())
        app = load_handler() if "handler" in paths or args.tracemalloc_batches else None
        for path in paths:
            gc.collect()
            if path == "raw":
                results.append(bench_raw(args, url, n_batches))
            elif path == "service":
                before, usage = clock.dynamodb.calls, meter.snapshot()
                results.append(bench_service(args, n_batches, clock))
                calls["service"] = clock.dynamodb.calls - before
                metered["service"] = meter.snapshot().minus(usage)
            elif path == "handler":
                before, usage = clock.dynamodb.calls, meter.snapshot()
                results.append(bench_handler(args, n_batches, clock, app))
                calls["handler"] = clock.dynamodb.calls - before
                metered["handler"] = meter.snapshot().minus(usage)
            else:
                raise SystemExit(f"unknown path {path!r}")
            r = results[-1]
            print(f"  {r.path:<8} {r.events:>10,} events in {r.seconds:8.1f} s = {r.rate:>10,.0f} events/s")
        stored = container.usage_store().query("SELECT count() FROM usage_events")[0][0]
        expected = sum(r.events for r in results if r.path != "raw")
        print(f"  check: usage_events holds {stored:,} rows from service+handler (expected {expected:,})")

        traced = None
        if args.tracemalloc_batches and app is not None:
            tracemalloc.start()
            bench_handler(args, args.tracemalloc_batches, clock, app, prefix="mem")
            traced = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()

    raw = next((r for r in results if r.path == "raw"), None)
    print(f"\n{'path':<9} {'events':>10} {'seconds':>9} {'events/s':>11} {'% of raw':>9} {'peak RSS MB':>12}")
    for r in results:
        share = f"{100 * r.rate / raw.rate:8.1f}%" if raw and raw.rate else "       -"
        print(
            f"{r.path:<9} {r.events:>10,} {r.seconds:>9.1f} {r.rate:>11,.0f} {share} {r.peak_rss_mb:>12.0f}"
        )
    for r in results:
        if r.path == "raw":
            continue
        print(f"\nwhere the {r.path} path's time goes:")
        for label, seconds in sorted(r.breakdown.items(), key=lambda kv: -kv[1]):
            print(f"  {label:<68} {seconds:8.1f} s {100 * seconds / r.seconds:6.1f}%")
        ddb = r.breakdown["dynamodb calls (moto, in process)"]
        if r.path in calls:
            print(f"  dynamodb calls made: {calls[r.path]:,} ({calls[r.path] / r.events:.2f} per event)")
        if r.path in metered:
            u = metered[r.path]
            print(
                f"  dynamodb per batch of {args.batch} ({args.tenants} tenants): {u.total_requests / n_batches:.1f} "
                f"requests ("
                + ", ".join(f"{op} {n / n_batches:.1f}" for op, n in sorted(u.requests.items()))
                + f"), "
                f"{u.wru / n_batches:.1f} WRU, {u.rru / n_batches:.1f} RRU; per accepted event "
                f"{u.total_requests / r.events:.3f} requests, {u.wru / r.events:.2f} WRU, {u.rru / r.events:.3f} RRU"
            )
        if raw and r.seconds > ddb:
            rate = r.events / (r.seconds - ddb)
            print(
                f"  without the moto DynamoDB time: {rate:,.0f} events/s = {100 * rate / raw.rate:.1f}% of raw"
            )
    if traced is not None:
        print(
            f"\ntracemalloc peak over {args.tracemalloc_batches} handler batches of {args.batch}: {traced:.1f} MiB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
