"""``billing usage``: a tenant's month of usage, each event counted once."""

from __future__ import annotations

import typer
from rich.table import Table

from billing.kernel.periods import Month
from billing.runtime import container
from billing_cli import USAGE, app
from billing_cli.errors import require_tenants
from billing_cli.output import emit, json_option

TOTALS = ("events", "queries", "input_tokens", "output_tokens", "bytes", "cost_usd")


def usage_table(rows: list[dict], title: str) -> Table:
    table = Table(title=title)
    for column in (
        "tenant",
        "model",
        "events",
        "queries",
        "input tokens",
        "output tokens",
        "bytes",
        "cost (USD)",
    ):
        table.add_column(column, justify="left" if column in ("tenant", "model") else "right")
    for r in rows:
        table.add_row(
            r["tenant_id"],
            r.get("model") or "-",
            f"{r['events']:,}",
            f"{r['queries']:,}",
            f"{r['input_tokens']:,}",
            f"{r['output_tokens']:,}",
            f"{r['bytes']:,}",
            f"{r['cost_usd']:.9f}",
        )
    return table


@app.command("usage", rich_help_panel=USAGE)
def usage(
    tenant: str = typer.Option(..., "--tenant", help="tenant id"),
    month: str = typer.Option(..., "--month", help="YYYY-MM (UTC)"),
    as_json: bool = json_option(),
) -> None:
    """Print a tenant's usage for a month by model, from ClickHouse, duplicates collapsed."""
    try:
        period = Month.parse(month)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--month") from None
    summary = container.usage_store().month_usage(tenant, period)
    # ClickHouse has no tenants: an unknown one would read as an empty month
    require_tenants(tenant)
    rows = [{"tenant_id": tenant, **m} for m in summary["by_model"]]
    rows.append({"tenant_id": tenant, "model": "TOTAL", **{k: summary[k] for k in TOTALS}})
    document = {
        "tenant_id": tenant,
        "month": str(period),
        "by_model": summary["by_model"],
        "total": {k: summary[k] for k in TOTALS},
    }
    emit(document, usage_table(rows, f"Usage of {tenant} in {period} (UTC)"), as_json=as_json)
