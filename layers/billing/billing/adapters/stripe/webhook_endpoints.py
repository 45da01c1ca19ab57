"""Webhook endpoints, read only: what ``billing stripe check`` needs to say whether Stripe will tell
us about payments, failures and overdue invoices (endpoints are made in the Dashboard or with the
Stripe CLI, with their secret stored in Secrets Manager, never by this code)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import stripe

from billing.adapters.stripe.client import StripeCalls, StripeRequest
from billing.payments.setup_check import WebhookEndpointView

if TYPE_CHECKING:
    from stripe.params import WebhookEndpointListParams


class WebhookEndpoints(StripeCalls):
    def list_webhook_endpoints_request(self) -> StripeRequest:
        """The first page of the endpoints (``_each`` asks for the next ones)."""
        params: WebhookEndpointListParams = {"limit": 100}
        return StripeRequest("get", "/v1/webhook_endpoints", params)

    def list_webhook_endpoints(self) -> list[WebhookEndpointView]:
        return [
            WebhookEndpointView(
                id=str(endpoint.id),
                url=str(endpoint.url),
                status=str(endpoint.status),
                enabled_events=tuple(str(e) for e in endpoint.enabled_events),
                api_version=endpoint.api_version,
            )
            for endpoint in self._each(self.list_webhook_endpoints_request(), stripe.WebhookEndpoint)
        ]
