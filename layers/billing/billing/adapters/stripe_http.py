"""Stripe HTTP concerns, apart from the calls: the process-wide rate limiter, the SDK HTTP client that
takes a token before every attempt, and the retry policy (which errors are worth retrying, how long to wait).
"""

from __future__ import annotations

import random
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


class RateLimitedHttpClient(stripe.RequestsClient):
    """The SDK's requests-based client, taking a token right before each request goes on the wire
    (every attempt, retries included), so the spacing Stripe sees is the spacing we enforce."""

    def __init__(self, limiter: RateLimiter, timeout: float):
        super().__init__(timeout=timeout)
        self.limiter = limiter

    def request(
        self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None, **kwargs: Any
    ) -> Any:
        self.limiter.acquire()
        return super().request(method, url, headers, post_data, **kwargs)


@dataclass
class RetryPolicy:
    max_attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    sleep: Callable[[float], None] = field(default=time.sleep)

    def delay(self, attempt: int) -> float:
        """Full jitter exponential backoff before attempt ``attempt + 1``."""
        return random.uniform(self.base_delay_s / 2, min(self.max_delay_s, self.base_delay_s * 2**attempt))


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
    return status is None or status == 409 or status >= 500
