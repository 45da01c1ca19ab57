"""Stripe HTTP concerns, apart from the calls: the process-wide rate limiter, the SDK HTTP client that
takes a token before every attempt (and the one a planner gets, which sends nothing), and the retry
policy (which errors are worth retrying, how long to wait).
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import stripe

# Requests are spaced for 95% of the cap: the time between taking a token and the request reaching
# Stripe varies by a few ms (encoding, threads), which can bunch requests at Stripe's end; 5% headroom
# keeps every one-second window at Stripe under the cap.
RATE_HEADROOM = 0.95


class RateLimiter:
    """Thread-safe token bucket of capacity one, refilled at ``rate`` tokens per second.

    Threads take turns under a lock; each waits for its slot, ``1/rate`` after the previous one. A
    thread that wakes late (busy CPU, the GIL) pushes the next slot back by its lateness beyond a
    quarter interval, so the next request never goes right behind it: consecutive requests leave at
    least 3/4 interval apart and no one-second window sees more than ``rate`` + 1 requests.
    """

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.interval = 1.0 / rate
        self.slack = self.interval / 4
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._next = 0.0  # earliest time the next request may leave

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            if slot > now:
                self._sleep(slot - now)
            late = self._clock() - slot
            # Waking up to a quarter interval late is made up (the average rate stays ``rate``);
            # beyond that, the next slot counts from when this request really left.
            self._next = slot + max(0.0, late - self.slack) + self.interval


# The prefixes of Stripe's object ids (``cus_...``, ``in_...``, ``cs_test_...``). Matching on the
# prefix, not on "word_word": path words like ``setup_intents``, ``billing_portal`` and
# ``balance_transactions`` have an underscore too, and folding them would put different endpoints in
# one bucket (``GET /v1/setup_intents/{id}`` and ``GET /v1/payment_methods/{id}`` alike).
STRIPE_ID_PREFIXES = (
    "acct", "ba", "bpc", "bps", "card", "cbtxn", "ch", "clock", "cn", "cs", "cus", "di", "evt", "ii",
    "il", "in", "pi", "pm", "po", "price", "prod", "promo", "py", "re", "seti", "si", "src", "sub",
    "taxr", "tok", "tr", "txi", "txn", "we",
)  # fmt: skip
_ID_SEGMENT = re.compile(rf"^(?:{'|'.join(STRIPE_ID_PREFIXES)})_[A-Za-z0-9_]+$")


def endpoint_of(method: str, url: str) -> str:
    """The unit Stripe rate-limits: ``POST /v1/invoices/{id}/pay`` (object ids and the query dropped;
    every other path segment kept, so each endpoint has its own bucket)."""
    path = re.sub(r"^[a-z]+://[^/]+", "", url).split("?", 1)[0]
    return f"{method.upper()} " + "/".join("{id}" if _ID_SEGMENT.match(p) else p for p in path.split("/"))


class StripeRateLimits:
    """Stripe's two limits at once: the account's (every request) and the endpoint's (25/s by
    default, search 20/s). A request first waits for its endpoint's slot, then for a global one, so
    a burst on one endpoint (invoice items are 3 of the 8 requests of a statement) never reaches
    Stripe faster than that endpoint allows, and the total stays under the account cap."""

    def __init__(self, global_rate: float, endpoint_rate: float, search_rate: float):
        self.global_limiter = RateLimiter(global_rate)
        self.endpoint_rate = endpoint_rate
        self.search_rate = search_rate
        self._endpoints: dict[str, RateLimiter] = {}
        self._lock = threading.Lock()

    def for_endpoint(self, endpoint: str) -> RateLimiter:
        with self._lock:
            limiter = self._endpoints.get(endpoint)
            if limiter is None:
                rate = self.search_rate if endpoint.endswith("/search") else self.endpoint_rate
                limiter = self._endpoints[endpoint] = RateLimiter(rate)
            return limiter

    def acquire(self, method: str, url: str) -> None:
        self.for_endpoint(endpoint_of(method, url)).acquire()
        self.global_limiter.acquire()


class RateLimitedHttpClient(stripe.RequestsClient):
    """The SDK's requests-based client, taking tokens right before each request goes on the wire
    (every attempt, retries included), so the spacing Stripe sees is the spacing we enforce."""

    def __init__(self, limits: StripeRateLimits, timeout: float):
        super().__init__(timeout=timeout)
        self.limits = limits

    def request(
        self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None, **kwargs: Any
    ) -> Any:
        self.limits.acquire(method, url)
        return super().request(method, url, headers, post_data, **kwargs)


class NoSendHttpClient(stripe.RequestsClient):
    """The HTTP client of a gateway that only describes requests (``--dry-run``): a request sent
    through it is a bug, so it fails before anything leaves the process (and is not retried)."""

    def request(
        self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None, **kwargs: Any
    ) -> Any:
        raise RuntimeError(f"{method.upper()} {url} not sent: this Stripe client only plans requests")


@dataclass
class RetryPolicy:
    max_attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    sleep: Callable[[float], None] = field(default=time.sleep)

    def delay(self, attempt: int) -> float:
        """Full jitter exponential backoff before attempt ``attempt + 1``."""
        return random.uniform(self.base_delay_s / 2, min(self.max_delay_s, self.base_delay_s * 2**attempt))


def replayed_failure(exc: stripe.StripeError) -> bool:
    """A 5xx Stripe saved under the idempotency key and replays to every retry with that key (it
    says so with ``Idempotent-Replayed: true`` or ``Stripe-Should-Retry: false``): only looking the
    object up, or a new key, can get past it."""
    headers = {k.lower(): str(v).lower() for k, v in (exc.headers or {}).items()}
    status = exc.http_status or 0
    return status >= 500 and (
        headers.get("idempotent-replayed") == "true" or headers.get("stripe-should-retry") == "false"
    )


def retryable(exc: stripe.StripeError) -> bool:
    headers = exc.headers or {}
    should = next((v for k, v in headers.items() if k.lower() == "stripe-should-retry"), None)
    if should == "false":
        return False
    if should == "true":
        return True
    if isinstance(exc, (stripe.RateLimitError, stripe.APIConnectionError)):
        return True
    if isinstance(
        exc,
        (
            stripe.CardError,
            stripe.InvalidRequestError,
            stripe.IdempotencyError,
            stripe.AuthenticationError,
            stripe.PermissionError,
        ),
    ):
        return False
    status = exc.http_status
    # 409: an idempotency key still in flight; a lock timeout comes back as 429 lock_timeout.
    return status is None or status == 409 or status >= 500
