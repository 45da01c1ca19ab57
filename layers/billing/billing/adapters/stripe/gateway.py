"""The Stripe gateway: the one object the rest of the code talks to Stripe through.

``StripeGateway`` implements ``PaymentGateway`` and ``PaymentCollector`` (invoicing, dunning),
``CardOnFile`` (the hosted setup and portal pages), ``RequestPlanner`` (``--dry-run``), the
catalog's ``ProductDirectory`` and the payment settings page's ``PageDirectory``. It is composed of
one class per Stripe resource (``customers``, ``invoices``, ``invoice_items``,
``balance_transactions``, ``products``, ``portal_configurations``, ``sessions``,
``webhook_endpoints``, read by ``billing stripe check``) over the one
request path of ``client``; only the modules of this package import ``stripe``.

It uses the official SDK's ``StripeClient`` with the API version pinned by
``Settings.stripe_api_version``; request parameters are typed with the SDK's ``TypedDict``s
(generated from Stripe's OpenAPI spec; ``make typecheck`` runs mypy over this package so a wrong
parameter fails the build). The secret key comes from Secrets Manager through Powertools Parameters
(cached) and is never logged. A planner (``StripeGateway.planner``) reads no key at all: it
describes requests with the same account terms as the gateway, and its HTTP client sends nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import stripe

from billing.adapters.stripe.balance_transactions import BalanceTransactions
from billing.adapters.stripe.customers import Customers
from billing.adapters.stripe.http import (
    RATE_HEADROOM,
    NoSendHttpClient,
    RateLimitedHttpClient,
    RetryPolicy,
    StripeRateLimits,
)
from billing.adapters.stripe.invoice_items import InvoiceItems
from billing.adapters.stripe.invoices import Invoices
from billing.adapters.stripe.minimum_charge import minimum_charge
from billing.adapters.stripe.portal_configurations import PortalConfigurations
from billing.adapters.stripe.products import Products
from billing.adapters.stripe.sessions import Sessions
from billing.adapters.stripe.webhook_endpoints import WebhookEndpoints

if TYPE_CHECKING:
    from stripe._base_address import BaseAddresses

    from billing.runtime.settings import Settings


class StripeGateway(
    Customers,
    Sessions,
    Products,
    PortalConfigurations,
    WebhookEndpoints,
    Invoices,
    InvoiceItems,
    BalanceTransactions,
):
    def __init__(
        self,
        client: stripe.StripeClient,
        limits: StripeRateLimits,
        retry: RetryPolicy | None = None,
        *,
        days_until_due: int = 14,
        automatic_tax: bool = False,
    ):
        """``limits`` are the ones the client's HTTP layer takes tokens from (see from_settings)."""
        self.client = client
        self.limits = limits
        self.retry = retry or RetryPolicy()
        self.days_until_due = days_until_due
        self.automatic_tax = automatic_tax

    def minimum_charge(self, currency: str) -> int | None:
        """Stripe's published minimum charge (``minimum_charge.py``)."""
        return minimum_charge(currency)

    @classmethod
    def from_settings(cls, settings: Settings, *, api_key: str | None = None) -> StripeGateway:
        key = api_key if api_key is not None else secret_key(settings)
        share = RATE_HEADROOM / max(1, settings.stripe_rate_share)
        limits = StripeRateLimits(
            share * settings.stripe_max_requests_per_second,
            share * settings.stripe_endpoint_requests_per_second,
            share * settings.stripe_search_requests_per_second,
        )
        return cls._built(settings, key, limits, RateLimitedHttpClient(limits, settings.stripe_timeout_s))

    @classmethod
    def planner(cls, settings: Settings) -> StripeGateway:
        """A gateway that only describes requests (``--dry-run``), with the account's terms from
        settings: it reads no secret key and its HTTP client sends nothing."""
        limits = StripeRateLimits(1.0, 1.0, 1.0)  # never waited on: nothing is sent
        return cls._built(settings, "", limits, NoSendHttpClient())

    @classmethod
    def _built(
        cls, settings: Settings, key: str, limits: StripeRateLimits, http_client: stripe.HTTPClient
    ) -> StripeGateway:
        base: BaseAddresses = {"api": settings.stripe_api_base} if settings.stripe_api_base else {}
        client = stripe.StripeClient(
            key,
            stripe_version=settings.stripe_api_version,
            base_addresses=base,
            max_network_retries=0,  # retried in _send with the same key; every attempt takes a token
            http_client=http_client,
        )
        retry = RetryPolicy(
            max_attempts=settings.stripe_max_attempts, base_delay_s=settings.stripe_retry_base_delay_s
        )
        return cls(
            client,
            limits,
            retry,
            days_until_due=settings.invoice_days_until_due,
            automatic_tax=settings.stripe_automatic_tax,
        )


STRIPE_KEY_PREFIXES = ("sk_", "rk_")  # secret and restricted keys; live or test


def secret_key(settings: Settings) -> str:
    """The Stripe secret key from Secrets Manager (Powertools caches it for max_age seconds)."""
    from aws_lambda_powertools.utilities import parameters

    value = parameters.get_secret(settings.stripe_secret_name, max_age=settings.stripe_secret_max_age_s)
    key = (value.decode() if isinstance(value, bytes) else str(value)).strip()
    if not key.startswith(STRIPE_KEY_PREFIXES):
        # A new stack's secret holds the random value CloudFormation generated: fail at once (no
        # request, no retries) instead of sending it to Stripe.
        from billing.kernel.errors import ServiceUnavailable

        raise ServiceUnavailable(
            f"the Stripe secret {settings.stripe_secret_name} holds no Stripe key yet (sk_... or rk_...)",
            details=[{"field": "STRIPE_SECRET_NAME", "reason": "secret value is not a Stripe API key"}],
        )
    return key
