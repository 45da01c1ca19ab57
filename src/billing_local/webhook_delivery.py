"""A Stripe webhook delivery as API Gateway hands it to the webhook Lambda: the one place (demo,
tests, bench) that signs events, with Stripe's own scheme (``billing.adapters.stripe.webhook_signature.sign``)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

WEBHOOK_PATH = "/v1/webhooks/stripe"
STRIPE_USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"


def stripe_delivery(
    event: dict[str, Any] | str | bytes,
    *,
    secret: str,
    at: datetime,
    base64: bool = False,
    signature: str | bool | None = True,
) -> dict[str, Any]:
    """The API Gateway event of one delivery, signed at ``at`` (``signature``: True signs, a string
    is sent as the header, None/False sends none)."""
    from billing.adapters.stripe.webhook_signature import sign
    from billing_local.runner import api_gateway_event

    body = event if isinstance(event, (str, bytes)) else json.dumps(event, indent=2)
    headers = {"User-Agent": STRIPE_USER_AGENT}
    if signature is True:
        headers["Stripe-Signature"] = sign(body, secret, int(at.timestamp()))
    elif isinstance(signature, str):
        headers["Stripe-Signature"] = signature
    return api_gateway_event(
        body,
        path=WEBHOOK_PATH,
        api_key_id=None,
        base64=base64,
        content_type="application/json; charset=utf-8",
        headers=headers,
    )
