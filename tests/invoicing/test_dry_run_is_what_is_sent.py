"""``--dry-run`` shows what the job sends: each request ``plan_requests`` describes is received by the
Stripe double, when the statement is invoiced for real, exactly as planned (method, path, parameters
as decoded from the wire, Idempotency-Key) and in the planned order, once the plan's placeholders for
ids not known yet are filled in with the ids Stripe gave."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote

import pytest
import stripe

from billing.adapters.stripe.client import StripeRequest
from billing.invoicing import plan_requests
from billing.payments.provider import PlannedRequest
from billing.runtime import container
from billing_local.stripe_double.server import decode_form
from tests.invoicing.conftest import MONTH, Billing, make_statement, make_tenant

Wire = tuple[str, str, dict[str, Any], str | None]


def on_the_wire(request: PlannedRequest, ids: dict[str, str]) -> Wire:
    """A planned request as the double records it, its placeholders replaced by ``ids``."""
    assert isinstance(request, StripeRequest)
    params = decode_form(parse_qsl(request.form(), keep_blank_values=True))
    path = unquote(request.path)
    return (request.method.upper(), fill(path, ids), fill(params, ids), request.idempotency_key)


def fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, ids) for v in value]
    for placeholder, real in ids.items():
        value = value.replace(placeholder, real)
    return value


def not_sent_as_planned(billing: Billing, plan: list[PlannedRequest], tenant_id: str) -> list[Wire]:
    """The planned requests Stripe did not receive as planned; the others it received in order."""
    record = billing.records.get(tenant_id, MONTH)
    ids = {"{customer_id}": record.customer_id or "", "{invoice_id}": record.invoice_id or ""}
    sent = [(r.method, r.path, r.params, r.idempotency_key) for r in billing.stripe.requests]
    missing, position = [], 0
    for wire in (on_the_wire(request, ids) for request in plan):
        if wire in sent[position:]:
            position = sent.index(wire, position) + 1
        else:
            missing.append(wire)
    return missing


@pytest.mark.parametrize("tax", [False, True], ids=["", "automatic-tax"])
@pytest.mark.parametrize("amounts", [["29.00", "1.234"], ["1.00", "-5.20"]], ids=["invoiced", "credited"])
def test_a_linked_tenants_plan_is_sent_exactly_as_planned(
    billing: Billing, monkeypatch: pytest.MonkeyPatch, amounts: list[str], tax: bool
) -> None:
    # Given the account's invoice terms (automatic tax on or off)
    monkeypatch.setenv("STRIPE_AUTOMATIC_TAX", str(tax).lower())
    container.reset()

    # And a tenant linked to its Stripe customer, its statement, and the dry run's plan for it
    make_tenant("acme")
    billing.service.ensure_customer("acme")
    make_statement("acme", amounts)
    billing.stripe.reset_requests()
    plan = plan_requests(billing.service, "acme", MONTH)
    assert plan and billing.stripe.requests == []

    # When the statement is invoiced for real
    billing.service.invoice("acme", MONTH)

    # Then Stripe received every planned request, as planned and in that order
    assert not_sent_as_planned(billing, plan, "acme") == []


@pytest.mark.parametrize(
    "amounts,lookup",
    [(["29.00", "1.234"], "/v1/invoices"), (["1.00", "-5.20"], "/v1/customers/{}/balance_transactions")],
    ids=["invoiced", "credited"],
)
def test_a_new_tenants_plan_is_sent_as_planned_but_the_lookup_of_its_new_customer(
    billing: Billing, amounts: list[str], lookup: str
) -> None:
    # Given a tenant with no Stripe customer yet, its statement, and the dry run's plan for it
    make_tenant("acme")
    make_statement("acme", amounts)
    plan = plan_requests(billing.service, "acme", MONTH)
    assert plan and billing.stripe.requests == []

    # When the statement is invoiced for real
    billing.service.invoice("acme", MONTH)

    # Then Stripe received every planned request as planned, in order, but one: the plan cannot know
    # whether the customer search finds one, so it also lists the lookup of the customer's invoices
    # (or credits), which the job skips for a customer it has just created
    customer_id = billing.records.get("acme", MONTH).customer_id
    missing = not_sent_as_planned(billing, plan, "acme")
    assert [(method, path) for method, path, _, _ in missing] == [("GET", lookup.format(customer_id))]


def test_a_tenant_without_a_card_is_planned_as_the_job_sends_it(billing: Billing) -> None:
    # Given a tenant linked to its Stripe customer who never saved a card, and its statement
    make_tenant("acme", card=False)
    billing.service.ensure_customer("acme")
    make_statement("acme", ["29.00", "1.234"])
    billing.stripe.reset_requests()

    # When the dry run plans it
    plan = plan_requests(billing.service, "acme", MONTH)

    # Then the plan sends the invoice for payment on Stripe's hosted page rather than charging it
    paths = [r.path for r in plan if isinstance(r, StripeRequest)]
    assert paths[-1].endswith("/send") and not any(p.endswith("/pay") for p in paths)

    # And invoicing it for real sends exactly that
    assert billing.service.invoice("acme", MONTH).state == "sent"
    assert not_sent_as_planned(billing, plan, "acme") == []


def test_a_rerun_after_the_draft_is_sent_exactly_as_planned(billing: Billing) -> None:
    # Given a job that stopped after creating the draft invoice (Stripe failing every item)
    make_tenant("acme")
    make_statement("acme", ["29.00", "3.333", "0.125"])
    billing.stripe.add_fault("server_error", method="POST", path=r"^/v1/invoiceitems$", times=-1)
    with pytest.raises(stripe.StripeError):
        billing.service.invoice("acme", MONTH)
    assert billing.records.get("acme", MONTH).state == "draft_created"

    # And the dry run's plan for the rerun, which lists the invoice's items first
    plan = plan_requests(billing.service, "acme", MONTH)
    first = plan[0]
    assert isinstance(first, StripeRequest) and (first.method, first.path) == ("get", "/v1/invoiceitems")

    # When the job runs again once Stripe is back
    billing.stripe.clear_faults()
    billing.stripe.reset_requests()
    assert billing.service.invoice("acme", MONTH).state == "paid"

    # Then Stripe received every planned request, as planned and in that order
    assert not_sent_as_planned(billing, plan, "acme") == []


def test_the_dry_runs_planner_sends_nothing(billing: Billing) -> None:
    # Given the planner --dry-run describes requests with (the Stripe double as its API base)
    from billing.adapters.stripe.gateway import StripeGateway

    planner = StripeGateway.planner(container.settings())

    # When it is asked to make a call, then it fails before anything leaves the process
    with pytest.raises(RuntimeError, match="only plans requests"):
        planner.get_invoice("in_123")
    assert billing.stripe.requests == []
