"""``billing quota``: monthly query quota counters (DynamoDB) against the stored queries (ClickHouse)."""

from __future__ import annotations

import typer
from rich.table import Table

from billing_cli import USAGE, app
from billing_cli.output import emit, json_option

quota_app = typer.Typer(help="Monthly query quota counters.", no_args_is_help=True)
app.add_typer(quota_app, name="quota", rich_help_panel=USAGE)


@quota_app.command("reconcile")
def reconcile(
    month: str = typer.Option(..., "--month", help="YYYY-MM"), as_json: bool = json_option()
) -> None:
    """Recount the month's stored queries from ClickHouse and repair every counter that drifted.

    Each repair is logged. The monthly close runs this before rating."""
    from billing.runtime import container
    from billing_cli.invoice import parse_month_option

    repairs = container.quota_reconciler()(parse_month_option(month))
    table = Table(
        "tenant", "month", "counter was", "stored queries", title=f"{len(repairs)} counter(s) repaired"
    )
    for r in repairs:
        table.add_row(r.tenant_id, r.month, str(r.counted), str(r.stored))
    emit(
        {
            "month": month,
            "repairs": [
                {
                    "tenant_id": r.tenant_id,
                    "month": r.month,
                    "counter_was": r.counted,
                    "stored_queries": r.stored,
                }
                for r in repairs
            ],
        },
        table,
        as_json=as_json,
    )
