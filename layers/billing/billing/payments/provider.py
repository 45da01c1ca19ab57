"""What billing needs from a payment provider: the value types and the interfaces invoicing and dunning use.

Implemented by ``billing.adapters.stripe.gateway`` (and, in tests, by the same adapter talking to the
Stripe double). Amounts are integer minor units (cents); a declined card is a ``PaymentAttempt``
outcome, never an exception; every call that creates something carries an idempotency key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

CollectionMethod = Literal["charge_automatically", "send_invoice"]
# Stripe's limit of invoice items per invoice: a statement with more lines cannot be invoiced.
MAX_INVOICE_ITEMS = 250


@dataclass(frozen=True)
class PaymentAttempt:
    """The outcome of one charge of an invoice. A declined card is an outcome, not an error."""

    succeeded: bool
    invoice_status: str
    failure_code: str | None = None
    failure_message: str | None = None


@dataclass(frozen=True)
class InvoiceSummary:
    id: str
    customer_id: str
    status: str  # draft, open, paid, void, uncollectible
    total: int  # integer cents
    amount_due: int
    amount_paid: int
    currency: str
    metadata: dict[str, str]
    number: str | None = None
    hosted_invoice_url: str | None = None
    auto_advance: bool | None = None
    collection_method: str = "charge_automatically"
    total_excluding_tax: int | None = None  # None: as total (no tax)
    replayed: bool = False  # Stripe answered from an earlier request with the same idempotency key


@dataclass(frozen=True)
class ItemSummary:
    id: str
    invoice_id: str | None
    amount: int
    metadata: dict[str, str]

    @property
    def line_id(self) -> str | None:
        return self.metadata.get("line_id")


@dataclass(frozen=True)
class CustomerDraft:
    tenant_id: str
    name: str
    email: str
    idempotency_key: str
    test_clock: str | None = None


@dataclass(frozen=True)
class CreatedCustomer:
    id: str
    replayed: bool = False


@dataclass(frozen=True)
class InvoiceDraft:
    customer_id: str
    currency: str
    description: str
    metadata: dict[str, str]  # tenant_id, month, statement_id
    idempotency_key: str
    # send_invoice when the customer has no payment method on file: Stripe's hosted page and a due
    # date instead of an off-session charge that can only fail.
    collection_method: CollectionMethod = "charge_automatically"


@dataclass(frozen=True)
class ItemDraft:
    customer_id: str
    invoice_id: str
    currency: str
    amount: int  # integer cents, the statement line's rounded amount
    description: str
    period_start: datetime
    period_end: datetime  # exclusive
    metadata: dict[str, str]  # tenant_id, month, statement_id, line_id
    idempotency_key: str
    product_id: str | None = None


@dataclass(frozen=True)
class BalanceCreditDraft:
    """A credit to the customer's balance at the provider (a statement whose total is below zero):
    the provider takes it off the customer's next invoices at finalization."""

    customer_id: str
    currency: str
    amount: int  # minor units credited, > 0
    description: str
    metadata: dict[str, str]  # tenant_id, month, statement_id
    idempotency_key: str


@dataclass(frozen=True)
class SetupSessionDraft:
    """A hosted page where the tenant saves a card for its future invoices (Checkout, setup mode)."""

    tenant_id: str
    customer_id: str
    currency: str
    success_url: str
    cancel_url: str
    idempotency_key: str


@dataclass(frozen=True)
class HostedSession:
    id: str
    url: str
    expires_at: int | None = None


class PaymentCollector(Protocol):
    """The one call dunning makes: charge an open invoice (again)."""

    def pay_invoice(self, invoice_id: str, *, idempotency_key: str) -> PaymentAttempt: ...


class PaymentGateway(PaymentCollector, Protocol):
    """Everything invoicing asks the payment provider."""

    def minimum_charge(self, currency: str) -> int | None:
        """The smallest amount (minor units) the provider charges in ``currency`` (None: unknown);
        less is not charged but carried to the customer's balance."""
        ...

    def find_customer(self, tenant_id: str) -> str | None: ...

    def create_customer(self, draft: CustomerDraft) -> CreatedCustomer: ...

    def ensure_customer(self, draft: CustomerDraft) -> str: ...

    def create_draft_invoice(self, draft: InvoiceDraft) -> InvoiceSummary: ...

    def add_invoice_item(self, draft: ItemDraft) -> ItemSummary: ...

    def list_invoice_items(self, invoice_id: str) -> list[ItemSummary]: ...

    def get_invoice(self, invoice_id: str) -> InvoiceSummary: ...

    def find_invoices(self, customer_id: str, metadata_key: str, value: str) -> list[InvoiceSummary]: ...

    def finalize_invoice(self, invoice_id: str, *, idempotency_key: str) -> InvoiceSummary: ...

    def send_invoice(self, invoice_id: str, *, idempotency_key: str) -> InvoiceSummary: ...

    def payment_method_on_file(self, customer_id: str) -> str | None: ...

    def credit_balance(self, draft: BalanceCreditDraft) -> str:
        """Credit the customer's balance; returns the provider's id of that credit."""
        ...

    def find_balance_credit(self, customer_id: str, metadata_key: str, value: str) -> str | None:
        """The credit of the customer's balance whose metadata[key] == value, if one was made."""
        ...


class CardOnFile(Protocol):
    """What the card-on-file flow asks the provider: hosted setup and payment settings pages, and making a
    saved card the one invoices charge."""

    def create_setup_session(self, draft: SetupSessionDraft) -> HostedSession: ...

    def create_payment_settings_session(
        self, customer_id: str, return_url: str, idempotency_key: str, configuration: str | None = None
    ) -> HostedSession:
        """The page with ``configuration`` (the provider's id of ours), else the account's default."""
        ...

    def setup_intent_payment_method(self, setup_intent_id: str) -> tuple[str | None, str | None]: ...

    def set_default_payment_method(self, customer_id: str, payment_method_id: str) -> None: ...

    def payment_method_on_file(self, customer_id: str) -> str | None: ...


class PlannedRequest(Protocol):
    """One request as the provider would receive it, for ``billing invoice push --dry-run``."""

    def render(self) -> str: ...


class RequestPlanner(Protocol):
    """Describes the requests a gateway call would send, without sending them."""

    def find_customer_request(self, tenant_id: str) -> PlannedRequest: ...

    def customer_request(self, draft: CustomerDraft) -> PlannedRequest: ...

    def find_invoice_request(self, customer_id: str) -> PlannedRequest: ...

    def invoice_request(self, draft: InvoiceDraft) -> PlannedRequest: ...

    def list_items_request(self, invoice_id: str) -> PlannedRequest: ...

    def item_request(self, draft: ItemDraft) -> PlannedRequest: ...

    def get_invoice_request(self, invoice_id: str) -> PlannedRequest: ...

    def finalize_request(self, invoice_id: str, idempotency_key: str) -> PlannedRequest: ...

    def pay_request(self, invoice_id: str, idempotency_key: str) -> PlannedRequest: ...

    def send_request(self, invoice_id: str, idempotency_key: str) -> PlannedRequest: ...

    def find_balance_credit_request(self, customer_id: str) -> PlannedRequest: ...

    def balance_credit_request(self, draft: BalanceCreditDraft) -> PlannedRequest: ...
