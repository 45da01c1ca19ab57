"""Scale model of one tenant with many writers: the per-tenant lock design next to the
lock-free one, in the same run, against moto's DynamoDB in its own process with network latency
injected, and a ClickHouse stand-in whose insert takes a fixed time.

    python bench/scale_model.py                          # N = 1..64, ~3 minutes
    python bench/scale_model.py --writers 1,8,32 --seconds 10 --batch 100
    python bench/scale_model.py --designs lockfree --ddb-ms 4 --ch-ms 30

The model:
- writers: N threads spread over ``--procs`` processes (each process is one "Lambda fleet" slice
  with its own boto3 client and the real ``IngestService``), all writing for ONE tenant, each
  sending batches of B events back to back (70% queries, 20% embeddings, 10% storage; timestamps
  spread over November 2025) and retrying a 503 at once, as the usage_tracker client does;
  (until the run's end; a 503 after it is counted and not retried, so a run lasts at most
  ``--seconds`` plus one lock wait); ``--resend`` of the batches are sent a second time right after their answer, and must come back
  as duplicates only;
- DynamoDB: ``python -m billing_local.moto_server`` out of process, reached over HTTP via
  AWS_ENDPOINT_URL; every call first sleeps ``--ddb-ms`` (a botocore ``before-send`` hook: the
  round trip a Lambda sees in-region); conditional writes and transactions are atomic; with
  ``--tx-ms`` a transaction keeps its items that long and one touching them meanwhile is cancelled
  with TransactionConflict (DynamoDB's behaviour on a hot item, here the tenant's quota counter;
  the ledger retries it with jitter);
- ClickHouse: an in-memory stand-in per process whose insert sleeps ``--ch-ms`` (ClickHouse Cloud's
  insert round trip) and records every row it gets, so a second insert of an event is seen;
- lock design: ``billing_local.locked_ingest.TenantLockedIngest``: the old lease lock (conditional
  put, jittered retry for up to 20 s, then 503) held around the whole of today's ingest.

After each run the data is checked: no event inserted twice, every accepted event stored, every
resent batch answered as duplicates, and the tenant's quota counter equal to its stored queries.
A last run (``--quota-writers``) gives the tenant a quota it will exhaust and checks that exactly
that many queries are stored and counted. Prints figures only; nothing is asserted on time.

Besides events/s, latency and 503s, each run prints the DynamoDB requests per batch and write units
per accepted event it counted, the CPU the writers and the moto server spent per batch (w+m), moto's
share of one core (it serves every writer from one process), and the CPU ceiling: the events/s
that CPU per batch would allow if this machine's cores ran nothing else. The load average is
printed before the first run and after the last: other jobs on the machine take CPU from both.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import resource
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MONTH_START = "2025-11-01T00:00:00Z"
MONTH_SECONDS = 30 * 86_400
MODELS = ["gpt-4o-mini", "gpt-4o", "claude-3-5-haiku"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--writers", default="1,2,4,8,16,32,64", help="comma list of N (default 1..64)")
    p.add_argument("--designs", default="lock,lockfree", help="comma list of lock, lockfree")
    p.add_argument("--batch", type=int, default=50, help="events per batch B (default 50)")
    p.add_argument("--seconds", type=float, default=6.0, help="sending time per run (default 6)")
    p.add_argument("--ddb-ms", type=float, default=8.0, help="round trip added to each DynamoDB call")
    p.add_argument("--ch-ms", type=float, default=80.0, help="time of each ClickHouse insert")
    p.add_argument(
        "--tx-ms",
        type=float,
        default=0.0,
        help="how long a DynamoDB transaction keeps its items: another one touching them meanwhile is "
        "cancelled with TransactionConflict (default 0: never, as moto)",
    )
    p.add_argument("--procs", type=int, default=2, help="writer processes (default 2)")
    p.add_argument("--resend", type=float, default=0.05, help="share of batches sent twice (default 5%%)")
    p.add_argument("--quota-writers", type=int, default=16, help="writers of the quota run (0: skip)")
    p.add_argument("--quota", type=int, default=1500, help="the quota run's monthly query quota")
    return p.parse_args(argv)


# --------------------------------------------------------------------------------------- moto server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far; 0 where /proc is not there."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_moto(port: int, transaction_ms: float = 0.0) -> subprocess.Popen[bytes]:
    from billing_local.aws import TRANSACTION_MS_VARIABLE

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), TRANSACTION_MS_VARIABLE: str(transaction_ms)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "billing_local.moto_server", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto server did not start")


# --------------------------------------------------------------------------------------- ClickHouse
class LatencyStore:
    """ClickHouse stand-in: each insert takes ``delay`` seconds, then every row is recorded."""

    def __init__(self, delay: float):
        self.delay = delay
        self.lock = threading.Lock()
        self.rows: Counter[tuple[str, str]] = Counter()
        self.queries: set[tuple[str, str]] = set()

    def insert_events(self, events: Sequence[Any]) -> None:
        time.sleep(self.delay)
        with self.lock:
            for e in events:
                self.rows[(e.tenant_id, e.event_id)] += 1
                if e.queries:
                    self.queries.add((e.tenant_id, e.event_id))

    def existing_event_ids(self, tenant_id: str, event_ids: Sequence[str]) -> set[str]:
        with self.lock:
            return {i for i in event_ids if (tenant_id, i) in self.rows}


# --------------------------------------------------------------------------------------- writers
def make_batch(tenant: str, prefix: str, size: int, rng: random.Random) -> list[Any]:
    from billing.kernel.periods import iso, parse_instant
    from billing.metering.events import UsageEvent

    start = parse_instant(MONTH_START)
    out = []
    for i in range(size):
        event: dict[str, Any] = {
            "event_id": f"{prefix}-{i}",
            "tenant_id": tenant,
            "timestamp": iso(start + timedelta(seconds=rng.randrange(MONTH_SECONDS))),
        }
        kind = rng.random()
        if kind < 0.7:
            event.update(
                type="query",
                model=rng.choice(MODELS),
                input_tokens=rng.randrange(4000),
                output_tokens=rng.randrange(1000),
            )
        elif kind < 0.9:
            event.update(type="embedding", model="text-embedding-3-small", input_tokens=rng.randrange(4000))
        else:
            event.update(type="storage", bytes=rng.randrange(10**8))
        out.append(UsageEvent.model_validate(event))
    return out


def writer_process(job: dict[str, Any], out: Any, ready: Any, go: Any, window: Any) -> None:
    """One process of writers: ``job['threads']`` threads sending batches until ``stop_at``."""
    from billing.adapters.aws.clients import dynamodb_client
    from billing.kernel.errors import BillingError
    from billing.metering.ingest import IngestService
    from billing.runtime import container
    from billing_local.aws_meter import DynamoMeter
    from billing_local.locked_ingest import TenantLockedIngest

    container.reset()
    s = container.settings()
    store = LatencyStore(job["ch_s"])
    service = IngestService(
        tenants=container.tenants(),
        ledger=container.ledger(),
        periods=container.periods(),
        store=store,
        fallback=container.fallback_queue(),
        price_book=container.price_book(),
        catalog=container.plan_catalog(),
        dedup_retention_days=s.dedup_retention_days,
        claim_wait_seconds=s.ingest_claim_wait_seconds,
    )
    client = dynamodb_client()
    meter = DynamoMeter(job["ddb_s"]).attach(client)
    ingest = (
        TenantLockedIngest(service, client, s.ledger_table).ingest
        if job["design"] == "lock"
        else service.ingest
    )
    tenant = job["tenant"]
    service.tenants.get_many([tenant])  # warm imports and connections before the clock starts
    ready.put(job["proc"])
    go.wait()
    start_at, stop_at = window[0], window[1]
    lock = threading.Lock()
    stats: dict[str, Any] = {
        "latencies": [],
        "batches": 0,
        "accepted": 0,
        "503": 0,
        "429": 0,
        "errors": Counter(),
        "resend_mismatch": 0,
        "last_done": 0.0,
    }

    def send(batch: list[Any]) -> Any:
        while True:
            try:
                return ingest(batch)
            except BillingError as error:
                if error.status == 503:
                    with lock:
                        stats["503"] += 1
                    if time.time() < stop_at:  # past the run's end a 503 is not retried (keeps runs short)
                        continue
                return error

    def run(thread_index: int) -> None:
        rng = random.Random(f"{job['run']}-{job['proc']}-{thread_index}")
        while time.time() < start_at:
            time.sleep(0.005)
        seq = 0
        while time.time() < stop_at:
            prefix = f"{job['run']}-{job['proc']}-{thread_index}-{seq}"
            seq += 1
            batch = make_batch(tenant, prefix, job["batch"], rng)
            t0 = time.perf_counter()
            result = send(batch)
            elapsed = time.perf_counter() - t0
            again = None
            if not isinstance(result, BillingError) and rng.random() < job["resend"]:
                again = send(batch)
            with lock:
                stats["latencies"].append(elapsed)
                stats["batches"] += 1
                stats["last_done"] = time.time()
                if isinstance(result, BillingError) and result.status == 429:
                    stats["429"] += 1
                elif isinstance(result, BillingError):
                    stats["errors"][result.status] += 1
                else:
                    stats["accepted"] += len(result.accepted)
                if again is not None and not isinstance(again, BillingError):
                    expected = set(result.accepted) if not isinstance(result, BillingError) else set()
                    if again.accepted or not expected <= set(again.duplicates):
                        stats["resend_mismatch"] += 1

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    before = meter.snapshot()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(job["threads"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    usage = meter.snapshot().minus(before)
    stats["cpu_s"] = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    stats["requests"] = dict(usage.requests)
    stats["wru"], stats["rru"] = usage.wru, usage.rru
    stats["rows"] = dict(store.rows)
    stats["queries"] = sorted(store.queries)
    stats["errors"] = dict(stats["errors"])
    out.put(stats)


# --------------------------------------------------------------------------------------- a run
def create_tenant(tenant: str, quota: int | None) -> None:
    from billing.kernel.periods import parse_instant
    from billing.runtime import container
    from billing.tenants.tenant import PlanAssignment, Tenant

    plans = (
        []
        if quota is not None
        else [PlanAssignment(plan="enterprise", effective_at=parse_instant("2025-10-01T00:00:00Z"))]
    )
    assert container.tenants().create(Tenant(id=tenant, plans=plans, query_quota=quota))


def counter(tenant: str) -> int:
    from billing.runtime import container

    return container.ledger().quota_used(tenant, "2025-11")[0]


def run_once(args: argparse.Namespace, design: str, writers: int, quota: int | None = None) -> dict[str, Any]:
    tenant = f"{design}-{writers}-{uuid.uuid4().hex[:6]}"
    create_tenant(tenant, quota)
    procs = max(1, min(writers, args.procs))
    share = [writers // procs + (1 if i < writers % procs else 0) for i in range(procs)]
    ctx = mp.get_context("fork")
    out, ready, go, window = ctx.Queue(), ctx.Queue(), ctx.Event(), ctx.Array("d", 2)
    children = []
    for index, threads in enumerate(share):
        job = {
            "design": design,
            "tenant": tenant,
            "run": tenant,
            "proc": index,
            "threads": threads,
            "batch": args.batch,
            "ddb_s": args.ddb_ms / 1000,
            "ch_s": args.ch_ms / 1000,
            "resend": args.resend,
        }
        child = ctx.Process(target=writer_process, args=(job, out, ready, go, window))
        child.start()
        children.append(child)
    for _ in children:  # every process is warm before the clock starts
        ready.get(timeout=300)
    start_at = time.time() + 0.2
    window[0], window[1] = start_at, start_at + args.seconds
    moto_cpu = process_cpu_s(args.moto_pid)
    go.set()
    results = [out.get(timeout=600) for _ in children]
    moto_cpu = process_cpu_s(args.moto_pid) - moto_cpu
    for child in children:
        child.join()
    latencies = sorted(x for r in results for x in r["latencies"])
    rows: Counter[tuple[str, str]] = Counter()
    queries: set[tuple[str, str]] = set()
    for r in results:
        rows.update(r["rows"])
        queries.update(map(tuple, r["queries"]))
    accepted = sum(r["accepted"] for r in results)
    elapsed = max(r["last_done"] for r in results) - start_at
    requests: Counter[str] = Counter()
    for r in results:
        requests.update(r["requests"])
    batches = sum(r["batches"] for r in results)
    sent_batches = batches  # resends are not counted as batches; their requests are
    problems = []
    twice = sum(1 for n in rows.values() if n > 1)
    if twice:
        problems.append(f"{twice} events inserted twice")
    if len(rows) != accepted:
        problems.append(f"{len(rows)} events stored but {accepted} accepted")
    mismatch = sum(r["resend_mismatch"] for r in results)
    if mismatch:
        problems.append(f"{mismatch} resent batches not answered as duplicates")
    used = counter(tenant)
    if used != len(queries):
        problems.append(f"quota counter {used} != {len(queries)} stored queries")
    if quota is not None and len(queries) > quota:
        problems.append(f"{len(queries)} queries stored over a quota of {quota}")
    errors: Counter[int] = Counter()
    for r in results:
        errors.update({int(k): v for k, v in r["errors"].items()})
    return {
        "design": design,
        "writers": writers,
        "events_per_s": accepted / elapsed if elapsed > 0 else 0.0,
        "accepted": accepted,
        "batches": sent_batches,
        "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else 0.0,
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else 0.0,
        "503": sum(r["503"] for r in results),
        "429": sum(r["429"] for r in results),
        "errors": dict(errors),
        "requests": requests,
        "wru": sum(r["wru"] for r in results),
        "rru": sum(r["rru"] for r in results),
        "cpu_s": sum(r["cpu_s"] for r in results),
        "moto_cpu_s": moto_cpu,
        "elapsed": elapsed,
        "stored_queries": len(queries),
        "counter": used,
        "check": "ok" if not problems else "; ".join(problems),
    }


# --------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    writers = [int(n) for n in args.writers.split(",") if n.strip()]
    designs = [d.strip() for d in args.designs.split(",") if d.strip()]
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    print(
        f"one tenant, batches of {args.batch}, {args.seconds:g} s per run, DynamoDB +{args.ddb_ms:g} ms per call "
        f"(moto server at {endpoint}), ClickHouse insert {args.ch_ms:g} ms, "
        f"transactions hold their items {args.tx_ms:g} ms, writers in {args.procs} processes; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    moto = start_moto(port, args.tx_ms)
    args.moto_pid = moto.pid
    try:
        from billing_local.aws import create_resources, fake_credentials, resource_environment

        fake_credentials()
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        resources = create_resources(prefix=f"scale{uuid.uuid4().hex[:6]}")
        os.environ.update(
            {
                **resource_environment(resources),
                "CLICKHOUSE_URL": "chdb:///nonexistent-unused",
                "POWERTOOLS_TRACE_DISABLED": "true",
                "POWERTOOLS_LOG_LEVEL": "ERROR",
                "POWERTOOLS_METRICS_DISABLED": "true",
                "POWERTOOLS_METRICS_NAMESPACE": "Billing",
            }
        )
        from billing.runtime import container

        container.reset()
        results = []
        header = (
            f"{'design':<9}{'N':>4}{'events/s':>10}{'batches':>9}{'p50 ms':>9}{'p99 ms':>9}{'503s':>6}"
            f"{'DDB req/batch':>15}{'WRU/event':>11}{'CPU ms/batch w+m':>18}{'moto CPU':>10}{'CPU ceiling':>13}  check"
        )
        print(header, flush=True)
        for n in writers:
            for design in designs:
                r = run_once(args, design, n)
                results.append(r)
                per_batch = sum(r["requests"].values()) / max(1, r["batches"])
                per_event = r["wru"] / max(1, r["accepted"])
                # CPU of the writers and of moto per batch sent, and the events/s that CPU would allow
                # if every core of this machine ran nothing else
                writers_ms = 1000 * r["cpu_s"] / max(1, r["batches"])
                moto_ms = 1000 * r["moto_cpu_s"] / max(1, r["batches"])
                cpu_ms = writers_ms + moto_ms
                ceiling = (os.cpu_count() or 1) * 1000 / max(1e-9, cpu_ms) * args.batch
                print(
                    f"{design:<9}{n:>4}{r['events_per_s']:>10,.0f}{r['batches']:>9}{r['p50_ms']:>9.0f}"
                    f"{r['p99_ms']:>9.0f}{r['503']:>6}{per_batch:>15.1f}{per_event:>11.2f}{f'{writers_ms:.0f}+{moto_ms:.0f}':>18}"
                    f"{100 * r['moto_cpu_s'] / max(1e-9, r['elapsed']):>9.0f}%{ceiling:>13,.0f}  "
                    f"{r['check']}{'  errors ' + str(r['errors']) if r['errors'] else ''}",
                    flush=True,
                )
        by = {(r["design"], r["writers"]): r for r in results}
        if "lock" in designs and "lockfree" in designs:
            print(
                "\nlock-free / lock events/s: "
                + ", ".join(
                    f"N={n}: {by[('lockfree', n)]['events_per_s'] / max(1e-9, by[('lock', n)]['events_per_s']):.1f}x"
                    for n in writers
                )
            )
        for design in designs:
            first = max((r for r in results if r["design"] == design), key=lambda r: r["batches"])
            print(
                f"\n{design}: DynamoDB requests per batch by operation (N={first['writers']}, the run with the most "
                "batches; resent batches' requests included):"
            )
            for op, count in sorted(first["requests"].items()):
                print(f"  {op:<20} {count / max(1, first['batches']):6.2f}")
            print(
                f"  write units per accepted event {first['wru'] / max(1, first['accepted']):.2f}, "
                f"read units per accepted event {first['rru'] / max(1, first['accepted']):.3f}"
            )
        print(f"\nload average after the runs: {os.getloadavg()[0]:.1f}")
        if args.quota_writers:
            r = run_once(args, "lockfree", args.quota_writers, quota=args.quota)
            print(
                f"\nquota run: lock-free, N={args.quota_writers}, quota {args.quota}: {r['stored_queries']} queries "
                f"stored, counter {r['counter']}, {r['429']} answers 429, {r['503']} 503s: {r['check']}"
            )
    finally:
        moto.terminate()
        try:
            moto.wait(timeout=10)
        except subprocess.TimeoutExpired:
            moto.kill()
            moto.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
