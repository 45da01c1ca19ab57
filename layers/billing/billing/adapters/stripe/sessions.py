"""Hosted pages for the card-on-file flow: the Checkout session (setup mode) where a tenant saves a
card, the setup intent it leaves behind, and the payment settings session (Stripe's Billing Portal).

With automatic tax on, the setup session collects the customer's address (Stripe Tax needs it).
Both sessions are created under the caller's idempotency key. A portal session names our portal
configuration (``portal_configurations``): Stripe refuses a session without a saved one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import stripe

from billing.adapters.stripe.client import StripeCalls, StripeRequest, id_of, segment
from billing.kernel.errors import ServiceUnavailable
from billing.payments.provider import HostedSession, SetupSessionDraft

if TYPE_CHECKING:
    from stripe.params.billing_portal import SessionCreateParams as PortalSessionCreateParams
    from stripe.params.checkout import SessionCreateParams


class Sessions(StripeCalls):
    automatic_tax: bool

    # -- requests ---------------------------------------------------------------------------------
    def setup_session_request(self, draft: SetupSessionDraft) -> StripeRequest:
        params: SessionCreateParams = {
            "mode": "setup",
            "customer": draft.customer_id,
            "currency": draft.currency,  # setup mode needs it to offer the currency's payment methods
            "success_url": draft.success_url,
            "cancel_url": draft.cancel_url,
            "client_reference_id": draft.tenant_id,
            "metadata": {"tenant_id": draft.tenant_id},
            "setup_intent_data": {"metadata": {"tenant_id": draft.tenant_id}},
        }
        if self.automatic_tax:  # Stripe Tax needs the customer's address
            params["billing_address_collection"] = "required"
            params["customer_update"] = {"address": "auto", "name": "auto"}
        return StripeRequest("post", "/v1/checkout/sessions", params, draft.idempotency_key)

    def setup_intent_request(self, setup_intent_id: str) -> StripeRequest:
        return StripeRequest("get", f"/v1/setup_intents/{segment(setup_intent_id)}", {})

    def payment_settings_session_request(
        self, customer_id: str, return_url: str, idempotency_key: str, configuration: str | None = None
    ) -> StripeRequest:
        params: PortalSessionCreateParams = {"customer": customer_id, "return_url": return_url}
        if configuration:
            params["configuration"] = configuration
        return StripeRequest("post", "/v1/billing_portal/sessions", params, idempotency_key)

    # -- calls ------------------------------------------------------------------------------------
    def create_setup_session(self, draft: SetupSessionDraft) -> HostedSession:
        session = self._send(self.setup_session_request(draft), stripe.checkout.Session)
        return HostedSession(str(session.id), str(session.url or ""), session.expires_at)

    def setup_intent_payment_method(self, setup_intent_id: str) -> tuple[str | None, str | None]:
        """(customer id, payment method id) of a setup intent, once it succeeded."""
        intent = self._send(self.setup_intent_request(setup_intent_id), stripe.SetupIntent)
        customer = id_of(intent.customer) if intent.customer else None
        if intent.status != "succeeded" or not intent.payment_method:
            return (customer, None)
        return (customer, id_of(intent.payment_method))

    def create_payment_settings_session(
        self, customer_id: str, return_url: str, idempotency_key: str, configuration: str | None = None
    ) -> HostedSession:
        """A Billing Portal session with ``configuration`` (ours, from the catalog sync), else the
        account's default; Stripe refuses one with neither, which no retry or tenant can fix."""
        request = self.payment_settings_session_request(
            customer_id, return_url, idempotency_key, configuration
        )
        try:
            session = self._send(request, stripe.billing_portal.Session)
        except stripe.InvalidRequestError as exc:
            if exc.param == "configuration" or "No configuration provided" in str(exc.user_message or exc):
                raise ServiceUnavailable(
                    "Stripe's customer portal has no configuration: run `billing stripe sync-catalog`",
                    details=[{"field": "configuration", "reason": str(exc.user_message or exc)}],
                ) from exc
            raise
        return HostedSession(str(session.id), str(session.url), None)
