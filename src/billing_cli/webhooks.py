"""``billing webhooks``: where the SaaS's own systems get our outgoing webhooks (the same rules as
``/v1/webhook-endpoints``; the operator acts as the platform). A secret is printed only when it is
made: by ``add`` and by ``rotate-secret``."""

from __future__ import annotations

from datetime import UTC, datetime

import typer
from rich.table import Table

from billing.outgoing_webhooks.events import EVENT_TYPES
from billing_cli import TENANTS, app
from billing_cli.output import emit, instant, json_option

webhooks_app = typer.Typer(
    help="Outgoing webhook endpoints: register, list, rotate secrets, sample deliveries.",
    no_args_is_help=True,
)
app.add_typer(webhooks_app, name="webhooks", rich_help_panel=TENANTS)


def _service():  # noqa: ANN202 - the domain's service; imported when a command runs
    from billing.runtime import container

    return container.webhook_endpoint_service()


def _platform():  # noqa: ANN202
    from billing.tenants.access import PLATFORM

    return PLATFORM


@webhooks_app.command("add")
def add(
    url: str = typer.Argument(..., help="https URL (http only to 127.0.0.1/localhost)"),
    event: list[str] = typer.Option(
        ..., "--event", "-e", help=f"an event type it wants (repeatable): {', '.join(EVENT_TYPES)}"
    ),
    description: str = typer.Option("", "--description"),
    as_json: bool = json_option(),
) -> None:
    """Register an endpoint (what POST /v1/webhook-endpoints does); prints its secret, once."""
    from billing.kernel.validation import parse_model
    from billing.outgoing_webhooks.endpoints import EndpointRequest

    request = parse_model(EndpointRequest, {"url": url, "event_types": event, "description": description})
    endpoint, secret = _service().register(request, _platform())
    emit(
        {"endpoint": endpoint, "secret": secret},
        [
            f"registered {endpoint.id} -> {endpoint.url} ({', '.join(endpoint.event_types)})",
            f"signing secret (shown only now): {secret}",
        ],
        as_json=as_json,
    )


@webhooks_app.command("list")
def list_endpoints(as_json: bool = json_option()) -> None:
    """Every registered endpoint (never its secret)."""
    endpoints = _service().endpoints(_platform())
    table = Table("id", "url", "event types", "created", "previous secret until", "disabled")
    for e in endpoints:
        until = instant(e.previous_secret_expires_at) if e.previous_secret_expires_at else ""
        disabled = instant(e.disabled_at) if e.disabled_at else ""
        table.add_row(e.id, e.url, ", ".join(e.event_types), instant(e.created_at), until, disabled)
    emit({"endpoints": endpoints}, table if endpoints else "no webhook endpoints", as_json=as_json)


@webhooks_app.command("delete")
def delete(
    endpoint_id: str = typer.Argument(..., help="endpoint id (ep_...)"), as_json: bool = json_option()
) -> None:
    """Stop sending to an endpoint and delete its secret."""
    endpoint = _service().delete(endpoint_id, _platform())
    emit({"deleted": True, "endpoint": endpoint}, f"deleted {endpoint.id} ({endpoint.url})", as_json=as_json)


@webhooks_app.command("enable")
def enable(
    endpoint_id: str = typer.Argument(..., help="endpoint id (ep_...)"), as_json: bool = json_option()
) -> None:
    """Send to an endpoint again after it was disabled for days of failed deliveries."""
    endpoint = _service().enable(endpoint_id, _platform())
    emit({"endpoint": endpoint}, f"enabled {endpoint.id} ({endpoint.url})", as_json=as_json)


@webhooks_app.command("rotate-secret")
def rotate_secret(
    endpoint_id: str = typer.Argument(..., help="endpoint id (ep_...)"),
    overlap_hours: int = typer.Option(24, help="hours the previous secret also signs (0 to 168)"),
    as_json: bool = json_option(),
) -> None:
    """A new signing secret, current at once; the previous one also signs for OVERLAP_HOURS."""
    from billing.kernel.validation import parse_model
    from billing.outgoing_webhooks.endpoints import RotateRequest

    request = parse_model(RotateRequest, {"overlap_hours": overlap_hours})
    endpoint, secret = _service().rotate_secret(endpoint_id, request, _platform())
    until = endpoint.previous_secret_expires_at
    emit(
        {"endpoint": endpoint, "secret": secret},
        [
            f"new signing secret of {endpoint.id} (shown only now): {secret}",
            f"the previous one also signs until {instant(until)}"
            if until
            else "the previous one no longer signs",
        ],
        as_json=as_json,
    )


@webhooks_app.command("sample")
def sample(
    endpoint_id: str = typer.Argument(..., help="endpoint id (ep_...)"),
    event_type: str = typer.Option("invoice.paid", "--type", help="event type of the sample"),
    as_json: bool = json_option(),
) -> None:
    """A sample delivery signed now with the endpoint's secrets in force: its headers and body, and
    the curl line that sends it (to test a receiver; nothing is sent)."""
    import shlex

    from billing.outgoing_webhooks.events import EVENT_TYPES
    from billing.outgoing_webhooks.signing import build_delivery
    from billing_cli.errors import CliFailure, ExitCode

    if event_type not in EVENT_TYPES:
        raise CliFailure(f"unknown event type {event_type}: one of {', '.join(EVENT_TYPES)}", ExitCode.USAGE)
    endpoint = _service().get(endpoint_id, _platform())
    delivery = build_delivery(
        event_type,
        object_id="sample_1",
        sequence=1,
        data={"id": "sample_1", "sample": True},
        secrets_in_force=_service().secrets_in_force(endpoint_id),
        at=datetime.now(UTC),
    )
    body = delivery.body.decode()
    headers = " ".join(f"-H {shlex.quote(f'{k}: {v}')}" for k, v in delivery.headers.items())
    curl = f"curl -X POST {headers} --data-binary {shlex.quote(body)} {shlex.quote(endpoint.url)}"
    emit(
        {"url": endpoint.url, "headers": delivery.headers, "body": body, "curl": curl}, curl, as_json=as_json
    )


@webhooks_app.command("deliveries")
def deliveries(
    endpoint_id: str = typer.Argument(..., help="endpoint id (ep_...)"),
    limit: int = typer.Option(50, help="attempts per page (1 to 200)"),
    cursor: str | None = typer.Option(None, help="next_cursor of the previous page"),
    as_json: bool = json_option(),
) -> None:
    """The endpoint's delivery log, newest attempt first (kept 30 days)."""
    from billing.runtime import container

    attempts, next_cursor = container.webhook_deliveries().page(
        endpoint_id, _platform(), limit=limit, cursor=cursor
    )
    table = Table("at", "message id", "event type", "attempt", "outcome", "ms")
    for a in attempts:
        outcome = str(a.status) if a.status is not None else (a.error or "no answer")
        table.add_row(instant(a.at), a.message_id, a.event_type, str(a.attempt), outcome, str(a.duration_ms))
    human: list[object] = [table if attempts else f"no deliveries logged for {endpoint_id}"]
    if next_cursor:
        human.append(f"more: --cursor {next_cursor}")
    emit({"deliveries": [a.as_json() for a in attempts], "next_cursor": next_cursor}, human, as_json=as_json)


@webhooks_app.command("resend")
def resend(
    endpoint_id: str = typer.Argument(..., help="endpoint id (ep_...)"),
    message_id: str = typer.Argument(..., help="message id (the webhook-id, msg_...)"),
    as_json: bool = json_option(),
) -> None:
    """Queue a logged message to the endpoint once more: same webhook-id and body, signed when sent."""
    from billing.runtime import container

    message = container.webhook_deliveries().resend(endpoint_id, message_id, _platform())
    emit(
        {
            "endpoint_id": endpoint_id,
            "message_id": message.message_id,
            "event_type": message.event_type,
            "queued": True,
        },
        f"queued {message.message_id} ({message.event_type}) to {endpoint_id} again",
        as_json=as_json,
    )
