"""What the invoicing and dunning stages share: the demo's clock and the relay that hands the Stripe
double's webhook events to the webhook Lambda, stamped with that clock."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any


class Clock:
    """The time the demo says it is (``container.override(clock=...)``); a stage moves ``now`` by hand."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class WebhookRelay:
    """Hands the Stripe double's webhook events to the webhook Lambda, as Stripe would."""

    def __init__(self, double: Any, secret: str, clock: Clock):
        from billing_local.runner import load_function

        self.double, self.secret, self.clock = double, secret, clock
        self.webhook = load_function("stripe_webhook")
        self.seen = 0

    def deliver_new(self) -> dict[str, int]:
        from billing_local.runner import LocalContext
        from billing_local.webhook_delivery import stripe_delivery

        counts: dict[str, int] = {}
        events = self.double.events_of()[self.seen :]
        self.seen += len(events)
        for event in events:
            event["created"] = int(self.clock.now.timestamp())
            request = stripe_delivery(event, secret=self.secret, at=self.clock.now)
            response = self.webhook.handler(request, LocalContext(function_name="StripeWebhookFunction"))
            status = json.loads(response["body"]).get("status", str(response["statusCode"]))
            counts[status] = counts.get(status, 0) + 1
        return counts
