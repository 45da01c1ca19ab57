"""Stripe webhook signatures, checked with the official SDK (the only module here importing stripe
for that), and the endpoint secret from Secrets Manager through Powertools Parameters (cached)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import stripe

from billing.kernel.periods import utc
from billing.payments.stripe_webhooks import InvalidSignature

DEFAULT_TOLERANCE_S = 300  # stripe.Webhook.DEFAULT_TOLERANCE

# Exactly what Stripe sends: one timestamp first, then one or more hex signatures (v1, and v0 in
# test mode), no spaces, nothing else. Anything else is refused before any parsing, so the one
# timestamp the SDK reads for the age check is the one its HMAC covers (a second or space-padded
# ``t`` must never be seen by one check and not the other).
STRIPE_SIGNATURE_FORMAT = re.compile(r"t=(?P<t>[0-9]{1,12})(?:,v[01]=[0-9a-f]{64})+")
MAX_HEADER_CHARS = 4096


class StripeSignatureVerifier:
    """``Stripe-Signature: t=<unix>,v1=<hex hmac-sha256 of "t.<raw body>">[,v1=...][,v0=...]``.

    Invariants: a header that is not exactly Stripe's format is refused (400) without reading it;
    the HMAC and the age are both checked by ``stripe.WebhookSignature.verify_header`` in one call
    over the exact bytes API Gateway delivered, so they are decided on the same timestamp. The SDK
    measures age against ``time.time()``; our injected clock may run apart from it (tests, replay
    tooling), so the tolerance handed to the SDK is shifted by that offset: the SDK refuses exactly
    when ``t < clock() - tolerance_s``."""

    def __init__(self, secret: Callable[[], str], tolerance_s: int = DEFAULT_TOLERANCE_S):
        self._secret = secret
        self.tolerance_s = tolerance_s

    def verify(self, payload: bytes, header: str | None, now: datetime) -> None:
        if not header:
            raise InvalidSignature("missing Stripe-Signature header", field="Stripe-Signature")
        match = STRIPE_SIGNATURE_FORMAT.fullmatch(header) if len(header) <= MAX_HEADER_CHARS else None
        if match is None:
            raise InvalidSignature(
                "Stripe-Signature is not in Stripe's format t=<unix seconds>,v1=<64 hex digits>[,v1=...]",
                field="Stripe-Signature",
            )
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidSignature(
                "body is not UTF-8, so it cannot be a Stripe event", field="body"
            ) from None
        age = utc(now).timestamp() - int(match["t"])
        if age > self.tolerance_s:  # a stale delivery is refused without fetching the secret
            raise self._expired(age)
        if age < -self.tolerance_s:  # Stripe signs at sending time: a future one was never Stripe's
            raise InvalidSignature(
                f"signature timestamp is {int(-age)} s in the future; the tolerance is {self.tolerance_s} s",
                field="Stripe-Signature",
            )
        # The SDK compares with time.time(); shift its tolerance so it compares with our clock.
        # (A shift to exactly 0 is nudged: the SDK skips its age check for a falsy tolerance.)
        shifted = self.tolerance_s + (time.time() - utc(now).timestamp()) or 1e-9
        try:
            stripe.WebhookSignature.verify_header(text, header, self._secret(), tolerance=shifted)
        except stripe.SignatureVerificationError as exc:
            if "tolerance" in str(exc):
                raise self._expired(age) from None
            raise InvalidSignature(
                f"signature does not verify: {exc.user_message or exc}", field="Stripe-Signature"
            ) from None

    def _expired(self, age: float) -> InvalidSignature:
        return InvalidSignature(
            f"signature timestamp is {int(age)} s old; the tolerance is "
            f"{self.tolerance_s} s (replayed or delayed delivery)",
            field="Stripe-Signature",
        )


def sign(payload: bytes | str, secret: str, timestamp: int) -> str:
    """A valid ``Stripe-Signature`` header (for tests, the bench and the local demo)."""
    text = payload.decode("utf-8") if isinstance(payload, bytes) else payload
    return stripe.WebhookSignature.generate_signature_header(text, secret, timestamp=timestamp)


def secret_from_secrets_manager(name: str, *, max_age_s: int = 300, client: Any = None) -> Callable[[], str]:
    """A callable returning the secret string, cached by Powertools for ``max_age_s`` seconds."""
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    provider = SecretsProvider(boto3_client=client) if client is not None else SecretsProvider()

    def fetch() -> str:
        value = provider.get(name, max_age=max_age_s)
        return (value.decode() if isinstance(value, bytes) else str(value)).strip()

    return fetch
