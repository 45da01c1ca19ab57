"""Stripe's resources as the double implements them: customers, invoice items, invoices, events."""

from __future__ import annotations

import copy
import re
import secrets
import time
from typing import Any

from billing_local.stripe_double.core import DoubleCore
from billing_local.stripe_double.faults import Decline, StripeApiError, invalid_request, resource_missing


class Resources(DoubleCore):
    """The endpoints (each runs under the double's lock, called by ``DoubleCore._dispatch``)."""

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
                "api_version": self.webhook_api_version,
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
            raise resource_missing("customer", customer_id, param)
        return customer

    def _invoice(self, invoice_id: str) -> dict[str, Any]:
        invoice = self.invoices.get(invoice_id)
        if invoice is None:
            raise resource_missing("invoice", invoice_id)
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
                "address",
                "expand",
            },
        )
        _email(params.get("email"))
        customer = copy.deepcopy(self.fixtures["customer"])
        customer_id = self._new_id("cus")
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
                "balance": 0,
            }
        )
        default = (params.get("invoice_settings") or {}).get("default_payment_method")
        given = params.get("payment_method")
        at_signup = self._cards_at_signup.get(customer["metadata"].get("tenant_id", ""))
        if given:  # attached at creation; the invoices' default only when asked for
            pm_id = self._payment_method(given, customer_id, given)["id"]
            default = pm_id if default == given else default
        elif at_signup:
            default = self._payment_method(None, customer_id, at_signup)["id"]
        customer["invoice_settings"]["default_payment_method"] = default or None
        if params.get("address"):
            customer["address"] = {**customer["address"], **params["address"]}
        self.customers[customer_id] = customer
        self._index(customer_id)
        self._emit("customer.created", customer, request)
        return customer

    def update_customer(
        self, params: dict[str, Any], customer_id: str, *, request: dict[str, Any]
    ) -> dict[str, Any]:
        _only(params, {"name", "email", "metadata", "invoice_settings", "address", "expand"})
        customer = self._customer(customer_id, "id")
        if "email" in params:
            _email(params["email"])
            customer["email"] = params["email"] or None
        if "name" in params:
            customer["name"] = params["name"] or None
        if "metadata" in params:
            customer["metadata"].update(_metadata(params["metadata"]))
        if params.get("address"):
            customer["address"] = {**customer["address"], **params["address"]}
        settings = params.get("invoice_settings") or {}
        if "default_payment_method" in settings:
            pm_id = settings["default_payment_method"] or None
            if pm_id is not None:
                pm = self.payment_methods.get(pm_id)
                if pm is None:
                    raise resource_missing(
                        "payment_method", pm_id, "invoice_settings[default_payment_method]"
                    )
                if pm["customer"] != customer_id:
                    raise invalid_request(
                        "The payment method must be attached to the customer.",
                        param="invoice_settings[default_payment_method]",
                    )
            customer["invoice_settings"]["default_payment_method"] = pm_id
        self._emit("customer.updated", customer, request)
        return customer

    def _index(self, object_id: str) -> None:
        """Search sees an object only ``search_delay_s`` after it was written (eventual consistency)."""
        self._indexed_at[object_id] = time.monotonic() + self.search_delay_s

    def _searchable(self, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [o for o in objects if self._indexed_at.get(o["id"], 0.0) <= now]

    def _payment_method(
        self, pm_id: str | None, customer_id: str, card: str = "pm_card_visa"
    ) -> dict[str, Any]:
        """A card payment method attached to the customer (test tokens like ``pm_card_visa`` become
        a new ``pm_...`` each time, as at Stripe)."""
        if pm_id and pm_id in self.payment_methods:
            pm = self.payment_methods[pm_id]
        elif pm_id and not pm_id.startswith("pm_card_"):
            raise resource_missing("payment_method", pm_id, "payment_method")
        else:
            pm = copy.deepcopy(self.fixtures["payment_method"])
            pm.update({"id": self._new_id("pm"), "created": int(time.time()), "metadata": {}})
            pm["card"]["last4"] = "0341" if "chargeDeclined" in (pm_id or card) else "4242"
            self.payment_methods[pm["id"]] = pm
        pm["customer"] = customer_id
        return pm

    def card_at_signup(self, tenant_id: str, token: str = "pm_card_visa") -> None:
        """Test control: this tenant's customer, when created, at once has a default card (as if the
        tenant completed the setup session right after signup). Nobody else gets a card."""
        with self._lock:
            self._cards_at_signup[tenant_id] = token

    def attach_card(
        self, *, customer_id: str | None = None, tenant_id: str | None = None, token: str = "pm_card_visa"
    ) -> str:
        """Test control: the customer saved a card and it is their invoices' default (what a
        completed setup session plus our webhook do). Returns the payment method id."""
        with self._lock:
            if customer_id is None:
                found = [c for c in self.customers.values() if c["metadata"].get("tenant_id") == tenant_id]
                if not found:
                    raise LookupError(f"no customer of tenant {tenant_id}")
                customer_id = found[0]["id"]
            customer = self._customer(customer_id)
            pm = self._payment_method(None, customer["id"], token)
            customer["invoice_settings"]["default_payment_method"] = pm["id"]
            return str(pm["id"])

    def get_customer(
        self, params: dict[str, Any], customer_id: str, *, request: dict[str, Any]
    ) -> dict[str, Any]:
        return self._customer(customer_id, "id")

    def list_customers(self, params: dict[str, Any], *, request: dict[str, Any]) -> dict[str, Any]:
        _only(
            params, {"email", "created", "limit", "starting_after", "ending_before", "test_clock", "expand"}
        )
        found = [
            c
            for c in self.customers.values()
            if (not params.get("email") or c["email"] == params["email"])
            and _in_range(c["created"], params.get("created"), "created")
        ]
        return _list(found, params, "/v1/customers")

    def search_customers(self, params: dict[str, Any], *, request: dict[str, Any]) -> dict[str, Any]:
        return _search(self._searchable(list(self.customers.values())), params, "/v1/customers/search")

    def create_balance_transaction(
        self, params: dict[str, Any], customer_id: str, *, request: dict[str, Any]
    ) -> dict[str, Any]:
        """An adjustment of the customer's balance (negative: a credit the next invoices use up at
        finalization, as Stripe applies it). Stripe requires a non-zero integer amount and the
        currency; the balance is in the customer's currency."""
        _only(params, {"amount", "currency", "description", "metadata", "expand"})
        customer = self._customer(customer_id, "id")
        if "amount" not in params:
            raise invalid_request("Missing required param: amount.", param="amount")
        amount = _int(params["amount"], "amount")
        if amount == 0:
            raise invalid_request("Amount must be non-zero.", param="amount")
        currency = params.get("currency")
        if not currency:
            raise invalid_request("Missing required param: currency.", param="currency")
        description = params.get("description")
        _check_length(description, MAX_BALANCE_DESCRIPTION, "description")
        txn = copy.deepcopy(self.fixtures["customer_balance_transaction"])
        customer["balance"] = int(customer.get("balance") or 0) + amount
        txn.update(
            {
                "id": self._new_id("cbtxn"),
                "created": int(time.time()),
                "amount": amount,
                "currency": currency,
                "customer": customer_id,
                "description": params.get("description"),
                "metadata": _metadata(params.get("metadata")),
                "ending_balance": customer["balance"],
                "type": "adjustment",
                "invoice": None,
                "credit_note": None,
            }
        )
        self.balance_transactions[txn["id"]] = txn
        self._emit("customer.updated", customer, request)
        return txn

    def list_balance_transactions(
        self, params: dict[str, Any], customer_id: str, *, request: dict[str, Any]
    ) -> dict[str, Any]:
        _only(params, {"limit", "starting_after", "ending_before", "expand", "created", "invoice"})
        self._customer(customer_id, "id")
        found = [t for t in self.balance_transactions.values() if t["customer"] == customer_id]
        return _list(found, params, f"/v1/customers/{customer_id}/balance_transactions")

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
            raise invalid_request("Missing required param: customer.", param="customer")
        description = params.get("description")
        _check_length(description, MAX_ITEM_DESCRIPTION, "description")
        customer = self._customer(params["customer"])
        invoice = None
        if params.get("invoice"):
            invoice = self.invoices.get(params["invoice"])
            if invoice is None:
                raise resource_missing("invoice", params["invoice"], "invoice")
            if invoice["status"] != "draft":
                raise invalid_request(
                    "You can only add invoice items to draft invoices.",
                    param="invoice",
                    code="invoice_not_editable",
                )
            if invoice["customer"] != customer["id"]:
                raise invalid_request("The invoice belongs to another customer.", param="invoice")
            if (
                sum(1 for i in self.invoice_items.values() if i["invoice"] == invoice["id"])
                >= MAX_INVOICE_ITEMS
            ):
                raise invalid_request(
                    f"An invoice can have at most {MAX_INVOICE_ITEMS} invoice items.", param="invoice"
                )
        price_data = params.get("price_data")
        if price_data is not None and "amount" in params:
            raise invalid_request(
                "You may only specify one of these parameters: amount, price_data.", param="amount"
            )
        quantity = _int(params.get("quantity", "1"), "quantity")
        if price_data is not None:
            for required in ("currency", "product"):
                if required not in price_data:
                    raise invalid_request(
                        f"Missing required param: price_data[{required}].", param=f"price_data[{required}]"
                    )
            unit = _int(price_data.get("unit_amount", "x"), "price_data[unit_amount]")
            if unit < 0:
                raise invalid_request(
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
                raise invalid_request("Missing required param: amount.", param="amount")
            amount, currency = _int(params["amount"], "amount"), params.get("currency")
            pricing = {"type": "price_details", "unit_amount_decimal": str(amount), "price_details": None}
        if not currency:
            raise invalid_request("Missing required param: currency.", param="currency")
        if invoice is not None and currency != invoice["currency"]:
            raise invalid_request(
                "The currency of the invoice item must match the invoice.", param="currency"
            )
        period = params.get("period") or {}
        now = int(time.time())
        start, end = (
            _int(period.get("start", now), "period[start]"),
            _int(period.get("end", now), "period[end]"),
        )
        if end < start:
            raise invalid_request(
                "The period end must be greater than or equal to its start.", param="period[end]"
            )
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
            raise resource_missing("invoiceitem", item_id)
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
                "automatic_tax",
                "expand",
            },
        )
        if "customer" not in params:
            raise invalid_request("Missing required param: customer.", param="customer")
        customer = self._customer(params["customer"])
        method = params.get("collection_method", "charge_automatically")
        if method not in ("charge_automatically", "send_invoice"):
            raise invalid_request(f"Invalid collection_method: {method}", param="collection_method")
        days_until_due = None
        if method == "send_invoice":
            if "days_until_due" not in params:
                raise invalid_request(
                    "Missing required param: days_until_due (collection_method=send_invoice).",
                    param="days_until_due",
                )
            days_until_due = _int(params["days_until_due"], "days_until_due")
        elif "days_until_due" in params:
            raise invalid_request(
                "days_until_due can only be set when collection_method is send_invoice.",
                param="days_until_due",
            )
        tax = _bool((params.get("automatic_tax") or {}).get("enabled", "false"), "automatic_tax[enabled]")
        behavior = params.get("pending_invoice_items_behavior", "exclude")
        if behavior not in ("exclude", "include"):
            raise invalid_request(
                "Invalid pending_invoice_items_behavior", param="pending_invoice_items_behavior"
            )
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
                "days_until_due": days_until_due,
                "automatic_tax": {"enabled": tax, "liability": None, "status": "complete" if tax else None},
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
        self._index(invoice_id)
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
        return _search(self._searchable(list(self.invoices.values())), params, "/v1/invoices/search")

    def finalize(self, params: dict[str, Any], invoice_id: str, *, request: dict[str, Any]) -> dict[str, Any]:
        _only(params, {"auto_advance", "expand"})
        invoice = self._invoice(invoice_id)
        if invoice["status"] != "draft":
            raise invalid_request(
                "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
                code="invoice_not_editable",
            )
        minimum = self._minimum_charge(invoice["currency"])  # refused before anything changes
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
        if invoice["collection_method"] == "send_invoice":
            invoice["due_date"] = now + 86400 * int(invoice["days_until_due"] or 0)
        customer["next_invoice_sequence"] += 1
        # The customer's balance is applied at finalization (a debit carried from an earlier invoice
        # is owed on this one; a credit lowers it), then Stripe's minimum charge rule.
        balance = int(customer.get("balance") or 0)
        due = max(invoice["total"] + balance, 0)
        customer["balance"] = min(invoice["total"] + balance, 0)
        invoice.update(
            {
                "starting_balance": balance,
                "amount_due": due,
                "amount_remaining": due,
                "ending_balance": customer["balance"],
            }
        )
        self._emit("invoice.finalized", invoice, request)
        if due == 0:  # Stripe marks zero-due invoices paid on finalization
            self._mark_paid(invoice, now, request)
        elif due < minimum:
            # Below the minimum charge: marked paid, nothing charged, the amount due added to the
            # customer's balance, which the next invoice's finalization applies.
            customer["balance"] += due
            invoice.update(
                {
                    "status": "paid",
                    "amount_paid": 0,
                    "amount_remaining": 0,
                    "ending_balance": customer["balance"],
                }
            )
            invoice["status_transitions"]["paid_at"] = now
            self._emit("invoice.paid", invoice, request)
        return invoice

    def _minimum_charge(self, currency: str) -> int:
        """Stripe's published minimum (``billing.adapters.stripe.minimum_charge``), or the one the
        double was given. Outside the table Stripe converts to the settlement currency at the day's
        rate, which the double cannot know: it refuses rather than guess a number."""
        minimum = self.minimum_charges.get(currency)
        if minimum is None:
            raise invalid_request(
                f"The Stripe double knows no minimum charge for {currency}: Stripe publishes one for its "
                "settlement currencies only; start the double with minimum_charges={...}.",
                param="currency",
            )
        return minimum

    def _mark_paid(
        self, invoice: dict[str, Any], now: int, request: dict[str, Any], *, charged: bool = True
    ) -> None:
        """``invoice.paid`` always; ``invoice.payment_succeeded`` only when a payment was made
        (not for an invoice paid out of band or with nothing due)."""
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
        if charged:
            self._emit("invoice.payment_succeeded", invoice, request)

    def pay(self, params: dict[str, Any], invoice_id: str, *, request: dict[str, Any]) -> dict[str, Any]:
        _only(params, {"off_session", "payment_method", "paid_out_of_band", "forgive", "expand"})
        invoice = self._invoice(invoice_id)
        if invoice["status"] == "paid":
            raise invalid_request("Invoice is already paid")
        if invoice["status"] != "open":
            raise invalid_request(f"You cannot pay an invoice with status {invoice['status']}.")
        now = int(time.time())
        if _bool(params.get("paid_out_of_band", "false"), "paid_out_of_band"):
            self._mark_paid(invoice, now, request, charged=False)
            return invoice
        customer = self.customers[invoice["customer"]]
        payment_method = params.get("payment_method") or customer["invoice_settings"].get(
            "default_payment_method"
        )
        if not payment_method:
            raise invalid_request(
                "This customer has no attached payment source or default payment method. Please "
                "consider adding a default payment method.",
                code="invoice_no_payment_method_types",
            )
        invoice["attempt_count"] += 1
        invoice["attempted"] = True
        decline = self._decline_for(customer, payment_method)
        if decline is not None:
            self._emit("invoice.payment_failed", invoice, request)
            if decline.code == "authentication_required":  # the card needs 3DS: only the customer can
                self._emit("invoice.payment_action_required", invoice, request)
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
            raise invalid_request(
                f"You can only void open or uncollectible invoices, not {invoice['status']}."
            )
        invoice["status"] = "void"
        invoice["status_transitions"]["voided_at"] = int(time.time())
        self._emit("invoice.voided", invoice, request)
        return invoice

    def mark_uncollectible(
        self, params: dict[str, Any], invoice_id: str, *, request: dict[str, Any]
    ) -> dict[str, Any]:
        invoice = self._invoice(invoice_id)
        if invoice["status"] != "open":
            raise invalid_request(f"You can only mark open invoices uncollectible, not {invoice['status']}.")
        invoice["status"] = "uncollectible"
        invoice["status_transitions"]["marked_uncollectible_at"] = int(time.time())
        self._emit("invoice.marked_uncollectible", invoice, request)
        return invoice

    def pass_due_dates(self, now: int) -> list[str]:
        """Time reaching ``now`` (unix seconds): every open ``send_invoice`` invoice whose due date
        plus ``overdue_after_days`` has passed emits ``invoice.overdue`` once, as Stripe does when the
        account's invoice automation says so (``overdue_after_days=None``: never). Returns those
        invoices' ids."""
        overdue: list[str] = []
        if self.overdue_after_days is None:
            return overdue
        after = 86400 * self.overdue_after_days
        with self._lock:
            for invoice in sorted(self.invoices.values(), key=lambda i: i["id"]):
                due = invoice.get("due_date")
                if (
                    invoice["collection_method"] == "send_invoice"
                    and invoice["status"] == "open"
                    and due is not None
                    and due + after <= now
                    and invoice["id"] not in self._overdue_sent
                ):
                    self._overdue_sent.add(invoice["id"])
                    self._emit("invoice.overdue", invoice, {})
                    overdue.append(invoice["id"])
        return overdue

    def send_invoice(
        self, params: dict[str, Any], invoice_id: str, *, request: dict[str, Any]
    ) -> dict[str, Any]:
        """Stripe emails the customer the invoice and its hosted payment page (send_invoice only)."""
        _only(params, {"expand"})
        invoice = self._invoice(invoice_id)
        if invoice["status"] != "open":
            raise invalid_request(f"You can only send open invoices, not {invoice['status']}.")
        if invoice["collection_method"] != "send_invoice":
            raise invalid_request(
                "You can only manually send an invoice with collection_method=send_invoice."
            )
        self._emit("invoice.sent", invoice, request)
        return invoice

    # -- card on file: Checkout in setup mode, setup intents, the customer portal --------------
    def create_checkout_session(self, params: dict[str, Any], *, request: dict[str, Any]) -> dict[str, Any]:
        _only(
            params,
            {
                "mode",
                "customer",
                "currency",
                "success_url",
                "cancel_url",
                "client_reference_id",
                "metadata",
                "setup_intent_data",
                "billing_address_collection",
                "customer_update",
                "payment_method_types",
                "expand",
            },
        )
        if params.get("mode") not in ("setup", "payment", "subscription"):
            raise invalid_request("Missing required param: mode.", param="mode")
        if params["mode"] != "setup":
            raise invalid_request("The Stripe double implements Checkout in setup mode only.", param="mode")
        if not params.get("currency") and not params.get("payment_method_types"):
            raise invalid_request(
                "currency is required in setup mode when payment_method_types is not set.", param="currency"
            )
        if params.get("customer_update") and not params.get("customer"):
            raise invalid_request("customer_update can only be used with customer.", param="customer_update")
        for url in ("success_url", "cancel_url"):
            if url in params and not re.match(r"^https?://", params[url]):
                raise invalid_request("Not a valid URL", param=url, code="url_invalid")
        customer = self._customer(params["customer"]) if params.get("customer") else None
        session = copy.deepcopy(self.fixtures["checkout.session"])
        session_id = f"cs_test_{secrets.token_hex(16)}"
        now = int(time.time())
        session.update(
            {
                "id": session_id,
                "created": now,
                "expires_at": now + 86400,
                "mode": "setup",
                "status": "open",
                "payment_status": "no_payment_required",
                "customer": customer["id"] if customer else None,
                "currency": params.get("currency"),
                "success_url": params.get("success_url"),
                "cancel_url": params.get("cancel_url"),
                "client_reference_id": params.get("client_reference_id"),
                "metadata": _metadata(params.get("metadata")),
                "billing_address_collection": params.get("billing_address_collection"),
                "setup_intent": None,
                "payment_intent": None,
                "subscription": None,
                "invoice": None,
                "amount_subtotal": None,
                "amount_total": None,
                "url": f"https://checkout.stripe.com/c/pay/{session_id}",
            }
        )
        intent = copy.deepcopy(self.fixtures["setup_intent"])
        intent.update(
            {
                "id": self._new_id("seti"),
                "created": now,
                "customer": session["customer"],
                "metadata": _metadata((params.get("setup_intent_data") or {}).get("metadata")),
                "status": "requires_payment_method",
                "payment_method": None,
                "last_setup_error": None,
                "next_action": None,
                "usage": "off_session",
            }
        )
        intent["client_secret"] = f"{intent['id']}_secret_{secrets.token_hex(8)}"
        self.setup_intents[intent["id"]] = intent
        session["setup_intent"] = intent["id"]
        self.checkout_sessions[session_id] = session
        return session

    def get_checkout_session(
        self, params: dict[str, Any], session_id: str, *, request: dict[str, Any]
    ) -> dict[str, Any]:
        session = self.checkout_sessions.get(session_id)
        if session is None:
            raise resource_missing("checkout.session", session_id)
        return session

    def get_setup_intent(
        self, params: dict[str, Any], intent_id: str, *, request: dict[str, Any]
    ) -> dict[str, Any]:
        intent = self.setup_intents.get(intent_id)
        if intent is None:
            raise resource_missing("setup_intent", intent_id)
        return intent

    def complete_checkout_session(
        self,
        session_id: str,
        *,
        token: str = "pm_card_visa",
        address: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Test control: the customer entered a card on the hosted page. As at Stripe, the card is
        attached to the customer but NOT made the invoices' default (our webhook does that); Stripe
        sends ``setup_intent.succeeded`` then ``checkout.session.completed``."""
        with self._lock:
            session = self.checkout_sessions[session_id]
            if session["status"] != "open":
                raise ValueError(f"session {session_id} is {session['status']}")
            intent = self.setup_intents[session["setup_intent"]]
            customer_id = session["customer"]
            pm = self._payment_method(None, customer_id, token)
            if address and customer_id:
                customer = self.customers[customer_id]
                customer["address"] = {**customer["address"], **address}
            intent.update({"status": "succeeded", "payment_method": pm["id"]})
            session.update({"status": "complete"})
            request = {"key": None, "version": None}
            self._emit("setup_intent.succeeded", intent, request)
            self._emit("checkout.session.completed", session, request)
            return copy.deepcopy(session)

    def create_portal_session(self, params: dict[str, Any], *, request: dict[str, Any]) -> dict[str, Any]:
        """Stripe needs a saved configuration: the one named, else the account's default (saved in
        the Dashboard: ``save_portal_settings``). With neither it refuses the session."""
        _only(params, {"customer", "return_url", "configuration", "locale", "flow_data", "expand"})
        if not params.get("customer"):
            raise invalid_request("Missing required param: customer.", param="customer")
        customer = self._customer(params["customer"])
        if params.get("configuration"):
            configuration = self._portal_configuration(params["configuration"], "configuration")
            if not configuration["active"]:
                raise invalid_request(
                    f"The configuration {configuration['id']} is inactive and cannot be used to create "
                    "portal sessions.",
                    param="configuration",
                )
        else:
            default: dict[str, Any] | None = next(
                (c for c in self.portal_configurations.values() if c["is_default"] and c["active"]), None
            )
            if default is None:
                raise invalid_request(
                    "No configuration provided and your test mode default configuration has not been "
                    "created. Provide a configuration or create your default by saving your customer "
                    "portal settings in test mode at https://dashboard.stripe.com/test/settings/billing/portal."
                )
            configuration = default
        session = copy.deepcopy(self.fixtures["billing_portal.session"])
        session_id = self._new_id("bps")
        session.update(
            {
                "id": session_id,
                "created": int(time.time()),
                "customer": customer["id"],
                "configuration": configuration["id"],
                "flow": None,
                "livemode": False,
                "return_url": params.get("return_url"),
                "url": f"https://billing.stripe.com/p/session/test_{session_id}",
            }
        )
        self.portal_sessions[session_id] = session
        return session

    def _portal_configuration(self, config_id: str, param: str = "id") -> dict[str, Any]:
        configuration = self.portal_configurations.get(config_id)
        if configuration is None:
            raise resource_missing("configuration", config_id, param)
        return configuration

    def _configure_portal(self, configuration: dict[str, Any], params: dict[str, Any]) -> None:
        for name in ("default_return_url", "name"):
            if name in params:
                configuration[name] = params[name] or None
        if "active" in params:
            configuration["active"] = _bool(params["active"], "active")
        if "metadata" in params:
            configuration["metadata"] = {**(configuration["metadata"] or {}), **_metadata(params["metadata"])}
        for section in ("business_profile", "login_page"):
            if params.get(section):
                configuration[section] = {**configuration[section], **params[section]}
        for feature, given in (params.get("features") or {}).items():
            if feature not in configuration["features"]:
                raise invalid_request(f"Received unknown parameter: features[{feature}]", param="features")
            merged = {**configuration["features"][feature], **given}
            if "enabled" in given:
                merged["enabled"] = _bool(given["enabled"], f"features[{feature}][enabled]")
            configuration["features"][feature] = merged
        configuration["updated"] = int(time.time())

    def create_portal_configuration(
        self, params: dict[str, Any], *, request: dict[str, Any]
    ) -> dict[str, Any]:
        """A configuration made through the API is never the account's default."""
        _only(
            params,
            {
                "business_profile",
                "default_return_url",
                "features",
                "login_page",
                "metadata",
                "name",
                "expand",
            },
        )
        if not params.get("features"):
            raise invalid_request("Missing required param: features.", param="features")
        return self._new_portal_configuration(params, is_default=False)

    def _new_portal_configuration(self, params: dict[str, Any], *, is_default: bool) -> dict[str, Any]:
        configuration = copy.deepcopy(self.fixtures["billing_portal.configuration"])
        now = int(time.time())
        configuration.update(
            {
                "id": self._new_id("bpc"),
                "created": now,
                "updated": now,
                "is_default": is_default,
                "livemode": False,
                "active": True,
                "metadata": {},
                "default_return_url": None,
                "name": None,
            }
        )
        self._configure_portal(configuration, params)
        self.portal_configurations[configuration["id"]] = configuration
        return configuration

    def update_portal_configuration(
        self, params: dict[str, Any], config_id: str, *, request: dict[str, Any]
    ) -> dict[str, Any]:
        _only(
            params,
            {
                "active",
                "business_profile",
                "default_return_url",
                "features",
                "login_page",
                "metadata",
                "name",
                "expand",
            },
        )
        configuration = self._portal_configuration(config_id)
        if "active" in params and not _bool(params["active"], "active") and configuration["is_default"]:
            raise invalid_request("You cannot deactivate the default configuration.", param="active")
        self._configure_portal(configuration, params)
        return configuration

    def get_portal_configuration(
        self, params: dict[str, Any], config_id: str, *, request: dict[str, Any]
    ) -> dict[str, Any]:
        return self._portal_configuration(config_id)

    def list_portal_configurations(
        self, params: dict[str, Any], *, request: dict[str, Any]
    ) -> dict[str, Any]:
        _only(params, {"active", "is_default", "limit", "starting_after", "ending_before", "expand"})
        found = [
            c
            for c in self.portal_configurations.values()
            if ("active" not in params or c["active"] == _bool(params["active"], "active"))
            and ("is_default" not in params or c["is_default"] == _bool(params["is_default"], "is_default"))
        ]
        return _list(found, params, "/v1/billing_portal/configurations")

    def save_portal_settings(self, **params: Any) -> dict[str, Any]:
        """Test control: the portal settings saved in the Dashboard, which makes the account's
        default configuration (the API cannot make one)."""
        with self._lock:
            for configuration in self.portal_configurations.values():
                if configuration["is_default"]:
                    self._configure_portal(configuration, params)
                    return copy.deepcopy(configuration)
            return copy.deepcopy(self._new_portal_configuration(params, is_default=True))

    # -- webhook endpoints ----------------------------------------------------------------------
    def create_webhook_endpoint(self, params: dict[str, Any], *, request: dict[str, Any]) -> dict[str, Any]:
        """Where Stripe delivers events. The double keeps its events in ``events`` whatever the
        endpoints say; these are what an operator (or ``billing stripe check``) reads back."""
        _only(
            params, {"url", "enabled_events", "api_version", "description", "metadata", "connect", "expand"}
        )
        if not params.get("url"):
            raise invalid_request("Missing required param: url.", param="url")
        events = params.get("enabled_events")
        if not events or not isinstance(events, list):
            raise invalid_request("Missing required param: enabled_events.", param="enabled_events")
        endpoint = copy.deepcopy(self.fixtures["webhook_endpoint"])
        endpoint.update(
            {
                "id": self._new_id("we"),
                "created": int(time.time()),
                "url": params["url"],
                "enabled_events": list(events),
                "api_version": params.get("api_version"),
                "description": params.get("description"),
                "metadata": _metadata(params.get("metadata")),
                "status": "enabled",
                "livemode": False,
                "secret": f"whsec_{secrets.token_hex(16)}",
            }
        )
        self.webhook_endpoints[endpoint["id"]] = endpoint
        return endpoint

    def list_webhook_endpoints(self, params: dict[str, Any], *, request: dict[str, Any]) -> dict[str, Any]:
        _only(params, {"limit", "starting_after", "ending_before", "expand"})
        listed = [{k: v for k, v in e.items() if k != "secret"} for e in self.webhook_endpoints.values()]
        return _list(listed, params, "/v1/webhook_endpoints")

    def disable_webhook_endpoint(self, endpoint_id: str) -> None:
        """Test control: the endpoint disabled in the Dashboard (Stripe stops delivering to it)."""
        with self._lock:
            self.webhook_endpoints[endpoint_id]["status"] = "disabled"

    # -- the catalog ----------------------------------------------------------------------------
    def create_product(self, params: dict[str, Any], *, request: dict[str, Any]) -> dict[str, Any]:
        _only(params, {"id", "name", "description", "metadata", "tax_code", "unit_label", "active", "expand"})
        if not params.get("name"):
            raise invalid_request("Missing required param: name.", param="name")
        product_id = params.get("id") or self._new_id("prod")
        if product_id in self.products:
            raise invalid_request(
                f"Product already exists: {product_id}", param="id", code="resource_already_exists"
            )
        product = copy.deepcopy(self.fixtures["product"])
        now = int(time.time())
        product.update(
            {
                "id": product_id,
                "created": now,
                "updated": now,
                "name": params["name"],
                "description": params.get("description") or None,
                "metadata": _metadata(params.get("metadata")),
                "tax_code": params.get("tax_code"),
                "unit_label": params.get("unit_label"),
                "active": _bool(params.get("active", "true"), "active"),
                "default_price": None,
                "package_dimensions": None,
                "livemode": False,
            }
        )
        self.products[product_id] = product
        return product

    def update_product(
        self, params: dict[str, Any], product_id: str, *, request: dict[str, Any]
    ) -> dict[str, Any]:
        _only(params, {"name", "description", "metadata", "tax_code", "unit_label", "active", "expand"})
        product = self.products.get(product_id)
        if product is None:
            raise resource_missing("product", product_id)
        for name in ("name", "description", "tax_code", "unit_label"):
            if name in params:
                product[name] = params[name] or None
        if "active" in params:
            product["active"] = _bool(params["active"], "active")
        if "metadata" in params:
            product["metadata"].update(_metadata(params["metadata"]))
        product["updated"] = int(time.time())
        return product

    def get_product(
        self, params: dict[str, Any], product_id: str, *, request: dict[str, Any]
    ) -> dict[str, Any]:
        product = self.products.get(product_id)
        if product is None:
            raise resource_missing("product", product_id)
        return product

    def list_products(self, params: dict[str, Any], *, request: dict[str, Any]) -> dict[str, Any]:
        found = [
            p
            for p in self.products.values()
            if "active" not in params or p["active"] == _bool(params["active"], "active")
        ]
        return _list(found, params, "/v1/products")


MAX_INVOICE_ITEMS = 250  # Stripe's limit of invoice items per invoice
MAX_BALANCE_DESCRIPTION = 350  # Stripe's limit for a customer balance transaction's description
MAX_ITEM_DESCRIPTION = 500  # Stripe's limit for an invoice item's description (API 2018-10-31 on)


def _check_length(text: str | None, limit: int, param: str) -> None:
    """Stripe's refusal of a string parameter longer than its limit."""
    if text is not None and len(text) > limit:
        raise invalid_request(
            f"Invalid string: {text[:20]}...; must be at most {limit} characters", param=param
        )


_ID = r"([A-Za-z0-9_]+)"
_ROUTES: list[tuple[str, str, Any]] = [
    ("POST", "/v1/customers", Resources.create_customer),
    ("GET", "/v1/customers/search", Resources.search_customers),
    ("GET", "/v1/customers", Resources.list_customers),
    ("GET", f"/v1/customers/{_ID}", Resources.get_customer),
    ("POST", f"/v1/customers/{_ID}", Resources.update_customer),
    ("POST", f"/v1/customers/{_ID}/balance_transactions", Resources.create_balance_transaction),
    ("GET", f"/v1/customers/{_ID}/balance_transactions", Resources.list_balance_transactions),
    ("POST", "/v1/invoiceitems", Resources.create_item),
    ("GET", "/v1/invoiceitems", Resources.list_items),
    ("GET", f"/v1/invoiceitems/{_ID}", Resources.get_item),
    ("POST", "/v1/invoices", Resources.create_invoice),
    ("GET", "/v1/invoices/search", Resources.search_invoices),
    ("GET", "/v1/invoices", Resources.list_invoices),
    ("GET", f"/v1/invoices/{_ID}", Resources.get_invoice),
    ("POST", f"/v1/invoices/{_ID}/finalize", Resources.finalize),
    ("POST", f"/v1/invoices/{_ID}/pay", Resources.pay),
    ("POST", f"/v1/invoices/{_ID}/void", Resources.void),
    ("POST", f"/v1/invoices/{_ID}/mark_uncollectible", Resources.mark_uncollectible),
    ("POST", f"/v1/invoices/{_ID}/send", Resources.send_invoice),
    ("POST", "/v1/checkout/sessions", Resources.create_checkout_session),
    ("GET", f"/v1/checkout/sessions/{_ID}", Resources.get_checkout_session),
    ("GET", f"/v1/setup_intents/{_ID}", Resources.get_setup_intent),
    ("POST", "/v1/billing_portal/sessions", Resources.create_portal_session),
    ("POST", "/v1/billing_portal/configurations", Resources.create_portal_configuration),
    ("GET", "/v1/billing_portal/configurations", Resources.list_portal_configurations),
    ("GET", f"/v1/billing_portal/configurations/{_ID}", Resources.get_portal_configuration),
    ("POST", f"/v1/billing_portal/configurations/{_ID}", Resources.update_portal_configuration),
    ("POST", "/v1/webhook_endpoints", Resources.create_webhook_endpoint),
    ("GET", "/v1/webhook_endpoints", Resources.list_webhook_endpoints),
    ("POST", "/v1/products", Resources.create_product),
    ("GET", "/v1/products", Resources.list_products),
    ("GET", f"/v1/products/{_ID}", Resources.get_product),
    ("POST", f"/v1/products/{_ID}", Resources.update_product),
]
Resources.routes = _ROUTES


def _only(params: dict[str, Any], allowed: set[str]) -> None:
    for name in params:
        if name not in allowed:
            raise invalid_request(
                f"Received unknown parameter: {name} (or one the Stripe double does not support)",
                param=name,
                code="parameter_unknown",
            )


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]{2,}$")


def _email(value: Any) -> None:
    """Stripe refuses a malformed email with ``email_invalid`` (and longer than 512 characters)."""
    if value in (None, ""):
        return
    if not isinstance(value, str) or len(value) > 512 or not _EMAIL.match(value):
        raise invalid_request(f"Invalid email address: {value}", param="email", code="email_invalid")


def _int(value: Any, param: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise invalid_request(f"Invalid integer: {value}", param=param) from None


def _in_range(value: int, bounds: Any, param: str) -> bool:
    """A list filter like ``created[gte]=...`` (or an exact ``created=...``)."""
    if bounds in (None, ""):
        return True
    if not isinstance(bounds, dict):
        return value == _int(bounds, param)
    checks = {"gt": value.__gt__, "gte": value.__ge__, "lt": value.__lt__, "lte": value.__le__}
    for op, bound in bounds.items():
        if op not in checks:
            raise invalid_request(f"Received unknown parameter: {param}[{op}]", param=f"{param}[{op}]")
        if not checks[op](_int(bound, f"{param}[{op}]")):
            return False
    return True


def _bool(value: Any, param: str) -> bool:
    if value in ("true", True):
        return True
    if value in ("false", False):
        return False
    raise invalid_request(f"Invalid boolean: {value}", param=param)


def _metadata(value: Any) -> dict[str, str]:
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise invalid_request("Invalid metadata: must be an object", param="metadata")
    for key, item in value.items():
        if len(key) > 40 or len(str(item)) > 500:
            raise invalid_request(
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
            raise resource_missing("object", params["starting_after"], "starting_after")
        ordered = ordered[ids.index(params["starting_after"]) + 1 :]
    limit = _int(params.get("limit", 10), "limit")
    if not 1 <= limit <= 100:
        raise invalid_request("limit must be between 1 and 100", param="limit")
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
        raise invalid_request("Missing required param: query.", param="query")
    clauses: list[tuple[tuple[str, ...], str]] = []
    for part in re.split(r"\s+AND\s+", query):
        m = _CLAUSE.fullmatch(part)
        if not m:
            raise invalid_request(f"Unsupported search query: {query}", param="query")
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
