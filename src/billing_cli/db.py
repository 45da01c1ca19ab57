"""``billing db``: ClickHouse schema migrations."""

from __future__ import annotations

import typer

from billing.runtime import container
from billing_cli import SET_UP, app
from billing_cli.output import Human, emit, json_option

db_app = typer.Typer(help="ClickHouse schema.", no_args_is_help=True)
app.add_typer(db_app, name="db", rich_help_panel=SET_UP)


@db_app.command("migrate")
def migrate(as_json: bool = json_option()) -> None:
    """Apply pending schema migrations (idempotent) to CLICKHOUSE_URL / CLICKHOUSE_DATABASE."""
    applied = container.usage_store().migrate()
    human: Human = [f"applied [bold]{name}[/]" for name in applied] or "schema is up to date"
    emit({"applied": list(applied)}, human, as_json=as_json)
