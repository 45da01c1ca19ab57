"""``billing db``: ClickHouse schema migrations."""

from __future__ import annotations

import typer
from rich.console import Console

from billing.runtime import container
from billing_cli import app

db_app = typer.Typer(help="ClickHouse schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("migrate")
def migrate() -> None:
    """Apply pending schema migrations (idempotent) to CLICKHOUSE_URL / CLICKHOUSE_DATABASE."""
    console = Console()
    applied = container.usage_store().migrate()
    if applied:
        for name in applied:
            console.print(f"applied [bold]{name}[/]")
    else:
        console.print("schema is up to date")
