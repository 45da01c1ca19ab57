"""Stripe webhook signatures, checked with the official SDK (the only module here importing stripe
for that), and the endpoint secret from Secrets Manager through Powertools Parameters (cached)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import stripe

from billing.periods import utc
from billing.webhooks import InvalidSignature

DEFAULT_TOLERANCE_S = 300  # stripe.Webhook.DEFAULT_TOLERANCE


class StripeSignatureVerifier:
    """``Stripe-Signature: t=<unix>,v1=<hex hmac-sha256 of "t.<raw body>">[,v1=...]``.

    The HMAC is checked by ``stripe.WebhookSignature.verify_header`` against the exact bytes API
    Gateway delivered; the age check (Stripe's 300 s tolerance: older is refused) uses our injected
    clock instead of the SDK's ``time.time()``, so tests can move time. Both must pass."""

    def __init__(self, secret: Callable[[], str], tolerance_s: int = DEFAULT_TOLERANCE_S):
        self._secret = secret
        self.tolerance_s = tolerance_s

    def verify(self, payload: bytes, header: str | None, now: datetime) -> None:
        if not header:
            raise InvalidSignature("missing Stripe-Signature header", field="Stripe-Signature")
        try:
            timestamp = _timestamp(header)
        except ValueError:
            raise InvalidSignature(
                "Stripe-Signature timestamp is not a number", field="Stripe-Signature"
            ) from None
        age = utc(now).timestamp() - timestamp
        if age > self.tolerance_s:  # checked first: a stale delivery is refused without the secret
            raise InvalidSignature(
                f"signature timestamp is {int(age)} s old; the tolerance is "
                f"{self.tolerance_s} s (replayed or delayed delivery)",
                field="Stripe-Signature",
            )
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidSignature(
                "body is not UTF-8, so it cannot be a Stripe event", field="body"
            ) from None
        try:
            stripe.WebhookSignature.verify_header(text, header, self._secret(), tolerance=None)
        except stripe.SignatureVerificationError as exc:
            raise InvalidSignature(
                f"signature does not verify: {exc.user_message or exc}", field="Stripe-Signature"
            ) from None


def _timestamp(header: str) -> int:
    for part in header.split(","):
        key, _, value = part.partition("=")
        if key.strip() == "t":
            return int(value)
    raise InvalidSignature("Stripe-Signature has no timestamp", field="Stripe-Signature")


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
