"""One line saying what to do, for every failure a command can meet (``billing_cli.run`` prints it),
and the one exit code each kind of failure gets, in every command (docs/cli.md lists them)."""

from __future__ import annotations

import re
from enum import IntEnum

LOCAL_HINT = "or point the CLI at a running `billing serve` with --local DIR (or BILLING_LOCAL=DIR)"


class ExitCode(IntEnum):
    """What a script can tell from ``billing``'s exit status; the same situation is the same code in
    every command. 2 is click's own (a bad option or argument), kept for every input refused."""

    OK = 0
    NOT_FOUND = 1  # an unknown tenant, no statements for the month: nothing to act on
    USAGE = 2  # a bad option, argument or input value
    UNREACHABLE = 3  # ClickHouse, AWS, Stripe or a `billing serve` does not answer
    NOT_CONFIGURED = 4  # settings, credentials, schema or a Stripe account setup missing
    PARTIAL = 5  # some items done, some failed (the output says which)
    FAILED = 6  # anything else


class CliFailure(Exception):
    """A failure whose message already says what to do (printed as it is, exit ``code``)."""

    def __init__(self, message: str, code: ExitCode = ExitCode.FAILED):
        super().__init__(message)
        self.code = code


def _one_line(text: object) -> str:
    return re.sub(r"\s+", " ", str(text)).strip()[:300]


def explain(exc: BaseException) -> str:
    """What went wrong and what to do about it, in one line."""
    return classify(exc)[0]


def exit_code_of_status(status: int) -> ExitCode:
    """The exit code of an HTTP status the domain (or a `billing serve`) answered with."""
    if status == 404:
        return ExitCode.NOT_FOUND
    if status in (400, 422):
        return ExitCode.USAGE
    if status in (502, 503, 504):
        return ExitCode.UNREACHABLE
    return ExitCode.FAILED


def classify(exc: BaseException) -> tuple[str, ExitCode]:
    """The one-line explanation of a failure, and its exit code."""
    from billing.kernel.errors import (
        BillingError,
        StoreRejected,
        StoreUnavailable,
        is_payment_provider_outage,
    )

    name = type(exc).__name__
    text = _one_line(exc)
    if isinstance(exc, CliFailure):
        return str(exc), exc.code
    if isinstance(exc, BillingError):
        return f"{exc.message} ({exc.status} {exc.code})", exit_code_of_status(exc.status)
    if "UNKNOWN_TABLE" in text or "UNKNOWN_DATABASE" in text or re.search(r"Code: (60|81)\b", text):
        return (
            "the ClickHouse schema is not migrated (a table is missing): run `billing db migrate` first",
            ExitCode.NOT_CONFIGURED,
        )
    try:
        import botocore.exceptions as boto
    except ImportError:  # pragma: no cover - botocore is a dependency of the layer
        boto = None  # type: ignore[assignment]
    if boto is not None:
        if isinstance(exc, boto.NoRegionError):
            return (
                f"no AWS region is configured: set AWS_REGION and the tables and queues (docs/reference/settings.md), {LOCAL_HINT}",
                ExitCode.NOT_CONFIGURED,
            )
        if isinstance(exc, boto.NoCredentialsError | boto.PartialCredentialsError):
            return (
                f"no AWS credentials found: configure them (AWS_PROFILE, ...), {LOCAL_HINT}",
                ExitCode.NOT_CONFIGURED,
            )
        if isinstance(exc, boto.ParamValidationError):
            return (
                f"missing configuration ({text}): set TENANTS_TABLE, LEDGER_TABLE, BILLING_TABLE, "
                f"FALLBACK_QUEUE_URL, INVOICING_QUEUE_URL, INVOICES_BUCKET, {LOCAL_HINT}",
                ExitCode.NOT_CONFIGURED,
            )
        if isinstance(exc, boto.EndpointConnectionError | boto.ConnectTimeoutError | boto.ReadTimeoutError):
            return (
                f"AWS is unreachable ({text}): check the network, AWS_ENDPOINT_URL, {LOCAL_HINT}",
                ExitCode.UNREACHABLE,
            )
        if isinstance(exc, boto.ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            if code in (
                "ResourceNotFoundException",
                "NoSuchBucket",
                "AWS.SimpleQueueService.NonExistentQueue",
            ):
                return (
                    f"an AWS resource does not exist ({text}): check the table, queue and bucket settings, {LOCAL_HINT}",
                    ExitCode.NOT_CONFIGURED,
                )
            if code in (
                "UnrecognizedClientException",
                "InvalidClientTokenId",
                "ExpiredTokenException",
                "AccessDeniedException",
            ):
                return (
                    f"AWS refused the credentials ({text}): check them and their permissions",
                    ExitCode.NOT_CONFIGURED,
                )
            return f"AWS call failed: {text}", ExitCode.FAILED
        if isinstance(exc, boto.BotoCoreError):
            return f"AWS client error: {text}", ExitCode.FAILED
    if name == "GetParameterError":  # Powertools Parameters: the Stripe key's secret
        return (
            f"missing configuration ({text}): store the Stripe key in the secret STRIPE_SECRET_NAME names",
            ExitCode.NOT_CONFIGURED,
        )
    if type(exc).__module__.split(".")[0] == "stripe":
        if name in ("AuthenticationError", "PermissionError"):
            return (
                f"Stripe refused the key ({text}): check the secret STRIPE_SECRET_NAME names",
                ExitCode.NOT_CONFIGURED,
            )
        if is_payment_provider_outage(exc):
            return f"Stripe is unreachable ({text}): try again later", ExitCode.UNREACHABLE
        return f"Stripe refused the request: {text}", ExitCode.FAILED
    try:
        from pydantic import ValidationError
    except ImportError:  # pragma: no cover
        ValidationError = ()  # type: ignore[assignment,misc]  # noqa: N806
    if isinstance(exc, ValidationError):
        fields = ", ".join(".".join(str(p) for p in e["loc"]) or "value" for e in exc.errors())
        return (
            f"invalid configuration or input ({fields}): {_one_line(exc.errors()[0]['msg'])}",
            ExitCode.NOT_CONFIGURED,
        )
    if isinstance(exc, StoreUnavailable):
        return f"ClickHouse is unreachable ({text}): check CLICKHOUSE_URL, {LOCAL_HINT}", ExitCode.UNREACHABLE
    if isinstance(exc, StoreRejected):
        return f"ClickHouse refused the data: {text}", ExitCode.FAILED
    module = type(exc).__module__
    if module.startswith("clickhouse_connect") or module.startswith("chdb"):
        if "onnect" in text or "timed out" in text or "refused" in text:
            return (
                f"ClickHouse is unreachable ({text}): check CLICKHOUSE_URL, {LOCAL_HINT}",
                ExitCode.UNREACHABLE,
            )
        return f"ClickHouse error: {text}", ExitCode.FAILED
    if isinstance(exc, ConnectionError | TimeoutError):
        return f"a service is unreachable ({text}): is it running?", ExitCode.UNREACHABLE
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
        return f"{text}", ExitCode.FAILED
    if isinstance(exc, ValueError):
        if "CLICKHOUSE_URL" in text:
            return f"invalid value: {text}", ExitCode.NOT_CONFIGURED
        return f"invalid value: {text}", ExitCode.FAILED
    return f"{name}: {text}", ExitCode.FAILED


def require_tenants(*tenant_ids: str) -> None:
    """Every command that takes a tenant id answers an unknown one the same way: the message of
    ``billing.tenants.tenant.unknown_tenant`` on stderr, exit 1 (NOT_FOUND), before anything is printed."""
    import typer
    from rich.console import Console

    from billing.runtime import container
    from billing.tenants.tenant import unknown_tenant

    store = container.tenants()
    missing = [t for t in tenant_ids if store.get(t) is None]
    if missing:
        Console(stderr=True).print(unknown_tenant(missing).message, markup=False, highlight=False)
        raise typer.Exit(ExitCode.NOT_FOUND)
