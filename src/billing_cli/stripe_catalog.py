"""``billing stripe``: Stripe-side setup, starting with the product catalog."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from billing_cli import app

stripe_app = typer.Typer(help="Stripe-side setup (products of the catalog).", no_args_is_help=True)
app.add_typer(stripe_app, name="stripe")


@stripe_app.command("sync-catalog")
def sync_catalog(
    dry_run: bool = typer.Option(False, "--dry-run", help="show what would change; write nothing"),
) -> None:
    """One Stripe Product per plan line kind and per usage kind (by metadata.billing_key), created
    or renamed as needed; their ids are recorded for invoicing. Safe to repeat."""
    from billing.catalog.product_sync import sync_catalog as sync
    from billing.runtime import container

    plan, ids = sync(
        container.plan_catalog(), container.stripe_gateway(), container.product_ids(), dry_run=dry_run
    )
    table = Table(
        "billing key", "action", "product", title="Stripe products" + (" (dry run)" if dry_run else "")
    )
    for key, action, product in plan.rows():
        table.add_row(key, action, ids.get(key, product))
    console = Console()
    console.print(table)
    console.print(
        f"{len(plan.create)} to create, {len(plan.update)} to update, {len(plan.unchanged)} unchanged"
        + ("; nothing written (dry run)" if dry_run else "; ids recorded")
    )
