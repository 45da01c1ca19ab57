"""``billing corrections``: void or amend an accepted usage event, and show its audit trail
(billing.metering.corrections; the same service as ``POST /v1/corrections``)."""

from __future__ import annotations

import getpass
import json
import uuid
from typing import Any

import typer
from rich.table import Table

from billing_cli import USAGE, app
from billing_cli.errors import exit_code_of_status
from billing_cli.output import emit, json_option

corrections_app = typer.Typer(
    help="Void or amend accepted usage events at their original price; show an event's corrections.",
    no_args_is_help=True,
)
app.add_typer(corrections_app, name="corrections", rich_help_panel=USAGE)

ID_HELP = (
    "the correction's id (default: a new one); the same id again changes nothing, so give one to rerun safely"
)


def _apply(item: dict[str, Any], as_json: bool) -> None:
    from billing.metering.correction_requests import parse_corrections
    from billing.runtime import container
    from billing.tenants.access import Principal

    # the operator's own name is recorded as who asked (the API records the API key id)
    principal = Principal(api_key_id=f"cli:{getpass.getuser()}", platform=True)
    body = json.dumps({"corrections": [item]}).encode()
    items = parse_corrections(body, "application/json", max_bytes=container.settings().max_body_bytes)
    [result] = container.correction_service().apply(items, principal)
    document = result.to_json()
    table = Table("correction", "tenant", "event", "status", "detail", title="correction")
    detail = result.error.message if result.error is not None else (result.entry or {}).get("action", "")
    table.add_row(result.correction_id, result.tenant_id, result.event_id, result.status, detail)
    emit(document, table, as_json=as_json)
    if result.error is not None:
        raise typer.Exit(exit_code_of_status(result.error.status))


@corrections_app.command("void")
def void(
    tenant: str = typer.Argument(..., help="tenant id"),
    event_id: str = typer.Argument(..., help="the event's id as it was sent"),
    reason: str = typer.Option(..., "--reason", help="why (kept in the audit trail)"),
    correction_id: str = typer.Option(None, "--id", help=ID_HELP),
    as_json: bool = json_option(),
) -> None:
    """Void an event: its quantities and exact stored cost come off the usage, a query goes back to
    the quota; after its month closed, the difference is an adjustment on the next statement."""
    _apply(
        {
            "correction_id": correction_id or f"cli-{uuid.uuid4().hex[:16]}",
            "tenant_id": tenant,
            "event_id": event_id,
            "action": "void",
            "reason": reason,
        },
        as_json,
    )


@corrections_app.command("amend")
def amend(
    tenant: str = typer.Argument(..., help="tenant id"),
    event_id: str = typer.Argument(..., help="the event's id as it was sent"),
    reason: str = typer.Option(..., "--reason", help="why (kept in the audit trail)"),
    values: str = typer.Option(
        ...,
        "--values",
        help="the new values as a JSON object, of model, input_tokens, output_tokens, bytes, properties: "
        "'{\"input_tokens\": 1200}'",
    ),
    correction_id: str = typer.Option(None, "--id", help=ID_HELP),
    as_json: bool = json_option(),
) -> None:
    """Amend an event: the new values are priced at the price version in force at its timestamp."""
    from billing.kernel.errors import InvalidRequest
    from billing.kernel.validation import parse_json

    try:
        parsed = parse_json(values.encode(), exact_numbers=True)
    except InvalidRequest as exc:
        raise typer.BadParameter(exc.message, param_hint="--values") from None
    _apply(
        {
            "correction_id": correction_id or f"cli-{uuid.uuid4().hex[:16]}",
            "tenant_id": tenant,
            "event_id": event_id,
            "action": "amend",
            "reason": reason,
            "values": parsed,
        },
        as_json,
    )


@corrections_app.command("show")
def show(
    tenant: str = typer.Argument(..., help="tenant id"),
    event_id: str = typer.Argument(..., help="the event's id as it was sent"),
    as_json: bool = json_option(),
) -> None:
    """An event's audit trail: as stored, as billed now, and each correction (who, when, why, before
    and after)."""
    from billing.runtime import container
    from billing.tenants.access import PLATFORM

    trail = container.correction_service().trail(tenant, event_id, PLATFORM)
    table = Table(
        "correction",
        "action",
        "by",
        "at",
        "reason",
        "cost before",
        "cost after",
        title=(f"{tenant} {event_id}: {trail['status']}"),
    )
    for entry in trail["corrections"]:
        after = entry["after"]
        table.add_row(
            entry["correction_id"],
            entry["action"],
            entry["requested_by"],
            entry["at"],
            entry["reason"],
            entry["before"]["cost_usd"],
            after["cost_usd"] if after else "-",
        )
    emit(trail, table, as_json=as_json)
