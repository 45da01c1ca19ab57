"""Stripe webhooks: verify, deduplicate, turn each event into dunning facts.

Pure domain: the signature check, the processed-event log, our invoice directory and tenants come
in through Protocols (billing.adapters.webhook_verify / dunning_store / dynamodb implement them).

Per request: verify ``Stripe-Signature`` over the raw body (400, nothing stored, if missing, wrong
or older than 300 s) -> parse -> unknown type: 200 ignored -> find our tenant from
``invoice.metadata`` (tenant_id, month; set when we create invoices) or our invoice record -> merge
the facts (see billing.dunning) -> record the event id (conditional put with a TTL).

Merging is idempotent (a fact already in the record changes nothing and writes nothing), so a
redelivery of a processed event has no effect and is answered 200 "duplicate" when its id is found
recorded. The id is recorded only after the state change is stored: if processing fails, Stripe's
redelivery is processed again - the dedup record and the state change can never disagree.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from billing.dunning import DunningService, Fact, Failed, Finalized, Mark, Resolved
from billing.errors import InvalidRequest
from billing.tenants import Tenant

INVOICE_EVENTS = (
    "invoice.finalized",
    "invoice.paid",
    "invoice.payment_failed",
    "invoice.payment_action_required",
    "invoice.voided",
    "invoice.marked_uncollectible",
)
HANDLED_EVENTS = (*INVOICE_EVENTS, "customer.deleted")
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


@dataclass(frozen=True)
class StripeEvent:
    id: str
    type: str
    created: int
    object: dict[str, Any]

    @property
    def mark(self) -> Mark:
        return Mark(datetime.fromtimestamp(self.created, UTC), self.id)


def raw_body(api_event: dict[str, Any]) -> bytes:
    """The request body exactly as API Gateway received it (base64-decoded when it says so)."""
    body = api_event.get("body") or ""
    if api_event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest(
                "body is flagged base64 but is not", details=[{"field": "body", "reason": "invalid base64"}]
            ) from None
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


def parse_event(payload: bytes) -> StripeEvent:
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(
            "body is not valid JSON", details=[{"field": "body", "reason": str(exc)}]
        ) from None
    problems = []
    if not isinstance(doc, dict):
        raise InvalidRequest(
            "body must be a Stripe event object", details=[{"field": "body", "reason": "not an object"}]
        )
    if not isinstance(doc.get("id"), str) or not doc["id"]:
        problems.append({"field": "id", "reason": "required string"})
    if not isinstance(doc.get("type"), str):
        problems.append({"field": "type", "reason": "required string"})
    if not isinstance(doc.get("created"), int) or isinstance(doc.get("created"), bool):
        problems.append({"field": "created", "reason": "required integer (unix seconds)"})
    obj = (doc.get("data") or {}).get("object") if isinstance(doc.get("data"), dict) else None
    if not isinstance(obj, dict):
        problems.append({"field": "data.object", "reason": "required object"})
    if problems:
        raise InvalidRequest("not a Stripe event", details=problems)
    return StripeEvent(doc["id"], doc["type"], doc["created"], obj)  # type: ignore[arg-type]


def invoice_facts(event: StripeEvent) -> list[Fact]:
    """What an invoice event says: its type, and the invoice status in its snapshot."""
    obj, mark = event.object, event.mark
    facts: list[Fact] = []
    kind = event.type
    if kind == "invoice.finalized":
        facts.append(Finalized(mark))
    elif kind == "invoice.payment_failed":
        attempt = obj.get("attempt_count")
        facts.append(Failed(mark, "payment failed" + (f" (Stripe attempt {attempt})" if attempt else "")))
    elif kind == "invoice.payment_action_required":
        facts.append(Failed(mark, "payment needs customer action (authentication)"))
    elif kind == "invoice.paid":
        facts.append(Resolved("paid", mark))
    elif kind == "invoice.voided":
        facts.append(Resolved("void", mark))
    elif kind == "invoice.marked_uncollectible":
        facts.append(Resolved("uncollectible", mark))
    status = obj.get("status")
    if status in TERMINAL_STATUSES and not any(isinstance(f, Resolved) and f.kind == status for f in facts):
        facts.append(Resolved(status, mark))
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
    ):
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
            return WebhookResult("duplicate", event.id, {"reason": "already processed", **result.detail})
        return result

    def _dispatch(self, event: StripeEvent) -> WebhookResult:
        if event.type == "customer.deleted":
            return self._customer_deleted(event)
        obj = event.object
        invoice_id = obj.get("id")
        if not isinstance(invoice_id, str):
            return WebhookResult("ignored", event.id, {"reason": "invoice without id"})
        metadata = obj.get("metadata") or {}
        tenant_id, month = metadata.get("tenant_id"), metadata.get("month")
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
        customer = obj.get("customer")
        if isinstance(customer, dict):
            customer = customer.get("id")
        if tenant.stripe_customer_id and customer and customer != tenant.stripe_customer_id:
            return WebhookResult(
                "ignored",
                event.id,
                {"reason": "invoice customer is not the tenant's", "tenant_id": tenant_id},
            )
        outcome = self.dunning.record(tenant_id, invoice_id, month, invoice_facts(event))
        return WebhookResult("processed", event.id, outcome.to_json())

    def _customer_deleted(self, event: StripeEvent) -> WebhookResult:
        obj = event.object
        tenant_id = (obj.get("metadata") or {}).get("tenant_id")
        tenant = self.tenants.get(tenant_id) if tenant_id else None
        if tenant is None or (tenant.stripe_customer_id and tenant.stripe_customer_id != obj.get("id")):
            return WebhookResult("ignored", event.id, {"reason": "not a customer of a known tenant"})
        outcome = self.dunning.customer_deleted(tenant.id, event.mark)
        return WebhookResult("processed", event.id, outcome.to_json())
