"""``billing events receipt`` and ``billing reconcile``: what became of event ids, and whether a
tenant's month agrees across the ledger, ClickHouse and its statement (billing.metering.receipts)."""

from __future__ import annotations

import typer
from rich.table import Table

from billing_cli import USAGE, app
from billing_cli.errors import require_tenants
from billing_cli.output import emit, json_option

events_app = typer.Typer(help="What became of event ids.", no_args_is_help=True)
app.add_typer(events_app, name="events", rich_help_panel=USAGE)


@events_app.command("receipt")
def receipt(
    event_ids: list[str] = typer.Argument(..., metavar="ID...", help="event ids (at most 100)"),
    tenant: str = typer.Option(..., "--tenant", help="tenant id"),
    as_json: bool = json_option(),
) -> None:
    """The receipt of each event id: accepted, queued in the fallback, stored, billed on which
    statement, voided or amended; unknown for an id never accepted (refused events are never
    recorded)."""
    from billing.kernel.validation import parse_model
    from billing.metering.receipt_views import ReceiptsRequest
    from billing.runtime import container

    request = parse_model(ReceiptsRequest, {"tenant_id": tenant, "event_ids": event_ids}, what="arguments")
    require_tenants(tenant)
    found = container.receipt_service().receipts(tenant, list(dict.fromkeys(request.event_ids)))
    table = Table(
        "event",
        "status",
        "corrected",
        "stored at",
        "billed on",
        "what happened",
        title=f"receipts of {tenant}",
    )
    for r in found:
        billed = f"{r.billed['statement_id']} ({r.billed['as']})" if r.billed else "-"
        stored = r.to_json()["stored"]
        table.add_row(
            r.event_id,
            r.status,
            r.corrected or "-",
            stored["stored_at"] if stored else "-",
            billed,
            r.message,
        )
    emit({"tenant_id": tenant, "receipts": [r.to_json() for r in found]}, table, as_json=as_json)


@app.command("reconcile", rich_help_panel=USAGE)
def reconcile(
    tenant: str = typer.Option(..., "--tenant", help="tenant id"),
    month: str = typer.Option(..., "--month", help="YYYY-MM (UTC)"),
    as_json: bool = json_option(),
) -> None:
    """Count a tenant's events of a month accepted (ledger), stored (ClickHouse) and billed (its
    statement), and name the ids that differ. Exit 0 when they agree, 5 when they do not (the
    output names the ids)."""
    from billing.runtime import container
    from billing_cli.errors import ExitCode
    from billing_cli.invoice import parse_month_option

    period = parse_month_option(month)
    require_tenants(tenant)
    result = container.receipt_service().reconcile(tenant, period)
    document = result.to_json()

    def human() -> list[object]:
        counts = Table(
            "accepted", "stored", "billed", "billed on time", "late", "voided", "fallback queue", "agree"
        )
        counts.title = f"{tenant} {month}"
        counts.add_row(
            *(str(document[k]) if document[k] is not None else "-" for k in ("accepted", "stored", "billed")),
            str(result.billed_on_time),
            str(result.late),
            str(result.voided),
            str(result.fallback_queue_depth),
            "yes" if result.agree else "NO",
        )
        shown: list[object] = [counts]
        if result.accepted_not_stored or result.stored_not_accepted:
            ids = Table("event", "difference")
            for d in result.accepted_not_stored:
                ids.add_row(d["event_id"], "accepted, not stored" + (" (queued)" if d["queued"] else ""))
            for e in result.stored_not_accepted:
                ids.add_row(e, "stored, not accepted")
            shown.append(ids)
        shown += result.notes
        return shown

    emit(document, human, as_json=as_json)
    if not result.agree:
        raise typer.Exit(ExitCode.PARTIAL)
