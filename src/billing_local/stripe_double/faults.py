"""Injected faults, declines, Stripe-shaped errors and the request log entry."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

FaultKind = Literal[
    "rate_limit", "lock_timeout", "server_error", "saved_server_error", "timeout", "lost_response"
]


@dataclass
class Fault:
    kind: FaultKind
    method: str | None = None  # "POST" / "GET"; None = any
    path: str | None = None  # regex matched against the path, e.g. r"/finalize$"
    times: int = 1  # matching requests affected; -1 = until cleared
    after: int = 0  # let this many matching requests through first
    took_effect: bool = False  # saved_server_error: the request did its work before failing

    def matches(self, method: str, path: str) -> bool:
        return (
            self.times != 0
            and (self.method is None or self.method.upper() == method)
            and (self.path is None or re.search(self.path, path) is not None)
        )


@dataclass
class Decline:
    code: str = "card_declined"
    decline_code: str | None = "generic_decline"
    message: str = "Your card was declined."


@dataclass(frozen=True)
class RecordedRequest:
    at: float  # time.monotonic() when received
    method: str
    path: str
    params: dict[str, Any]
    idempotency_key: str | None
    stripe_version: str | None
    status: int = 0
    replayed: bool = False
    fault: str | None = None


class StripeApiError(Exception):
    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        saved: bool | None = None,
        **extra: Any,
    ):
        super().__init__(message)
        self.status = status
        # Stripe saves a result under the idempotency key only once the endpoint started executing:
        # a request refused by validation (400) can be sent again, fixed, under the same key.
        self.saved = status != 400 if saved is None else saved
        self.body: dict[str, Any] = {
            "error": {
                k: v
                for k, v in {"type": type_, "message": message, "code": code, "param": param, **extra}.items()
                if v is not None
            }
        }
        self.headers = headers or {}


def invalid_request(message: str, *, param: str | None = None, code: str | None = None) -> StripeApiError:
    """Stripe's 400 for a request the endpoint refuses."""
    return StripeApiError(400, "invalid_request_error", message, param=param, code=code)


def resource_missing(kind: str, obj_id: str, param: str = "id") -> StripeApiError:
    """Stripe's 404 for an id it does not know."""
    return StripeApiError(
        404, "invalid_request_error", f"No such {kind}: '{obj_id}'", code="resource_missing", param=param
    )


def request_times(requests: list[RecordedRequest]) -> Iterator[float]:
    return (r.at for r in requests)


def max_in_window(times: list[float], window_s: float = 1.0) -> int:
    """The most requests received in any window of ``window_s`` seconds (rate-cap checks)."""
    ordered, best, start = sorted(times), 0, 0
    for end, t in enumerate(ordered):
        while t - ordered[start] >= window_s:
            start += 1
        best = max(best, end - start + 1)
    return best
