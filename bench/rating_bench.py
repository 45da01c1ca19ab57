"""Rate a whole month: 1,000 tenants x 10 million events in embedded ClickHouse (chdb).

Prints the time of the month's rating (ClickHouse reads with FINAL + the rating engine, every tenant's
statement built) next to a plain GROUP BY scan of the same rows in the same run, and peak memory.
Target: rating within 1 s on a 2-core machine, memory under 1 GB.

    .venv/bin/python bench/rating_bench.py [--events 10000000] [--tenants 1000] [--multi 50] [--charges]

``--charges`` rates with every plan also carrying charges (graduated output tokens of the model the
events use, volume on queries, per-unit embedding events), so every tenant's meters are read too.
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
from decimal import Decimal
from pathlib import Path

from billing.adapters.clickhouse.rating_queries import ClickHouseRatingQueries
from billing.adapters.clickhouse.usage_store import ClickHouseUsageStore
from billing.catalog.plans import Charge, ChargeTier, PlanCatalog
from billing.kernel.periods import Month
from billing.rating import Rater
from billing.runtime.settings import PACKAGE_CONFIG
from billing.statements.close import BillingCycle
from billing.tenants.tenant import PlanAssignment, Tenant

MONTH = Month(2025, 11)


class NoCloses:
    def closed_at(self, month):
        return None


def tenants(count: int, multi: int) -> list[Tenant]:
    """Single-plan tenants, plus ``multi`` with a mid-month upgrade and a trial ending mid-month."""
    plans = ["starter", "pro", "enterprise", "payg"]
    out = []
    for i in range(count):
        history = [PlanAssignment(plan=plans[i % 4], effective_at=MONTH.start - timedelta(days=40))]
        extra = {}
        if i < multi:
            history.append(
                PlanAssignment(plan="enterprise", effective_at=MONTH.start + timedelta(days=10 + i % 10))
            )
            extra["trial_ends_at"] = MONTH.start + timedelta(days=3, hours=i)
        out.append(Tenant(id=f"tenant-{i:04d}", plans=history, **extra))
    return out


def load(store: ClickHouseUsageStore, events: int, tenant_count: int) -> float:
    started = time.perf_counter()
    step_ms = MONTH.seconds * 1000 // events
    store.client.command(f"""
        INSERT INTO usage_events (tenant_id, event_id, timestamp, type, model, queries, input_tokens,
                                  output_tokens, bytes, cost_usd, price_version, accepted_at)
        SELECT concat('tenant-', leftPad(toString(number % {tenant_count}), 4, '0')),
               concat('e', toString(number)),
               fromUnixTimestamp64Milli(toInt64({int(MONTH.start.timestamp() * 1000)} + number * {step_ms}), 'UTC'),
               if(number % 10 = 0, 'embedding', 'query'), 'gpt-4o-mini', if(number % 10 = 0, 0, 1),
               1000 + number % 500, 200 + number % 100, 0,
               toDecimal128((1000 + number % 500) * 0.15 / 1000000 * 1.25, 9), '2025-01-01T00:00:00Z',
               fromUnixTimestamp64Milli(toInt64({int(MONTH.start.timestamp() * 1000)} + number * {step_ms}), 'UTC')
        FROM numbers({events})
        SETTINGS max_insert_block_size = 1000000
    """)
    # Background merges would do this over time; merged parts are what a month-end close reads.
    store.client.command("OPTIMIZE TABLE usage_events FINAL")
    store.client.command("OPTIMIZE TABLE usage_hourly FINAL")
    return time.perf_counter() - started


def with_charges(catalog: PlanCatalog) -> PlanCatalog:
    charges = [
        Charge(id="out", metric="output_tokens", model="gpt-4o-mini", charge_model="graduated",
               tiers=[ChargeTier(up_to=1_000_000, unit_price=Decimal("0")),
                      ChargeTier(up_to=None, unit_price=Decimal("0.000002"), flat_amount=Decimal("5"))]),
        Charge(id="calls", metric="queries", charge_model="volume",
               tiers=[ChargeTier(up_to=5000, unit_price=Decimal("0.001")), ChargeTier(unit_price=Decimal("0.0005"))]),
        Charge(id="embeds", metric="events", event_type="embedding", charge_model="per_unit",
               unit_price=Decimal("0.0001")),
    ]  # fmt: skip
    return catalog.model_copy(
        update={"plans": [p.model_copy(update={"charges": charges}) for p in catalog.plans]}
    )


def best_of(runs: int, fn) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--multi", type=int, default=50, help="tenants with several pricing segments")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--charges", action="store_true", help="plans with charges (meters read for every tenant)"
    )
    parser.add_argument("--reuse", type=Path, help="a data directory left by an earlier run (skips loading)")
    parser.add_argument("--load-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.load_only:  # child process: load the data, so the parent's peak memory is the rating's
        store = ClickHouseUsageStore.from_url(f"chdb://{args.load_only}", "bench")
        store.migrate()
        print(
            f"  loaded in {load(store, args.events, args.tenants):.1f} s "
            f"(loader peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)",
            flush=True,
        )
        return
    path = args.reuse or Path(tempfile.mkdtemp(prefix="rating-bench-"))
    if not args.reuse:
        print(f"loading {args.events:,} events for {args.tenants:,} tenants into {path} ...", flush=True)
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--load-only",
                str(path),
                "--events",
                str(args.events),
                "--tenants",
                str(args.tenants),
            ],
            check=True,
        )
    store = ClickHouseUsageStore.from_url(f"chdb://{path}", "bench")

    queries = ClickHouseRatingQueries(store)
    cycle = BillingCycle(
        tenants=None,
        periods=NoCloses(),
        statements=None,
        queries=queries,
        rater=Rater(
            with_charges(PlanCatalog.load(PACKAGE_CONFIG / "plans.yaml"))
            if args.charges
            else PlanCatalog.load(PACKAGE_CONFIG / "plans.yaml")
        ),
        jobs=None,
        archive=None,
        fallback_depth=lambda: 0,
    )
    population = tenants(args.tenants, args.multi)
    cutoff = MONTH.end + timedelta(days=400)  # every row (stored_at is "now")

    scan_s, rows = best_of(args.runs, lambda: queries.month_totals_scan(MONTH))
    rate_s, statements = best_of(args.runs, lambda: cycle.rate(population, MONTH, cutoff))
    segments = {t.id: cycle.rater.segments(t, MONTH) for t in population}
    split = {t: s for t, s in segments.items() if len(s) > 1}
    totals_s, _ = best_of(args.runs, lambda: queries.month_usage({}, MONTH, cutoff))
    split_s, _ = best_of(args.runs, lambda: queries.month_usage(split, MONTH, cutoff))
    metered = [t for t, segs in segments.items() if cycle.rater.needs_meters(segs)]
    measures = {t: m for t, segs in segments.items() if (m := cycle.rater.measures(segs))}
    usage = queries.month_usage(segments, MONTH, cutoff, metered=metered, measures=measures)
    meters_s = 0.0
    if metered:
        totals = {t: u.total for t, u in usage.items()}
        meters_s, _ = best_of(
            args.runs,
            lambda: queries.segment_meters({t: segments[t] for t in metered}, MONTH, cutoff, totals),
        )
    engine_s, _ = best_of(
        args.runs, lambda: [cycle.rater.rate(t, MONTH, usage[t.id], usage_cutoff=cutoff) for t in population]
    )
    assert len(rows) == args.tenants and len(statements) == args.tenants  # type: ignore[arg-type]
    total = sum(s.total for s in statements)  # type: ignore[union-attr]
    events = sum(s.total_queries for s in statements)  # type: ignore[union-attr]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"plain GROUP BY scan       : {scan_s * 1000:8.1f} ms  ({len(rows):,} tenants)")  # type: ignore[arg-type]
    print(
        f"month's rating (FINAL)    : {rate_s * 1000:8.1f} ms  ({len(statements):,} statements, "  # type: ignore[arg-type]
        f"{args.multi} multi-segment, {events:,} queries, total {total:,.2f} USD)"
    )
    print(
        f"  parts (each best of the runs, measured separately): totals scan (FINAL) {totals_s * 1000:.0f} ms, multi-segment scan "
        f"{(split_s - totals_s) * 1000:.0f} ms, rating engine (Python) {engine_s * 1000:.0f} ms"
        + (
            f", meters scan for charges {meters_s * 1000:.0f} ms ({len(metered):,} tenants)"
            if metered
            else ""
        )
    )
    print(f"rating / scan             : {rate_s / scan_s:8.2f} x")
    print(f"peak memory (process RSS) : {peak_mb:8.0f} MB  (rating process; data loaded by a child process)")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end of the run")
    print(
        f"target: rating <= 1000 ms -> {'OK' if rate_s <= 1 else 'MISSED'}; memory < 1024 MB -> "
        f"{'OK' if peak_mb < 1024 else 'MISSED'}"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
