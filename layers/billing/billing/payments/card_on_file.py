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
- a fact already mirrored (a redelivery, or the same card at the same moment from the setup's other
  event) writes nothing: neither the tenant record (its version stays) nor the customer at Stripe;
- a fact about another customer than the tenant's is ignored;
- every field of a card event that is read is typed first (``card_object``): a signed event of the
  wrong shape is a 400 naming the field, before anything is read or written.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from billing.kernel.validation import ID_MAX_LENGTH, ID_PATTERN
from billing.payments.provider import CardOnFile, HostedSession, SetupSessionDraft
from billing.payments.stripe_objects import (
    Metadata,
    StripeId,
    StripeRef,
    StripeTimestamp,
    TenantMetadata,
    instant,
    ref_id,
    typed_object,
)
from billing.runtime.observability import logger
from billing.tenants.tenant import Tenant, unknown_tenant

URL_PATTERN = r"^https?://[^\s]+$"
CARD_EVENTS = ("checkout.session.completed", "setup_intent.succeeded", "customer.updated")


class SetupRequest(BaseModel):
    """``POST /v1/tenants/{id}/billing/setup``; URLs default to the settings'."""

    model_config = ConfigDict(extra="forbid", strict=True)
    success_url: str | None = Field(default=None, max_length=2048, pattern=URL_PATTERN)
    cancel_url: str | None = Field(default=None, max_length=2048, pattern=URL_PATTERN)


class PaymentSettingsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    return_url: str | None = Field(default=None, max_length=2048, pattern=URL_PATTERN)


class TenantReader(Protocol):
    def get(self, tenant_id: str) -> Tenant | None: ...


class PaymentMethodMirror(Protocol):
    def record_payment_method(self, tenant_id: str, payment_method_id: str | None, at: datetime) -> bool:
        """Store the tenant's default payment method as of ``at``, unless a newer one is stored or
        this very one is (False then, with nothing written, or when the tenant does not exist)."""


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
            if fact.at == tenant.payment_method_at and payment_method == tenant.payment_method_id:
                # The mirror is written only after Stripe's default was set (or reported by Stripe),
                # so this card is the default already: setting it again would write for nothing.
                return {"status": "processed", "tenant_id": tenant.id, "changed": False}
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


ShortText = Annotated[str, StringConstraints(strict=True, max_length=64)]


class CheckoutSessionObject(BaseModel):
    """The fields of a Checkout Session that ``checkout.session.completed`` consumes."""

    model_config = ConfigDict(extra="ignore", strict=True)
    id: StripeId
    created: StripeTimestamp | None = None
    mode: ShortText | None = None
    status: ShortText | None = None
    customer: StripeRef | None = None
    setup_intent: StripeRef | None = None
    client_reference_id: Annotated[str, StringConstraints(strict=True, max_length=200)] | None = None
    metadata: Metadata | None = None


class SetupIntentObject(BaseModel):
    """The fields of a SetupIntent that ``setup_intent.succeeded`` consumes."""

    model_config = ConfigDict(extra="ignore", strict=True)
    id: StripeId
    created: StripeTimestamp | None = None
    customer: StripeRef | None = None
    payment_method: StripeRef | None = None
    metadata: Metadata | None = None


class InvoiceSettings(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    default_payment_method: StripeRef | None = None


class UpdatedCustomerObject(BaseModel):
    """The fields of a customer that ``customer.updated`` consumes."""

    model_config = ConfigDict(extra="ignore", strict=True)
    id: StripeId
    metadata: Metadata | None = None
    invoice_settings: InvoiceSettings | None = None


CardObject = CheckoutSessionObject | SetupIntentObject | UpdatedCustomerObject
_CARD_OBJECTS: dict[str, type[CardObject]] = {
    "checkout.session.completed": CheckoutSessionObject,
    "setup_intent.succeeded": SetupIntentObject,
    "customer.updated": UpdatedCustomerObject,
}


def card_object(event_type: str, obj: dict[str, Any]) -> CardObject:
    """``data.object`` of a ``CARD_EVENTS`` event, typed; a 400 naming the fields that do not fit."""
    return typed_object(_CARD_OBJECTS[event_type], obj, TenantMetadata)


def card_fact(event_id: str, created: int, obj: CardObject) -> CardFact | None:
    """The card fact of a ``CARD_EVENTS`` event (None: nothing about a card on file); ``created``:
    the event's, the time of a fact whose object carries none."""
    tenant_id = TenantMetadata.model_validate(obj.metadata or {}).tenant_id
    if isinstance(obj, CheckoutSessionObject):
        if obj.mode != "setup" or obj.status not in (None, "complete"):
            return None
        intent = ref_id(obj.setup_intent)
        if not intent:
            return None
        tenant_id = tenant_id or _tenant_reference(obj.client_reference_id)
        at = instant(obj.created or created)
        return CardFact(event_id, tenant_id, ref_id(obj.customer), None, at, intent)
    if isinstance(obj, SetupIntentObject):
        payment_method = ref_id(obj.payment_method)
        if not payment_method:
            return None
        at = instant(obj.created or created)
        return CardFact(event_id, tenant_id, ref_id(obj.customer), payment_method, at, obj.id)
    settings = obj.invoice_settings or InvoiceSettings()
    return CardFact(event_id, tenant_id, obj.id, ref_id(settings.default_payment_method), instant(created))


def _tenant_reference(value: str | None) -> str | None:
    """``client_reference_id`` as a tenant id: we set it to one, but it is free text at Stripe (another
    integration may use it), so a value that cannot be a tenant id names no tenant."""
    if value and len(value) <= ID_MAX_LENGTH and re.fullmatch(ID_PATTERN, value):
        return value
    return None


def _session_json(session: HostedSession, customer_id: str) -> dict[str, Any]:
    return {
        "url": session.url,
        "session_id": session.id,
        "customer_id": customer_id,
        "expires_at": datetime.fromtimestamp(session.expires_at, UTC).isoformat().replace("+00:00", "Z")
        if session.expires_at
        else None,
    }
