"""Demo stage: rating. Adds the edge-case tenants, closes the month and shows every statement.

Runs in the environment ``billing demo`` already set up (moto + chdb, env vars, the metering stage's
tenants and usage). Tenants go through the tenant service (signup with a trial, a plan change, a
cancellation with its final statement issued at once), usage through the ingest service; then the
monthly close rates everyone, stores the statements, writes the CSV and enqueues invoicing jobs.
Statements (JSON, one per tenant) and the CSV are saved under ``invoices/test/``.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from billing.kernel.periods import Month, parse_instant
from billing.metering.events import UsageEvent
from billing.rating import lines_csv
from billing.runtime import container
from billing.tenants.requests import CancelRequest, PlanChangeRequest, SignupRequest
from billing.tenants.service import TenantService
from billing_local.usage_generator import month_of_usage

MONTH = Month(2025, 11)
OUT_DIR = Path("invoices/test")
NOTES = {
    "small-co": "small",
    "medium-co": "medium",
    "large-co": "large (outage replayed)",
    "capped-co": "quota exceeded (free plan)",
    "idle-co": "zero usage",
    "upgrade-co": "mid-month upgrade",
    "trial-co": "trial ending mid-month",
    "churn-co": "cancelled mid-month",
}


def _service() -> TenantService:
    # The demo's Stripe double starts in the next stage; customers are created there, at the first invoice.
    s = container.tenant_service()
    return TenantService(
        tenants=s.tenants, catalog=s.catalog, periods=s.periods, cycle=s.cycle, is_conflict=s.is_conflict
    )


def _ingest(tenant_id: str, count: int, *, until: str | None = None, seed: int = 0) -> int:
    events = [UsageEvent.model_validate(e) for e in month_of_usage(tenant_id, MONTH, count, seed=seed)]
    if until:
        events = [e for e in events if e.timestamp < parse_instant(until)]
    service, accepted = container.ingest_service(), 0
    for start in range(0, len(events), 500):
        accepted += len(service.ingest(events[start : start + 500]).accepted)
    return accepted


def edge_cases(console: Console) -> None:
    tenants = _service()
    tenants.signup(
        SignupRequest(
            id="idle-co",
            name="Idle Co",
            email="billing@idle-co.example",
            plan="pro",
            effective_at=parse_instant("2025-10-01T00:00:00Z"),
        )
    )
    console.print("idle-co: pro plan, no usage at all")

    tenants.signup(
        SignupRequest(
            id="upgrade-co",
            name="Upgrade Co",
            email="billing@upgrade-co.example",
            plan="starter",
            effective_at=parse_instant("2025-10-01T00:00:00Z"),
        )
    )
    tenants.change_plan(
        "upgrade-co", PlanChangeRequest(plan="pro", effective_at=parse_instant("2025-11-16T08:00:00Z"))
    )
    console.print(
        f"upgrade-co: starter, upgraded to pro at 2025-11-16T08:00Z; {_ingest('upgrade-co', 1500):,} events"
    )

    trial, _ = tenants.signup(
        SignupRequest(
            id="trial-co",
            name="Trial Co",
            email="billing@trial-co.example",
            plan="starter",
            trial=True,
            effective_at=parse_instant("2025-11-05T00:00:00Z"),
        )
    )
    console.print(
        f"trial-co: signed up 2025-11-05 with starter's 14-day trial (ends {trial.trial_ends_at:%Y-%m-%d})"
    )
    accepted = _ingest_after("trial-co", 800, "2025-11-05T00:00:00Z")
    console.print(f"trial-co: {accepted:,} events from its signup on (trial usage is metered, billed at 0)")

    tenants.signup(
        SignupRequest(
            id="churn-co",
            name="Churn Co",
            email="billing@churn-co.example",
            plan="starter",
            effective_at=parse_instant("2025-10-01T00:00:00Z"),
        )
    )
    used = _ingest("churn-co", 600, until="2025-11-12T15:00:00Z")
    _, final = tenants.cancel("churn-co", CancelRequest(at=parse_instant("2025-11-12T15:00:00Z")))
    console.print(
        f"churn-co: {used:,} events, cancelled at 2025-11-12T15:00Z -> final statement issued at once: "
        f"{final.total:.2f} USD dated {final.invoice_date}"
    )


def _ingest_after(tenant_id: str, count: int, since: str) -> int:
    events = [UsageEvent.model_validate(e) for e in month_of_usage(tenant_id, MONTH, count, seed=1)]
    events = [e for e in events if e.timestamp >= parse_instant(since)]
    service, accepted = container.ingest_service(), 0
    for start in range(0, len(events), 500):
        accepted += len(service.ingest(events[start : start + 500]).accepted)
    return accepted


def run(console: Console) -> None:
    console.rule(f"[bold]2/5 Rating: edge cases, the close of {MONTH}, statements")
    edge_cases(console)
    result = container.billing_cycle().close(MONTH)
    again = container.billing_cycle().close(MONTH)
    console.print(
        f"{MONTH} closed: {len(result.created)} statements stored, "
        f"{len(result.enqueued)} invoicing jobs queued, CSV at s3://{container.settings().invoices_bucket}/"
        f"{result.csv_key}"
    )
    console.print(
        f"re-run of the close: {len(again.created)} new statements, {len(again.enqueued)} new jobs, "
        f"CSV byte-identical: {again.csv == result.csv}"
    )

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for statement in result.statements:
        (OUT_DIR / f"{statement.tenant_id}-{statement.month}.json").write_text(
            statement.model_dump_json(indent=2) + "\n"
        )
    (OUT_DIR / f"invoices-{MONTH}.csv").write_bytes(result.csv)
    (OUT_DIR / f"lines-{MONTH}.csv").write_bytes(lines_csv(result.statements))

    table = Table(title=f"Statements {MONTH} (saved under {OUT_DIR}/)")
    for column in ("tenant", "case", "plans", "queries", "tokens", "lines", "total USD", "invoice date"):
        table.add_column(
            column, justify="right" if column in ("queries", "tokens", "lines", "total USD") else "left"
        )
    for s in result.statements:
        plans = " -> ".join(dict.fromkeys(l.plan for l in s.lines if l.kind == "base_fee" and l.plan))
        table.add_row(
            s.tenant_id,
            NOTES.get(s.tenant_id, "") + (" [final]" if s.is_final else ""),
            plans,
            f"{s.total_queries:,}",
            f"{s.total_tokens:,}",
            str(len(s.lines)),
            f"{s.total:.2f}",
            s.invoice_date,
        )
    console.print(table)
    upgrade = next((s for s in result.statements if s.tenant_id == "upgrade-co"), None)
    if upgrade:
        from billing_cli.invoice import statement_table

        console.print(statement_table(upgrade))
