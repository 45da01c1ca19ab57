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
    """Apply pending schema migrations (idempotent) to CLICKHOUSE_URL / CLICKHOUSE_DATABASE, then
    export the catalog's metric definitions for the dashboards (run it again after the catalog changes)."""
    from billing.adapters.clickhouse.metric_definitions import export_metric_definitions

    store = container.usage_store()
    applied = store.migrate()
    exported = export_metric_definitions(store, container.plan_catalog())
    human: Human = [f"applied [bold]{name}[/]" for name in applied] or ["schema is up to date"]
    human = [*human, f"{exported} catalog metric definition(s) exported for the dashboards"]
    emit({"applied": list(applied), "metrics_exported": exported}, human, as_json=as_json)
