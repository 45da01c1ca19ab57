"""``billing simulate``: the whole pipeline offline (fresh embedded ClickHouse, in-process AWS).

Tenants are created from the file, events are ingested through the ingest service in timestamp order
(quota, cancellation and every other ingest rule apply as in production; refused events are counted
and reported), the month is closed and its CSV written. Try a pricing change here before shipping it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from billing.errors import BillingError, QuotaExceeded
from billing.events import UsageEvent, parse_event
from billing.observability import logger
from billing.periods import Month
from billing.rating import lines_csv
from billing.statements import Statement
from billing.tenants import Tenant
from billing_cli import app

BATCH = 500


@dataclass
class SimulationReport:
    month: str
    tenants: int = 0
    events_read: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: Counter = field(default_factory=Counter)  # reason -> events
    examples: list[str] = field(default_factory=list)  # a few rejection messages
    statements: list[Statement] = field(default_factory=list)
    csv: bytes = b""

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


def load_tenants(path: Path) -> list[Tenant]:
    document = yaml.safe_load(Path(path).read_text())  # YAML is a superset of JSON
    entries = document.get("tenants") if isinstance(document, dict) else document
    if not isinstance(entries, list):
        raise typer.BadParameter(f"{path}: expected a 'tenants' list")
    tenants = []
    for index, entry in enumerate(entries):
        try:
            tenants.append(Tenant.model_validate(entry))
        except ValidationError as exc:
            raise typer.BadParameter(
                f"{path}: tenant #{index}: {exc.errors(include_url=False)[0]['msg']} "
                f"at {exc.errors(include_url=False)[0]['loc']}"
            ) from None
    return tenants


def read_events(path: Path, report: SimulationReport) -> list[UsageEvent]:
    events = []
    with Path(path).open() as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            report.events_read += 1
            try:
                document: Any = json.loads(raw)
            except ValueError:
                _reject(report, "invalid", f"line {number}: not JSON")
                continue
            event, problems = parse_event(document, number)
            if event is None:
                _reject(report, "invalid", f"line {number}: {problems[0]['field']}: {problems[0]['reason']}")
                continue
            events.append(event)
    return sorted(events, key=lambda e: (e.timestamp, e.event_id))


def _reject(report: SimulationReport, reason: str, message: str, count: int = 1) -> None:
    report.rejected[reason] += count
    if len(report.examples) < 8:
        report.examples.append(message)


def _state(tenant: Tenant | None, event: UsageEvent) -> str:
    if tenant is None:
        return "unknown"
    if tenant.is_canceled_at(event.timestamp):
        return "canceled"
    first = tenant.first_plan_at()
    if first is None or event.timestamp < first:
        return "no-plan"
    return "ok"


def batches(events: list[UsageEvent], tenants: dict[str, Tenant]) -> Iterator[list[UsageEvent]]:
    """Consecutive events (already in timestamp order) of one tenant, month and subscription state,
    at most BATCH each: a batch-level refusal then concerns exactly the events it names."""
    current: list[UsageEvent] = []
    ids: set[str] = set()
    key: tuple[str, str, str] | None = None
    for event in events:
        k = (event.tenant_id, str(Month.of(event.timestamp)), _state(tenants.get(event.tenant_id), event))
        if current and (k != key or len(current) >= BATCH or event.event_id in ids):
            yield current
            current, ids = [], set()
        key = k
        ids.add(event.event_id)
        current.append(event)
    if current:
        yield current


def simulate_run(
    tenants_path: Path,
    events_path: Path,
    month: Month,
    *,
    plans: Path | None = None,
    pricebook: Path | None = None,
    console: Console | None = None,
) -> SimulationReport:
    from billing import container
    from billing_local.sandbox import sandbox

    console = console or Console(stderr=True)
    report = SimulationReport(month=str(month))
    tenants = load_tenants(tenants_path)
    events = read_events(events_path, report)
    with sandbox(plans_path=plans, pricebook_path=pricebook):
        catalog = container.plan_catalog()
        for tenant in tenants:
            unknown = [p.plan for p in tenant.plans if p.plan not in catalog]
            if unknown:
                raise typer.BadParameter(f"tenant {tenant.id}: unknown plan(s) {', '.join(unknown)}")
            if not container.tenants().create(tenant):
                raise typer.BadParameter(f"tenant {tenant.id} appears twice in {tenants_path}")
        report.tenants = len(tenants)
        by_id = {t.id: t for t in tenants}
        service = container.ingest_service()
        with Progress(
            TextColumn("ingest"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("ingest", total=len(events))
            for batch in batches(events, by_id):
                _ingest(service, batch, report)
                progress.advance(task, len(batch))
        cycle = container.billing_cycle()
        now = datetime.now(UTC)
        cycle.clock = lambda: max(now, month.end)  # a simulation may close a month that is not over
        result = cycle.close(month)
        report.statements = result.statements
        report.csv = result.csv
    return report


def _ingest(service: Any, batch: list[UsageEvent], report: SimulationReport) -> None:
    try:
        result = service.ingest(batch)
    except QuotaExceeded as exc:
        details = exc.details if isinstance(exc.details, dict) else {}
        refused = len(details.get("rejected_for_quota", [])) or len(batch)
        report.duplicates += len(details.get("duplicates", []))
        _reject(report, "quota", f"{batch[0].tenant_id}: {exc.message}", refused)
        return
    except BillingError as exc:
        _reject(report, exc.code, f"{batch[0].tenant_id} {batch[0].event_id}..: {exc.message}", len(batch))
        return
    report.accepted += len(result.accepted)
    report.duplicates += len(result.duplicates)
    if result.rejected_for_quota:
        _reject(
            report,
            "quota",
            f"{batch[0].tenant_id}: {len(result.rejected_for_quota)} queries over the quota",
            len(result.rejected_for_quota),
        )


def print_report(report: SimulationReport, console: Console) -> None:
    console.print(
        f"[bold]{report.month}[/]: {report.tenants} tenants, {report.events_read} events read, "
        f"{report.accepted} accepted, {report.duplicates} duplicates, {report.rejected_total} rejected"
    )
    for reason, count in sorted(report.rejected.items()):
        console.print(f"  rejected ({reason}): {count}")
    for example in report.examples:
        console.print(f"  [dim]{example}[/]")
    table = Table("tenant", "queries", "tokens", "total USD", "invoice date", "final")
    for s in report.statements:
        table.add_row(
            s.tenant_id,
            f"{s.total_queries:,}",
            f"{s.total_tokens:,}",
            f"{s.total:.2f}",
            s.invoice_date,
            "yes" if s.is_final else "",
        )
    console.print(table)


@app.command("simulate")
def simulate(
    tenants: Path = typer.Option(..., "--tenants", exists=True, dir_okay=False, help="tenants YAML or JSON"),
    events: Path = typer.Option(
        ..., "--events", exists=True, dir_okay=False, help="usage events, JSON lines"
    ),
    month: str = typer.Option(..., "--month", help="YYYY-MM"),
    out: Path = typer.Option(..., "--out", dir_okay=False, help="invoice CSV to write"),
    plans: Path | None = typer.Option(None, "--plans", exists=True, dir_okay=False, help="plans YAML"),
    pricebook: Path | None = typer.Option(
        None, "--pricebook", exists=True, dir_okay=False, help="price book YAML"
    ),
    lines: Path | None = typer.Option(
        None, "--lines", dir_okay=False, help="also write every statement line"
    ),
) -> None:
    """Run tenants and events through ingest, rating and the close offline; write the month's CSV."""
    try:
        target = Month.parse(month)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--month") from None
    console = Console(stderr=True)
    logger.setLevel("WARNING")  # per-batch logs would drown the report
    report = simulate_run(tenants, events, target, plans=plans, pricebook=pricebook, console=console)
    out.write_bytes(report.csv)
    if lines:
        lines.write_bytes(lines_csv(report.statements))
    print_report(report, console)
    console.print(f"wrote {out}" + (f" and {lines}" if lines else ""))
