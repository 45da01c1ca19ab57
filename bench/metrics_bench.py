"""Rate a month of charges on catalog metrics: 1,000 tenants, events with properties, in embedded
ClickHouse (chdb), next to a plain ClickHouse scan of the same rows in the same run.

Every plan carries a unique-count charge (active users, graduated) and a grouped charge (GPU seconds
per gpu, per unit); ``--gauge`` adds a charge on a time-weighted sum (GB-hours of storage events,
graduated). The plain scan reads the same rows once: per tenant, the event count, the exact number
of distinct users and the seconds per gpu (``GROUP BY tenant_id, gpu``), with no FINAL, no
segments and no pricing. Printed: both times (best of ``--runs``), their ratio (goal: rating at most
3x the scan; nothing here asserts on time), each charge's measure query on its own, and the load.

    .venv/bin/python bench/metrics_bench.py [--events 1000000] [--tenants 1000] [--multi 50] [--gauge]

The issue's size is ``--events 10000000``; the default is 1,000,000 so that ``make bench`` stays
short on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from rating_bench import MONTH, NoCloses, best_of, tenants

from billing.adapters.clickhouse.measure_queries import segment_measures
from billing.adapters.clickhouse.rating_queries import ClickHouseRatingQueries, ms
from billing.adapters.clickhouse.usage_store import ClickHouseUsageStore
from billing.catalog.plans import PlanCatalog
from billing.rating import Rater
from billing.runtime.settings import PACKAGE_CONFIG
from billing.statements.close import BillingCycle

METRICS = [
    {"id": "active_users", "name": "Active users", "unit": "users", "event_types": ["query"],
     "aggregation": "unique_count", "property": "user"},
    {"id": "gpu_seconds", "name": "GPU seconds", "unit": "seconds", "event_types": ["query"],
     "aggregation": "sum", "property": "seconds"},
    {"id": "storage_gbh", "name": "Storage", "unit": "GB-hours", "event_types": ["storage"],
     "aggregation": "time_weighted_sum", "property": "gb", "per": "hour"},
]  # fmt: skip
CHARGES = [
    {"id": "users", "name": "Active users", "metric": "active_users", "charge_model": "graduated",
     "tiers": [{"up_to": 50, "unit_price": "0"}, {"up_to": None, "unit_price": "0.50"}]},
    {"id": "gpu", "name": "GPU seconds", "metric": "gpu_seconds", "group_by": ["gpu"],
     "charge_model": "per_unit", "unit_price": "0.004"},
]  # fmt: skip
GAUGE = {"id": "storage", "name": "Storage", "metric": "storage_gbh", "charge_model": "graduated",
         "tiers": [{"up_to": "1000.5", "unit_price": "0"}, {"up_to": None, "unit_price": "0.0002"}]}  # fmt: skip


def catalog(gauge: bool) -> PlanCatalog:
    """The shipped plans, each with the bench's charges on catalog metrics."""
    shipped = PlanCatalog.load(PACKAGE_CONFIG / "plans.yaml").model_dump(mode="json")
    charges = CHARGES + ([GAUGE] if gauge else [])
    for plan in shipped["plans"]:
        plan["charges"] = charges
    return PlanCatalog.model_validate({**shipped, "metrics": METRICS})


def load(store: ClickHouseUsageStore, events: int, tenant_count: int) -> float:
    """Events spread evenly over the month: 9 in 10 queries (a user of 200 per tenant, a gpu of 3,
    0.0-99.9 seconds), 1 in 10 storage events (0-499 GB)."""
    started = time.perf_counter()
    step_ms = MONTH.seconds * 1000 // events
    at = f"fromUnixTimestamp64Milli(toInt64({ms(MONTH.start)} + number * {step_ms}), 'UTC')"
    store.client.command(f"""
        INSERT INTO usage_events (tenant_id, event_id, timestamp, type, model, queries, input_tokens,
                                  output_tokens, bytes, cost_usd, price_version, accepted_at,
                                  string_properties, number_properties)
        SELECT concat('tenant-', leftPad(toString(number % {tenant_count}), 4, '0')),
               concat('e', toString(number)), {at},
               if(intDiv(number, {tenant_count}) % 10 = 0, 'storage', 'query'), '',
               if(intDiv(number, {tenant_count}) % 10 = 0, 0, 1), 0, 0, 0,
               toDecimal128(0, 9), '2025-01-01T00:00:00Z', {at},
               if(intDiv(number, {tenant_count}) % 10 = 0, map(),
                  map('user', concat('u', toString(intDiv(number, {tenant_count}) % 200)),
                      'gpu', ['h100', 'a100', 'l4'][number % 3 + 1])),
               CAST(if(intDiv(number, {tenant_count}) % 10 = 0, map('gb', toDecimal128(number % 500, 18)),
                       map('seconds', toDecimal128(number % 1000, 18) / 10)),
                    'Map(LowCardinality(String), Decimal(38, 18))')
        FROM numbers({events})
        SETTINGS max_insert_block_size = 1000000
    """)
    # Background merges would do this over time; merged parts are what a month-end close reads.
    store.client.command("OPTIMIZE TABLE usage_events FINAL")
    store.client.command("OPTIMIZE TABLE usage_hourly FINAL")
    return time.perf_counter() - started


def plain_scan(store: ClickHouseUsageStore) -> list:
    """The same rows read once, the work a hand-written query would do: no FINAL, no segments."""
    return store.query(
        """SELECT tenant_id, gpu, count(), uniqExact(user), sum(seconds) FROM (
               SELECT tenant_id, string_properties['user'] AS user, string_properties['gpu'] AS gpu,
                      toDecimal256(number_properties['seconds'], 18) AS seconds
               FROM usage_events WHERE _partition_id = {partition:String})
           GROUP BY tenant_id, gpu""",
        {"partition": f"{MONTH.year:04d}{MONTH.month:02d}"},
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000, help="the issue's size: 10000000")
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--multi", type=int, default=50, help="tenants with several pricing segments")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--gauge", action="store_true", help="also a charge on a time-weighted sum")
    parser.add_argument("--reuse", type=Path, help="a data directory left by an earlier run (skips loading)")
    parser.add_argument("--load-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.load_only:  # child process: load the data, so the parent's peak memory is the rating's
        store = ClickHouseUsageStore.from_url(f"chdb://{args.load_only}", "bench")
        store.migrate()
        print(f"  loaded in {load(store, args.events, args.tenants):.1f} s", flush=True)
        return
    path = args.reuse or Path(tempfile.mkdtemp(prefix="metrics-bench-"))
    if not args.reuse:
        print(f"loading {args.events:,} events for {args.tenants:,} tenants into {path} ...", flush=True)
        subprocess.run(
            [sys.executable, __file__, "--load-only", str(path), "--events", str(args.events),
             "--tenants", str(args.tenants)],
            check=True,
        )  # fmt: skip
    store = ClickHouseUsageStore.from_url(f"chdb://{path}", "bench")
    queries = ClickHouseRatingQueries(store)
    rater = Rater(catalog(args.gauge))
    cycle = BillingCycle(
        tenants=None,
        periods=NoCloses(),
        statements=None,
        queries=queries,
        rater=rater,
        jobs=None,
        archive=None,
        fallback_depth=lambda: 0,
    )
    population = tenants(args.tenants, args.multi)
    cutoff = MONTH.end + timedelta(days=400)  # every row (stored_at is "now")

    scan_s, rows = best_of(args.runs, lambda: plain_scan(store))
    rate_s, statements = best_of(args.runs, lambda: cycle.rate(population, MONTH, cutoff))
    segments = {t.id: rater.segments(t, MONTH) for t in population}
    bounds = {t: [ms(s.start) for s in segs] + [ms(segs[-1].end)] for t, segs in segments.items()}
    per_charge = {}
    for measure in rater.measures(segments[population[0].id]):
        asked = {t: [measure] for t in segments}
        per_charge[measure.charge_id], _ = best_of(
            args.runs, lambda asked=asked: segment_measures(store, segments, asked, MONTH, bounds, ms(cutoff))
        )
    assert len(statements) == args.tenants  # type: ignore[arg-type]
    total = sum(s.total for s in statements)  # type: ignore[union-attr]
    lines = sum(len(s.lines) for s in statements)  # type: ignore[union-attr]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"plain GROUP BY scan       : {scan_s * 1000:8.1f} ms  ({len(rows):,} tenant x gpu rows)")  # type: ignore[arg-type]
    print(
        f"month's rating (FINAL)    : {rate_s * 1000:8.1f} ms  ({len(statements):,} statements, "  # type: ignore[arg-type]
        f"{lines:,} lines, {args.multi} multi-segment, total {total:,.2f} USD)"
    )
    print(
        "  each charge's measure query alone: "
        + ", ".join(f"{charge} {s * 1000:.0f} ms" for charge, s in per_charge.items())
    )
    print(f"rating / scan             : {rate_s / scan_s:8.2f} x  (goal <= 3 x)")
    print(f"peak memory (process RSS) : {peak_mb:8.0f} MB  (rating process; data loaded by a child process)")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end of the run")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
