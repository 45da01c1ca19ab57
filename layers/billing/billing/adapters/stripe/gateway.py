"""Stripe adapter: the only module that imports ``stripe``.

Uses the official SDK's ``StripeClient`` (typed request parameters generated from Stripe's OpenAPI
spec; ``make typecheck`` runs mypy over this file so a wrong parameter fails the build) with the API
version pinned by ``Settings.stripe_api_version``. The secret key comes from Secrets Manager through
Powertools Parameters (cached) and is never logged.

Every request goes through one path (``_call``):
- a client-side rate limiter shared by all threads of the process (``RateLimiter``), so a month's
  run stays under Stripe's limit (``stripe_max_requests_per_second / stripe_rate_share`` here);
- Stripe's limits per endpoint (25/s, search 20/s) and per account, both enforced client-side
  (``StripeRateLimits``), so a month's run stays under them (rates divided by ``stripe_rate_share``);
- retries with exponential backoff and full jitter on 429 (``rate_limit`` and ``lock_timeout``),
  5xx, 409 (a key in flight) and network errors, honouring ``Stripe-Should-Retry``. The SDK's own
  retries are switched off (``max_network_retries=0``) so that every attempt passes the rate
  limiter; each POST carries an explicit ``Idempotency-Key`` that stays the same across attempts,
  so a retry can never create a second object;
- a 5xx Stripe saved under the key is replayed to every retry with it (``Stripe-Should-Retry:
  false``): the call then looks its object up (by metadata, with strongly consistent list or
  retrieve calls, never search) and only when none exists retries under ``{key}:a{n}``;
- card errors are values (``PaymentAttempt``), not exceptions; invalid requests raise.

Invoices are created with ``collection_method=charge_automatically`` and ``auto_advance=False``
(and finalized with ``auto_advance=False``): Stripe never finalizes, charges or retries them on its
own; our job pays once and the dunning schedule owns every later attempt.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

import stripe
from stripe._encode import _api_encode

from billing.adapters.stripe.http import (
    RATE_HEADROOM,
    RateLimitedHttpClient,
    RetryPolicy,
    StripeRateLimits,
    replayed_failure,
    retryable,
)
from billing.catalog.product_sync import ProductSpec, StripeProduct
from billing.payments.provider import (
    BalanceCreditDraft,
    CreatedCustomer,
    CustomerDraft,
    HostedSession,
    InvoiceDraft,
    InvoiceSummary,
    ItemDraft,
    ItemSummary,
    PaymentAttempt,
    SetupSessionDraft,
)
from billing.runtime.observability import logger

if TYPE_CHECKING:
    from stripe import RequestOptions
    from stripe._base_address import BaseAddresses
    from stripe.params import (
        CustomerBalanceTransactionCreateParams,
        CustomerCreateParams,
        CustomerListParams,
        CustomerSearchParams,
        CustomerUpdateParams,
        InvoiceCreateParams,
        InvoiceFinalizeInvoiceParams,
        InvoiceItemCreateParams,
        InvoiceItemCreateParamsPriceData,
        InvoiceItemListParams,
        InvoiceListParams,
        InvoicePayParams,
        InvoiceSendInvoiceParams,
        ProductCreateParams,
        ProductUpdateParams,
    )
    from stripe.params.billing_portal import SessionCreateParams as PortalSessionCreateParams
    from stripe.params.checkout import SessionCreateParams

    from billing.runtime.settings import Settings

T = TypeVar("T")
Listed = TypeVar("Listed", bound=stripe.StripeObject)

_MAX_REKEYS = 2  # new keys tried after a replayed 5xx before the call fails

# Stripe limits on metadata values and descriptions.
_MAX_DESCRIPTION = 500


@dataclass(frozen=True)
class StripeRequest:
    """One request exactly as the SDK sends it (for ``--dry-run`` and logs)."""

    method: str
    path: str
    params: Mapping[str, Any]
    idempotency_key: str | None = None

    def render(self) -> str:
        body = urlencode(list(_api_encode(dict(self.params))))
        key = f"  Idempotency-Key: {self.idempotency_key}" if self.idempotency_key else ""
        return f"{self.method.upper()} /v1{self.path}{key}\n    {body}"


class StripeGateway:
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

    @classmethod
    def from_settings(cls, settings: Settings, *, api_key: str | None = None) -> StripeGateway:
        key = api_key if api_key is not None else secret_key(settings)
        base: BaseAddresses = {"api": settings.stripe_api_base} if settings.stripe_api_base else {}
        share = RATE_HEADROOM / max(1, settings.stripe_rate_share)
        limits = StripeRateLimits(
            share * settings.stripe_max_requests_per_second,
            share * settings.stripe_endpoint_requests_per_second,
            share * settings.stripe_search_requests_per_second,
        )
        client = stripe.StripeClient(
            key,
            stripe_version=settings.stripe_api_version,
            base_addresses=base,
            max_network_retries=0,  # retried in _call with the same key; every attempt takes a token
            http_client=RateLimitedHttpClient(limits, settings.stripe_timeout_s),
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

    # -- the one request path -------------------------------------------------------------------
    def _call(
        self,
        what: str,
        fn: Callable[[RequestOptions], T],
        *,
        idempotency_key: str | None = None,
        post: bool = False,
        recover: Callable[[], T | None] | None = None,
    ) -> T:
        """``recover`` finds the object a POST was creating or changing (None: not there), for
        when Stripe replays a saved 5xx under the key."""
        if post and not idempotency_key:
            idempotency_key = f"billing-{uuid.uuid4()}"  # still the same key on every retry
        options: RequestOptions = {"max_network_retries": 0}
        if idempotency_key:
            options["idempotency_key"] = idempotency_key
        attempt = rekeyed = 0
        while True:
            try:
                return fn(options)
            except stripe.StripeError as exc:
                attempt += 1
                if idempotency_key and replayed_failure(exc) and rekeyed < _MAX_REKEYS:
                    found = recover() if recover is not None else None
                    if found is not None:
                        logger.info("recovered after a replayed stripe error", extra={"stripe_call": what})
                        return found
                    rekeyed += 1
                    # Derived, not random: a crash and rerun here derives the same key again.
                    options["idempotency_key"] = f"{idempotency_key}:a{rekeyed}"
                    logger.warning(
                        "stripe replays a saved error; retrying under a derived key",
                        extra={"stripe_call": what, "idempotency_key": options["idempotency_key"]},
                    )
                    continue
                if not retryable(exc) or attempt >= self.retry.max_attempts:
                    log = logger.info if isinstance(exc, stripe.CardError) else logger.warning
                    log(
                        "stripe request failed",
                        extra={
                            "stripe_call": what,
                            "attempts": attempt,
                            "http_status": exc.http_status,
                            "stripe_code": exc.code,
                            "error_type": type(exc).__name__,
                            "stripe_request_id": exc.request_id,
                            "idempotency_key": idempotency_key,
                        },
                    )
                    raise
                delay = self.retry.delay(attempt - 1)
                logger.info(
                    "stripe request retried",
                    extra={
                        "stripe_call": what,
                        "attempt": attempt,
                        "http_status": exc.http_status,
                        "error_type": type(exc).__name__,
                        "delay_s": round(delay, 3),
                    },
                )
                self.retry.sleep(delay)

    # -- customers ------------------------------------------------------------------------------
    @staticmethod
    def customer_request(draft: CustomerDraft) -> StripeRequest:
        return StripeRequest("post", "/customers", _customer_params(draft), draft.idempotency_key)

    @staticmethod
    def find_customer_request(tenant_id: str) -> StripeRequest:
        params: CustomerSearchParams = {"query": f"metadata['tenant_id']:'{_quote(tenant_id)}'", "limit": 10}
        return StripeRequest("get", "/customers/search", params)

    def find_customer(self, tenant_id: str) -> str | None:
        """The customer whose metadata names this tenant (search API; eventually consistent, so a
        customer created seconds ago may be missing: creation is idempotent by key for that)."""
        params: CustomerSearchParams = {"query": f"metadata['tenant_id']:'{_quote(tenant_id)}'", "limit": 10}
        result = self._call("customers.search", lambda o: self.client.v1.customers.search(params, o))
        live = [c for c in result.data if not getattr(c, "deleted", False)]
        return min(live, key=lambda c: c.created).id if live else None

    def create_customer(self, draft: CustomerDraft) -> CreatedCustomer:
        params = _customer_params(draft)
        customer = self._call(
            "customers.create",
            lambda o: self.client.v1.customers.create(params, o),
            idempotency_key=draft.idempotency_key,
            post=True,
            recover=lambda: self._customer_by_email(draft),
        )
        return CreatedCustomer(customer.id, _replayed(customer))

    def _customer_by_email(self, draft: CustomerDraft) -> stripe.Customer | None:
        """The tenant's customer by listing (strongly consistent) the customers with its email."""
        if not draft.email:
            return None
        params: CustomerListParams = {"email": draft.email, "limit": 100}
        page = self._call("customers.list", lambda o: self.client.v1.customers.list(params, o))
        mine = [c for c in page.data if _metadata(c.metadata).get("tenant_id") == draft.tenant_id]
        return min(mine, key=lambda c: c.created) if mine else None

    def payment_method_on_file(self, customer_id: str) -> str | None:
        """The customer's invoices' default payment method (a retrieve: strongly consistent)."""
        customer = self._call(
            "customers.retrieve", lambda o: self.client.v1.customers.retrieve(customer_id, None, o)
        )
        settings = customer.invoice_settings
        default = settings.default_payment_method if settings is not None else None
        return _id(default) if default else None

    def set_default_payment_method(self, customer_id: str, payment_method_id: str) -> None:
        """Make the saved card the one invoices charge (idempotent: the same value twice is one state)."""
        params: CustomerUpdateParams = {"invoice_settings": {"default_payment_method": payment_method_id}}
        self._call(
            "customers.update",
            lambda o: self.client.v1.customers.update(customer_id, params, o),
            idempotency_key=f"default-pm:{customer_id}:{payment_method_id}",
            post=True,
        )

    def setup_intent_payment_method(self, setup_intent_id: str) -> tuple[str | None, str | None]:
        """(customer id, payment method id) of a setup intent, once it succeeded."""
        intent = self._call(
            "setup_intents.retrieve",
            lambda o: self.client.v1.setup_intents.retrieve(setup_intent_id, None, o),
        )
        if intent.status != "succeeded" or not intent.payment_method:
            return (_id(intent.customer) if intent.customer else None, None)
        return (_id(intent.customer) if intent.customer else None, _id(intent.payment_method))

    def create_setup_session(self, draft: SetupSessionDraft) -> HostedSession:
        params = _setup_session_params(draft, collect_address=self.automatic_tax)
        session = self._call(
            "checkout.sessions.create",
            lambda o: self.client.v1.checkout.sessions.create(params, o),
            idempotency_key=draft.idempotency_key,
            post=True,
        )
        return HostedSession(str(session.id), str(session.url or ""), session.expires_at)

    # -- the catalog (billing.catalog.product_sync.ProductDirectory) -----------------------------------------
    def list_products(self) -> list[StripeProduct]:
        """Every product carrying our ``metadata.billing_key`` (list: strongly consistent)."""
        found: list[StripeProduct] = []
        for product in self._each("products.list", self.client.v1.products.list, {"limit": 100}):
            key = _metadata(product.metadata).get("billing_key")
            if key:
                found.append(StripeProduct(str(product.id), key, str(product.name), product.description))
        return found

    def create_product(self, spec: ProductSpec) -> StripeProduct:
        params: ProductCreateParams = {
            "name": spec.name,
            "description": spec.description,
            "metadata": {"billing_key": spec.key},
        }
        product = self._call(
            "products.create",
            lambda o: self.client.v1.products.create(params, o),
            idempotency_key=f"catalog:{spec.key}:{_digest(spec.name, spec.description)}",
            post=True,
        )
        return StripeProduct(str(product.id), spec.key, str(product.name), product.description)

    def update_product(self, product_id: str, spec: ProductSpec) -> StripeProduct:
        params: ProductUpdateParams = {"name": spec.name, "description": spec.description}
        product = self._call(
            "products.update",
            lambda o: self.client.v1.products.update(product_id, params, o),
            idempotency_key=f"catalog-update:{product_id}:{_digest(spec.name, spec.description)}",
            post=True,
        )
        return StripeProduct(str(product.id), spec.key, str(product.name), product.description)

    def create_portal_session(self, customer_id: str, return_url: str, idempotency_key: str) -> HostedSession:
        params: PortalSessionCreateParams = {"customer": customer_id, "return_url": return_url}
        session = self._call(
            "billing_portal.sessions.create",
            lambda o: self.client.v1.billing_portal.sessions.create(params, o),
            idempotency_key=idempotency_key,
            post=True,
        )
        return HostedSession(str(session.id), str(session.url), None)

    def ensure_customer(self, draft: CustomerDraft) -> str:
        """Find the tenant's customer by metadata, else create it (idempotent by tenant id)."""
        return self.find_customer(draft.tenant_id) or self.create_customer(draft).id

    # -- invoices -------------------------------------------------------------------------------
    @staticmethod
    def invoice_request(draft: InvoiceDraft) -> StripeRequest:
        return StripeRequest("post", "/invoices", _invoice_params(draft), draft.idempotency_key)

    def create_draft_invoice(self, draft: InvoiceDraft) -> InvoiceSummary:
        params = _invoice_params(draft, self.days_until_due, self.automatic_tax)
        statement_id = draft.metadata.get("statement_id", "")
        invoice = self._call(
            "invoices.create",
            lambda o: self.client.v1.invoices.create(params, o),
            idempotency_key=draft.idempotency_key,
            post=True,
            recover=lambda: self._invoice_by_metadata(draft.customer_id, "statement_id", statement_id),
        )
        return _invoice_summary(invoice, replayed=_replayed(invoice))

    def _invoice_by_metadata(self, customer_id: str, key: str, value: str) -> stripe.Invoice | None:
        found = self._invoices_by_metadata(customer_id, key, value)
        return found[0] if found and value else None

    def send_invoice(self, invoice_id: str, *, idempotency_key: str) -> InvoiceSummary:
        """Stripe emails the customer the invoice with its hosted payment page (send_invoice)."""
        params: InvoiceSendInvoiceParams = {}
        invoice = self._call(
            "invoices.send",
            lambda o: self.client.v1.invoices.send_invoice(invoice_id, params, o),
            idempotency_key=idempotency_key,
            post=True,
        )
        return _invoice_summary(invoice)

    @staticmethod
    def item_request(draft: ItemDraft) -> StripeRequest:
        return StripeRequest("post", "/invoiceitems", _item_params(draft), draft.idempotency_key)

    def add_invoice_item(self, draft: ItemDraft) -> ItemSummary:
        params = _item_params(draft)
        line_id = draft.metadata.get("line_id")
        item = self._call(
            "invoiceitems.create",
            lambda o: self.client.v1.invoice_items.create(params, o),
            idempotency_key=draft.idempotency_key,
            post=True,
            recover=lambda: next(
                (
                    i
                    for i in self._items(draft.invoice_id)
                    if line_id and _metadata(i.metadata).get("line_id") == line_id
                ),
                None,
            ),
        )
        return _item_summary(item)

    @staticmethod
    def list_items_request(invoice_id: str) -> StripeRequest:
        return StripeRequest("get", "/invoiceitems", _list_items_params(invoice_id))

    def list_invoice_items(self, invoice_id: str) -> list[ItemSummary]:
        return [_item_summary(i) for i in self._items(invoice_id)]

    def _items(self, invoice_id: str) -> list[stripe.InvoiceItem]:
        params = _list_items_params(invoice_id)
        return list(self._each("invoiceitems.list", self.client.v1.invoice_items.list, params))

    @staticmethod
    def get_invoice_request(invoice_id: str) -> StripeRequest:
        return StripeRequest("get", f"/invoices/{invoice_id}", {})

    def get_invoice(self, invoice_id: str) -> InvoiceSummary:
        invoice = self._call(
            "invoices.retrieve", lambda o: self.client.v1.invoices.retrieve(invoice_id, None, o)
        )
        return _invoice_summary(invoice)

    @staticmethod
    def find_invoice_request(customer_id: str) -> StripeRequest:
        return StripeRequest("get", "/invoices", _list_invoices_params(customer_id))

    def find_invoices(self, customer_id: str, metadata_key: str, value: str) -> list[InvoiceSummary]:
        """The customer's non-void invoices whose metadata[key] == value, newest first. Lists by
        customer (strongly consistent, unlike search), so it also finds one created a moment ago."""
        return [_invoice_summary(i) for i in self._invoices_by_metadata(customer_id, metadata_key, value)]

    def _invoices_by_metadata(self, customer_id: str, metadata_key: str, value: str) -> list[stripe.Invoice]:
        invoices = self._each(
            "invoices.list", self.client.v1.invoices.list, _list_invoices_params(customer_id)
        )
        return [
            i for i in invoices if _metadata(i.metadata).get(metadata_key) == value and i.status != "void"
        ]

    # -- balance credits (statements below zero) ------------------------------------------------
    @staticmethod
    def balance_credit_request(draft: BalanceCreditDraft) -> StripeRequest:
        return StripeRequest(
            "post",
            f"/customers/{draft.customer_id}/balance_transactions",
            _credit_params(draft),
            draft.idempotency_key,
        )

    @staticmethod
    def find_balance_credit_request(customer_id: str) -> StripeRequest:
        return StripeRequest("get", f"/customers/{customer_id}/balance_transactions", {"limit": 100})

    def credit_balance(self, draft: BalanceCreditDraft) -> str:
        """A negative customer balance transaction (a credit Stripe applies to the next invoices)."""
        params = _credit_params(draft)
        statement_id = draft.metadata.get("statement_id", "")
        txn = self._call(
            "customers.balance_transactions.create",
            lambda o: self.client.v1.customers.balance_transactions.create(draft.customer_id, params, o),
            idempotency_key=draft.idempotency_key,
            post=True,
            recover=lambda: self._balance_credit(draft.customer_id, "statement_id", statement_id),
        )
        return txn.id

    def find_balance_credit(self, customer_id: str, metadata_key: str, value: str) -> str | None:
        """Lists the customer's balance transactions (strongly consistent), newest first."""
        found = self._balance_credit(customer_id, metadata_key, value)
        return found.id if found is not None else None

    def _balance_credit(
        self, customer_id: str, metadata_key: str, value: str
    ) -> stripe.CustomerBalanceTransaction | None:
        lister = functools.partial(self.client.v1.customers.balance_transactions.list, customer_id)
        for txn in self._each("customers.balance_transactions.list", lister, {"limit": 100}):
            if _metadata(txn.metadata).get(metadata_key) == value:
                return txn
        return None

    def _each(
        self,
        what: str,
        lister: Callable[[Any, RequestOptions], stripe.ListObject[Listed]],
        params: Mapping[str, Any],
    ) -> Iterator[Listed]:
        """Every object of a Stripe list, page after page (``starting_after`` the last one seen).
        Lists are strongly consistent, unlike search."""
        query = dict(params)
        while True:
            page = self._call(what, lambda o: lister(dict(query), o))  # noqa: B023 - called at once
            yield from page.data
            if not page.has_more or not page.data:
                return
            query["starting_after"] = page.data[-1]["id"]  # every listed object has one

    @staticmethod
    def finalize_request(invoice_id: str, idempotency_key: str) -> StripeRequest:
        return StripeRequest("post", f"/invoices/{invoice_id}/finalize", _finalize_params(), idempotency_key)

    def finalize_invoice(self, invoice_id: str, *, idempotency_key: str) -> InvoiceSummary:
        params = _finalize_params()
        invoice = self._call(
            "invoices.finalize",
            lambda o: self.client.v1.invoices.finalize_invoice(invoice_id, params, o),
            idempotency_key=idempotency_key,
            post=True,
            recover=lambda: self._invoice_unless(invoice_id, "draft"),
        )
        return _invoice_summary(invoice)

    @staticmethod
    def pay_request(invoice_id: str, idempotency_key: str) -> StripeRequest:
        return StripeRequest("post", f"/invoices/{invoice_id}/pay", _pay_params(), idempotency_key)

    def pay_invoice(self, invoice_id: str, *, idempotency_key: str) -> PaymentAttempt:
        """Charge the customer's saved payment method once. Declines come back as a value; so does a
        request Stripe refuses while the invoice stays open (e.g. no payment method on file), since
        the dunning schedule retries those too. Anything else raises."""
        params = _pay_params()
        try:
            invoice = self._call(
                "invoices.pay",
                lambda o: self.client.v1.invoices.pay(invoice_id, params, o),
                idempotency_key=idempotency_key,
                post=True,
                recover=lambda: self._invoice_unless(invoice_id, "open"),
            )
        except stripe.CardError as exc:
            status = self._status_after_failure(invoice_id)
            return PaymentAttempt(False, status, _decline_code(exc), exc.user_message or str(exc))
        except stripe.InvalidRequestError as exc:
            status = self._status_after_failure(invoice_id)
            if status == "paid":
                return PaymentAttempt(True, status)
            if status == "open":
                return PaymentAttempt(
                    False, status, exc.code or "invalid_request", exc.user_message or str(exc)
                )
            raise
        summary = _invoice_summary(invoice)
        return PaymentAttempt(summary.status == "paid", summary.status)

    def _invoice_unless(self, invoice_id: str, status: str) -> stripe.Invoice | None:
        """The invoice when it has left ``status`` (the replayed call's work is done), else None."""
        invoice = self._call(
            "invoices.retrieve", lambda o: self.client.v1.invoices.retrieve(invoice_id, None, o)
        )
        return invoice if invoice.status != status else None

    def _status_after_failure(self, invoice_id: str) -> str:
        return self.get_invoice(invoice_id).status


# ------------------------------------------------------------------------------------ parameters
def _customer_params(draft: CustomerDraft) -> CustomerCreateParams:
    params: CustomerCreateParams = {"metadata": {"tenant_id": draft.tenant_id}}
    if draft.name:
        params["name"] = draft.name
    if draft.email:
        params["email"] = draft.email
    if draft.test_clock:
        params["test_clock"] = draft.test_clock
    return params


def _invoice_params(
    draft: InvoiceDraft, days_until_due: int = 14, automatic_tax: bool = False
) -> InvoiceCreateParams:
    params: InvoiceCreateParams = {
        "customer": draft.customer_id,
        "currency": draft.currency,
        "collection_method": draft.collection_method,
        "auto_advance": False,  # Stripe never finalizes, charges or retries on its own
        "pending_invoice_items_behavior": "exclude",
        "description": draft.description[:_MAX_DESCRIPTION],
        "metadata": dict(draft.metadata),
    }
    if draft.collection_method == "send_invoice":
        params["days_until_due"] = days_until_due  # Stripe's due date, shown on the hosted page
    if automatic_tax:
        params["automatic_tax"] = {"enabled": True}  # Stripe adds tax on top of our lines
    return params


def _setup_session_params(draft: SetupSessionDraft, *, collect_address: bool) -> SessionCreateParams:
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
    if collect_address:  # Stripe Tax needs the customer's address
        params["billing_address_collection"] = "required"
        params["customer_update"] = {"address": "auto", "name": "auto"}
    return params


def _item_params(draft: ItemDraft) -> InvoiceItemCreateParams:
    params: InvoiceItemCreateParams = {
        "customer": draft.customer_id,
        "invoice": draft.invoice_id,
        "currency": draft.currency,
        "description": draft.description[:_MAX_DESCRIPTION],
        "period": {
            "start": int(draft.period_start.timestamp()),
            # Stripe's period end is inclusive; ours is exclusive.
            "end": max(int(draft.period_start.timestamp()), int(draft.period_end.timestamp()) - 1),
        },
        "metadata": dict(draft.metadata),
    }
    if draft.product_id and draft.amount >= 0:
        # The current API has no `product` on invoice items: a product is named through an inline
        # one-off price. quantity 1 x unit_amount keeps the amount exactly the line's cents.
        price_data: InvoiceItemCreateParamsPriceData = {
            "currency": draft.currency,
            "product": draft.product_id,
            "unit_amount": draft.amount,
        }
        params["price_data"] = price_data
        params["quantity"] = 1
    else:
        params["amount"] = draft.amount
    return params


def _list_items_params(invoice_id: str) -> InvoiceItemListParams:
    """The first page's parameters (``_each`` adds ``starting_after`` for the next ones)."""
    return {"invoice": invoice_id, "limit": 100}


def _list_invoices_params(customer_id: str) -> InvoiceListParams:
    """The first page's parameters (``_each`` adds ``starting_after`` for the next ones)."""
    return {"customer": customer_id, "limit": 100}


def _credit_params(draft: BalanceCreditDraft) -> CustomerBalanceTransactionCreateParams:
    return {
        "amount": -draft.amount,  # negative: a credit to the customer
        "currency": draft.currency,
        "description": draft.description[:_MAX_DESCRIPTION],
        "metadata": dict(draft.metadata),
    }


def _finalize_params() -> InvoiceFinalizeInvoiceParams:
    return {"auto_advance": False}


def _pay_params() -> InvoicePayParams:
    return {"off_session": True}


# ------------------------------------------------------------------------------------ helpers
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


def _decline_code(exc: stripe.CardError) -> str | None:
    error = exc.error
    decline = getattr(error, "decline_code", None) if error is not None else None
    return str(decline) if decline else exc.code


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _metadata(value: Any) -> dict[str, str]:
    if not value:
        return {}
    plain: Mapping[str, Any] = value.to_dict() if hasattr(value, "to_dict") else value
    return {str(k): str(v) for k, v in plain.items()}


def _id(value: Any) -> str:
    return value if isinstance(value, str) else str(getattr(value, "id", ""))


def _replayed(obj: stripe.StripeObject) -> bool:
    response = getattr(obj, "last_response", None)
    headers = getattr(response, "headers", None) or {}
    return any(k.lower() == "idempotent-replayed" and str(v).lower() == "true" for k, v in headers.items())


def _invoice_summary(invoice: stripe.Invoice, *, replayed: bool = False) -> InvoiceSummary:
    return InvoiceSummary(
        id=str(invoice.id),
        customer_id=_id(invoice.customer),
        status=str(invoice.status or ""),
        total=int(invoice.total),
        amount_due=int(invoice.amount_due),
        amount_paid=int(invoice.amount_paid),
        currency=str(invoice.currency),
        metadata=_metadata(invoice.metadata),
        number=invoice.number,
        hosted_invoice_url=invoice.hosted_invoice_url,
        auto_advance=invoice.auto_advance,
        collection_method=str(invoice.collection_method or "charge_automatically"),
        total_excluding_tax=int(
            invoice.total_excluding_tax if invoice.total_excluding_tax is not None else invoice.total
        ),
        replayed=replayed,
    )


def _item_summary(item: stripe.InvoiceItem) -> ItemSummary:
    invoice = item.invoice
    return ItemSummary(
        id=str(item.id),
        invoice_id=_id(invoice) if invoice else None,
        amount=int(item.amount),
        metadata=_metadata(item.metadata),
    )
