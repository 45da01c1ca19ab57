"""``billing stripe``: Stripe-side setup (the product catalog, the customer portal's configuration)
and the go-live check of the account."""

from __future__ import annotations

import typer
from rich.table import Table

from billing_cli import SET_UP, app
from billing_cli.errors import ExitCode
from billing_cli.output import emit, json_option

stripe_app = typer.Typer(
    help="Stripe-side setup (products of the catalog, the customer portal's configuration) and its check.",
    no_args_is_help=True,
)
app.add_typer(stripe_app, name="stripe", rich_help_panel=SET_UP)


@stripe_app.command("sync-catalog")
def sync_catalog(
    dry_run: bool = typer.Option(False, "--dry-run", help="show what would change; write nothing"),
    as_json: bool = json_option(),
) -> None:
    """Create or rename the Stripe products and the customer portal's configuration; safe to repeat.

    One Stripe Product per plan line kind and per usage kind (by metadata.billing_key), created or
    renamed as needed, and the customer portal's configuration every portal session names (Stripe
    refuses a session without one); their ids are recorded."""
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
    line = (
        f"products: {len(plan.create)} to create, {len(plan.update)} to update, {len(plan.unchanged)} "
        f"unchanged; customer portal configuration: {page.action}"
        + ("; nothing written (dry run)" if dry_run else "; ids recorded")
    )
    document = {
        "dry_run": dry_run,
        "products": [
            {
                "billing_key": key,
                "action": action,
                "stripe_id": ids.get(key) or (None if product == "-" else product),
            }
            for key, action, product in plan.rows()
        ],
        "customer_portal_configuration": {"action": page.action, "stripe_id": page_id or None},
    }
    emit(document, [table, line], as_json=as_json)


@stripe_app.command("check")
def check(as_json: bool = json_option()) -> None:
    """Check the Stripe account is ready to go live; exit 4 (not configured) when something is missing.

    What the Stripe account needs before going live, from what its API shows: a webhook endpoint
    receiving every event we handle (invoice.overdue above all: without it a tenant without a card
    is never dunned), the customer portal's configuration, a published minimum charge per plan
    currency; and what to confirm by hand."""
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
    missing = has_missing(findings)
    line = (
        "something is missing: see the rows marked missing"
        if missing
        else "nothing missing; confirm the rows marked confirm by hand"
    )
    emit({"missing": missing, "findings": findings}, [table, line], as_json=as_json)
    if missing:
        raise typer.Exit(ExitCode.NOT_CONFIGURED)
