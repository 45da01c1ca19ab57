"""``billing invoice push``: invoice a month's statements in Stripe, from the CLI.

Runs the same code as the invoicing Lambda (billing.invoicing) against the configured environment:
tables from settings, the Stripe key from Secrets Manager (STRIPE_SECRET_NAME), the API version and
rate cap from settings. Safe to repeat: finished statements send nothing.
"""

from __future__ import annotations

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from billing.invoicing import InvoiceOutcome, plan_requests
from billing_cli.errors import CliFailure, ExitCode, require_tenants
from billing_cli.invoice import invoice_app, parse_month_option
from billing_cli.output import emit, json_option, progress_console, to_jsonable


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
    as_json: bool = json_option(),
) -> None:
    """Create, itemize, finalize and charge the Stripe invoices of a month's statements.

    Exit 1 when
    the month has no statements, 5 when some invoices failed and others went through, 6 when all
    failed."""
    from billing.runtime import container
    from billing.runtime.container import invoicing_service

    m = parse_month_option(month)
    if tenant:
        require_tenants(*tenant)
    service = invoicing_service()
    ids = sorted(tenant) if tenant else [s.tenant_id for s in container.statements().list_month(m)]
    if not ids:
        raise CliFailure(
            f"no statements for {m} (close the month first: billing invoice close --month {m})",
            ExitCode.NOT_FOUND,
        )
    if dry_run:
        plans = {tenant_id: plan_requests(service, tenant_id, m) for tenant_id in ids}

        def rendered() -> list:
            from rich.rule import Rule
            from rich.text import Text

            out: list = []
            for tenant_id, requests in plans.items():
                out.append(Rule(f"{tenant_id} {m}: {len(requests)} request(s)"))
                out += [Text(request.render()) for request in requests]
            return out

        document = {
            "month": str(m),
            "dry_run": True,
            "requests": {
                tenant_id: [_request_json(r) for r in requests] for tenant_id, requests in plans.items()
            },
        }
        emit(document, rendered, as_json=as_json)
        return
    with Progress(
        TextColumn("invoicing {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=progress_console(),
        transient=True,
    ) as progress:
        task = progress.add_task(str(m), total=len(ids))
        outcomes = service.push(
            m,
            ids,
            workers=workers or container.settings().invoicing_workers,
            on_done=lambda _o: progress.advance(task),
        )
    emit(
        {"month": str(m), "outcomes": outcomes},
        outcome_table(outcomes, f"Stripe invoices {m}"),
        as_json=as_json,
    )
    failed = sum(1 for o in outcomes if o.error)
    if failed:
        raise typer.Exit(ExitCode.PARTIAL if failed < len(outcomes) else ExitCode.FAILED)


def _request_json(request: object) -> object:
    """A planned request's fields when it has them, always with its rendering."""
    fields = to_jsonable(request)
    rendered = request.render()  # type: ignore[attr-defined]
    return {**fields, "rendered": rendered} if isinstance(fields, dict) else {"rendered": rendered}
