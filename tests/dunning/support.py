"""Webhook/dunning test support: Stripe events built from Stripe's own example objects, signed like
Stripe signs them, delivered as API Gateway events to the real handlers (moto + chdb via `env`)."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from billing.runtime import container
from billing.tenants.tenant import Tenant
from billing_local.runner import load_module
from billing_local.webhook_delivery import stripe_delivery
from tests.conftest import api_event
from tests.support import create_tenant

STRIPE_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "stripe"
WEBHOOK_SECRET = "whsec_test_5c1b0b7e2f3d4a9b8c7d6e5f4a3b2c1d"
T0 = datetime(2025, 12, 1, 9, 0, tzinfo=UTC)  # the November invoices are finalized and charged


def fixture(name: str) -> dict[str, Any]:
    return json.loads((STRIPE_FIXTURES / f"{name}.json").read_text())


_EVENT, _INVOICE, _CUSTOMER = fixture("event"), fixture("invoice"), fixture("customer")

INVOICE_STATUS_AFTER = {
    "invoice.finalized": "open",
    "invoice.payment_failed": "open",
    "invoice.payment_action_required": "open",
    "invoice.overdue": "open",
    "invoice.paid": "paid",
    "invoice.voided": "void",
    "invoice.marked_uncollectible": "uncollectible",
}


def invoice_object(
    invoice_id: str,
    tenant_id: str | None,
    *,
    status: str,
    month: str = "2025-11",
    customer: str | None = None,
    amount: int = 4900,
    created: datetime = T0,
    attempt_count: int = 0,
) -> dict[str, Any]:
    """Stripe's example invoice with only ids, amounts, statuses, timestamps and metadata changed."""
    inv = copy.deepcopy(_INVOICE)
    ts = int(created.timestamp())
    paid = status == "paid"
    inv.update(
        {
            "id": invoice_id,
            "customer": customer or f"cus_{tenant_id or 'stranger'}",
            "status": status,
            "amount_due": amount,
            "amount_remaining": 0 if paid else amount,
            "amount_paid": amount if paid else 0,
            "subtotal": amount,
            "subtotal_excluding_tax": amount,
            "total": amount,
            "total_excluding_tax": amount,
            "amount_overpaid": 0,
            "attempt_count": attempt_count,
            "attempted": attempt_count > 0,
            "created": ts,
            "effective_at": ts,
            "period_start": ts,
            "period_end": ts,
            "due_date": None,
            "next_payment_attempt": None,
            "webhooks_delivered_at": ts,
            "auto_advance": False,
            "metadata": {"tenant_id": tenant_id, "month": month, "statement_id": f"{tenant_id}:{month}"}
            if tenant_id
            else {},
            "status_transitions": {
                "finalized_at": ts,
                "marked_uncollectible_at": None,
                "paid_at": ts if paid else None,
                "voided_at": None,
            },
        }
    )
    for line in inv["lines"]["data"]:
        line.update({"amount": amount, "subtotal": amount, "invoice": invoice_id})
    inv["lines"]["url"] = f"/v1/invoices/{invoice_id}/lines"
    return inv


def stripe_event(event_id: str, event_type: str, obj: dict[str, Any], created: datetime) -> dict[str, Any]:
    event = copy.deepcopy(_EVENT)
    event.update(
        {
            "id": event_id,
            "type": event_type,
            "created": int(created.timestamp()),
            "data": {"object": obj},
            "api_version": "2026-10-28.endive",
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
        }
    )
    return event


def invoice_event(
    event_id: str, event_type: str, invoice_id: str, tenant_id: str | None, created: datetime, **kwargs: Any
) -> dict[str, Any]:
    obj = invoice_object(
        invoice_id,
        tenant_id,
        status=INVOICE_STATUS_AFTER[event_type],
        created=kwargs.pop("invoice_created", T0),
        **kwargs,
    )
    return stripe_event(event_id, event_type, obj, created)


def customer_deleted_event(event_id: str, tenant_id: str, created: datetime) -> dict[str, Any]:
    customer = copy.deepcopy(_CUSTOMER)
    customer.update(
        {
            "id": f"cus_{tenant_id}",
            "metadata": {"tenant_id": tenant_id},
            "created": int(T0.timestamp()) - 86400 * 90,
        }
    )
    customer["deleted"] = True
    return stripe_event(event_id, "customer.deleted", customer, created)


def webhook_request(
    event: dict[str, Any] | str | bytes,
    *,
    at: datetime,
    secret: str = WEBHOOK_SECRET,
    base64: bool = False,
    signature: str | None | bool = True,
) -> dict[str, Any]:
    """The API Gateway event Stripe's delivery becomes; signed at ``at`` unless told otherwise."""
    return stripe_delivery(event, secret=secret, at=at, base64=base64, signature=signature)


def load_handler(function_dir: str) -> Any:
    return load_module(function_dir)


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now = self.now + timedelta(**delta)
        return self.now

    def set(self, when: datetime) -> datetime:
        self.now = when
        return self.now


@dataclass
class Stripe:
    """What a test drives: the clock, the handlers, tenants."""

    clock: Clock
    webhook: Any
    dunning: Any
    status: Any
    lambda_context: Any

    def deliver(
        self, event: dict[str, Any] | str | bytes, *, signed_at: datetime | None = None, **kwargs: Any
    ) -> tuple[int, dict[str, Any]]:
        request = webhook_request(event, at=signed_at or self.clock.now, **kwargs)
        response = self.webhook.handler(request, self.lambda_context)
        return response["statusCode"], json.loads(response["body"])

    def run_dunning(self) -> dict[str, Any]:
        return self.dunning.handler(
            {"time": self.clock.now.isoformat(), "detail-type": "Scheduled Event"}, self.lambda_context
        )

    def get_status(
        self, tenant_id: str, api_key_id: str | None = "platform-key"
    ) -> tuple[int, dict[str, Any]]:
        request = api_event(
            None,
            path=f"/v1/tenants/{tenant_id}/status",
            method="GET",
            api_key_id=api_key_id,
            path_parameters={"tenant_id": tenant_id},
        )
        request["resource"] = "/v1/tenants/{tenant_id}/status"
        request["body"] = None
        response = self.status.handler(request, self.lambda_context)
        return response["statusCode"], json.loads(response["body"])


def make_tenant(tenant_id: str, **fields: Any) -> Tenant:
    fields.setdefault("stripe_customer_id", f"cus_{tenant_id}")
    return create_tenant(tenant_id, **fields)


def create_webhook_secret(secret: str = WEBHOOK_SECRET) -> None:
    boto3.client("secretsmanager").create_secret(
        Name=container.settings().stripe_webhook_secret_name, SecretString=secret
    )


@pytest.fixture(scope="session")
def handlers() -> dict[str, Any]:
    return {name: load_handler(name) for name in ("stripe_webhook", "dunning", "tenant_status")}


@pytest.fixture
def stripe(env: Any, handlers: dict[str, Any], lambda_context: Any) -> Stripe:
    """Given the webhook secret in Secrets Manager, an injected clock and the three handlers."""
    create_webhook_secret()
    clock = Clock()
    container.override(clock=clock)
    return Stripe(
        clock, handlers["stripe_webhook"], handlers["dunning"], handlers["tenant_status"], lambda_context
    )


@dataclass
class StripeWorld:
    """The stripe engineer's Stripe double (an HTTP server the official SDK talks to) behind our real
    gateway. Its webhook events are handed to our handler re-stamped with the injected clock."""

    double: Any
    gateway: Any
    clock: Clock
    seen: int = 0

    def open_invoice(
        self, tenant_id: str, month: str = "2025-11", amount: int = 4900, *, card: bool = True
    ) -> str:
        """Customer + draft invoice + one line + finalize (auto_advance=false), as invoicing does;
        without ``card`` the tenant never saved one, so the invoice is ``send_invoice`` and sent."""
        from billing.payments.provider import CustomerDraft, InvoiceDraft, ItemDraft

        tenant = container.tenants().get(tenant_id)
        customer = self.gateway.ensure_customer(
            CustomerDraft(tenant_id, tenant.name, tenant.email, idempotency_key=f"customer:{tenant_id}")
        )
        if tenant.stripe_customer_id != customer:
            container.tenants().save(tenant.model_copy(update={"stripe_customer_id": customer}))
        if card and self.double.customers[customer]["invoice_settings"]["default_payment_method"] is None:
            self.double.attach_card(customer_id=customer)  # the tenant saved a card (setup session)
        meta = {"tenant_id": tenant_id, "month": month, "statement_id": f"{tenant_id}:{month}"}
        draft = self.gateway.create_draft_invoice(
            InvoiceDraft(
                customer,
                "usd",
                f"{month} usage",
                meta,
                idempotency_key=f"invoice:{tenant_id}:{month}",
                collection_method="charge_automatically" if card else "send_invoice",
            )
        )
        self.gateway.add_invoice_item(
            ItemDraft(
                customer,
                draft.id,
                "usd",
                amount,
                "Starter plan",
                T0 - timedelta(days=30),
                T0,
                {**meta, "line_id": "base"},
                idempotency_key=f"item:{draft.id}",
            )
        )
        self.gateway.finalize_invoice(draft.id, idempotency_key=f"finalize:{draft.id}")
        if not card:
            self.gateway.send_invoice(draft.id, idempotency_key=f"send:{draft.id}")
        return draft.id

    def charge(self, invoice_id: str, key: str) -> Any:
        return self.gateway.pay_invoice(invoice_id, idempotency_key=key)

    def new_events(self) -> list[dict[str, Any]]:
        events = self.double.events_of()[self.seen :]
        self.seen += len(events)
        for event in events:
            event["created"] = int(self.clock.now.timestamp())
        return events

    def pay_requests(self) -> list[Any]:
        return [r for r in self.double.requests if r.method == "POST" and r.path.endswith("/pay")]


@pytest.fixture
def world(stripe: Stripe, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Given the Stripe double running, our Stripe key in Secrets Manager and the real gateway."""
    from billing_local.stripe_double import StripeDouble, put_secret

    with StripeDouble() as double:
        monkeypatch.setenv("STRIPE_API_BASE", double.api_base)
        monkeypatch.setenv("STRIPE_RETRY_BASE_DELAY_S", "0.01")
        container.reset()
        container.override(clock=stripe.clock)
        put_secret(container.settings().stripe_secret_name)
        yield StripeWorld(double, container.stripe_gateway(), stripe.clock)
