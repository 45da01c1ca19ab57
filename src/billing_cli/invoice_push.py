"""``billing invoice push``: invoice a month's statements in Stripe, from the CLI.

Runs the same code as the invoicing Lambda (billing.invoicing) against the configured environment:
tables from settings, the Stripe key from Secrets Manager (STRIPE_SECRET_NAME), the API version and
rate cap from settings. Safe to repeat: finished statements send nothing.
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from billing.invoicing import InvoiceOutcome, plan_requests
from billing_cli.errors import require_tenants
from billing_cli.invoice import invoice_app, parse_month_option


def outcome_table(outcomes: list[InvoiceOutcome], title: str) -> Table:
    table = Table("tenant", "state", "invoice", "statement", "stripe total", "note", title=title)
    for o in outcomes:
        stripe_total = "" if o.stripe_total is None else f"{o.stripe_total / 100:.2f}"
        note = o.error or o.failure_code or ""
        style = "red" if o.error else "yellow" if o.state == "payment_failed" else None
        table.add_row(
            o.tenant_id,
            o.state,
            o.invoice_id or "",
            f"{o.total_cents / 100:.2f}",
            stripe_total,
            note,
            style=style,
        )
    return table


@invoice_app.command("push")
def push(
    month: str = typer.Option(..., "--month", help="YYYY-MM"),
    tenant: list[str] = typer.Option(None, "--tenant", help="only this tenant (repeatable)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the Stripe requests instead of sending"),
    workers: int = typer.Option(0, "--workers", help="parallel statements (default: settings)"),
) -> None:
    """Create, itemize, finalize and charge the Stripe invoices of a month's statements."""
    from billing.runtime import container
    from billing.runtime.container import invoicing_service

    m = parse_month_option(month)
    if tenant:
        require_tenants(*tenant)
    service = invoicing_service()
    console = Console()
    ids = sorted(tenant) if tenant else [s.tenant_id for s in container.statements().list_month(m)]
    if not ids:
        console.print(f"no statements for {m} (close the month first: billing invoice close --month {m})")
        raise typer.Exit(1)
    if dry_run:
        for tenant_id in ids:
            requests = plan_requests(service, tenant_id, m)
            console.rule(f"{tenant_id} {m}: {len(requests)} request(s)")
            for request in requests:
                console.print(request.render(), markup=False, highlight=False, soft_wrap=True)
        return
    with Progress(
        TextColumn("invoicing {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(str(m), total=len(ids))
        outcomes = service.push(
            m,
            ids,
            workers=workers or container.settings().invoicing_workers,
            on_done=lambda _o: progress.advance(task),
        )
    console.print(outcome_table(outcomes, f"Stripe invoices {m}"))
    if any(o.error for o in outcomes):
        raise typer.Exit(1)
