"""``billing simulate`` throughput: a generated month through the whole simulation (read, production
ingest service on in-memory stores, ClickHouse blocks, close), next to a bulk insert of the same rows
into the embedded ClickHouse in the same run.

    python bench/simulate_bench.py                                  # the 58k-event month, 11 tenants
    python bench/simulate_bench.py --events 1000000 --tenants 1000  # the issue's full size
    python bench/simulate_bench.py --compare                        # also a what-if (both catalogs)

The month is ``billing_local.usage_generator.simulated_month`` (every rule: tiers, quota, upgrade,
downgrade, trial, cancellation, late signup, duplicates, a price-book change mid-month), written once
to --dir and reused. The simulation is timed end to end as ``billing simulate`` runs it (reading
and parsing the file included; worker processes by input size unless --workers). The baseline is
``ClickHouseUsageStore.insert_events`` (the production adapter) of the month's priced rows in blocks of
100,000 into a fresh database; only the inserts are timed. Peak memory is sampled from /proc for the
process and its worker processes together. Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import yaml

from billing.adapters.clickhouse.usage_store import ClickHouseUsageStore
from billing.kernel.periods import Month
from billing.metering.events import UsageEvent
from billing.metering.price_book import PriceBook, UnknownModel
from billing.runtime.observability import logger
from billing_local.simulation import Catalog, SimulationSpec, simulate
from billing_local.usage_generator import price_book_with_change, simulated_month

MONTH = Month(2025, 11)
PROPOSED_PLANS = """# config/plans.yaml with a dearer, smaller starter plan (the bench's what-if)
currency: usd
plans:
  - {id: starter, name: Starter, base_fee: "39.00", query_quota: 5000, trial_days: 14,
     query_tiers: [{up_to: 1000, unit_price: "0.012"}, {up_to: 6000, unit_price: "0.008"}, {up_to: null, unit_price: "0.006"}]}
  - {id: pro, name: Pro, base_fee: "99.00", query_quota: 100000, trial_days: 14,
     query_tiers: [{up_to: 10000, unit_price: "0.008"}, {up_to: 50000, unit_price: "0.006"}, {up_to: null, unit_price: "0.004"}]}
  - {id: enterprise, name: Enterprise, base_fee: "499.00", query_quota: 1000000, trial_days: 0,
     query_tiers: [{up_to: 100000, unit_price: "0.005"}, {up_to: null, unit_price: "0.003"}]}
  - {id: free, name: Free, base_fee: "0", query_quota: 100, trial_days: 0, query_tiers: [{up_to: null, unit_price: "0"}]}
  - {id: payg, name: Pay as you go, base_fee: "0", query_quota: 50000, trial_days: 0,
     query_tiers: [{up_to: null, unit_price: "0.012"}]}
"""


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=58_430, help="events of the month (default 58,430)")
    p.add_argument("--tenants", type=int, default=11, help="tenants (default 11)")
    p.add_argument("--workers", type=int, default=0, help="worker processes (default: by input size)")
    p.add_argument("--compare", action="store_true", help="also a what-if under a proposed plans file")
    p.add_argument("--dir", type=Path, default=None, help="where the generated month is kept (reused)")
    p.add_argument("--skip-baseline", action="store_true", help="no bulk-insert baseline")
    return p.parse_args()


def month_files(folder: Path, events: int, tenants: int) -> dict[str, Path]:
    files = {
        name: folder / f"{name}.{ext}"
        for name, ext in [
            ("tenants", "yaml"),
            ("events", "jsonl"),
            ("pricebook", "yaml"),
            ("proposed", "yaml"),
        ]
    }
    if not files["events"].exists():
        folder.mkdir(parents=True, exist_ok=True)
        print(f"generating {events:,} events for {tenants:,} tenants into {folder} ...", flush=True)
        records, generated = simulated_month(MONTH, tenants=tenants, events=events)
        files["tenants"].write_text(yaml.safe_dump({"tenants": records}))
        files["pricebook"].write_text(yaml.safe_dump(price_book_with_change(MONTH)))
        with files["events"].open("w") as handle:
            for event in generated:
                handle.write(json.dumps(event) + "\n")
    files["proposed"].write_text(PROPOSED_PLANS)
    return files


class PeakMemory:
    """Peak resident memory of this process and its children together (RSS, and PSS), from /proc.
    RSS is sampled every ``interval`` seconds, PSS every ``pss_every`` samples: the kernel walks
    every page table to sum PSS (about 40 ms for a 1M-event run's workers), so sampling it as often
    as RSS took a fifth of a core from the run it measures. Memory grows through ingest and peaks
    near its end, so the sparser PSS samples still see the peak within a few percent."""

    def __init__(self, interval: float = 0.25, pss_every: int = 8):
        self.interval, self.pss_every, self.peak_mb, self.peak_pss_mb = interval, pss_every, 0.0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        # one last sample at the end of the run: an in-process run is at its largest here
        self.peak_mb = max(self.peak_mb, self.sample())
        self.peak_pss_mb = max(self.peak_pss_mb, self.sample("Pss:"))

    def _run(self) -> None:
        samples = 0
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self.sample())
            if samples % self.pss_every == 0:
                self.peak_pss_mb = max(self.peak_pss_mb, self.sample("Pss:"))
            samples += 1
            self._stop.wait(self.interval)

    @staticmethod
    def sample(field: str = "VmRSS:") -> float:
        me = os.getpid()
        total_kb = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                if int(entry) != me and ppid != me:
                    continue
                source = "status" if field == "VmRSS:" else "smaps_rollup"
                for line in Path(f"/proc/{entry}/{source}").read_text().splitlines():
                    if line.startswith(field):
                        total_kb += int(line.split()[1])
            except (OSError, ValueError, IndexError):
                continue
        return total_kb / 1024


def cpu_seconds() -> float:
    self_times, children = os.times(), os.times()
    return self_times.user + self_times.system + children.children_user + children.children_system


def bulk_insert(files: dict[str, Path], url: str) -> tuple[int, float, float]:
    """(rows, wall seconds, CPU seconds) of inserting the month's priced rows with the production adapter, 100,000 a block."""
    book = PriceBook.load(files["pricebook"])
    store = ClickHouseUsageStore.from_url(url, f"b_{uuid.uuid4().hex[:8]}")
    store.migrate()
    now = datetime.now(UTC)
    rows, seconds, cpu, block = 0, 0.0, 0.0, []
    seen: set[tuple[str, str]] = set()

    def flush() -> None:
        nonlocal rows, seconds, cpu
        started, cpu_started = time.perf_counter(), time.process_time()
        store.insert_events(block)
        seconds += time.perf_counter() - started
        cpu += time.process_time() - cpu_started
        rows += len(block)
        block.clear()

    with files["events"].open("rb") as handle:
        for raw in handle:
            try:
                event = UsageEvent.model_validate_json(raw)
                cost = book.cost(event)
            except (ValueError, UnknownModel):
                continue
            if event.key in seen:
                continue
            seen.add(event.key)
            block.append(event.stored(cost.cost_usd, cost.price_version, now))
            if len(block) >= 100_000:
                flush()
    if block:
        flush()
    return rows, seconds, cpu


def main() -> None:
    args = parse_args()
    logger.setLevel("WARNING")
    folder = args.dir or Path(tempfile.gettempdir()) / f"simulate-bench-{args.tenants}-{args.events}"
    files = month_files(folder, args.events, args.tenants)
    spec = SimulationSpec(
        files["tenants"],
        files["events"],
        MONTH,
        Catalog(pricebook=files["pricebook"]),
        Catalog(plans=files["proposed"], pricebook=files["pricebook"]) if args.compare else None,
        workers=args.workers,
    )
    # The in-process run and the baseline share one embedded ClickHouse (one data path per process).
    data = tempfile.mkdtemp(prefix="simulate-bench-chdb-")
    atexit.register(shutil.rmtree, data, True)  # the month's files in --dir are kept for the next run
    clickhouse_url = f"chdb://{data}"
    os.environ["CLICKHOUSE_URL"] = clickhouse_url
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start", flush=True)
    cpu = cpu_seconds()
    with PeakMemory() as memory:
        started = time.perf_counter()
        result = simulate(spec)
        wall = time.perf_counter() - started
    cpu = cpu_seconds() - cpu
    report = result.current
    runs = 2 if result.proposed else 1
    rate = report.events_read * runs / wall
    print(
        f"simulate     : {report.events_read:,} events x {runs} run(s), {report.tenants:,} tenants in {wall:.1f} s "
        f"= {rate:,.0f} events/s ({report.workers} worker(s); CPU {cpu:.1f} s, {cpu / wall:.2f} of "
        f"{os.cpu_count()} cores busy on average; phases, slowest worker: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in report.seconds.items())
        + ")"
    )
    print(
        f"  accepted {report.accepted:,}, duplicates {report.duplicates:,}, rejected "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(report.rejected.items()))
        + f"; {len(report.statements):,} statements, total {sum(s.total for s in report.statements):,.2f}"
    )
    print(
        f"  peak memory, process + workers: RSS {memory.peak_mb:,.0f} MB, PSS {memory.peak_pss_mb:,.0f} MB "
        "(PSS counts the pages they share, such as the chdb library, once)"
    )
    if not args.skip_baseline:
        rows, seconds, insert_cpu = bulk_insert(files, clickhouse_url)
        baseline = rows / seconds
        print(
            f"bulk insert  : {rows:,} rows in {seconds:.1f} s = {baseline:,.0f} rows/s (insert_events, "
            f"100,000 a block; CPU {insert_cpu:.1f} s)"
        )
        print(
            f"simulate / bulk insert: {rate / baseline:.2f} by wall time; by CPU time "
            f"{(report.events_read * runs / cpu) / (rows / insert_cpu):.2f}"
        )
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
