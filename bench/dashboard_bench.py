"""Dashboard load time at scale: N usage events for ~1,000 tenants with one large tenant, then every
panel (and variable) query of every Grafana dashboard, timed for the largest tenant.

    python bench/dashboard_bench.py                       # 10,000,000 events, embedded chdb
    python bench/dashboard_bench.py --events 1000000      # quicker
    python bench/dashboard_bench.py --url http://default:@localhost:8123 --keep   # a server; keep data
    python bench/dashboard_bench.py --no-portal           # operator dashboards only
    python bench/dashboard_bench.py --time-zone Asia/Kolkata   # the largest tenant's days start at 18:30 UTC
    python bench/dashboard_bench.py --url chdb:///tmp/b --database b --keep   # then, to time again:
    python bench/dashboard_bench.py --url chdb:///tmp/b --database b --keep --reuse --no-portal

After the dashboards it times the tenant usage page's data for the same largest tenant (a first
request that rates and caches, then hits served from the cached items; the statement preview
through the close/preview service and the rollup reads a miss costs, each on its own; AWS in moto
in-process) and the page's HTML rendering, traces one request (each DynamoDB call and ClickHouse
query, timed), and cross-checks the page's per-day figures against usage_events FINAL per local
day. Target: the page's data < 100 ms. With ``--time-zone`` other than UTC the tenant has a
calendar in that zone, so its page shows its own period by local days.

Events are generated inside ClickHouse (INSERT ... SELECT FROM numbers()), so the materialized views
fill usage_hourly, usage_daily and usage_metrics_daily exactly as real inserts do. Target: a whole
dashboard < 1 s. Prints figures only; nothing is asserted.

With catalog metrics (``--metric-share``, default 0.1: that many more events, of declared types with
properties, skewed like the rest): GPU jobs (gpu, region, user, seconds) and volume gauges; the
catalog's metrics are exported for the dashboards' ``metric`` variable, the largest tenant's plan
charges three of them (GPU seconds per gpu and region, active users, jobs), so its usage page shows
them, and every metric's dashboard panels are timed.

The tenant dashboard reads the largest tenant's days in its time zone (``--time-zone``, default UTC;
exported to tenant_quotas as a calendar tenant's is) from the quarter-hour rollups; with a zone other
than UTC the bench also cross-checks its "Cost per day" against usage_events FINAL per local day.
With catalog metrics it cross-checks every metric's panels (the tenant's bars of three local days,
its operator-table row) against billing's metric query over usage_events FINAL.

Length: one script because generation, timing and the cross-checks share one database and its
largest tenant; splitting it would pass that state between files for no reader's benefit.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from billing.adapters.clickhouse.usage_store import ClickHouseUsageStore  # noqa: E402
from billing.kernel.calendar import zone  # noqa: E402
from billing.kernel.periods import Month  # noqa: E402
from billing.metering.price_book import PriceBook  # noqa: E402
from billing.runtime.settings import PACKAGE_CONFIG  # noqa: E402
from billing_local.grafana import TimeRange, load_dashboards, render  # noqa: E402

MODELS = ["gpt-4o-mini", "gpt-4o", "claude-3-5-haiku", "text-embedding-3-small"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=10_000_000, help="events to generate (default 10,000,000)")
    p.add_argument("--tenants", type=int, default=1000, help="number of tenants (default 1000)")
    p.add_argument(
        "--largest-share",
        type=float,
        default=0.2,
        help="share of all events that belong to the largest tenant (default 0.2)",
    )
    p.add_argument("--month", default="2025-11", help="month the events fall in (default 2025-11)")
    p.add_argument(
        "--chunk", type=int, default=2_000_000, help="events per INSERT ... SELECT (default 2,000,000)"
    )
    p.add_argument("--repeat", type=int, default=5, help="timed runs per query after the first (default 5)")
    p.add_argument(
        "--url", default=None, help="CLICKHOUSE_URL (default: a fresh embedded chdb in a temp dir)"
    )
    p.add_argument("--database", default=None, help="database name (default: a fresh bench_* database)")
    p.add_argument(
        "--keep", action="store_true", help="keep the database afterwards (e.g. to open Grafana on it)"
    )
    p.add_argument(
        "--no-portal", dest="portal", action="store_false", help="skip the tenant usage page timings"
    )
    p.add_argument(
        "--metric-share",
        type=float,
        default=0.1,
        help="events of catalog-metric types, as a share of --events, added (default 0.1; 0: none)",
    )
    p.add_argument(
        "--time-zone",
        default="UTC",
        help="the largest tenant's time zone, as its calendar's (default UTC; e.g. Asia/Kolkata)",
    )
    p.add_argument(
        "--reuse",
        action="store_true",
        help="time the dashboards on the events already in --url/--database (a --keep run's); generate none",
    )
    return p.parse_args(argv)


def generate(
    store: ClickHouseUsageStore,
    events: int,
    tenants: int,
    largest_share: float,
    month: Month,
    chunk: int,
    time_zone: str = "UTC",
) -> None:
    """INSERT ... SELECT in chunks: skewed tenants, four models, costs priced with the price book's rates."""
    version = PriceBook.load(PACKAGE_CONFIG / "pricebook.yaml").version_at(month.start)
    inputs = ", ".join(f"toDecimal128('{version.models[m].input_per_1m}', 9)" for m in MODELS)
    outputs = ", ".join(f"toDecimal128('{version.models[m].output_per_1m}', 9)" for m in MODELS)
    factor = f"toDecimal128('{1 + version.markup}', 9)"
    storage = f"toDecimal128('{version.storage_per_gb}', 9)"
    largest = int(largest_share * 1_000_000)
    for offset in range(0, events, chunk):
        started = time.perf_counter()
        _insert_chunk(
            store,
            offset,
            min(chunk, events - offset),
            inputs,
            outputs,
            factor,
            storage,
            largest,
            tenants,
            month,
            version.version_id,
        )
        print(
            f"  inserted {min(offset + chunk, events):>12,} events ({time.perf_counter() - started:.1f} s)",
            flush=True,
        )
    store.client.command(f"""
        INSERT INTO tenant_quotas (tenant_id, plan, query_quota, updated_at, time_zone)
        SELECT concat('tenant-', leftPad(toString(number), 4, '0')),
               ['starter', 'pro', 'enterprise'][number % 3 + 1],
               if(number = 0, 5000000, [10000, 100000, 1000000][number % 3 + 1]),
               now64(3), if(number = 0, '{zone(time_zone).key}', 'UTC')
        FROM numbers({tenants})
    """)


def _insert_chunk(
    store: ClickHouseUsageStore,
    offset: int,
    count: int,
    inputs: str,
    outputs: str,
    factor: str,
    storage: str,
    largest: int,
    tenants: int,
    month: Month,
    version_id: str,
) -> None:
    store.client.command(f"""
        INSERT INTO usage_events
            (tenant_id, event_id, timestamp, type, model, queries, input_tokens, output_tokens, bytes,
             cost_usd, price_version, accepted_at)
        SELECT tenant_id, event_id, ts, type, model, queries, input_tokens, output_tokens, bytes,
               toDecimal128(((toDecimal128(input_tokens, 0) * [{inputs}][m + 1]
                             + toDecimal128(output_tokens, 0) * [{outputs}][m + 1]) / 1000000
                             + toDecimal128(bytes, 0) * {storage} / 1000000000) * {factor}, 9) AS cost_usd,
               '{version_id}' AS price_version, ts AS accepted_at
        FROM (
            SELECT number,
                   if(cityHash64(number, 1) % 1000000 < {largest}, 'tenant-0000',
                      concat('tenant-', leftPad(toString(1 + toUInt32(pow((cityHash64(number, 2) % 1000000) / 1e6, 2)
                                                                     * {tenants - 1})), 4, '0'))) AS tenant_id,
                   concat('e-', toString(number)) AS event_id,
                   toDateTime64('{month.start:%Y-%m-%d %H:%M:%S}', 3, 'UTC')
                       + toIntervalMillisecond(cityHash64(number, 3) % {month.seconds * 1000}) AS ts,
                   cityHash64(number, 4) % 10 AS kind,
                   multiIf(kind < 7, 'query', kind < 9, 'embedding', 'storage') AS type,
                   multiIf(kind < 7, cityHash64(number, 5) % 3, kind < 9, 3, 0) AS m,
                   if(type = 'storage', '', [{", ".join(f"'{x}'" for x in MODELS)}][m + 1]) AS model,
                   toUInt8(type = 'query') AS queries,
                   if(type = 'storage', 0, cityHash64(number, 6) % 4000) AS input_tokens,
                   if(type = 'query', cityHash64(number, 7) % 1000, 0) AS output_tokens,
                   multiIf(type = 'storage', cityHash64(number, 8) % 100000000,
                           type = 'query', cityHash64(number, 9) % 8192, 0) AS bytes
            FROM numbers({offset}, {count})
        )
    """)


# The bench's catalog metrics (and the enterprise plan's charges on three of them).
METRICS: list[dict[str, object]] = [
    {"id": "gpu_seconds", "name": "GPU time", "unit": "GPU-seconds", "event_types": ["gpu_job"],
     "aggregation": "sum", "property": "seconds"},
    {"id": "gpu_jobs", "name": "GPU jobs", "unit": "jobs", "event_types": ["gpu_job"], "aggregation": "count",
     "filters": [{"property": "region", "in": ["eu", "us"]}]},
    {"id": "active_users", "name": "Active users", "unit": "users", "event_types": ["gpu_job"],
     "aggregation": "unique_count", "property": "user"},
    {"id": "longest_job", "name": "Longest job", "unit": "seconds", "event_types": ["gpu_job"],
     "aggregation": "max", "property": "seconds"},
    {"id": "storage_gb_hours", "name": "Storage held", "unit": "GB-hours", "event_types": ["volume"],
     "aggregation": "time_weighted_sum", "property": "gb", "per": "hour"},
]  # fmt: skip
CHARGES = [
    {"id": "gpu", "name": "GPU time", "metric": "gpu_seconds", "group_by": ["gpu", "region"],
     "charge_model": "per_unit", "unit_price": "0.004"},
    {"id": "users", "name": "Active users", "metric": "active_users", "charge_model": "per_unit", "unit_price": "1.00"},
    {"id": "jobs", "name": "GPU jobs", "metric": "gpu_jobs", "charge_model": "per_unit", "unit_price": "0.01"},
]  # fmt: skip


def bench_catalog():  # type: ignore[no-untyped-def]
    """The shipped catalog with the bench's metrics, their types, and the charges on enterprise."""
    import yaml

    from billing.catalog.plans import PlanCatalog

    document = yaml.safe_load((PACKAGE_CONFIG / "plans.yaml").read_text())
    document["usage_types"] = [{"id": "gpu_job", "unit": "job"}, {"id": "volume", "unit": "reading"}]
    document["metrics"] = METRICS
    for plan in document["plans"]:
        if plan["id"] == "enterprise":
            plan["charges"] = CHARGES
    return PlanCatalog.model_validate(document)


def generate_metric_events(
    store: ClickHouseUsageStore, events: int, tenants: int, largest_share: float, month: Month, chunk: int
) -> None:
    """GPU jobs (19 in 20: gpu of 4 or none, region of 3, user of 500 per tenant, seconds with 3
    decimals) and volume readings (1 in 20: one of 3 volumes, GB with 1 decimal), same tenant skew."""
    largest = int(largest_share * 1_000_000)
    for offset in range(0, events, chunk):
        count = min(chunk, events - offset)
        store.client.command(f"""
            INSERT INTO usage_events
                (tenant_id, event_id, timestamp, type, model, queries, input_tokens, output_tokens, bytes,
                 cost_usd, price_version, accepted_at, string_properties, number_properties)
            SELECT tenant_id, event_id, ts, type, '', 0, 0, 0, 0, toDecimal128(0, 9), 'bench', ts,
                   if(type = 'gpu_job',
                      mapFilter((k, v) -> v != '', map('gpu', ['h100', 'a100', 'l4', 'b200', ''][cityHash64(number, 13) % 5 + 1],
                          'region', ['eu', 'us', 'ap'][cityHash64(number, 14) % 3 + 1],
                          'user', concat('user-', toString(cityHash64(number, 15) % 500)))),
                      map('volume', concat('vol-', toString(cityHash64(number, 16) % 3)))),
                   if(type = 'gpu_job', map('seconds', toDecimal128(cityHash64(number, 17) % 3600000, 18) / 1000),
                      map('gb', toDecimal128(cityHash64(number, 18) % 50000, 18) / 10))
            FROM (
                SELECT number,
                       if(cityHash64(number, 11) % 1000000 < {largest}, 'tenant-0000',
                          concat('tenant-', leftPad(toString(1 + toUInt32(pow((cityHash64(number, 12) % 1000000) / 1e6, 2)
                                                                         * {tenants - 1})), 4, '0'))) AS tenant_id,
                       concat('m-', toString(number)) AS event_id,
                       toDateTime64('{month.start:%Y-%m-%d %H:%M:%S}', 3, 'UTC')
                           + toIntervalMillisecond(cityHash64(number, 19) % {month.seconds * 1000}) AS ts,
                       if(cityHash64(number, 20) % 20 = 0, 'volume', 'gpu_job') AS type
                FROM numbers({offset}, {count})
            )
        """)
        print(f"  inserted {offset + count:>12,} catalog-metric events", flush=True)


def timed(store: ClickHouseUsageStore, sql: str, repeat: int) -> tuple[float, float, int, float]:
    """(first run s, median of the following runs s, rows returned, median CPU s of those runs).

    The CPU is this process's (chdb runs in it, every thread counted): on a loaded machine the
    wall time is mostly waiting for a core, so CPU is the fairer figure to compare SQL by."""
    start = time.perf_counter()
    rows = store.query(sql)
    first = time.perf_counter() - start
    runs, cpu = [], []
    for _ in range(repeat):
        start, started_cpu = time.perf_counter(), time.process_time()
        store.query(sql)
        runs.append(time.perf_counter() - start)
        cpu.append(time.process_time() - started_cpu)
    return (
        first,
        statistics.median(runs) if runs else first,
        len(rows),
        statistics.median(cpu) if cpu else 0.0,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    month = Month.parse(args.month)
    url = args.url or f"chdb://{Path(tempfile.gettempdir()) / f'billing-bench-chdb-{uuid.uuid4().hex[:8]}'}"
    database = args.database or f"bench_{uuid.uuid4().hex[:8]}"
    store = ClickHouseUsageStore.from_url(url, database, timeout_s=600)
    store.migrate()
    engine = store.query("SELECT version()")[0][0]
    print(
        f"ClickHouse {engine} at {url.split('@')[-1]}, database {database}; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )

    start = time.perf_counter()
    if not args.reuse:
        generate(store, args.events, args.tenants, args.largest_share, month, args.chunk, args.time_zone)
    took = time.perf_counter() - start
    metric_events = int(args.events * args.metric_share)
    metric_ids = [str(m["id"]) for m in METRICS] if metric_events else []
    if metric_events and not args.reuse:
        from billing.adapters.clickhouse.metric_definitions import export_metric_definitions

        started = time.perf_counter()
        generate_metric_events(store, metric_events, args.tenants, args.largest_share, month, args.chunk)
        export_metric_definitions(store, bench_catalog())
        print(f"  ({time.perf_counter() - started:.1f} s; {len(METRICS)} metric definitions exported)")
    counts = store.query("SELECT count(), uniqExact(tenant_id) FROM usage_events")[0]
    tables = (
        "usage_hourly",
        "usage_daily",
        "usage_metrics_daily",
        "usage_quarter_hourly",
        "usage_metrics_quarter_hourly",
    )
    rollups = {t: store.query(f"SELECT count() FROM {t}")[0][0] for t in tables}
    print(
        (
            f"found {counts[0]:,} events for {counts[1]:,} tenants"
            if args.reuse
            else f"generated {counts[0]:,} events for {counts[1]:,} tenants in {took:.1f} s ({counts[0] / took:,.0f} events/s)"
        )
        + f"; usage_hourly {rollups['usage_hourly']:,} rows, "
        f"usage_daily {rollups['usage_daily']:,} rows, usage_metrics_daily {rollups['usage_metrics_daily']:,} rows, "
        f"usage_quarter_hourly {rollups['usage_quarter_hourly']:,} rows, "
        f"usage_metrics_quarter_hourly {rollups['usage_metrics_quarter_hourly']:,} rows"
    )
    tenant, tenant_events = store.query(
        "SELECT tenant_id, count() AS n FROM usage_events GROUP BY tenant_id ORDER BY n DESC LIMIT 1"
    )[0]
    print(f"largest tenant {tenant}: {tenant_events:,} events ({100 * tenant_events / counts[0]:.1f}%)")

    time_range = TimeRange.of(month.start, month.end - timedelta(seconds=1), interval=timedelta(hours=1))
    print(
        f"\ntime range {args.month} (whole month), tenant={tenant} (time zone {args.time_zone}); "
        f"first run, then median of {args.repeat}; load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'dashboard / panel':<70} {'first ms':>9} {'median ms':>10} {'rows':>6} {'CPU ms':>7}")
    verdicts = []
    for board in load_dashboards(ROOT / "dashboards"):
        total_first = total_median = total_cpu = 0.0
        # every query Grafana sends (a panel showing another panel's results sends none)
        for query in board.queries():
            # a panel of the chosen catalog metric: timed for each metric; the board total counts the costliest (CPU)
            choices = (metric_ids or [""]) if "${metric}" in query.title else (metric_ids[:1] or [""])
            slowest = (0.0, 0.0, 0.0)
            for metric in choices:
                given: dict[str, str | list[str]] = {"tenant": tenant, "metric": metric}
                sql = render(query.raw_sql, time_range, board.resolve(given, time_range, store.query))
                first, median, rows, cpu = timed(store, sql, args.repeat)
                slowest = max(slowest, (first, median, cpu), key=lambda t: t[2])
                label = f"{board.title} / {query.title}".replace("${metric}", metric) + (
                    " (variable)" if query.kind == "variable" else ""
                )
                print(
                    f"{label[:70]:<70} {first * 1000:9.1f} {median * 1000:10.1f} {rows:6d} {cpu * 1000:7.1f}"
                )
            total_first += slowest[0]
            total_median += slowest[1]
            total_cpu += slowest[2]
        verdict = "OK" if total_median < 1.0 else "OVER TARGET"
        verdicts.append(verdict)
        print(
            f"{'  = whole dashboard, queries run one after another':<70} {total_first * 1000:9.1f} "
            f"{total_median * 1000:10.1f}        {total_cpu * 1000:7.1f}   {verdict} (target < 1000 ms; "
            f"load average {os.getloadavg()[0]:.1f})"
        )
    local_days_check(store, tenant, time_range, args.time_zone)
    if metric_ids:
        metric_check(store, tenant, time_range, args.time_zone)

    # The same month-to-date figure straight from usage_events, for reference and as a cross-check.
    raw = f"""SELECT sum(cost_usd) FROM usage_events FINAL WHERE tenant_id = '{tenant}'
              AND timestamp >= toDateTime64('{month.start:%Y-%m-%d %H:%M:%S}', 3, 'UTC')
              AND timestamp < toDateTime64('{month.end:%Y-%m-%d %H:%M:%S}', 3, 'UTC')"""
    first, median, _, _ = timed(store, raw, max(1, args.repeat // 2))
    rollup = store.query(f"SELECT sum(cost_usd) FROM usage_daily WHERE tenant_id = '{tenant}'")[0][0]
    exact = store.query(raw)[0][0]
    print(
        f"\nreference: month cost from usage_events FINAL (what billing reads): first {first * 1000:.0f} ms, "
        f"median {median * 1000:.0f} ms"
    )
    print(f"cross-check: rollup month cost {rollup} == usage_events FINAL {exact}: {rollup == exact}")

    if args.portal:
        bench_portal(
            url,
            database,
            store,
            tenant,
            month,
            args.repeat,
            metrics=bool(metric_ids),
            time_zone=args.time_zone,
        )

    if not args.keep:
        store.client.command(f"DROP DATABASE IF EXISTS {database}")
    else:
        print(f"kept database {database} at {url}")
    return 0 if all(v == "OK" for v in verdicts) else 0


def local_days_check(store: ClickHouseUsageStore, tenant: str, time_range: TimeRange, time_zone: str) -> None:
    """The tenant dashboard's "Cost per day" against usage_events FINAL per local day of the zone."""
    board = next(b for b in load_dashboards(ROOT / "dashboards") if b.uid == "billing-tenant-usage")
    panel = board.shown("Cost per day")  # its source panel's query, its own transformations
    variables = board.resolve({"tenant": tenant, "metric": ""}, time_range, store.query)
    result = store.client.query(render(panel.raw_sql, time_range, variables))
    rows = panel.transform([dict(zip(result.column_names, row)) for row in result.result_rows])
    shown = {r["time"].date(): r["cost_usd"] for r in rows}
    exact = {
        d: c
        for d, c in store.query(
            f"""SELECT toDate(timestamp, '{time_zone}') AS d, sum(cost_usd) FROM usage_events FINAL
                WHERE tenant_id = '{tenant}' AND d >= toDate({int(time_range.start.timestamp())}, '{time_zone}')
                  AND d <= toDate({int(time_range.end.timestamp())}, '{time_zone}')
                GROUP BY d"""
        )
    }
    print(
        f"cross-check: tenant dashboard cost per day ({variables['time_zone']} days) == usage_events FINAL "
        f"per {time_zone} day on all {len(exact)} days: {shown == exact}"
    )


def metric_check(store: ClickHouseUsageStore, tenant: str, time_range: TimeRange, time_zone: str) -> None:
    """Each catalog metric's panels against billing's metric query (``ClickHouseMetrics`` over
    usage_events FINAL): the tenant's bars of three local days, and its row of the operator table
    (the UTC days of the range)."""
    from datetime import datetime

    from billing.adapters.clickhouse.metric_queries import ClickHouseMetrics

    boards = {b.uid: b for b in load_dashboards(ROOT / "dashboards")}
    tenant_board, operator = boards["billing-tenant-usage"], boards["billing-operator-overview"]
    panel = next(q for q in tenant_board.queries() if q.title.startswith("Catalog metric"))
    table = next(q for q in operator.queries() if q.title.startswith("Top tenants by catalog metric"))
    metrics, tz = ClickHouseMetrics(store), zone(time_zone)
    first = time_range.start.astimezone(tz).date()
    last = time_range.end.astimezone(tz).date()
    days = [first, first + (last - first) / 2, last]
    checked, equal = 0, 0
    for definition in bench_catalog().metrics:
        variables = tenant_board.resolve({"tenant": tenant, "metric": definition.id}, time_range, store.query)
        bars = {t.date(): v for t, v in store.query(render(panel.raw_sql, time_range, variables))}
        for day in days:
            start = datetime.combine(day, datetime.min.time(), tz)
            end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tz)
            exact = metrics.value(definition, tenant, start, end)
            checked, equal = checked + 1, equal + (bars.get(day) == exact)
        rows = dict(store.query(render(table.raw_sql, time_range, {"metric": definition.id})))
        utc_first = time_range.start.replace(hour=0, minute=0, second=0, microsecond=0)
        utc_end = time_range.end.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        if tenant in rows:
            exact = metrics.value(definition, tenant, utc_first, utc_end)
            checked, equal = checked + 1, equal + (rows[tenant] == exact)
    print(
        f"cross-check: catalog-metric panels (tenant bars of 3 {time_zone} days, operator row) == "
        f"ClickHouseMetrics over usage_events FINAL: {equal} of {checked} equal"
    )


def bench_portal(
    url: str,
    database: str,
    store: ClickHouseUsageStore,
    tenant: str,
    month: Month,
    repeat: int,
    *,
    metrics: bool = False,
    time_zone: str = "UTC",
) -> None:
    """The tenant usage page's data for ``tenant`` (in-process: ClickHouse as above, AWS in moto); a
    ``time_zone`` other than UTC gives the tenant a calendar in that zone, so its page shows its own
    period (in Asia/Kolkata: 31 October 18:30 UTC to 30 November 18:30 UTC) by local days."""
    from billing.kernel.calendar import Calendar
    from billing.metering.quota_windows import quota_window
    from billing.runtime import container
    from billing.tenants.calendar_settings import CalendarSetting
    from billing.tenants.tenant import PlanAssignment, Tenant
    from billing_local.aws import local_aws, resource_environment
    from billing_local.environ import SETTINGS_KEYS, patched_environ

    with (
        local_aws(prefix="portalbench") as resources,
        patched_environ(
            {**resource_environment(resources), "CLICKHOUSE_URL": url, "CLICKHOUSE_DATABASE": database},
            unset=["CLICKHOUSE_URL_SECRET"],
            restore=SETTINGS_KEYS,
        ),
    ):
        container.reset()
        record = Tenant(
            id=tenant,
            name="Largest tenant",
            plans=[PlanAssignment(plan="enterprise", effective_at=month.previous().start)],
            calendars=[CalendarSetting.of(Calendar(time_zone), None)] if time_zone != "UTC" else [],
        )
        # "Now" is the period's last hour: it is open, so the page shows a period-to-date preview
        # (rated from usage_events FINAL by the close/preview service, the expensive case).
        shown = record.calendar_history().period_of(month.start) if time_zone != "UTC" else month
        now = min(month.end, shown.end) - timedelta(hours=1)
        container.override(clock=lambda: now)
        if metrics:  # the enterprise plan charges three catalog metrics: the page shows them
            container.override(plan_catalog=bench_catalog())
        container.tenants().create(record)
        queries = store.query(f"SELECT sum(queries) FROM usage_daily WHERE tenant_id = '{tenant}'")[0][0]
        container.ledger().quota_set(
            tenant, quota_window(record, now).key, int(queries), None, int(month.end.timestamp()) + 86400
        )
        service = container.portal_service()
        _time_portal(
            service, store, tenant, shown, repeat, "as generated: overlapping parts, FINAL merges them"
        )
        # Real ingestion writes parts in time order, which FINAL reads without merging; the generated
        # chunks each span the whole month. Once ClickHouse has merged them (as its background merges do):
        started = time.perf_counter()
        store.client.command("OPTIMIZE TABLE usage_events FINAL")
        print(f"\n(OPTIMIZE TABLE usage_events FINAL took {time.perf_counter() - started:.1f} s)")
        _time_portal(service, store, tenant, shown, repeat, "after the parts are merged")
        container.override(clock=None)
    container.reset()


def read_metrics(service, tenant: str, month) -> None:  # type: ignore[no-untyped-def]
    """The page's per-metric figures read from ClickHouse (what a cache miss costs)."""
    from billing.adapters.clickhouse.metric_rollups import ClickHouseMetricRollups
    from billing.portal.metrics import metrics_shown
    from billing.portal.view import zone_of
    from billing.runtime import container

    asked = metrics_shown(service.tenant(tenant), service.catalog, month)
    if asked:
        end = min(service.clock(), month.end)
        ClickHouseMetricRollups(container.usage_store()).month(
            tenant, asked, month.start, end, zone=zone_of(month)
        )


def _time_portal(service, store: ClickHouseUsageStore, tenant: str, month, repeat: int, state: str) -> None:  # type: ignore[no-untyped-def]
    """``month``: the period the page shows (a UTC month, or the tenant calendar's period)."""
    from billing.adapters.clickhouse.metric_rollups import ClickHouseMetricRollups
    from billing.portal.page import render_page
    from billing.portal.usage import days_end, zone_of
    from billing.runtime import container

    zone_name = zone_of(month)
    start_sql = f"toDateTime64('{month.start:%Y-%m-%d %H:%M:%S}', 3, 'UTC')"
    end_sql = f"toDateTime64('{month.end:%Y-%m-%d %H:%M:%S}', 3, 'UTC')"

    parts = store.query(
        "SELECT count() FROM system.parts WHERE database = currentDatabase() AND table = 'usage_events' AND active"
    )[0][0]
    print(
        f"\ntenant usage page for {tenant}, {month}, {state} ({parts} active parts); first run, then median of {repeat}"
    )
    print(f"{'tenant usage page':<70} {'first ms':>9} {'median ms':>10}")
    runs: dict[str, list[float]] = {
        "data": [],
        "data_uncached": [],
        "statement": [],
        "cached": [],
        "usage": [],
        "rollup": [],
        "local": [],
        "metrics": [],
        "metrics_read": [],
        "render": [],
    }
    view = None
    uncached = copy.copy(service)  # the page as it read its metric figures before they were cached
    uncached.metrics = ClickHouseMetricRollups(container.usage_store())
    for _ in range(repeat + 1):
        start = time.perf_counter()
        view = service.view(tenant, str(month))
        runs["data"].append(time.perf_counter() - start)
        start = time.perf_counter()
        uncached.view(tenant, str(month))
        runs["data_uncached"].append(time.perf_counter() - start)
        start = time.perf_counter()
        service.statements.preview(tenant, month)  # what a miss rates (the close/preview service)
        runs["statement"].append(time.perf_counter() - start)
        start = time.perf_counter()
        service.statements(tenant, month)
        runs["cached"].append(time.perf_counter() - start)
        start = time.perf_counter()
        service.usage.store.get(tenant, month)
        runs["usage"].append(time.perf_counter() - start)
        start = time.perf_counter()
        service.usage.rollups.period(tenant, month.start, month.end, "UTC")
        runs["rollup"].append(time.perf_counter() - start)
        start = time.perf_counter()
        service.usage.rollups.period(tenant, month.start, month.end, "Asia/Kolkata")
        runs["local"].append(time.perf_counter() - start)
        start = time.perf_counter()
        service._metrics(service.tenant(tenant), month, service.clock())
        runs["metrics"].append(time.perf_counter() - start)
        start = time.perf_counter()
        read_metrics(service, tenant, month)
        runs["metrics_read"].append(time.perf_counter() - start)
        start = time.perf_counter()
        render_page(view, "token")
        runs["render"].append(time.perf_counter() - start)
    labels = {
        "data": "page data (PortalService.view: everything the page shows)",
        "data_uncached": "page data with the metric figures read, not cached",
        "statement": "  statement preview rated (close/preview service, FINAL)",
        "cached": "  statement as the page reads it alone (cached preview, PREVIEW# item)",
        "usage": "  per day, per model and corrections as the page reads them alone (USAGE# item)",
        "rollup": "  per day and per model read (usage_quarter_hourly, UTC days; what a miss costs)",
        "local": "  per day and per model by Asia/Kolkata days (the same rows, another zone)",
        "metrics": "  per catalog metric as the page reads it alone (cached, METRICS# item)",
        "metrics_read": "  per catalog metric and group read (usage_metrics_quarter_hourly)",
        "render": "HTML rendering (two SVG charts, tables)",
    }
    for key, label in labels.items():
        first, rest = runs[key][0], statistics.median(runs[key][1:]) if repeat else runs[key][0]
        verdict = (
            ("   OK" if rest < 0.1 else "   OVER TARGET") + " (target < 100 ms)" if key == "data" else ""
        )
        print(f"{label:<70} {first * 1000:9.1f} {rest * 1000:10.1f}{verdict}")
    assert view is not None
    trace_hit(service, tenant, str(month))
    exact = {
        d: (int(q), c)
        for d, q, c in store.query(
            f"""SELECT toDate(timestamp, '{zone_name}'), sum(queries), sum(cost_usd) FROM usage_events FINAL
                WHERE tenant_id = '{tenant}' AND timestamp >= {start_sql} AND timestamp < {end_sql}
                GROUP BY 1"""
        )
    }
    assert days_end(month, view.generated_at) == month.end  # the bench's now: the period's last hour
    same = all(exact.get(d.day, (0, 0)) == (d.queries, d.cost_usd) for d in view.rollup.days)
    if view.metrics:
        from billing.adapters.clickhouse.metric_queries import ClickHouseMetrics

        reference = ClickHouseMetrics(store)
        # the page's figures run to its now (an hour before the month's end), to the quarter hour
        pairs = [
            (u.metric.id, u.total, reference.value(u.metric, tenant, month.start, view.generated_at))
            for u in view.metrics
            if not u.group_by
        ]
        same_metrics = all(page == exact for _, page, exact in pairs)
        if not same_metrics:
            print(f"page metrics differ: {pairs}")
        groups = sum(len(u.groups) for u in view.metrics)
        print(
            f"page metrics: {len(view.metrics)} metrics, {groups} rows; ungrouped figures == the metric "
            f"query over usage_events FINAL: {same_metrics}"
        )
    usage_line = (
        next((x for x in view.statement.lines if x.line_id == "usage"), None) if view.statement else None
    )
    print(
        f"cross-check: page per-day queries and cost == usage_events FINAL on all {len(view.rollup.days)} "
        f"{zone_name} days: "
        f"{same and len(exact) <= len(view.rollup.days)}; page total {view.total} (usage line "
        f"{usage_line.amount_exact if usage_line else '-'} == FINAL period cost {sum(c for _, c in exact.values())}: "
        f"{usage_line is not None and usage_line.amount_exact == sum(c for _, c in exact.values())})"
    )


def trace_hit(service, tenant: str, month_text: str) -> None:  # type: ignore[no-untyped-def]
    """One more page request, each DynamoDB call and ClickHouse query in it timed (what a hit does)."""
    import botocore.client

    from billing.runtime import container

    calls: list[tuple[str, float, str]] = []
    make_api_call = botocore.client.BaseClient._make_api_call
    client = container.usage_store().client
    query = client.query

    def aws(self, operation, params):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            return make_api_call(self, operation, params)
        finally:
            keys = params.get("Key") or params.get("ExpressionAttributeValues") or {}
            what = [v.get("S") for v in keys.values() if isinstance(v, dict)] if keys else []
            if "RequestItems" in params:
                what = [
                    f"{t.split('-')[-1]}: {len(r['Keys'])} keys" for t, r in params["RequestItems"].items()
                ]
            calls.append(
                (
                    f"{self.meta.service_model.service_name} {operation}",
                    time.perf_counter() - start,
                    ", ".join(map(str, what)),
                )
            )

    def clickhouse(sql, *args, **kwargs):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            return query(sql, *args, **kwargs)
        finally:
            calls.append(("clickhouse query", time.perf_counter() - start, " ".join(sql.split())[:60]))

    botocore.client.BaseClient._make_api_call = aws  # type: ignore[method-assign]
    client.query = clickhouse
    try:
        start = time.perf_counter()
        service.view(tenant, month_text)
        took = time.perf_counter() - start
    finally:
        botocore.client.BaseClient._make_api_call = make_api_call  # type: ignore[method-assign]
        del client.query
    print(
        f"one request traced: {took * 1000:.1f} ms, {len(calls)} calls "
        f"({sum(1 for c in calls if c[0].startswith('clickhouse'))} ClickHouse); load average {os.getloadavg()[0]:.1f}"
    )
    for name, seconds, what in calls:
        print(f"  {name:<28} {seconds * 1000:7.1f} ms  {what}")


if __name__ == "__main__":
    sys.exit(main())
