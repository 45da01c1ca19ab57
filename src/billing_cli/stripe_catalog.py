"""``billing stripe``: Stripe-side setup (the product catalog, the customer portal's configuration)
and the go-live check of the account."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from billing_cli import app

stripe_app = typer.Typer(
    help="Stripe-side setup (products of the catalog, the customer portal's configuration) and its check.",
    no_args_is_help=True,
)
app.add_typer(stripe_app, name="stripe")


@stripe_app.command("sync-catalog")
def sync_catalog(
    dry_run: bool = typer.Option(False, "--dry-run", help="show what would change; write nothing"),
) -> None:
    """One Stripe Product per plan line kind and per usage kind (by metadata.billing_key), created
    or renamed as needed, and the customer portal's configuration every portal session names
    (Stripe refuses a session without one); their ids are recorded. Safe to repeat."""
    from billing.catalog.product_sync import sync_catalog as sync
    from billing.payments.payment_settings_page import PageSpec, sync_page
    from billing.runtime import container

    gateway = container.stripe_gateway()
    plan, ids = sync(container.plan_catalog(), gateway, container.product_ids(), dry_run=dry_run)
    page, page_id = sync_page(
        PageSpec(default_return_url=container.settings().billing_portal_return_url),
        gateway,
        container.payment_settings_page_id(),
        dry_run=dry_run,
    )
    table = Table(
        "billing key", "action", "Stripe id", title="Stripe catalog" + (" (dry run)" if dry_run else "")
    )
    for key, action, product in plan.rows():
        table.add_row(key, action, ids.get(key, product))
    table.add_row("customer portal configuration", page.action, page_id or "-")
    console = Console()
    console.print(table)
    console.print(
        f"products: {len(plan.create)} to create, {len(plan.update)} to update, {len(plan.unchanged)} "
        f"unchanged; customer portal configuration: {page.action}"
        + ("; nothing written (dry run)" if dry_run else "; ids recorded")
    )


@stripe_app.command("check")
def check() -> None:
    """What the Stripe account needs before going live, from what its API shows: a webhook endpoint
    receiving every event we handle (invoice.overdue above all: without it a tenant without a card
    is never dunned), the customer portal's configuration, a published minimum charge per plan
    currency; and what to confirm by hand. Exit 1 when something is missing."""
    from billing.payments.setup_check import check_setup, has_missing
    from billing.payments.stripe_webhooks import HANDLED_EVENTS
    from billing.runtime import container

    gateway = container.stripe_gateway()
    catalog = container.plan_catalog()
    findings = check_setup(
        endpoints=gateway.list_webhook_endpoints(),
        handled_events=HANDLED_EVENTS,
        api_version=container.settings().stripe_api_version,
        page_config_id=container.payment_settings_page_id().get(),
        page_configs=gateway.list_page_configs(),
        currencies=[catalog.currency, *(p.currency for p in catalog.plans if p.currency)],
        minimum_charge=gateway.minimum_charge,
    )
    table = Table("check", "status", "detail", title="Stripe account")
    style = {"ok": "green", "missing": "bold red", "warning": "yellow", "confirm": "cyan"}
    for finding in findings:
        table.add_row(finding.check, f"[{style[finding.status]}]{finding.status}[/]", finding.detail)
    console = Console()
    console.print(table)
    if has_missing(findings):
        console.print("something is missing: see the rows marked missing")
        raise typer.Exit(1)
    console.print("nothing missing; confirm the rows marked confirm by hand")
