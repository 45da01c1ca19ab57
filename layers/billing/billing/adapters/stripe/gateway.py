"""Stripe adapter: the only module that imports ``stripe``.

Uses the official SDK's ``StripeClient`` (typed request parameters generated from Stripe's OpenAPI
spec; ``make typecheck`` runs mypy over this file so a wrong parameter fails the build) with the API
version pinned by ``Settings.stripe_api_version``. The secret key comes from Secrets Manager through
Powertools Parameters (cached) and is never logged.

Every operation is first a ``StripeRequest`` (method, path, parameters, idempotency key) built by
one ``*_request`` method; ``--dry-run`` renders it and the call sends that same object through the
SDK's raw request, so what the plan shows is what Stripe receives.

Every request goes through one path (``_send``):
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

import hashlib
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote_plus, unquote, urlencode

import stripe
from stripe._encode import _api_encode

from billing.adapters.stripe.http import (
    RATE_HEADROOM,
    RateLimitedHttpClient,
    RetryPolicy,
    StripeRateLimits,
    endpoint_of,
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
        CustomerBalanceTransactionListParams,
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
        ProductListParams,
        ProductUpdateParams,
    )
    from stripe.params.billing_portal import SessionCreateParams as PortalSessionCreateParams
    from stripe.params.checkout import SessionCreateParams

    from billing.runtime.settings import Settings

Answer = TypeVar("Answer", bound=stripe.StripeObject)

_MAX_REKEYS = 2  # new keys tried after a replayed 5xx before the call fails

# Stripe limits on metadata values and descriptions.
_MAX_DESCRIPTION = 500


@dataclass(frozen=True)
class StripeRequest:
    """One request exactly as the SDK sends it: what ``--dry-run`` prints and what a call sends are
    the same object, so the two cannot differ."""

    method: str  # "get" or "post", as the SDK spells them
    path: str  # from /v1 on, ids quoted (``segment``)
    params: Mapping[str, Any]
    idempotency_key: str | None = None

    def form(self) -> str:
        """The parameters form-encoded as the SDK encodes them (query string or body)."""
        return urlencode(list(_api_encode(dict(self.params)))).replace("%5B", "[").replace("%5D", "]")

    def after(self, last_id: str) -> StripeRequest:
        """The next page of a list request."""
        return replace(self, params={**self.params, "starting_after": last_id})

    def render(self) -> str:
        # The path unquoted: the plan's placeholders for ids not known yet read as {invoice_id}.
        key = f"  Idempotency-Key: {self.idempotency_key}" if self.idempotency_key else ""
        return f"{self.method.upper()} {unquote(self.path)}{key}\n    {self.form()}"


def segment(value: str) -> str:
    """An id as one path segment, quoted as the SDK quotes the ids of its typed calls."""
    return quote_plus(value)


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
            max_network_retries=0,  # retried in _send with the same key; every attempt takes a token
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

    @classmethod
    def planner(cls, settings: Settings) -> StripeGateway:
        """A gateway that only describes requests (``--dry-run``): built without the secret key, so
        the SDK refuses to send anything through it, with the account's invoice terms from settings."""
        return cls.from_settings(settings, api_key="")

    # -- the one request path -------------------------------------------------------------------
    def _send(
        self,
        request: StripeRequest,
        returns: type[Answer],
        *,
        recover: Callable[[], Answer | None] | None = None,
    ) -> Answer:
        """Sends ``request`` exactly as described and checks Stripe answered a ``returns``.

        ``recover`` finds the object a POST was creating or changing (None: not there), for when
        Stripe replays a saved 5xx under the key."""
        what = endpoint_of(request.method, request.path)
        idempotency_key = request.idempotency_key
        if request.method == "post" and not idempotency_key:
            idempotency_key = f"billing-{uuid.uuid4()}"  # still the same key on every retry
        sent_key = idempotency_key
        attempt = rekeyed = 0
        while True:
            try:
                return self._execute(request, sent_key, returns)
            except stripe.StripeError as exc:
                attempt += 1
                if idempotency_key and replayed_failure(exc) and rekeyed < _MAX_REKEYS:
                    found = recover() if recover is not None else None
                    if found is not None:
                        logger.info("recovered after a replayed stripe error", extra={"stripe_call": what})
                        return found
                    rekeyed += 1
                    # Derived, not random: a crash and rerun here derives the same key again.
                    sent_key = f"{idempotency_key}:a{rekeyed}"
                    logger.warning(
                        "stripe replays a saved error; retrying under a derived key",
                        extra={"stripe_call": what, "idempotency_key": sent_key},
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

    def _execute(self, request: StripeRequest, idempotency_key: str | None, returns: type[Answer]) -> Answer:
        """One attempt: the SDK's raw request (its encoding, headers, errors) of exactly
        ``request``; its retries are off so that every attempt passes ``_send`` and the limiter."""
        options: RequestOptions = {"max_network_retries": 0}
        if idempotency_key:
            options["idempotency_key"] = idempotency_key
        # raw_request takes the request options and the params as one set of keyword arguments;
        # no Stripe parameter we send is named like an option.
        response = self.client.raw_request(request.method, request.path, **request.params, **options)
        answer = self.client.deserialize(response, dict(request.params), api_mode="V1")
        if not isinstance(answer, returns):
            raise TypeError(f"{request.method.upper()} {request.path} answered {type(answer).__name__}")
        return answer

    def _each(self, request: StripeRequest, returns: type[Answer]) -> Iterator[Answer]:
        """Every object of a Stripe list, page after page (``starting_after`` the last one seen).
        Lists are strongly consistent, unlike search."""
        while True:
            page = self._send(request, stripe.ListObject)
            for listed in page.data:
                if not isinstance(listed, returns):
                    raise TypeError(f"GET {request.path} listed {type(listed).__name__}")
                yield listed
            if not page.has_more or not page.data:
                return
            request = request.after(str(page.data[-1]["id"]))  # every listed object has one

    # -- customers ------------------------------------------------------------------------------
    def find_customer_request(self, tenant_id: str) -> StripeRequest:
        params: CustomerSearchParams = {"query": f"metadata['tenant_id']:'{_quote(tenant_id)}'", "limit": 10}
        return StripeRequest("get", "/v1/customers/search", params)

    def customer_request(self, draft: CustomerDraft) -> StripeRequest:
        params: CustomerCreateParams = {"metadata": {"tenant_id": draft.tenant_id}}
        if draft.name:
            params["name"] = draft.name
        if draft.email:
            params["email"] = draft.email
        if draft.test_clock:
            params["test_clock"] = draft.test_clock
        return StripeRequest("post", "/v1/customers", params, draft.idempotency_key)

    def customers_by_email_request(self, email: str) -> StripeRequest:
        params: CustomerListParams = {"email": email, "limit": 100}
        return StripeRequest("get", "/v1/customers", params)

    def retrieve_customer_request(self, customer_id: str) -> StripeRequest:
        return StripeRequest("get", f"/v1/customers/{segment(customer_id)}", {})

    def default_payment_method_request(self, customer_id: str, payment_method_id: str) -> StripeRequest:
        params: CustomerUpdateParams = {"invoice_settings": {"default_payment_method": payment_method_id}}
        key = f"default-pm:{customer_id}:{payment_method_id}"
        return StripeRequest("post", f"/v1/customers/{segment(customer_id)}", params, key)

    def find_customer(self, tenant_id: str) -> str | None:
        """The customer whose metadata names this tenant (search API; eventually consistent, so a
        customer created seconds ago may be missing: creation is idempotent by key for that)."""
        result = self._send(self.find_customer_request(tenant_id), stripe.SearchResultObject)
        live = [c for c in result.data if not getattr(c, "deleted", False)]
        return min(live, key=lambda c: c.created).id if live else None

    def create_customer(self, draft: CustomerDraft) -> CreatedCustomer:
        customer = self._send(
            self.customer_request(draft), stripe.Customer, recover=lambda: self._customer_by_email(draft)
        )
        return CreatedCustomer(customer.id, _replayed(customer))

    def _customer_by_email(self, draft: CustomerDraft) -> stripe.Customer | None:
        """The tenant's customer by listing (strongly consistent) the customers with its email."""
        if not draft.email:
            return None
        page = self._send(self.customers_by_email_request(draft.email), stripe.ListObject)
        mine = [c for c in page.data if _metadata(c.metadata).get("tenant_id") == draft.tenant_id]
        return min(mine, key=lambda c: c.created) if mine else None

    def payment_method_on_file(self, customer_id: str) -> str | None:
        """The customer's invoices' default payment method (a retrieve: strongly consistent)."""
        customer = self._send(self.retrieve_customer_request(customer_id), stripe.Customer)
        settings = customer.invoice_settings
        default = settings.default_payment_method if settings is not None else None
        return _id(default) if default else None

    def set_default_payment_method(self, customer_id: str, payment_method_id: str) -> None:
        """Make the saved card the one invoices charge (idempotent: the same value twice is one state)."""
        self._send(self.default_payment_method_request(customer_id, payment_method_id), stripe.Customer)

    def ensure_customer(self, draft: CustomerDraft) -> str:
        """Find the tenant's customer by metadata, else create it (idempotent by tenant id)."""
        return self.find_customer(draft.tenant_id) or self.create_customer(draft).id

    # -- hosted sessions --------------------------------------------------------------------------
    def setup_intent_request(self, setup_intent_id: str) -> StripeRequest:
        return StripeRequest("get", f"/v1/setup_intents/{segment(setup_intent_id)}", {})

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

    def portal_session_request(
        self, customer_id: str, return_url: str, idempotency_key: str
    ) -> StripeRequest:
        params: PortalSessionCreateParams = {"customer": customer_id, "return_url": return_url}
        return StripeRequest("post", "/v1/billing_portal/sessions", params, idempotency_key)

    def setup_intent_payment_method(self, setup_intent_id: str) -> tuple[str | None, str | None]:
        """(customer id, payment method id) of a setup intent, once it succeeded."""
        intent = self._send(self.setup_intent_request(setup_intent_id), stripe.SetupIntent)
        if intent.status != "succeeded" or not intent.payment_method:
            return (_id(intent.customer) if intent.customer else None, None)
        return (_id(intent.customer) if intent.customer else None, _id(intent.payment_method))

    def create_setup_session(self, draft: SetupSessionDraft) -> HostedSession:
        session = self._send(self.setup_session_request(draft), stripe.checkout.Session)
        return HostedSession(str(session.id), str(session.url or ""), session.expires_at)

    def create_portal_session(self, customer_id: str, return_url: str, idempotency_key: str) -> HostedSession:
        request = self.portal_session_request(customer_id, return_url, idempotency_key)
        session = self._send(request, stripe.billing_portal.Session)
        return HostedSession(str(session.id), str(session.url), None)

    # -- the catalog (billing.catalog.product_sync.ProductDirectory) -----------------------------
    def list_products_request(self) -> StripeRequest:
        params: ProductListParams = {"limit": 100}
        return StripeRequest("get", "/v1/products", params)

    def product_request(self, spec: ProductSpec) -> StripeRequest:
        params: ProductCreateParams = {
            "name": spec.name,
            "description": spec.description,
            "metadata": {"billing_key": spec.key},
        }
        key = f"catalog:{spec.key}:{_digest(spec.name, spec.description)}"
        return StripeRequest("post", "/v1/products", params, key)

    def product_update_request(self, product_id: str, spec: ProductSpec) -> StripeRequest:
        params: ProductUpdateParams = {"name": spec.name, "description": spec.description}
        key = f"catalog-update:{product_id}:{_digest(spec.name, spec.description)}"
        return StripeRequest("post", f"/v1/products/{segment(product_id)}", params, key)

    def list_products(self) -> list[StripeProduct]:
        """Every product carrying our ``metadata.billing_key`` (list: strongly consistent)."""
        found: list[StripeProduct] = []
        for product in self._each(self.list_products_request(), stripe.Product):
            key = _metadata(product.metadata).get("billing_key")
            if key:
                found.append(StripeProduct(str(product.id), key, str(product.name), product.description))
        return found

    def create_product(self, spec: ProductSpec) -> StripeProduct:
        product = self._send(self.product_request(spec), stripe.Product)
        return StripeProduct(str(product.id), spec.key, str(product.name), product.description)

    def update_product(self, product_id: str, spec: ProductSpec) -> StripeProduct:
        product = self._send(self.product_update_request(product_id, spec), stripe.Product)
        return StripeProduct(str(product.id), spec.key, str(product.name), product.description)

    # -- invoices -------------------------------------------------------------------------------
    def invoice_request(self, draft: InvoiceDraft) -> StripeRequest:
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
            params["days_until_due"] = self.days_until_due  # Stripe's due date, shown on the hosted page
        if self.automatic_tax:
            params["automatic_tax"] = {"enabled": True}  # Stripe adds tax on top of our lines
        return StripeRequest("post", "/v1/invoices", params, draft.idempotency_key)

    def get_invoice_request(self, invoice_id: str) -> StripeRequest:
        return StripeRequest("get", f"/v1/invoices/{segment(invoice_id)}", {})

    def find_invoice_request(self, customer_id: str) -> StripeRequest:
        """The first page of the customer's invoices (``_each`` asks for the next ones)."""
        params: InvoiceListParams = {"customer": customer_id, "limit": 100}
        return StripeRequest("get", "/v1/invoices", params)

    def finalize_request(self, invoice_id: str, idempotency_key: str) -> StripeRequest:
        params: InvoiceFinalizeInvoiceParams = {"auto_advance": False}
        return StripeRequest("post", f"/v1/invoices/{segment(invoice_id)}/finalize", params, idempotency_key)

    def send_request(self, invoice_id: str, idempotency_key: str) -> StripeRequest:
        params: InvoiceSendInvoiceParams = {}
        return StripeRequest("post", f"/v1/invoices/{segment(invoice_id)}/send", params, idempotency_key)

    def pay_request(self, invoice_id: str, idempotency_key: str) -> StripeRequest:
        params: InvoicePayParams = {"off_session": True}
        return StripeRequest("post", f"/v1/invoices/{segment(invoice_id)}/pay", params, idempotency_key)

    def create_draft_invoice(self, draft: InvoiceDraft) -> InvoiceSummary:
        statement_id = draft.metadata.get("statement_id", "")
        invoice = self._send(
            self.invoice_request(draft),
            stripe.Invoice,
            recover=lambda: self._invoice_by_metadata(draft.customer_id, "statement_id", statement_id),
        )
        return _invoice_summary(invoice, replayed=_replayed(invoice))

    def _invoice_by_metadata(self, customer_id: str, key: str, value: str) -> stripe.Invoice | None:
        found = self._invoices_by_metadata(customer_id, key, value)
        return found[0] if found and value else None

    def send_invoice(self, invoice_id: str, *, idempotency_key: str) -> InvoiceSummary:
        """Stripe emails the customer the invoice with its hosted payment page (send_invoice)."""
        invoice = self._send(self.send_request(invoice_id, idempotency_key), stripe.Invoice)
        return _invoice_summary(invoice)

    def get_invoice(self, invoice_id: str) -> InvoiceSummary:
        return _invoice_summary(self._send(self.get_invoice_request(invoice_id), stripe.Invoice))

    def find_invoices(self, customer_id: str, metadata_key: str, value: str) -> list[InvoiceSummary]:
        """The customer's non-void invoices whose metadata[key] == value, newest first. Lists by
        customer (strongly consistent, unlike search), so it also finds one created a moment ago."""
        return [_invoice_summary(i) for i in self._invoices_by_metadata(customer_id, metadata_key, value)]

    def _invoices_by_metadata(self, customer_id: str, metadata_key: str, value: str) -> list[stripe.Invoice]:
        invoices = self._each(self.find_invoice_request(customer_id), stripe.Invoice)
        return [
            i for i in invoices if _metadata(i.metadata).get(metadata_key) == value and i.status != "void"
        ]

    def finalize_invoice(self, invoice_id: str, *, idempotency_key: str) -> InvoiceSummary:
        invoice = self._send(
            self.finalize_request(invoice_id, idempotency_key),
            stripe.Invoice,
            recover=lambda: self._invoice_unless(invoice_id, "draft"),
        )
        return _invoice_summary(invoice)

    def pay_invoice(self, invoice_id: str, *, idempotency_key: str) -> PaymentAttempt:
        """Charge the customer's saved payment method once. Declines come back as a value; so does a
        request Stripe refuses while the invoice stays open (e.g. no payment method on file), since
        the dunning schedule retries those too. Anything else raises."""
        try:
            invoice = self._send(
                self.pay_request(invoice_id, idempotency_key),
                stripe.Invoice,
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
        invoice = self._send(self.get_invoice_request(invoice_id), stripe.Invoice)
        return invoice if invoice.status != status else None

    def _status_after_failure(self, invoice_id: str) -> str:
        return self.get_invoice(invoice_id).status

    # -- invoice items ----------------------------------------------------------------------------
    def item_request(self, draft: ItemDraft) -> StripeRequest:
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
        return StripeRequest("post", "/v1/invoiceitems", params, draft.idempotency_key)

    def list_items_request(self, invoice_id: str) -> StripeRequest:
        """The first page of the invoice's items (``_each`` asks for the next ones)."""
        params: InvoiceItemListParams = {"invoice": invoice_id, "limit": 100}
        return StripeRequest("get", "/v1/invoiceitems", params)

    def add_invoice_item(self, draft: ItemDraft) -> ItemSummary:
        line_id = draft.metadata.get("line_id")
        item = self._send(
            self.item_request(draft),
            stripe.InvoiceItem,
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

    def list_invoice_items(self, invoice_id: str) -> list[ItemSummary]:
        return [_item_summary(i) for i in self._items(invoice_id)]

    def _items(self, invoice_id: str) -> list[stripe.InvoiceItem]:
        return list(self._each(self.list_items_request(invoice_id), stripe.InvoiceItem))

    # -- balance credits (statements below zero) ------------------------------------------------
    def balance_credit_request(self, draft: BalanceCreditDraft) -> StripeRequest:
        params: CustomerBalanceTransactionCreateParams = {
            "amount": -draft.amount,  # negative: a credit to the customer
            "currency": draft.currency,
            "description": draft.description[:_MAX_DESCRIPTION],
            "metadata": dict(draft.metadata),
        }
        path = f"/v1/customers/{segment(draft.customer_id)}/balance_transactions"
        return StripeRequest("post", path, params, draft.idempotency_key)

    def find_balance_credit_request(self, customer_id: str) -> StripeRequest:
        """The first page of the customer's balance transactions (``_each`` asks for the next ones)."""
        params: CustomerBalanceTransactionListParams = {"limit": 100}
        return StripeRequest("get", f"/v1/customers/{segment(customer_id)}/balance_transactions", params)

    def credit_balance(self, draft: BalanceCreditDraft) -> str:
        """A negative customer balance transaction (a credit Stripe applies to the next invoices)."""
        statement_id = draft.metadata.get("statement_id", "")
        txn = self._send(
            self.balance_credit_request(draft),
            stripe.CustomerBalanceTransaction,
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
        request = self.find_balance_credit_request(customer_id)
        for txn in self._each(request, stripe.CustomerBalanceTransaction):
            if _metadata(txn.metadata).get(metadata_key) == value:
                return txn
        return None


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
