"""Typed domain errors. Each carries its HTTP status; handlers map them to responses in one place."""

from __future__ import annotations

from typing import Any


class BillingError(Exception):
    status: int = 400
    code: str = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        details: Any = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message, **self.extra}
        if self.details is not None:
            body["details"] = self.details
        return body


class InvalidRequest(BillingError):
    status, code = 400, "invalid_request"


class Unauthorized(BillingError):
    status, code = 401, "unauthorized"


class PaymentRequired(BillingError):
    status, code = 402, "tenant_suspended"


class Forbidden(BillingError):
    status, code = 403, "forbidden"


class NotFound(BillingError):
    status, code = 404, "not_found"


class Conflict(BillingError):
    status, code = 409, "conflict"


class PayloadTooLarge(BillingError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(BillingError):
    status, code = 415, "unsupported_media_type"


class QuotaExceeded(BillingError):
    status, code = 429, "quota_exceeded"


class ServiceUnavailable(BillingError):
    status, code = 503, "service_unavailable"


class StoreUnavailable(Exception):
    """A backing store (ClickHouse, SQS) failed or timed out; callers decide how to degrade."""


class StoreRejected(Exception):
    """A backing store refused the data itself (a value out of range, a type error): retrying or
    queueing it can never succeed, so it is refused to the client, never sent to the fallback queue."""


class QueueRefused(Exception):
    """The queue answered that it did not take the message (SQS refused the request on its first
    attempt, or the SDK refused it before sending): the message is surely not queued. Any other
    failure of a send (a timeout, a connection reset, an error after SDK retries) leaves it
    unknown whether the message was queued, and the sender must treat it as possibly queued."""


# Stripe's errors that say "try again": unreachable, still rate-limited after the adapter's retries,
# or failing on its side. Its other errors (a refused card, a request Stripe finds invalid) are not.
_STRIPE_TRANSIENT = frozenset({"APIConnectionError", "RateLimitError", "APIError"})


def is_backing_service_failure(error: BaseException) -> bool:
    """An AWS SDK (DynamoDB, SQS, Secrets Manager) or network failure, or Stripe unreachable or
    failing: the request may be retried, and every write of ours is idempotent, so it is a 503,
    not a 500. (Told by the exception's module, so that domain code needs no SDK import.)"""
    package = type(error).__module__.split(".")[0]
    return (
        package in ("botocore", "urllib3")
        or (package == "stripe" and type(error).__name__ in _STRIPE_TRANSIENT)
        or type(error).__name__ == "GetParameterError"  # Powertools Parameters: Secrets Manager failed
        or isinstance(error, (ConnectionError, TimeoutError))
    )
