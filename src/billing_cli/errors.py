"""One line saying what to do, for every failure a command can meet (``billing_cli.run`` prints it)."""

from __future__ import annotations

import re

LOCAL_HINT = "or point the CLI at a running `billing serve` with --local DIR (or BILLING_LOCAL=DIR)"


class CliFailure(Exception):
    """A failure whose message already says what to do (printed as it is, exit 1)."""


def _one_line(text: object) -> str:
    return re.sub(r"\s+", " ", str(text)).strip()[:300]


def explain(exc: BaseException) -> str:
    """What went wrong and what to do about it, in one line."""
    from billing.kernel.errors import BillingError, StoreRejected, StoreUnavailable

    name = type(exc).__name__
    text = _one_line(exc)
    if isinstance(exc, BillingError):
        return f"{exc.message} ({exc.status} {exc.code})"
    if "UNKNOWN_TABLE" in text or "UNKNOWN_DATABASE" in text or re.search(r"Code: (60|81)\b", text):
        return "the ClickHouse schema is not migrated (a table is missing): run `billing db migrate` first"
    try:
        import botocore.exceptions as boto
    except ImportError:  # pragma: no cover - botocore is a dependency of the layer
        boto = None  # type: ignore[assignment]
    if boto is not None:
        if isinstance(exc, boto.NoRegionError):
            return f"no AWS region is configured: set AWS_REGION and the tables and queues (docs/reference/settings.md), {LOCAL_HINT}"
        if isinstance(exc, boto.NoCredentialsError | boto.PartialCredentialsError):
            return f"no AWS credentials found: configure them (AWS_PROFILE, ...), {LOCAL_HINT}"
        if isinstance(exc, boto.ParamValidationError):
            return (
                f"missing configuration ({text}): set TENANTS_TABLE, LEDGER_TABLE, BILLING_TABLE, "
                f"FALLBACK_QUEUE_URL, INVOICING_QUEUE_URL, INVOICES_BUCKET, {LOCAL_HINT}"
            )
        if isinstance(exc, boto.EndpointConnectionError | boto.ConnectTimeoutError | boto.ReadTimeoutError):
            return f"AWS is unreachable ({text}): check the network, AWS_ENDPOINT_URL, {LOCAL_HINT}"
        if isinstance(exc, boto.ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            if code in (
                "ResourceNotFoundException",
                "NoSuchBucket",
                "AWS.SimpleQueueService.NonExistentQueue",
            ):
                return f"an AWS resource does not exist ({text}): check the table, queue and bucket settings, {LOCAL_HINT}"
            if code in (
                "UnrecognizedClientException",
                "InvalidClientTokenId",
                "ExpiredTokenException",
                "AccessDeniedException",
            ):
                return f"AWS refused the credentials ({text}): check them and their permissions"
            return f"AWS call failed: {text}"
        if isinstance(exc, boto.BotoCoreError):
            return f"AWS client error: {text}"
    try:
        from pydantic import ValidationError
    except ImportError:  # pragma: no cover
        ValidationError = ()  # type: ignore[assignment,misc]  # noqa: N806
    if isinstance(exc, ValidationError):
        fields = ", ".join(".".join(str(p) for p in e["loc"]) or "value" for e in exc.errors())
        return f"invalid configuration or input ({fields}): {_one_line(exc.errors()[0]['msg'])}"
    if isinstance(exc, StoreUnavailable):
        return f"ClickHouse is unreachable ({text}): check CLICKHOUSE_URL, {LOCAL_HINT}"
    if isinstance(exc, StoreRejected):
        return f"ClickHouse refused the data: {text}"
    module = type(exc).__module__
    if module.startswith("clickhouse_connect") or module.startswith("chdb"):
        if "onnect" in text or "timed out" in text or "refused" in text:
            return f"ClickHouse is unreachable ({text}): check CLICKHOUSE_URL, {LOCAL_HINT}"
        return f"ClickHouse error: {text}"
    if isinstance(exc, ConnectionError | TimeoutError):
        return f"a service is unreachable ({text}): is it running?"
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
        return f"{text}"
    if isinstance(exc, ValueError):
        return f"invalid value: {text}"
    return f"{name}: {text}"


def require_tenants(*tenant_ids: str) -> None:
    """Every command that takes a tenant id answers an unknown one the same way: the message of
    ``billing.tenants.tenant.unknown_tenant`` on stderr, exit 1, before anything is printed."""
    import typer
    from rich.console import Console

    from billing.runtime import container
    from billing.tenants.tenant import unknown_tenant

    store = container.tenants()
    missing = [t for t in tenant_ids if store.get(t) is None]
    if missing:
        Console(stderr=True).print(unknown_tenant(missing).message, markup=False, highlight=False)
        raise typer.Exit(1)
