"""``billing tenant``: a tenant's payment standing and dunning timeline; operator tools for dunning.

Works against the configured environment (tables from settings; Stripe key and webhook secret from
Secrets Manager).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import typer
from rich.console import Group
from rich.table import Table
from rich.text import Text

from billing.dunning.service import StatusView
from billing_cli import TENANTS, app
from billing_cli.errors import ExitCode, require_tenants
from billing_cli.output import dumps, emit, json_option

tenant_app = typer.Typer(
    help="Payment standing, dunning timeline and dunning operations.", no_args_is_help=True
)
app.add_typer(tenant_app, name="tenant", rich_help_panel=TENANTS)

STYLE = {
    "active": "green",
    "past_due": "yellow",
    "suspended": "bold red",
    "exhausted": "red",
    "paid": "green",
    "void": "dim",
    "uncollectible": "magenta",
    "open": "cyan",
    "draft": "dim",
}


def _styled(state: str) -> Text:
    return Text(state, style=STYLE.get(state, ""))


def status_renderable(view: StatusView) -> Group:
    """The standing, whether a card is on file, the invoices in dunning and the timeline."""
    standing = view.payment_status or view.standing
    card = (
        Text("payment method on file", style="green")
        if view.payment_method_on_file
        else Text("no payment method on file (invoices are sent, not charged)", style="yellow")
    )
    head = Text.assemble(
        "tenant ", (view.tenant_id, "bold"), "  payment status ", _styled(standing), "  ", card
    )
    invoices = Table(title="invoices", title_justify="left")
    invoices.add_column("invoice", overflow="fold")
    for column in ("month", "state", "first failed", "retries", "next retry"):
        invoices.add_column(column, no_wrap=True)
    for inv, state, next_at in view.invoices:
        invoices.add_row(
            inv.invoice_id,
            inv.month or "",
            _styled(state),
            inv.first_failure.at.strftime("%Y-%m-%d %H:%M") if inv.first_failure else "",
            str(len(inv.attempts)),
            next_at.strftime("%Y-%m-%d %H:%M") if next_at else "",
        )
    several = len({e.subject for e in view.audit if e.subject != "tenant"}) > 1
    timeline = Table(title="timeline", title_justify="left")
    timeline.add_column("when (UTC)", no_wrap=True)
    timeline.add_column("transition", no_wrap=True)
    timeline.add_column("why / event", overflow="fold")
    for entry in view.audit:
        tenant = entry.subject == "tenant"
        subject = "tenant" if tenant else (f"invoice {entry.subject}" if several else "invoice")
        move = Text.assemble(
            (f"{subject} ", "bold" if tenant else "dim"),
            _styled(entry.from_state),
            " -> ",
            _styled(entry.to_state),
        )
        why = Text.assemble(entry.why, "\n", (entry.event_id, "dim"))
        timeline.add_row(entry.at.strftime("%Y-%m-%d %H:%M"), move, why)
    parts: list = [head]
    if view.invoices:
        parts.append(invoices)
    parts.append(timeline if view.audit else Text("no dunning history", style="dim"))
    return Group(*parts)


@tenant_app.command("status")
def status(
    tenant_id: str = typer.Argument(..., help="tenant id"),
    as_json: bool = json_option(),
) -> None:
    """Print the tenant's payment status, its invoices in dunning and every transition.

    The JSON is what the HTTP endpoint returns, with the prepaid credits when there are any."""
    from billing.runtime import container

    require_tenants(tenant_id)
    view = container.tenant_service().status(tenant_id)
    credits = container.credit_book().summary(tenant_id, container.clock()())
    body = view.to_json() if as_json else {}
    if as_json and credits["grants"]:
        body["credits"] = credits
    emit(body, lambda: [status_renderable(view), credits_renderable(credits)], as_json=as_json)


def credits_renderable(summary: dict) -> Table | Text:
    """Prepaid credits: the usable balance and each grant with what remains of it."""
    if not summary["grants"]:
        return Text("no prepaid credits", style="dim")
    balance = ", ".join(f"{v} {c.upper()}" for c, v in summary["balance"].items()) or "0"
    table = Table(title=f"prepaid credits - balance {balance}", title_justify="left")
    for column in ("grant", "amount", "remaining", "priority", "granted", "expires"):
        table.add_column(column, no_wrap=True)
    for g in summary["grants"]:
        table.add_row(
            g["grant_id"],
            f"{g['amount']} {g['currency'].upper()}",
            g["remaining"] + (" (expired)" if g["expired"] else ""),
            str(g["priority"]),
            g["granted_at"],
            g["expires_at"] or "never",
        )
    return table


@tenant_app.command("grant-credit")
def grant_credit(
    tenant_id: str = typer.Argument(..., help="tenant id"),
    grant_id: str = typer.Option(..., "--id", help="grant id (repeating a grant is a no-op)"),
    amount: str = typer.Option(..., "--amount", help="amount in the tenant's currency, e.g. 50.00"),
    expires_at: str | None = typer.Option(None, "--expires-at", help="RFC 3339 instant"),
    granted_at: str | None = typer.Option(None, "--granted-at", help="RFC 3339 instant (default now)"),
    priority: int = typer.Option(100, "--priority", help="lower burns first"),
    description: str = typer.Option("", "--description"),
    as_json: bool = json_option(),
) -> None:
    """Grant prepaid credits to a tenant (what POST /v1/tenants/{id}/credits does)."""
    from billing.runtime import container
    from billing.tenants.requests import CreditGrantRequest, parse_request

    require_tenants(tenant_id)
    body: dict = {"grant_id": grant_id, "amount": amount, "priority": priority, "description": description}
    body.update({k: v for k, v in {"expires_at": expires_at, "granted_at": granted_at}.items() if v})
    grant, created = container.tenant_service().grant_credit(
        tenant_id, parse_request(CreditGrantRequest, body)
    )
    emit(
        {"created": created, "grant": grant},
        f"{'granted' if created else 'already granted (nothing changed)'}: {grant.grant_id}, "
        f"{grant.amount} {grant.currency.upper()} to {tenant_id}",
        as_json=as_json,
    )


@tenant_app.command("credits")
def credits(tenant_id: str = typer.Argument(..., help="tenant id"), as_json: bool = json_option()) -> None:
    """List a tenant's credit grants with what remains of each."""
    from billing.runtime import container

    require_tenants(tenant_id)
    summary = container.credit_book().summary(tenant_id, container.clock()())
    emit({"tenant_id": tenant_id, **summary}, credits_renderable(summary), as_json=as_json)


@tenant_app.command("add-coupon")
def add_coupon(
    tenant_id: str = typer.Argument(..., help="tenant id"),
    coupon_id: str = typer.Option(..., "--id", help="coupon id (attaching it again is a no-op)"),
    percent_off: str | None = typer.Option(None, "--percent-off"),
    amount_off: str | None = typer.Option(None, "--amount-off"),
    duration: str = typer.Option("once", "--duration", help="once | repeating | forever"),
    months: int | None = typer.Option(None, "--months", help="months of a repeating coupon"),
    starts_at: str | None = typer.Option(None, "--starts-at", help="RFC 3339 instant (default now)"),
    name: str = typer.Option("", "--name"),
    as_json: bool = json_option(),
) -> None:
    """Attach a coupon to a tenant (what POST /v1/tenants/{id}/coupons does)."""
    from billing.runtime import container
    from billing.tenants.requests import CouponRequest, parse_request

    require_tenants(tenant_id)
    body: dict = {"coupon_id": coupon_id, "duration": duration, "name": name}
    extra = {
        "percent_off": percent_off,
        "amount_off": amount_off,
        "duration_months": months,
        "starts_at": starts_at,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    tenant, created = container.tenant_service().attach_coupon(tenant_id, parse_request(CouponRequest, body))
    emit(
        {"created": created, "coupons": tenant.coupons},
        f"{'attached' if created else 'already attached (nothing changed)'}: coupon {coupon_id} to "
        f"{tenant_id} ({len(tenant.coupons)} coupon(s) on the tenant)",
        as_json=as_json,
    )


@tenant_app.command("calendar")
def calendar(
    tenant_id: str = typer.Argument(..., help="tenant id"),
    time_zone: str | None = typer.Option(None, "--time-zone", help="IANA name, e.g. Asia/Kolkata"),
    anchor: str | None = typer.Option(None, "--anchor", help="calendar | signup | an RFC 3339 instant"),
    interval: str | None = typer.Option(None, "--interval", help="week | month | quarter | year"),
    at: str | None = typer.Option(None, "--at", help="RFC 3339 instant the change is made at (default now)"),
    periods: int = typer.Option(0, "--periods", min=0, max=120, help="also list this many periods from now"),
    as_json: bool = json_option(),
) -> None:
    """Show a tenant's billing calendar, or change it from the next period boundary (what GET and
    POST /v1/tenants/{id}/calendar do)."""
    from itertools import islice

    from billing.kernel.periods import MAX_INSTANT
    from billing.runtime import container
    from billing.tenants.calendar_settings import period_view
    from billing.tenants.requests import CalendarRequest, parse_request

    require_tenants(tenant_id)
    service = container.tenant_service()
    changes = {"time_zone": time_zone, "anchor": anchor, "interval": interval, "at": at}
    body = {k: v for k, v in changes.items() if v is not None}
    if body:
        view = service.change_calendar(tenant_id, parse_request(CalendarRequest, body))
    else:
        view = service.calendar(tenant_id)
    period = view.current_period
    text = (
        f"{tenant_id}: {view.interval}ly periods, anchor {view.anchor}, time zone {view.time_zone}\n"
        f"current period: {period['label']} ({period['start']} to {period['end']})"
    )
    if view.scheduled:
        s = view.scheduled
        text += (
            f"\nfrom {s['effective_at']}: {s['interval']}ly periods, anchor {s['anchor']}, "
            f"time zone {s['time_zone']}"
        )
    document = view.model_dump(mode="json")
    if periods:
        history = service.get(tenant_id).calendar_history()
        start = datetime.fromisoformat(view.current_period["start"])
        listed = [period_view(p) for p in islice(history.periods(start, MAX_INSTANT), periods)]
        document["periods"] = listed
        text += "".join(f"\n  {p['label']}: {p['start']} to {p['end']}" for p in listed)
    emit(document, text, as_json=as_json)


@tenant_app.command("dunning-run")
def dunning_run(as_json: bool = json_option()) -> None:
    """Pay every dunning retry that is due now (what the scheduled Lambda does).

    Exit 5 when some retries could not be made (the payment provider failed) and others were, 6
    when none was; a declined payment is a result, not a failure."""
    from billing.runtime import container

    report = container.dunning_service().run_due(limit=container.settings().dunning_batch_limit)
    table = Table("tenant", "invoice", "attempt", "result", "standing", title=f"{report.due} retries due")
    for d in report.details:
        result = "paid" if d.get("succeeded") else d.get("failure_code") or d.get("error", "")
        table.add_row(
            d.get("tenant_id", ""), d["invoice_id"], str(d["attempt"]), result, d.get("standing", "")
        )
    emit(report, table, as_json=as_json)
    if report.errors:  # a retry that could not be made (a declined card is an answer, not an error)
        raise typer.Exit(ExitCode.PARTIAL if report.attempted else ExitCode.FAILED)


@tenant_app.command("sign-webhook")
def sign_webhook(
    event_file: Path = typer.Argument(Path("events/stripe_webhook.json"), exists=True),
    secret: str = typer.Option(
        ...,
        "--secret",
        envvar="STRIPE_WEBHOOK_SECRET",
        help="the endpoint secret stored in Secrets Manager (whsec_...)",
    ),
    output: Path | None = typer.Option(None, "-o", "--output"),
    as_json: bool = json_option(),
) -> None:
    """Re-sign a sample API Gateway event now, for `sam local invoke StripeWebhookFunction -e ...`.

    A signature is only accepted for 300 s. Without --output the event itself is the output (JSON
    either way)."""
    import base64
    import time

    from billing.adapters.stripe.webhook_signature import sign

    event = json.loads(event_file.read_text())
    headers = {k: v for k, v in (event.get("headers") or {}).items() if k.lower() != "stripe-signature"}
    body = base64.b64decode(event["body"]) if event.get("isBase64Encoded") else event["body"]
    headers["Stripe-Signature"] = sign(body, secret, int(time.time()))
    event["headers"] = headers
    if output is None:
        emit(event, dumps(event), as_json=True)
        return
    output.write_text(dumps(event))
    emit({"path": str(output)}, f"wrote {output}", as_json=as_json)
