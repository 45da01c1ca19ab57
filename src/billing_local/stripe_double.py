"""A stateful Stripe test double, for tests and the demo only (never imported by a Lambda handler).

A real HTTP server on 127.0.0.1 that the official SDK talks to through ``api_base``, so the SDK's
own form encoding, headers and idempotency keys are exercised. It implements the slice of Stripe's
API the billing code uses: customers (create, retrieve, list, search), invoice items (create,
retrieve, list), invoices (create draft, retrieve, list, search, finalize, pay, void,
mark_uncollectible; statuses draft/open/paid/void/uncollectible).

- Every response is built from Stripe's own example objects (``stripe_fixtures.json``, copied from
  ``../shared/stripe/fixtures3.json``), changing only ids, amounts, statuses and timestamps.
- Idempotency like Stripe's: a POST with a key already seen replays the saved status and body
  (``Idempotent-Replayed: true``) when the parameters match and answers 400 ``idempotency_error``
  when they differ; a key still in flight answers 409. ``forget_idempotency_keys()`` models the
  24 h expiry. Faults injected before processing (429, 500, timeouts) save nothing, as at Stripe.
- Injectable faults: ``add_fault("rate_limit" | "server_error" | "timeout" | "lost_response", ...)``
  (``lost_response``: the request takes effect, then the client gets a 500, as when a response is
  lost), card declines per customer, tenant or payment method, and per-call latency.
- ``requests`` lists what was received (monotonic timestamps, for rate-cap tests); ``events`` holds
  the webhook events Stripe would send (``invoice.finalized``, ``invoice.paid``,
  ``invoice.payment_failed``, ...), built from the fixture ``event`` object with ``data.object``
  the invoice at that moment; ``sign(payload, secret)`` makes a ``Stripe-Signature`` header.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

FIXTURES_PATH = Path(__file__).resolve().with_name("stripe_fixtures.json")
FaultKind = Literal["rate_limit", "server_error", "timeout", "lost_response"]


def load_fixtures(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """Stripe's example objects: the project's copy, else the shared original beside the clone."""
    from billing_local.template import PROJECT_ROOT

    for candidate in (path, FIXTURES_PATH, PROJECT_ROOT.parent / "shared/stripe/fixtures3.json"):
        if candidate is not None and candidate.exists():
            resources: dict[str, dict[str, Any]] = json.loads(candidate.read_text())["resources"]
            return resources
    raise FileNotFoundError("Stripe fixtures not found (billing_local/stripe_fixtures.json)")


@dataclass
class Fault:
    kind: FaultKind
    method: str | None = None  # "POST" / "GET"; None = any
    path: str | None = None  # regex matched against the path, e.g. r"/finalize$"
    times: int = 1  # matching requests affected; -1 = until cleared
    after: int = 0  # let this many matching requests through first

    def matches(self, method: str, path: str) -> bool:
        return (
            self.times != 0
            and (self.method is None or self.method.upper() == method)
            and (self.path is None or re.search(self.path, path) is not None)
        )


@dataclass
class Decline:
    code: str = "card_declined"
    decline_code: str | None = "generic_decline"
    message: str = "Your card was declined."


@dataclass(frozen=True)
class RecordedRequest:
    at: float  # time.monotonic() when received
    method: str
    path: str
    params: dict[str, Any]
    idempotency_key: str | None
    stripe_version: str | None
    status: int = 0
    replayed: bool = False
    fault: str | None = None


class StripeApiError(Exception):
    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ):
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {
            "error": {
                k: v
                for k, v in {"type": type_, "message": message, "code": code, "param": param, **extra}.items()
                if v is not None
            }
        }
        self.headers = headers or {}


def _invalid(message: str, *, param: str | None = None, code: str | None = None) -> StripeApiError:
    return StripeApiError(400, "invalid_request_error", message, param=param, code=code)


def _missing(kind: str, obj_id: str, param: str = "id") -> StripeApiError:
    return StripeApiError(
        404, "invalid_request_error", f"No such {kind}: '{obj_id}'", code="resource_missing", param=param
    )


# ------------------------------------------------------------------------------------ the double
class StripeDouble:
    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        timeout_hang_s: float = 2.0,
        fixtures: Path | None = None,
        default_payment_method: str | None = "pm_card_visa",
    ):
        self.latency_s = latency_s
        self.timeout_hang_s = timeout_hang_s
        self.default_payment_method = default_payment_method
        self.fixtures = load_fixtures(fixtures)
        self._lock = threading.RLock()
        self._seq = itertools.count(1)
        self.customers: dict[str, dict[str, Any]] = {}
        self.invoice_items: dict[str, dict[str, Any]] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self._requests: list[RecordedRequest] = []
        self._idempotency: dict[str, tuple[str, int, dict[str, Any]]] = {}
        self._in_flight: set[str] = set()
        self._faults: list[Fault] = []
        self._declines: dict[str, Decline] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> StripeDouble:
        double = self

        class Handler(_Handler):
            stripe = double

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="stripe-double", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> StripeDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def api_base(self) -> str:
        assert self._server is not None, "start() the double first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- test controls --------------------------------------------------------------------------
    def add_fault(
        self,
        kind: FaultKind,
        *,
        method: str | None = None,
        path: str | None = None,
        times: int = 1,
        after: int = 0,
    ) -> Fault:
        fault = Fault(kind, method, path, times, after)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def decline(
        self,
        *,
        customer_id: str | None = None,
        tenant_id: str | None = None,
        payment_method: str | None = None,
        code: str = "card_declined",
        decline_code: str | None = "insufficient_funds",
        message: str = "Your card has insufficient funds.",
    ) -> None:
        """Make charges fail for a customer, a tenant (metadata tenant_id) or a payment method."""
        target = (
            f"cus:{customer_id}"
            if customer_id
            else f"tenant:{tenant_id}"
            if tenant_id
            else f"pm:{payment_method}"
        )
        with self._lock:
            self._declines[target] = Decline(code, decline_code, message)

    def clear_declines(self) -> None:
        with self._lock:
            self._declines.clear()

    def forget_idempotency_keys(self) -> None:
        """Keys expire at Stripe after 24 hours; this is that day passing."""
        with self._lock:
            self._idempotency.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def stats(self) -> dict[str, Any]:
        requests = self.requests
        times = [r.at for r in requests]
        return {
            "requests": len(requests),
            "invoices": len(self.invoices),
            "customers": len(self.customers),
            "max_in_1s": max_in_window(times, 1.0) if times else 0,
            "max_in_5s": max_in_window(times, 5.0) if times else 0,
            "span_s": (max(times) - min(times)) if times else 0.0,
            "statuses": {
                str(code): sum(1 for r in requests if r.status == code)
                for code in sorted({r.status for r in requests})
            },
        }

    def reset_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def invoices_for(
        self, tenant_id: str | None = None, *, include_void: bool = True
    ) -> list[dict[str, Any]]:
        with self._lock:
            found = [
                copy.deepcopy(i)
                for i in self.invoices.values()
                if (tenant_id is None or i["metadata"].get("tenant_id") == tenant_id)
                and (include_void or i["status"] != "void")
            ]
        return sorted(found, key=lambda i: (i["created"], i["id"]))

    def customer_for(self, tenant_id: str) -> dict[str, Any] | None:
        with self._lock:
            for customer in self.customers.values():
                if customer["metadata"].get("tenant_id") == tenant_id:
                    return copy.deepcopy(customer)
        return None

    def events_of(self, *types: str) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(e) for e in self.events if not types or e["type"] in types]

    @staticmethod
    def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
        """A ``Stripe-Signature`` header for ``payload`` (Stripe's v1 HMAC-SHA256 scheme)."""
        ts = int(time.time()) if timestamp is None else timestamp
        mac = hmac.new(secret.encode(), f"{ts}.{payload}".encode(), hashlib.sha256).hexdigest()
        return f"t={ts},v1={mac}"

    # -- request handling (called from the HTTP handler threads) --------------------------------
    def handle(
        self, method: str, path: str, params: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        """(status, body, headers), or None to drop the connection without answering."""
        key = headers.get("idempotency-key") if method == "POST" else None
        version = headers.get("stripe-version")
        received = time.monotonic()
        fault = self._take_fault(method, path)

        def record(status: int, *, replayed: bool = False) -> None:
            with self._lock:
                self._requests.append(
                    RecordedRequest(
                        received,
                        method,
                        path,
                        params,
                        key,
                        version,
                        status,
                        replayed,
                        fault.kind if fault else None,
                    )
                )

        if self.latency_s:
            time.sleep(self.latency_s)
        if fault is not None and fault.kind == "timeout":
            record(0)
            time.sleep(self.timeout_hang_s)
            return None
        if fault is not None and fault.kind == "rate_limit":
            record(429)
            err = StripeApiError(
                429, "invalid_request_error", "Too many requests hit the API too quickly.", code="rate_limit"
            )
            return err.status, err.body, {}
        if fault is not None and fault.kind == "server_error":
            record(500)
            err = StripeApiError(500, "api_error", "An unknown error occurred (injected).")
            return err.status, err.body, {}

        fingerprint = json.dumps([method, path, params], sort_keys=True)
        if key:
            with self._lock:
                saved = self._idempotency.get(key)
                if saved is None and key in self._in_flight:
                    record(409)
                    err = StripeApiError(
                        409,
                        "idempotency_error",
                        "There is currently another in-progress request using this Idempotent Key.",
                        code="idempotency_key_in_use",
                    )
                    return err.status, err.body, {}
                if saved is None:
                    self._in_flight.add(key)
            if saved is not None:
                if saved[0] != fingerprint:
                    record(400)
                    err = StripeApiError(
                        400,
                        "idempotency_error",
                        "Keys for idempotent requests can only be "
                        "used with the same parameters they were first used with.",
                    )
                    return err.status, err.body, {}
                if fault is not None and fault.kind == "lost_response":
                    record(500, replayed=True)
                    err = StripeApiError(
                        500, "api_error", "An unknown error occurred (injected after processing)."
                    )
                    return err.status, err.body, {}
                record(saved[1], replayed=True)
                return (
                    saved[1],
                    copy.deepcopy(saved[2]),
                    {"Idempotent-Replayed": "true", "Idempotency-Key": key},
                )
        try:
            try:
                status, body = 200, self._dispatch(method, path, params, key, version)
            except StripeApiError as exc:
                status, body = exc.status, exc.body
            if key:
                with self._lock:
                    self._idempotency[key] = (fingerprint, status, copy.deepcopy(body))
        finally:
            if key:
                with self._lock:
                    self._in_flight.discard(key)
        if fault is not None and fault.kind == "lost_response":
            record(500)
            err = StripeApiError(500, "api_error", "An unknown error occurred (injected after processing).")
            return err.status, err.body, {}
        record(status)
        return status, body, ({"Idempotency-Key": key} if key else {})

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    if fault.after > 0:
                        fault.after -= 1
                        continue
                    if fault.times > 0:
                        fault.times -= 1
                    return fault
        return None

    def _dispatch(
        self, method: str, path: str, params: dict[str, Any], key: str | None, version: str | None
    ) -> dict[str, Any]:
        for route_method, pattern, action in _ROUTES:
            if route_method == method:
                match = re.fullmatch(pattern, path)
                if match:
                    with self._lock:
                        answer: dict[str, Any] = action(
                            self, params, *match.groups(), request={"key": key, "version": version}
                        )
                        return answer
        raise StripeApiError(404, "invalid_request_error", f"Unrecognized request URL ({method}: {path}).")

    # -- object helpers -------------------------------------------------------------------------
    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._seq):06d}{secrets.token_hex(6)}"

    def _emit(self, type_: str, obj: dict[str, Any], request: dict[str, Any]) -> None:
        event = copy.deepcopy(self.fixtures["event"])
        event.update(
            {
                "id": self._new_id("evt"),
                "type": type_,
                "created": int(time.time()),
                "api_version": request.get("version"),
                "livemode": False,
                "pending_webhooks": 1,
                "data": {"object": copy.deepcopy(obj)},
                "request": {"id": self._new_id("req"), "idempotency_key": request.get("key")},
            }
        )
        self.events.append(event)

    def _customer(self, customer_id: str, param: str = "customer") -> dict[str, Any]:
        customer = self.customers.get(customer_id)
        if customer is None:
            raise _missing("customer", customer_id, param)
        return customer

    def _invoice(self, invoice_id: str) -> dict[str, Any]:
        invoice = self.invoices.get(invoice_id)
        if invoice is None:
            raise _missing("invoice", invoice_id)
        return invoice

    def _refresh(self, invoice: dict[str, Any]) -> dict[str, Any]:
        items = sorted(
            (i for i in self.invoice_items.values() if i["invoice"] == invoice["id"]),
            key=lambda i: (i["date"], i["id"]),
        )
        lines = []
        for item in items:
            line = copy.deepcopy(self.fixtures["line_item"])
            line.update(
                {
                    "id": f"il_{item['id'][3:]}",
                    "invoice": invoice["id"],
                    "amount": item["amount"],
                    "subtotal": item["amount"],
                    "currency": item["currency"],
                    "description": item["description"],
                    "metadata": copy.deepcopy(item["metadata"]),
                    "period": copy.deepcopy(item["period"]),
                    "quantity": item["quantity"],
                    "discountable": True,
                    "discount_amounts": [],
                    "discounts": [],
                    "pricing": copy.deepcopy(item["pricing"]),
                    "parent": {
                        "type": "invoice_item_details",
                        "subscription_item_details": None,
                        "invoice_item_details": {
                            "invoice_item": item["id"],
                            "proration": False,
                            "proration_details": {"credited_items": None},
                            "subscription": None,
                        },
                    },
                }
            )
            lines.append(line)
        total = sum(i["amount"] for i in items)
        paid = invoice["amount_paid"]
        invoice.update(
            {
                "lines": {
                    "object": "list",
                    "data": lines,
                    "has_more": False,
                    "total_count": len(lines),
                    "url": f"/v1/invoices/{invoice['id']}/lines",
                },
                "subtotal": total,
                "subtotal_excluding_tax": total,
                "total": total,
                "total_excluding_tax": total,
                "amount_due": max(total, 0),
                "amount_remaining": max(max(total, 0) - paid, 0),
            }
        )
        return invoice

    def _decline_for(self, customer: dict[str, Any], payment_method: str | None) -> Decline | None:
        for target in (
            f"pm:{payment_method}",
            f"cus:{customer['id']}",
            f"tenant:{customer['metadata'].get('tenant_id')}",
        ):
            if target in self._declines:
                return self._declines[target]
        return None

    # -- endpoints ------------------------------------------------------------------------------
    def create_customer(self, params: dict[str, Any], *, request: dict[str, Any]) -> dict[str, Any]:
        _only(
            params,
            {
                "name",
                "email",
                "metadata",
                "description",
                "test_clock",
                "payment_method",
                "invoice_settings",
                "expand",
            },
        )
        customer = copy.deepcopy(self.fixtures["customer"])
        customer_id = self._new_id("cus")
        payment_method = params.get("payment_method") or self.default_payment_method
        customer.update(
            {
                "id": customer_id,
                "created": int(time.time()),
                "name": params.get("name"),
                "email": params.get("email"),
                "description": params.get("description"),
                "metadata": _metadata(params.get("metadata")),
                "discount": None,
                "test_clock": params.get("test_clock"),
                "invoice_prefix": customer_id[-8:].upper().replace("_", "0"),
                "next_invoice_sequence": 1,
            }
        )
        customer["invoice_settings"]["default_payment_method"] = (params.get("invoice_settings") or {}).get(
            "default_payment_method"
        ) or payment_method
        self.customers[customer_id] = customer
        self._emit("customer.created", customer, request)
        return customer

    def get_customer(
        self, params: dict[str, Any], customer_id: str, *, request: dict[str, Any]
    ) -> dict[str, Any]:
        return self._customer(customer_id, "id")

    def list_customers(self, params: dict[str, Any], *, request: dict[str, Any]) -> dict[str, Any]:
        found = [
            c for c in self.customers.values() if not params.get("email") or c["email"] == params["email"]
        ]
        return _list(found, params, "/v1/customers")

    def search_customers(self, params: dict[str, Any], *, request: dict[str, Any]) -> dict[str, Any]:
        return _search(list(self.customers.values()), params, "/v1/customers/search")

    def create_item(self, params: dict[str, Any], *, request: dict[str, Any]) -> dict[str, Any]:
        _only(
            params,
            {
                "customer",
                "invoice",
                "currency",
                "amount",
                "description",
                "period",
                "metadata",
                "price_data",
                "quantity",
                "expand",
            },
        )
        if "customer" not in params:
            raise _invalid("Missing required param: customer.", param="customer")
        customer = self._customer(params["customer"])
        invoice = None
        if params.get("invoice"):
            invoice = self.invoices.get(params["invoice"])
            if invoice is None:
                raise _missing("invoice", params["invoice"], "invoice")
            if invoice["status"] != "draft":
                raise _invalid(
                    "You can only add invoice items to draft invoices.",
                    param="invoice",
                    code="invoice_not_editable",
                )
            if invoice["customer"] != customer["id"]:
                raise _invalid("The invoice belongs to another customer.", param="invoice")
        price_data = params.get("price_data")
        if price_data is not None and "amount" in params:
            raise _invalid(
                "You may only specify one of these parameters: amount, price_data.", param="amount"
            )
        quantity = _int(params.get("quantity", "1"), "quantity")
        if price_data is not None:
            for required in ("currency", "product"):
                if required not in price_data:
                    raise _invalid(
                        f"Missing required param: price_data[{required}].", param=f"price_data[{required}]"
                    )
            unit = _int(price_data.get("unit_amount", "x"), "price_data[unit_amount]")
            if unit < 0:
                raise _invalid(
                    "This value must be greater than or equal to 0.", param="price_data[unit_amount]"
                )
            amount, currency = unit * quantity, price_data["currency"]
            pricing: dict[str, Any] = {
                "type": "price_details",
                "unit_amount_decimal": str(unit),
                "price_details": {"price": self._new_id("price"), "product": price_data["product"]},
            }
        else:
            if "amount" not in params:
                raise _invalid("Missing required param: amount.", param="amount")
            amount, currency = _int(params["amount"], "amount"), params.get("currency")
            pricing = {"type": "price_details", "unit_amount_decimal": str(amount), "price_details": None}
        if not currency:
            raise _invalid("Missing required param: currency.", param="currency")
        if invoice is not None and currency != invoice["currency"]:
            raise _invalid("The currency of the invoice item must match the invoice.", param="currency")
        period = params.get("period") or {}
        now = int(time.time())
        start, end = (
            _int(period.get("start", now), "period[start]"),
            _int(period.get("end", now), "period[end]"),
        )
        if end < start:
            raise _invalid("The period end must be greater than or equal to its start.", param="period[end]")
        item = copy.deepcopy(self.fixtures["invoiceitem"])
        item.update(
            {
                "id": self._new_id("ii"),
                "amount": amount,
                "net_amount": amount,
                "currency": currency,
                "customer": customer["id"],
                "date": now,
                "description": params.get("description"),
                "invoice": invoice["id"] if invoice else None,
                "metadata": _metadata(params.get("metadata")),
                "period": {"start": start, "end": end},
                "quantity": quantity,
                "quantity_decimal": str(quantity),
                "proration": False,
                "pricing": pricing,
                "parent": None,
                "test_clock": customer.get("test_clock"),
            }
        )
        self.invoice_items[item["id"]] = item
        if invoice is not None:
            self._refresh(invoice)
        return item

    def get_item(self, params: dict[str, Any], item_id: str, *, request: dict[str, Any]) -> dict[str, Any]:
        item = self.invoice_items.get(item_id)
        if item is None:
            raise _missing("invoiceitem", item_id)
        return item

    def list_items(self, params: dict[str, Any], *, request: dict[str, Any]) -> dict[str, Any]:
        found = [
            i
            for i in self.invoice_items.values()
            if (not params.get("invoice") or i["invoice"] == params["invoice"])
            and (not params.get("customer") or i["customer"] == params["customer"])
        ]
        return _list(found, params, "/v1/invoiceitems", key="date")

    def create_invoice(self, params: dict[str, Any], *, request: dict[str, Any]) -> dict[str, Any]:
        _only(
            params,
            {
                "customer",
                "currency",
                "collection_method",
                "auto_advance",
                "description",
                "metadata",
                "pending_invoice_items_behavior",
                "days_until_due",
                "expand",
            },
        )
        if "customer" not in params:
            raise _invalid("Missing required param: customer.", param="customer")
        customer = self._customer(params["customer"])
        method = params.get("collection_method", "charge_automatically")
        if method not in ("charge_automatically", "send_invoice"):
            raise _invalid(f"Invalid collection_method: {method}", param="collection_method")
        behavior = params.get("pending_invoice_items_behavior", "exclude")
        if behavior not in ("exclude", "include"):
            raise _invalid("Invalid pending_invoice_items_behavior", param="pending_invoice_items_behavior")
        invoice = copy.deepcopy(self.fixtures["invoice"])
        now = int(time.time())
        invoice_id = self._new_id("in")
        invoice.update(
            {
                "id": invoice_id,
                "customer": customer["id"],
                "customer_email": customer.get("email"),
                "customer_name": customer.get("name"),
                "created": now,
                "effective_at": None,
                "due_date": None,
                "currency": params.get("currency") or customer.get("currency") or "usd",
                "collection_method": method,
                "auto_advance": _bool(params.get("auto_advance", "false"), "auto_advance"),
                "description": params.get("description"),
                "metadata": _metadata(params.get("metadata")),
                "status": "draft",
                "number": None,
                "attempt_count": 0,
                "attempted": False,
                "amount_paid": 0,
                "amount_overpaid": 0,
                "amount_shipping": 0,
                "shipping_cost": None,
                "shipping_details": None,
                "from_invoice": None,
                "parent": None,
                "last_finalization_error": None,
                "next_payment_attempt": None,
                "period_start": now,
                "period_end": now,
                "webhooks_delivered_at": None,
                "billing_reason": "manual",
                "hosted_invoice_url": None,
                "invoice_pdf": None,
                "test_clock": customer.get("test_clock"),
                "status_transitions": {
                    "finalized_at": None,
                    "marked_uncollectible_at": None,
                    "paid_at": None,
                    "voided_at": None,
                },
            }
        )
        self.invoices[invoice_id] = invoice
        if behavior == "include":
            for item in self.invoice_items.values():
                if item["customer"] == customer["id"] and item["invoice"] is None:
                    item["invoice"] = invoice_id
        self._refresh(invoice)
        self._emit("invoice.created", invoice, request)
        return invoice

    def get_invoice(
        self, params: dict[str, Any], invoice_id: str, *, request: dict[str, Any]
    ) -> dict[str, Any]:
        return self._invoice(invoice_id)

    def list_invoices(self, params: dict[str, Any], *, request: dict[str, Any]) -> dict[str, Any]:
        found = [
            i
            for i in self.invoices.values()
            if (not params.get("customer") or i["customer"] == params["customer"])
            and (not params.get("status") or i["status"] == params["status"])
        ]
        return _list(found, params, "/v1/invoices")

    def search_invoices(self, params: dict[str, Any], *, request: dict[str, Any]) -> dict[str, Any]:
        return _search(list(self.invoices.values()), params, "/v1/invoices/search")

    def finalize(self, params: dict[str, Any], invoice_id: str, *, request: dict[str, Any]) -> dict[str, Any]:
        _only(params, {"auto_advance", "expand"})
        invoice = self._invoice(invoice_id)
        if invoice["status"] != "draft":
            raise _invalid(
                "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
                code="invoice_not_editable",
            )
        if "auto_advance" in params:
            invoice["auto_advance"] = _bool(params["auto_advance"], "auto_advance")
        customer = self.customers[invoice["customer"]]
        now = int(time.time())
        invoice.update(
            {
                "status": "open",
                "number": f"{customer['invoice_prefix']}-{customer['next_invoice_sequence']:04d}",
                "effective_at": now,
                "hosted_invoice_url": f"https://invoice.stripe.com/i/test_{invoice_id}",
                "invoice_pdf": f"https://pay.stripe.com/invoice/test_{invoice_id}/pdf",
            }
        )
        invoice["status_transitions"]["finalized_at"] = now
        customer["next_invoice_sequence"] += 1
        self._emit("invoice.finalized", invoice, request)
        if invoice["amount_due"] == 0:  # Stripe marks zero-due invoices paid on finalization
            self._mark_paid(invoice, now, request)
        return invoice

    def _mark_paid(self, invoice: dict[str, Any], now: int, request: dict[str, Any]) -> None:
        invoice.update(
            {
                "status": "paid",
                "amount_paid": invoice["amount_due"],
                "amount_remaining": 0,
                "next_payment_attempt": None,
            }
        )
        invoice["status_transitions"]["paid_at"] = now
        self._emit("invoice.paid", invoice, request)
        self._emit("invoice.payment_succeeded", invoice, request)

    def pay(self, params: dict[str, Any], invoice_id: str, *, request: dict[str, Any]) -> dict[str, Any]:
        _only(params, {"off_session", "payment_method", "paid_out_of_band", "forgive", "expand"})
        invoice = self._invoice(invoice_id)
        if invoice["status"] == "paid":
            raise _invalid("Invoice is already paid")
        if invoice["status"] != "open":
            raise _invalid(f"You cannot pay an invoice with status {invoice['status']}.")
        now = int(time.time())
        if _bool(params.get("paid_out_of_band", "false"), "paid_out_of_band"):
            self._mark_paid(invoice, now, request)
            return invoice
        customer = self.customers[invoice["customer"]]
        payment_method = params.get("payment_method") or customer["invoice_settings"].get(
            "default_payment_method"
        )
        if not payment_method:
            raise _invalid(
                "This customer has no attached payment source or default payment method. Please "
                "consider adding a default payment method.",
                code="invoice_no_payment_method_types",
            )
        invoice["attempt_count"] += 1
        invoice["attempted"] = True
        decline = self._decline_for(customer, payment_method)
        if decline is not None:
            self._emit("invoice.payment_failed", invoice, request)
            raise StripeApiError(
                402,
                "card_error",
                decline.message,
                code=decline.code,
                decline_code=decline.decline_code,
                payment_method={"id": payment_method},
            )
        self._mark_paid(invoice, now, request)
        return invoice

    def void(self, params: dict[str, Any], invoice_id: str, *, request: dict[str, Any]) -> dict[str, Any]:
        invoice = self._invoice(invoice_id)
        if invoice["status"] not in ("open", "uncollectible"):
            raise _invalid(f"You can only void open or uncollectible invoices, not {invoice['status']}.")
        invoice["status"] = "void"
        invoice["status_transitions"]["voided_at"] = int(time.time())
        self._emit("invoice.voided", invoice, request)
        return invoice

    def mark_uncollectible(
        self, params: dict[str, Any], invoice_id: str, *, request: dict[str, Any]
    ) -> dict[str, Any]:
        invoice = self._invoice(invoice_id)
        if invoice["status"] != "open":
            raise _invalid(f"You can only mark open invoices uncollectible, not {invoice['status']}.")
        invoice["status"] = "uncollectible"
        invoice["status_transitions"]["marked_uncollectible_at"] = int(time.time())
        self._emit("invoice.marked_uncollectible", invoice, request)
        return invoice


_ID = r"([A-Za-z0-9_]+)"
_ROUTES: list[tuple[str, str, Any]] = [
    ("POST", "/v1/customers", StripeDouble.create_customer),
    ("GET", "/v1/customers/search", StripeDouble.search_customers),
    ("GET", "/v1/customers", StripeDouble.list_customers),
    ("GET", f"/v1/customers/{_ID}", StripeDouble.get_customer),
    ("POST", "/v1/invoiceitems", StripeDouble.create_item),
    ("GET", "/v1/invoiceitems", StripeDouble.list_items),
    ("GET", f"/v1/invoiceitems/{_ID}", StripeDouble.get_item),
    ("POST", "/v1/invoices", StripeDouble.create_invoice),
    ("GET", "/v1/invoices/search", StripeDouble.search_invoices),
    ("GET", "/v1/invoices", StripeDouble.list_invoices),
    ("GET", f"/v1/invoices/{_ID}", StripeDouble.get_invoice),
    ("POST", f"/v1/invoices/{_ID}/finalize", StripeDouble.finalize),
    ("POST", f"/v1/invoices/{_ID}/pay", StripeDouble.pay),
    ("POST", f"/v1/invoices/{_ID}/void", StripeDouble.void),
    ("POST", f"/v1/invoices/{_ID}/mark_uncollectible", StripeDouble.mark_uncollectible),
]


# ------------------------------------------------------------------------------------ HTTP
class _Handler(BaseHTTPRequestHandler):
    stripe: StripeDouble
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # one response, one segment: no 40 ms delayed-ACK stalls

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        pairs = parse_qsl(url.query, keep_blank_values=True) + parse_qsl(body, keep_blank_values=True)
        headers = {k.lower(): v for k, v in self.headers.items()}
        if url.path == "/_double/stats":  # not Stripe: lets a bench in another process read counts
            self._send(200, self.stripe.stats(), {})
            if "reset" in url.query:
                self.stripe.reset_requests()
            return
        if not headers.get("authorization", "").startswith("Bearer "):
            self._send(
                401, {"error": {"type": "invalid_request_error", "message": "No API key provided."}}, {}
            )
            return
        result = self.stripe.handle(method, url.path, decode_form(pairs), headers)
        if result is None:
            self.close_connection = True
            return
        self._send(*result)

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("Request-Id", f"req_{secrets.token_hex(7)}")
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")


# ------------------------------------------------------------------------------------ helpers
def decode_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding (``metadata[k]=v``, ``expand[0]=x``) back to nested dicts."""
    result: dict[str, Any] = {}
    for raw_key, value in pairs:
        parts = re.findall(r"[^\[\]]+|\[\]", raw_key)
        target = result
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    listified: dict[str, Any] = _listify(result)
    return listified


def _listify(value: Any) -> Any:
    if isinstance(value, dict):
        if value and all(k.isdigit() for k in value):
            return [_listify(value[k]) for k in sorted(value, key=int)]
        return {k: _listify(v) for k, v in value.items()}
    return value


def _only(params: dict[str, Any], allowed: set[str]) -> None:
    for name in params:
        if name not in allowed:
            raise _invalid(
                f"Received unknown parameter: {name} (or one the Stripe double does not support)",
                param=name,
                code="parameter_unknown",
            )


def _int(value: Any, param: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _invalid(f"Invalid integer: {value}", param=param) from None


def _bool(value: Any, param: str) -> bool:
    if value in ("true", True):
        return True
    if value in ("false", False):
        return False
    raise _invalid(f"Invalid boolean: {value}", param=param)


def _metadata(value: Any) -> dict[str, str]:
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise _invalid("Invalid metadata: must be an object", param="metadata")
    for key, item in value.items():
        if len(key) > 40 or len(str(item)) > 500:
            raise _invalid(
                "Metadata keys are at most 40 and values 500 characters.", param=f"metadata[{key}]"
            )
    return {k: str(v) for k, v in value.items()}


def _list(
    objects: list[dict[str, Any]], params: dict[str, Any], url: str, key: str = "created"
) -> dict[str, Any]:
    ordered = sorted(objects, key=lambda o: (o[key], o["id"]), reverse=True)  # newest first, like Stripe
    if params.get("starting_after"):
        ids = [o["id"] for o in ordered]
        if params["starting_after"] not in ids:
            raise _missing("object", params["starting_after"], "starting_after")
        ordered = ordered[ids.index(params["starting_after"]) + 1 :]
    limit = _int(params.get("limit", 10), "limit")
    if not 1 <= limit <= 100:
        raise _invalid("limit must be between 1 and 100", param="limit")
    return {"object": "list", "data": ordered[:limit], "has_more": len(ordered) > limit, "url": url}


_CLAUSE = re.compile(
    r"""\s*(metadata\['(?P<mkey>(?:[^'\\]|\\.)*)'\]|(?P<field>[a-z_]+))\s*:\s*
                         '(?P<value>(?:[^'\\]|\\.)*)'\s*""",
    re.VERBOSE,
)


def _search(objects: list[dict[str, Any]], params: dict[str, Any], url: str) -> dict[str, Any]:
    """Stripe's search query language, the exact-match subset: clauses joined by AND."""
    query = params.get("query")
    if not query:
        raise _invalid("Missing required param: query.", param="query")
    clauses: list[tuple[tuple[str, ...], str]] = []
    for part in re.split(r"\s+AND\s+", query):
        m = _CLAUSE.fullmatch(part)
        if not m:
            raise _invalid(f"Unsupported search query: {query}", param="query")
        value = re.sub(r"\\(.)", r"\1", m.group("value"))
        if m.group("mkey") is not None:
            clauses.append((("metadata", re.sub(r"\\(.)", r"\1", m.group("mkey"))), value))
        else:
            clauses.append(((m.group("field"),), value))

    def ok(obj: dict[str, Any]) -> bool:
        for path, value in clauses:
            current: Any = obj
            for part in path:
                current = current.get(part) if isinstance(current, dict) else None
            if str(current) != value:
                return False
        return True

    found = sorted((o for o in objects if ok(o)), key=lambda o: (o["created"], o["id"]), reverse=True)
    limit = _int(params.get("limit", 10), "limit")
    return {
        "object": "search_result",
        "data": found[:limit],
        "has_more": len(found) > limit,
        "next_page": None,
        "url": url,
        "total_count": len(found),
    }


def request_times(requests: list[RecordedRequest]) -> Iterator[float]:
    return (r.at for r in requests)


def max_in_window(times: list[float], window_s: float = 1.0) -> int:
    """The most requests received in any window of ``window_s`` seconds (rate-cap checks)."""
    ordered, best, start = sorted(times), 0, 0
    for end, t in enumerate(ordered):
        while t - ordered[start] >= window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


def put_secret(name: str, value: str = "sk_test_double_000000000000") -> None:
    """Store the Stripe key in (moto's) Secrets Manager, as operators do for real."""
    import boto3

    client = boto3.client("secretsmanager")
    try:
        client.create_secret(Name=name, SecretString=value)
    except client.exceptions.ResourceExistsException:
        client.put_secret_value(SecretId=name, SecretString=value)


def main() -> None:
    """``python -m billing_local.stripe_double [--latency S]``: serve until stdin closes (benches run
    the double in its own process so its CPU does not compete with the code under test)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every call")
    args = parser.parse_args()
    with StripeDouble(latency_s=args.latency) as double:
        print(double.api_base, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
