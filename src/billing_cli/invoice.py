"""``billing invoice``: statements of a month (preview / stored), the month's CSV, the close.

Works against the configured environment (CLICKHOUSE_URL, tables, queue, bucket from settings).
``invoice_app`` is shared: billing/cli/invoice_push.py adds ``push`` to it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from billing.kernel.errors import BillingError
from billing.kernel.periods import Month, iso
from billing.statements.statement import Statement
from billing_cli import MONTH_END, app
from billing_cli.errors import CliFailure, classify, require_tenants
from billing_cli.output import emit, json_option, progress_console

if TYPE_CHECKING:
    from billing.statements.close import CloseResult

invoice_app = typer.Typer(help="Statements, invoice CSV and the monthly close.", no_args_is_help=True)
app.add_typer(invoice_app, name="invoice", rich_help_panel=MONTH_END)


def parse_month_option(text: str) -> Month:
    """``--month YYYY-MM``; a malformed one is a usage error naming the option."""
    try:
        return Month.parse(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--month") from None


def _fail(error: BillingError) -> CliFailure:
    """A refusal of the domain as one line, with the exit code of its kind (404 not found, ...)."""
    return CliFailure(error.message, classify(error)[1])


def statement_table(statement: Statement, *, stored: bool = True) -> Table:
    state = "stored" if stored else "preview (month to date)"
    title = (
        f"{statement.tenant_id} {statement.month} - {state}"
        f"{' - FINAL' if statement.is_final else ''} - invoice date {statement.invoice_date}"
    )
    table = Table("line", "description", "quantity", "unit price", "amount", title=title, show_footer=True)
    for line in statement.lines:
        table.add_row(
            line.line_id,
            line.description,
            f"{line.quantity:,f}",
            "" if line.unit_price is None else f"{line.unit_price:f}",
            f"{line.amount:.2f}",
        )
    table.columns[3].footer = "total"
    table.columns[4].footer = f"{statement.total:.2f} {statement.currency.upper()}"
    return table


@invoice_app.command("preview")
def preview(
    tenant: str = typer.Option(..., "--tenant"),
    month: str = typer.Option(..., "--month"),
    as_json: bool = json_option(),
) -> None:
    """Print a tenant's statement: the stored one, or a month-to-date preview (nothing is stored)."""
    from billing.runtime import container

    period = parse_month_option(month)
    require_tenants(tenant)
    try:
        statement, stored = container.billing_cycle().statement(tenant, period)
    except BillingError as error:
        raise _fail(error) from None
    emit(statement, statement_table(statement, stored=stored), as_json=as_json)


def close_table(result: CloseResult) -> Table:
    """The close's statements, one row each, with what this run did to them."""
    created, enqueued = set(result.created), set(result.enqueued)
    table = Table(
        "tenant",
        "total",
        "invoice date",
        "final",
        "stored now",
        "job sent now",
        title=f"{result.month} closed at {iso(result.closed_at)}",
    )
    for s in sorted(result.statements, key=lambda s: s.tenant_id):
        table.add_row(
            s.tenant_id,
            f"{s.total:.2f} {s.currency.upper()}",
            s.invoice_date,
            "yes" if s.is_final else "",
            "yes" if s.tenant_id in created else "",
            "yes" if s.tenant_id in enqueued else "",
        )
    return table


@invoice_app.command("close")
def close(
    month: str = typer.Option(..., "--month"),
    as_json: bool = json_option(),
) -> None:
    """Close a month now (what the scheduled Lambda does): statements, CSV to S3, invoicing jobs."""
    from billing.runtime import container

    period = parse_month_option(month)
    # stdout carries only the result, so that --json can be piped; a spinner (on a terminal) and
    # the time taken go to stderr
    progress = progress_console()
    started = time.monotonic()
    try:
        with progress.status(f"closing {period}"):
            result = container.billing_cycle().close(period)
    except BillingError as error:
        raise _fail(error) from None
    progress.print(f"closed {period} in {time.monotonic() - started:.1f} s", highlight=False)
    summary = result.summary()
    line = (
        f"{summary['statements']} statement(s), {summary['statements_created']} stored now, "
        f"{summary['jobs_enqueued']} invoicing job(s) sent now; CSV "
        + (
            f"written to {summary['csv_key']}"
            if summary["csv_written"]
            else f"already at {summary['csv_key']}"
        )
    )
    emit(summary, [close_table(result), line], as_json=as_json)


@invoice_app.command("export")
def export(
    out: Path = typer.Option(..., "--out", dir_okay=False),
    month: str | None = typer.Option(None, "--month", help="The month's CSV (UTC-month statements)."),
    periods_ending_in: str | None = typer.Option(
        None,
        "--periods-ending-in",
        help="The periods CSV: stored statements of every period (any time zone, anchor, interval) "
        "whose last local day is in YYYY-MM.",
    ),
    as_json: bool = json_option(),
) -> None:
    """Write the month's CSV (stored statements; month-to-date previews for tenants without one), or
    with --periods-ending-in the periods CSV (stored statements of periods of any shape)."""
    from billing.runtime import container

    if (month is None) == (periods_ending_in is None):
        raise typer.BadParameter("give exactly one of --month and --periods-ending-in", param_hint="--month")
    cycle = container.billing_cycle()
    if month is not None:
        period = parse_month_option(month)
        csv = cycle.export_csv(period)
        summary: dict[str, object] = {"month": str(period)}
    else:
        from billing.statements.period_export import export_periods_csv

        try:
            period = Month.parse(periods_ending_in or "")
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--periods-ending-in") from None
        csv = export_periods_csv(cycle.tenants, cycle.statements, period)
        summary = {"periods_ending_in": str(period)}
    out.write_bytes(csv)
    rows = max(len(csv.decode().splitlines()) - 1, 0)
    emit(
        {**summary, "path": str(out), "rows": rows, "bytes": len(csv)},
        f"wrote {out} ({rows} row(s))",
        as_json=as_json,
    )
