"""Stripe webhooks: verify, deduplicate, turn each event into dunning facts.

Pure domain: the signature check, the processed-event log, our invoice directory and tenants come
in through Protocols (billing.adapters.stripe.webhook_signature / dunning_store / dynamodb implement them).

Per request: verify ``Stripe-Signature`` over the raw body (400, nothing stored, if missing, wrong
or older than 300 s) -> parse -> unknown type: 200 ignored -> find our tenant from
``invoice.metadata`` (tenant_id, month; set when we create invoices) or our invoice record -> merge
the facts (see billing.dunning) -> record the event id (conditional put with a TTL).

Merging is idempotent (a fact already in the record changes nothing and writes nothing), so a
redelivery of a processed event has no effect and is answered 200 "duplicate" when its id is found
recorded. The id is recorded only after the state change is stored: if processing fails, Stripe's
redelivery is processed again - the dedup record and the state change can never disagree.

``invoice.finalized``, ``invoice.paid`` and ``invoice.payment_failed`` of our invoices are published
as outgoing webhooks of the same names after their facts are merged, one message per Stripe event
id (a redelivery publishes nothing more; billing.outgoing_webhooks.publishing).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Protocol

from pydantic import AliasPath, BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from billing.dunning.facts import Fact, Failed, Finalized, Mark, Resolved
from billing.dunning.service import DunningService
from billing.kernel.errors import InvalidRequest
from billing.kernel.validation import parse_json, validation_details
from billing.outgoing_webhooks.publishing import PUBLISHED_INVOICE_EVENTS, WebhookPublisher, invoice_data
from billing.payments.card_on_file import CARD_EVENTS, CardObject, CardOnFileService, card_fact, card_object
from billing.payments.stripe_objects import (
    Metadata,
    OurMetadata,
    Ref,
    StripeId,
    StripeTimestamp,
    instant,
    ref_id,
    typed_object,
)
from billing.runtime.observability import logger
from billing.tenants.tenant import Tenant

INVOICE_EVENTS = (
    "invoice.finalized",
    "invoice.paid",
    "invoice.payment_failed",
    "invoice.payment_action_required",
    "invoice.overdue",
    "invoice.voided",
    "invoice.marked_uncollectible",
)
HANDLED_EVENTS = (*INVOICE_EVENTS, "customer.deleted", *CARD_EVENTS)
TERMINAL_STATUSES = ("paid", "void", "uncollectible")


class InvalidSignature(InvalidRequest):
    code = "invalid_signature"

    def __init__(self, message: str, *, field: str):
        super().__init__(message, details=[{"field": field, "reason": message}])


class SignatureVerifier(Protocol):
    def verify(self, payload: bytes, header: str | None, now: datetime) -> None: ...


class EventLog(Protocol):
    def record(self, event_id: str, now: datetime, outcome: str) -> bool:
        """Conditional put of the processed event id (with a TTL); False if it was there already."""


class InvoiceDirectory(Protocol):
    def find_invoice(self, stripe_invoice_id: str) -> tuple[str, str] | None: ...


class TenantDirectory(Protocol):
    def get(self, tenant_id: str) -> Tenant | None: ...


@dataclass
class StripeEvent:
    id: str
    type: str
    created: int
    object: dict[str, Any]
    invoice: InvoiceObject | None = None  # typed data.object of invoice events
    customer: CustomerObject | None = None  # typed data.object of customer.deleted
    card: CardObject | None = None  # typed data.object of CARD_EVENTS
    api_version: str | None = None  # the version Stripe rendered the event at (the endpoint's)

    @property
    def mark(self) -> Mark:
        return Mark(instant(self.created), self.id)


class _EventEnvelope(BaseModel):
    """What every Stripe event must be; ``created`` inside the instants the system accepts."""

    model_config = ConfigDict(extra="ignore", strict=True)
    id: StripeId
    type: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=255)]
    created: StripeTimestamp
    object: dict[str, Any] = Field(validation_alias=AliasPath("data", "object"))
    api_version: Annotated[str, StringConstraints(strict=True, max_length=64)] | None = None


class InvoiceObject(BaseModel):
    """The fields of a Stripe invoice that dunning consumes."""

    model_config = ConfigDict(extra="ignore", strict=True)
    id: StripeId
    metadata: Metadata | None = None
    customer: StripeId | Ref | None = None
    status: Annotated[str, StringConstraints(max_length=64)] | None = None
    attempt_count: int | None = Field(default=None, ge=0, le=10_000)

    @property
    def ours(self) -> OurMetadata:
        return OurMetadata.model_validate(self.metadata or {})

    @property
    def customer_id(self) -> str | None:
        return ref_id(self.customer)


class CustomerObject(BaseModel):
    """The fields of a Stripe customer that ``customer.deleted`` consumes."""

    model_config = ConfigDict(extra="ignore", strict=True)
    id: StripeId
    metadata: Metadata | None = None

    @property
    def ours(self) -> OurMetadata:
        return OurMetadata.model_validate(self.metadata or {})


def parse_event(payload: bytes) -> StripeEvent:
    """A verified body to a StripeEvent: JSON (UTF-8, bounded depth), the event envelope typed, and the
    object of every handled type typed (InvoiceObject, CustomerObject, the card objects); any
    mismatch is a 400."""
    doc = parse_json(payload)
    if not isinstance(doc, dict):
        raise InvalidRequest(
            "body must be a Stripe event object", details=[{"field": "body", "reason": "not an object"}]
        )
    try:
        envelope = _EventEnvelope.model_validate(doc)
    except ValidationError as exc:
        raise InvalidRequest("not a Stripe event", details=validation_details(exc)) from None
    event = StripeEvent(
        envelope.id, envelope.type, envelope.created, envelope.object, api_version=envelope.api_version
    )
    if envelope.type in INVOICE_EVENTS:
        event.invoice = typed_object(InvoiceObject, envelope.object, OurMetadata)
    elif envelope.type == "customer.deleted":
        event.customer = typed_object(CustomerObject, envelope.object, OurMetadata)
    elif envelope.type in CARD_EVENTS:
        event.card = card_object(envelope.type, envelope.object)
    return event


def invoice_facts(event: StripeEvent) -> list[Fact]:
    """What an invoice event says: its type, and the invoice status in its snapshot."""
    mark = event.mark
    invoice = event.invoice or InvoiceObject.model_validate(event.object)
    facts: list[Fact] = []
    kind = event.type
    if kind == "invoice.finalized":
        facts.append(Finalized(mark))
    elif kind == "invoice.payment_failed":
        attempt = invoice.attempt_count
        facts.append(Failed(mark, "payment failed" + (f" (Stripe attempt {attempt})" if attempt else "")))
    elif kind == "invoice.payment_action_required":
        facts.append(Failed(mark, "payment needs customer action (authentication)"))
    elif kind == "invoice.overdue":  # a send_invoice invoice (no card on file) not paid by its due date
        facts.append(Failed(mark, "invoice unpaid past its due date"))
    elif kind == "invoice.paid":
        facts.append(Resolved("paid", mark))
    elif kind == "invoice.voided":
        facts.append(Resolved("void", mark))
    elif kind == "invoice.marked_uncollectible":
        facts.append(Resolved("uncollectible", mark))
    status = invoice.status
    if status in TERMINAL_STATUSES and not any(isinstance(f, Resolved) and f.kind == status for f in facts):
        facts.append(Resolved(status, mark))  # type: ignore[arg-type]  # one of TERMINAL_STATUSES
    return facts


@dataclass
class WebhookResult:
    status: str  # processed | duplicate | ignored
    event_id: str | None
    detail: dict[str, Any]

    def body(self) -> dict[str, Any]:
        return {"received": True, "status": self.status, "event_id": self.event_id, **self.detail}


class WebhookProcessor:
    def __init__(
        self,
        *,
        verifier: SignatureVerifier,
        events: EventLog,
        dunning: DunningService,
        invoices: InvoiceDirectory,
        tenants: TenantDirectory,
        clock: Callable[[], datetime],
        cards: Callable[[], CardOnFileService] | None = None,
        api_version: str | None = None,
        webhooks: WebhookPublisher | None = None,
    ):
        """``webhooks`` gets the invoice events we publish; ``cards`` builds the card-on-file service on first use (it may read the Stripe key);
        ``api_version``: the Stripe API version the typed models are written for (the SDK's pin)."""
        self._cards = cards
        self.webhooks = webhooks
        self.api_version = api_version
        self.verifier = verifier
        self.events = events
        self.dunning = dunning
        self.invoices = invoices
        self.tenants = tenants
        self.clock = clock

    def handle(self, payload: bytes, signature: str | None) -> WebhookResult:
        now = self.clock()
        self.verifier.verify(payload, signature, now)
        event = parse_event(payload)
        if event.type not in HANDLED_EVENTS:
            return WebhookResult("ignored", event.id, {"reason": f"event type {event.type} is not used"})
        result = self._dispatch(event)
        if not self.events.record(event.id, now, json.dumps(result.detail, default=str)):
            result = WebhookResult("duplicate", event.id, {"reason": "already processed", **result.detail})
        return self._version_warning(event, result)

    def _version_warning(self, event: StripeEvent, result: WebhookResult) -> WebhookResult:
        """An event at another API version than the pin is still processed (the typed models refuse
        what does not fit, with a 400), but the operator is told: in the log and in the answer Stripe
        shows under the endpoint's delivery attempts."""
        if not (self.api_version and event.api_version and event.api_version != self.api_version):
            return result
        warning = (
            f"event rendered at Stripe API version {event.api_version}, this code parses "
            f"{self.api_version}: set the webhook endpoint's api_version to {self.api_version}"
        )
        logger.warning(
            "stripe webhook api version mismatch", extra={"event_id": event.id, "warning": warning}
        )
        return WebhookResult(result.status, result.event_id, {**result.detail, "warning": warning})

    def _dispatch(self, event: StripeEvent) -> WebhookResult:
        if event.type == "customer.deleted":
            return self._customer_deleted(event)
        if event.type in CARD_EVENTS:
            return self._card(event)
        invoice = event.invoice or InvoiceObject.model_validate(event.object)
        invoice_id = invoice.id
        ours = invoice.ours
        tenant_id, month = ours.tenant_id, ours.month
        if not tenant_id:
            found = self.invoices.find_invoice(invoice_id)
            if found is None:
                return WebhookResult(
                    "ignored", event.id, {"reason": "not an invoice we created", "invoice_id": invoice_id}
                )
            tenant_id, month = found
        tenant = self.tenants.get(tenant_id)
        if tenant is None:
            return WebhookResult("ignored", event.id, {"reason": "unknown tenant", "tenant_id": tenant_id})
        customer = invoice.customer_id
        if tenant.stripe_customer_id and customer and customer != tenant.stripe_customer_id:
            return WebhookResult(
                "ignored",
                event.id,
                {"reason": "invoice customer is not the tenant's", "tenant_id": tenant_id},
            )
        outcome = self.dunning.record(tenant_id, invoice_id, month, invoice_facts(event))
        if self.webhooks is not None and event.type in PUBLISHED_INVOICE_EVENTS:
            data = invoice_data(
                stripe_event_id=event.id,
                occurred_at=instant(event.created),
                invoice=event.object,
                invoice_id=invoice_id,
                tenant_id=tenant_id,
                month=month,
                state=outcome.invoice_state,
                standing=outcome.standing,
            )
            self.webhooks.publish(event.type, invoice_id, data, source_id=f"{event.type}:{event.id}")
        return WebhookResult("processed", event.id, outcome.to_json())

    def _card(self, event: StripeEvent) -> WebhookResult:
        card = event.card or card_object(event.type, event.object)
        fact = card_fact(event.id, event.created, card)
        if fact is None or self._cards is None:
            return WebhookResult("ignored", event.id, {"reason": "not about a card on file"})
        detail = self._cards().record(fact)
        return WebhookResult(detail.pop("status"), event.id, detail)

    def _customer_deleted(self, event: StripeEvent) -> WebhookResult:
        customer = event.customer or CustomerObject.model_validate(event.object)
        tenant_id = customer.ours.tenant_id
        tenant = self.tenants.get(tenant_id) if tenant_id else None
        if tenant is None or (tenant.stripe_customer_id and tenant.stripe_customer_id != customer.id):
            return WebhookResult("ignored", event.id, {"reason": "not a customer of a known tenant"})
        outcome = self.dunning.customer_deleted(tenant.id, event.mark)
        return WebhookResult("processed", event.id, outcome.to_json())
