"""A payment method on file: Stripe's hosted setup page, the payment settings page (Stripe calls it
the Billing Portal; "portal" in this code is the tenant's usage page only), and the webhook facts
that make a saved card the one invoices charge.

Invariants:
- the tenant's Stripe customer is created on demand (the same idempotent path as signup/invoicing);
- a card saved through a setup session becomes the customer's
  ``invoice_settings.default_payment_method`` (Checkout only attaches it) and is mirrored on the
  tenant (``payment_method_id``, ``payment_method_at``);
- webhook facts are idempotent and order-safe: each carries the time of the setup (or customer
  change) it reports, and the tenant's mirror only moves to a newer one (a conditional update), so
  duplicated or shuffled ``setup_intent.succeeded`` / ``checkout.session.completed`` /
  ``customer.updated`` deliveries end with the newest card, whatever their order;
- a fact about another customer than the tenant's is ignored.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from billing.payments.provider import CardOnFile, HostedSession, SetupSessionDraft
from billing.runtime.observability import logger
from billing.tenants.tenant import Tenant, unknown_tenant

URL_PATTERN = r"^https?://[^\s]+$"
CARD_EVENTS = ("checkout.session.completed", "setup_intent.succeeded", "customer.updated")


class SetupRequest(BaseModel):
    """``POST /v1/tenants/{id}/billing/setup``; URLs default to the settings'."""

    model_config = ConfigDict(extra="forbid")
    success_url: str | None = Field(default=None, max_length=2048, pattern=URL_PATTERN)
    cancel_url: str | None = Field(default=None, max_length=2048, pattern=URL_PATTERN)


class PaymentSettingsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    return_url: str | None = Field(default=None, max_length=2048, pattern=URL_PATTERN)


class TenantReader(Protocol):
    def get(self, tenant_id: str) -> Tenant | None: ...


class PaymentMethodMirror(Protocol):
    def record_payment_method(self, tenant_id: str, payment_method_id: str | None, at: datetime) -> bool:
        """Store the tenant's default payment method as of ``at``, unless a newer one is stored
        (False then, or when the tenant does not exist)."""


@dataclass(frozen=True)
class CardUrls:
    success_url: str
    cancel_url: str
    return_url: str


@dataclass(frozen=True)
class CardFact:
    """What a webhook event says about a tenant's card."""

    event_id: str
    tenant_id: str | None
    customer_id: str | None
    payment_method_id: str | None
    at: datetime  # when the setup (or the customer change) happened at Stripe
    setup_intent_id: str | None = None  # to read when the event does not carry the method


class CardOnFileService:
    def __init__(
        self,
        *,
        tenants: TenantReader,
        mirror: PaymentMethodMirror,
        ensure_customer: Callable[[str], str],
        provider: Callable[[], CardOnFile],
        urls: CardUrls,
        currency: str,
        page_config: Callable[[], str | None] = lambda: None,
    ):
        """``provider`` is called on first use (building it reads the Stripe key); ``page_config``
        gives the provider's id of our payment settings page configuration (recorded by the catalog
        sync; None: the account's default)."""
        self.tenants = tenants
        self.mirror = mirror
        self.ensure_customer = ensure_customer
        self._provider = provider
        self.urls = urls
        self.currency = currency
        self.page_config = page_config

    @property
    def provider(self) -> CardOnFile:
        return self._provider()

    def _tenant(self, tenant_id: str) -> Tenant:
        tenant = self.tenants.get(tenant_id)
        if tenant is None:
            raise unknown_tenant([tenant_id])
        return tenant

    # ------------------------------------------------------------------------------------------ API
    def setup_session(self, tenant_id: str, request: SetupRequest) -> dict[str, Any]:
        """A Checkout Session (setup mode) URL where the tenant saves a card for future invoices."""
        self._tenant(tenant_id)
        customer_id = self.ensure_customer(tenant_id)
        session = self.provider.create_setup_session(
            SetupSessionDraft(
                tenant_id=tenant_id,
                customer_id=customer_id,
                currency=self.currency,
                success_url=request.success_url or self.urls.success_url,
                cancel_url=request.cancel_url or self.urls.cancel_url,
                # A new page per request (Stripe recommends a session per attempt); a retried
                # request makes another page, which is harmless.
                idempotency_key=f"setup:{tenant_id}:{uuid.uuid4()}",
            )
        )
        logger.info("setup session created", extra={"tenant_id": tenant_id, "session_id": session.id})
        return _session_json(session, customer_id)

    def payment_settings_session(self, tenant_id: str, request: PaymentSettingsRequest) -> dict[str, Any]:
        """The payment settings page (Stripe's Billing Portal) URL: update the card, see and pay invoices."""
        self._tenant(tenant_id)
        customer_id = self.ensure_customer(tenant_id)
        session = self.provider.create_payment_settings_session(
            customer_id,
            request.return_url or self.urls.return_url,
            f"payment-settings:{tenant_id}:{uuid.uuid4()}",
            self.page_config(),
        )
        return _session_json(session, customer_id)

    # ------------------------------------------------------------------------------------------ webhooks
    def record(self, fact: CardFact) -> dict[str, Any]:
        """Apply a webhook fact: make the card the customer's default and mirror it on the tenant."""
        tenant = self.tenants.get(fact.tenant_id) if fact.tenant_id else None
        if tenant is None:
            return {"status": "ignored", "reason": "not a customer of a known tenant"}
        if not tenant.stripe_customer_id or fact.customer_id != tenant.stripe_customer_id:
            return {"status": "ignored", "reason": "customer is not the tenant's", "tenant_id": tenant.id}
        if tenant.payment_method_at is not None and fact.at < tenant.payment_method_at:
            return {"status": "processed", "tenant_id": tenant.id, "changed": False, "reason": "older setup"}
        payment_method = fact.payment_method_id
        if fact.setup_intent_id is None and payment_method == tenant.payment_method_id:
            return {"status": "processed", "tenant_id": tenant.id, "changed": False}  # e.g. a new email
        if fact.setup_intent_id is not None:  # a completed setup: Checkout attached the card
            if payment_method is None:
                customer, payment_method = self.provider.setup_intent_payment_method(fact.setup_intent_id)
                if customer != tenant.stripe_customer_id:
                    return {"status": "ignored", "reason": "setup intent of another customer"}
            if payment_method is None:
                return {"status": "ignored", "reason": "the setup saved no payment method"}
            # Checkout only attaches the card; we make it the one invoices charge (the same value
            # set twice is one state, so a redelivery changes nothing).
            self.provider.set_default_payment_method(tenant.stripe_customer_id, payment_method)
        changed = self.mirror.record_payment_method(tenant.id, payment_method, fact.at)
        logger.info(
            "payment method on file",
            extra={"tenant_id": tenant.id, "payment_method": payment_method, "changed": changed},
        )
        return {
            "status": "processed",
            "tenant_id": tenant.id,
            "payment_method": payment_method,
            "changed": changed,
        }


def card_fact(event_id: str, event_type: str, created: int, obj: dict[str, Any]) -> CardFact | None:
    """The card fact of a ``CARD_EVENTS`` event (None: nothing about a card on file)."""
    raw_metadata = obj.get("metadata")
    metadata: dict[str, Any] = raw_metadata if isinstance(raw_metadata, dict) else {}
    customer = _ref(obj.get("customer"))
    if event_type == "checkout.session.completed":
        if obj.get("mode") != "setup" or obj.get("status") not in (None, "complete"):
            return None
        tenant_id = metadata.get("tenant_id") or obj.get("client_reference_id")
        intent = _ref(obj.get("setup_intent"))
        if not intent:
            return None
        return CardFact(event_id, tenant_id, customer, None, _at(obj.get("created"), created), intent)
    if event_type == "setup_intent.succeeded":
        payment_method = _ref(obj.get("payment_method"))
        intent = obj.get("id") if isinstance(obj.get("id"), str) else None
        if not payment_method or not intent:
            return None
        at = _at(obj.get("created"), created)
        return CardFact(event_id, metadata.get("tenant_id"), customer, payment_method, at, intent)
    if event_type == "customer.updated":
        raw_settings = obj.get("invoice_settings")
        settings: dict[str, Any] = raw_settings if isinstance(raw_settings, dict) else {}
        customer_id = obj.get("id") if isinstance(obj.get("id"), str) else None
        return CardFact(
            event_id,
            metadata.get("tenant_id"),
            customer_id,
            _ref(settings.get("default_payment_method")),
            datetime.fromtimestamp(created, UTC),
        )
    return None


def _ref(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _at(value: Any, fallback: int) -> datetime:
    seconds = value if isinstance(value, int) and not isinstance(value, bool) else fallback
    return datetime.fromtimestamp(seconds, UTC)


def _session_json(session: HostedSession, customer_id: str) -> dict[str, Any]:
    return {
        "url": session.url,
        "session_id": session.id,
        "customer_id": customer_id,
        "expires_at": datetime.fromtimestamp(session.expires_at, UTC).isoformat().replace("+00:00", "Z")
        if session.expires_at
        else None,
    }
