"""``billing portal``: the tenant usage page. ``link`` signs a link on the configured environment;
``serve`` runs the page locally (in-process AWS, embedded ClickHouse) with a demo tenant."""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime, timedelta

import typer

from billing.runtime import container
from billing_cli import TENANTS, app
from billing_cli.errors import require_tenants
from billing_cli.output import emit, instant, json_option, progress_console

portal = typer.Typer(
    help="The tenant usage page: signed links, and a local server for it.", no_args_is_help=True
)
app.add_typer(portal, name="portal", rich_help_panel=TENANTS)


@portal.command("link")
def link(
    tenant_id: str = typer.Argument(..., help="tenant the page shows"),
    expires_in: int = typer.Option(3600, help="seconds the link lives (60 to 86400)"),
    base_url: str = typer.Option(None, help="public base URL of the API (default: PORTAL_BASE_URL)"),
    as_json: bool = json_option(),
) -> None:
    """Print a signed link to TENANT_ID's page (same token as POST /v1/tenants/{id}/portal-link)."""
    require_tenants(tenant_id)
    token, expires_at = container.portal_tokens().issue(tenant_id, timedelta(seconds=expires_in))
    base = (base_url or container.settings().portal_base_url or "http://127.0.0.1:8787").rstrip("/")
    url = f"{base}/v1/portal?token={token}"
    emit(
        {"tenant_id": tenant_id, "url": url, "expires_at": expires_at},
        [url, f"[dim]expires at {expires_at:%Y-%m-%d %H:%M:%S} UTC[/]"],
        as_json=as_json,
    )


@portal.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8787, help="port to listen on"),
    tenant_id: str = typer.Option("acme-corp", "--tenant", help="the demo tenant created with usage"),
    events: int = typer.Option(3000, help="demo events per month (last month and this month so far)"),
    api_key: str = typer.Option(None, help="the platform API key (random when not given)"),
    as_json: bool = json_option(),
) -> None:
    """Serve the portal routes of template.yaml on HOST:PORT over a fresh in-process environment.

    When it listens, stdout gets the page's link (with --json: one JSON document of the base URL,
    the platform key and the link); narration and request logs go to stderr."""
    from billing_local.http_api import LocalApi, serve_forever, template_routes
    from billing_local.portal_demo import seed_demo_tenant
    from billing_local.sandbox import sandbox

    key = api_key or secrets.token_urlsafe(18)
    base = f"http://{host}:{port}"
    os.environ["PORTAL_BASE_URL"] = base
    with sandbox():
        os.environ["PLATFORM_API_KEY_IDS"] = "local-platform-key"
        container.reset()
        console = progress_console()
        console.print(f"creating {tenant_id} with {events:,} events a month ...")
        seed_demo_tenant(tenant_id, datetime.now(UTC), events_per_month=events)
        token, expires_at = container.portal_tokens().issue(tenant_id, timedelta(hours=24))
        api = LocalApi(template_routes(["tenant_portal"]), {key: "local-platform-key"})
        page = f"{base}/v1/portal?token={token}"
        another = f"curl -X POST -H 'x-api-key: {key}' {base}/v1/tenants/{tenant_id}/portal-link"
        console.print(f"serving the tenant usage page on {base} (Ctrl-C stops)")
        console.print(f"platform key: {key}")
        console.print(f"another link: {another}", soft_wrap=True)
        console.print(f"page of {tenant_id} (until {expires_at:%Y-%m-%d %H:%M} UTC):")
        emit(
            {
                "url": base,
                "platform_key": key,
                "tenant_id": tenant_id,
                "page": page,
                "expires_at": instant(expires_at),
            },
            page,
            as_json=as_json,
        )
        try:
            serve_forever(api, host, port)
        except KeyboardInterrupt:
            console.print("stopped")
