"""The one request path every Stripe call takes, and the request it takes.

Every operation is first a ``StripeRequest`` (method, path, parameters, idempotency key) built by
one ``*_request`` method of its resource module; ``--dry-run`` renders it and the call sends that
same object through the SDK's raw request, so what the plan shows is what Stripe receives.

Every request goes through ``StripeCalls._send``:
- a client-side rate limiter shared by all threads of the process (``RateLimiter``), so a month's
  run stays under Stripe's limit (``stripe_max_requests_per_second / stripe_rate_share`` here);
- Stripe's limits per endpoint (25/s, search 20/s) and per account, both enforced client-side
  (``StripeRateLimits``), so a month's run stays under them (rates divided by ``stripe_rate_share``);
- retries with exponential backoff and full jitter on 429 (``rate_limit`` and ``lock_timeout``),
  5xx, 409 (a key in flight) and network errors, honouring ``Stripe-Should-Retry``. The SDK's own
  retries are switched off (``max_network_retries=0``) so that every attempt passes the rate
  limiter; each POST carries an explicit ``Idempotency-Key`` that stays the same across attempts,
  so a retry can never create a second object;
- a 5xx Stripe saved under the key is replayed to every retry with it (``Stripe-Should-Retry:
  false``): the call then looks its object up (by metadata, with strongly consistent list or
  retrieve calls, never search) and only when none exists retries under ``{key}:a{n}``;
- the answer is checked to be the object the operation expects, else the call raises.

Lists are read with ``_each``, page after page (``starting_after``): strongly consistent, unlike search.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote_plus, unquote, urlencode

import stripe
from stripe._encode import _api_encode

from billing.adapters.stripe.http import RetryPolicy, endpoint_of, replayed_failure, retryable
from billing.runtime.observability import logger

if TYPE_CHECKING:
    from stripe import RequestOptions

Answer = TypeVar("Answer", bound=stripe.StripeObject)

_MAX_REKEYS = 2  # new keys tried after a replayed 5xx before the call fails

# Stripe's limit on descriptions.
MAX_DESCRIPTION = 500


@dataclass(frozen=True)
class StripeRequest:
    """One request exactly as the SDK sends it: what ``--dry-run`` prints and what a call sends are
    the same object, so the two cannot differ."""

    method: str  # "get" or "post", as the SDK spells them
    path: str  # from /v1 on, ids quoted (``segment``)
    params: Mapping[str, Any]
    idempotency_key: str | None = None

    def form(self) -> str:
        """The parameters form-encoded as the SDK encodes them (query string or body)."""
        return urlencode(list(_api_encode(dict(self.params)))).replace("%5B", "[").replace("%5D", "]")

    def after(self, last_id: str) -> StripeRequest:
        """The next page of a list request."""
        return replace(self, params={**self.params, "starting_after": last_id})

    def render(self) -> str:
        # The path unquoted: the plan's placeholders for ids not known yet read as {invoice_id}.
        key = f"  Idempotency-Key: {self.idempotency_key}" if self.idempotency_key else ""
        return f"{self.method.upper()} {unquote(self.path)}{key}\n    {self.form()}"


def segment(value: str) -> str:
    """An id as one path segment, quoted as the SDK quotes the ids of its typed calls."""
    return quote_plus(value)


class StripeCalls:
    """What every resource's calls share: the SDK client and the one request path. The resource
    modules' classes extend it; ``StripeGateway`` combines them."""

    client: stripe.StripeClient
    retry: RetryPolicy

    def _send(
        self,
        request: StripeRequest,
        returns: type[Answer],
        *,
        recover: Callable[[], Answer | None] | None = None,
    ) -> Answer:
        """Sends ``request`` exactly as described and checks Stripe answered a ``returns``.

        ``recover`` finds the object a POST was creating or changing (None: not there), for when
        Stripe replays a saved 5xx under the key."""
        what = endpoint_of(request.method, request.path)
        idempotency_key = request.idempotency_key
        if request.method == "post" and not idempotency_key:
            idempotency_key = f"billing-{uuid.uuid4()}"  # still the same key on every retry
        sent_key = idempotency_key
        attempt = rekeyed = 0
        while True:
            try:
                return self._execute(request, sent_key, returns)
            except stripe.StripeError as exc:
                attempt += 1
                if idempotency_key and replayed_failure(exc) and rekeyed < _MAX_REKEYS:
                    found = recover() if recover is not None else None
                    if found is not None:
                        logger.info("recovered after a replayed stripe error", extra={"stripe_call": what})
                        return found
                    rekeyed += 1
                    # Derived, not random: a crash and rerun here derives the same key again.
                    sent_key = f"{idempotency_key}:a{rekeyed}"
                    logger.warning(
                        "stripe replays a saved error; retrying under a derived key",
                        extra={"stripe_call": what, "idempotency_key": sent_key},
                    )
                    continue
                if not retryable(exc) or attempt >= self.retry.max_attempts:
                    log = logger.info if isinstance(exc, stripe.CardError) else logger.warning
                    log(
                        "stripe request failed",
                        extra={
                            "stripe_call": what,
                            "attempts": attempt,
                            "http_status": exc.http_status,
                            "stripe_code": exc.code,
                            "error_type": type(exc).__name__,
                            "stripe_request_id": exc.request_id,
                            "idempotency_key": idempotency_key,
                        },
                    )
                    raise
                delay = self.retry.delay(attempt - 1)
                logger.info(
                    "stripe request retried",
                    extra={
                        "stripe_call": what,
                        "attempt": attempt,
                        "http_status": exc.http_status,
                        "error_type": type(exc).__name__,
                        "delay_s": round(delay, 3),
                    },
                )
                self.retry.sleep(delay)

    def _execute(self, request: StripeRequest, idempotency_key: str | None, returns: type[Answer]) -> Answer:
        """One attempt: the SDK's raw request (its encoding, headers, errors) of exactly
        ``request``; its retries are off so that every attempt passes ``_send`` and the limiter."""
        options: RequestOptions = {"max_network_retries": 0}
        if idempotency_key:
            options["idempotency_key"] = idempotency_key
        # raw_request takes the request options and the params as one set of keyword arguments;
        # no Stripe parameter we send is named like an option.
        response = self.client.raw_request(request.method, request.path, **request.params, **options)
        answer = self.client.deserialize(response, dict(request.params), api_mode="V1")
        if not isinstance(answer, returns):
            raise TypeError(f"{request.method.upper()} {request.path} answered {type(answer).__name__}")
        return answer

    def _each(self, request: StripeRequest, returns: type[Answer]) -> Iterator[Answer]:
        """Every object of a Stripe list, page after page (``starting_after`` the last one seen)."""
        while True:
            page = self._send(request, stripe.ListObject)
            for listed in page.data:
                if not isinstance(listed, returns):
                    raise TypeError(f"GET {request.path} listed {type(listed).__name__}")
                yield listed
            if not page.has_more or not page.data:
                return
            request = request.after(str(page.data[-1]["id"]))  # every listed object has one


# ------------------------------------------------------------------------------------ answers
def metadata_of(value: Any) -> dict[str, str]:
    if not value:
        return {}
    plain: Mapping[str, Any] = value.to_dict() if hasattr(value, "to_dict") else value
    return {str(k): str(v) for k, v in plain.items()}


def id_of(value: Any) -> str:
    """The id of an expandable field (a bare id unless expanded)."""
    return value if isinstance(value, str) else str(getattr(value, "id", ""))


def was_replayed(obj: stripe.StripeObject) -> bool:
    """Stripe answered from an earlier request with the same idempotency key."""
    response = getattr(obj, "last_response", None)
    headers = getattr(response, "headers", None) or {}
    return any(k.lower() == "idempotent-replayed" and str(v).lower() == "true" for k, v in headers.items())
