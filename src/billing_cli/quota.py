"""``billing quota``: monthly query quota counters (DynamoDB) against the stored queries (ClickHouse)."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from billing_cli import app

quota_app = typer.Typer(help="Monthly query quota counters.", no_args_is_help=True)
app.add_typer(quota_app, name="quota")


@quota_app.command("reconcile")
def reconcile(month: str = typer.Option(..., "--month", help="YYYY-MM")) -> None:
    """Recount the month's stored queries from ClickHouse and repair every counter that drifted
    (each repair is logged). The monthly close runs this before rating."""
    from billing.kernel.periods import parse_month
    from billing.runtime import container

    repairs = container.quota_reconciler()(parse_month(month))
    table = Table(
        "tenant", "month", "counter was", "stored queries", title=f"{len(repairs)} counter(s) repaired"
    )
    for r in repairs:
        table.add_row(r.tenant_id, r.month, str(r.counted), str(r.stored))
    Console().print(table)
