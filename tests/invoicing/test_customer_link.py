"""Linking a tenant's Stripe customer writes one attribute: the invoicing
and tenants API roles may update only ``stripe_customer_id`` and ``version`` of a tenant record, so
the write the code makes must fit that IAM condition, and the first link of a tenant wins."""

from __future__ import annotations

from typing import Any

import pytest

from billing.runtime import container
from billing_local.template import load_template, resources_of_type
from tests.invoicing.conftest import Billing, make_tenant
from tests.smoke.bootstrap import _attributes

TEMPLATE_FUNCTIONS = resources_of_type(load_template(), "AWS::Serverless::Function")


def link_condition(function_id: str) -> dict[str, Any]:
    (statement,) = [
        s
        for policy in TEMPLATE_FUNCTIONS[function_id]["Properties"]["Policies"]
        for s in policy["Statement"]
        if s["Sid"] == "LinkStripeCustomer"
    ]
    assert statement["Action"] == ["dynamodb:UpdateItem"]
    return statement["Condition"]


def record_writes(client: Any) -> list[tuple[str, dict[str, Any]]]:
    writes: list[tuple[str, dict[str, Any]]] = []

    def hook(params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name in ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"):
            writes.append((model.name, dict(params)))

    client.meta.events.register("provide-client-params.dynamodb.*", hook)
    return writes


def test_linking_the_customer_is_one_update_the_iam_condition_allows(billing: Billing) -> None:
    # Given a tenant without a Stripe customer, and every DynamoDB write recorded
    make_tenant("acme", card=False)
    store = container.tenants()
    before = store.get("acme")
    writes = record_writes(store.client)
    # When invoicing ensures the tenant's customer
    customer = container.invoicing_service().ensure_customer("acme")
    # Then the tenant record got exactly one UpdateItem, within both roles' conditions
    tenant_writes = [(op, p) for op, p in writes if p.get("TableName") == store.table]
    assert [op for op, _ in tenant_writes] == ["UpdateItem"]
    (_, params) = tenant_writes[0]
    for function_id in ("InvoicingFunction", "TenantsApiFunction"):
        condition = link_condition(function_id)
        allowed = condition["ForAllValues:StringEquals"]["dynamodb:Attributes"]
        assert set(_attributes(params)) <= set(allowed), (function_id, _attributes(params))
        assert (
            params.get("ReturnValues", "NONE") in condition["StringEqualsIfExists"]["dynamodb:ReturnValues"]
        )
    # And the tenant is linked, the rest of its record unchanged but its version moved
    linked = store.get("acme")
    assert linked.stripe_customer_id == customer and linked.version == before.version + 1
    unchanged = {"stripe_customer_id", "version"}
    assert linked.model_dump(exclude=unchanged) == before.model_dump(exclude=unchanged)


def test_the_first_link_wins_and_a_stale_save_after_it_fails(billing: Billing) -> None:
    # Given a tenant read before its customer was linked
    make_tenant("acme", card=False)
    store = container.tenants()
    stale = store.get("acme")
    # When two links race with different customers
    assert store.link_stripe_customer("acme", "cus_first") == "cus_first"
    assert store.link_stripe_customer("acme", "cus_second") == "cus_first"
    assert store.link_stripe_customer("nobody", "cus_x") is None
    # Then the first is kept, and an optimistic save of the stale copy is refused
    assert store.get("acme").stripe_customer_id == "cus_first"
    try:
        store.save(stale)
    except Exception as exc:
        assert container.is_conflict(exc)
    else:
        raise AssertionError("a stale save overwrote the link")


def _customer_posts(billing: Billing) -> list:
    return [r for r in billing.stripe.requests if r.method == "POST" and r.path == "/v1/customers"]


def test_a_customer_whose_link_was_lost_is_found_by_search_once_stripe_indexed_it(billing: Billing) -> None:
    # Given a tenant's customer made earlier, its id lost before it was stored and the tenant's email
    # changed since (so a creation would carry another key), and Stripe's search index caught up
    billing.stripe.search_delay_s = 0.0
    make_tenant("acme")
    first = billing.service.ensure_customer("acme")
    tenant = container.tenants().get("acme")
    container.tenants().save(
        tenant.model_copy(update={"stripe_customer_id": None, "email": "new@acme.example"})
    )
    billing.stripe.reset_requests()

    # When the tenant's customer is linked again
    customer_id, new = billing.service.customers.link("acme")

    # Then search found the first one: linked, not new, nothing created
    assert (customer_id, new) == (first, False)
    assert _customer_posts(billing) == [] and len(billing.stripe.customers) == 1
    assert container.tenants().get("acme").stripe_customer_id == first


@pytest.mark.parametrize("took_effect", [True, False], ids=["created-then-500", "500-before-creating"])
def test_a_customer_behind_a_replayed_500_is_recovered_by_its_email(
    billing: Billing, took_effect: bool
) -> None:
    # Given Stripe saving a 500 under the customer-creation key (replayed to every retry), and its
    # search index an hour behind (as in an incident), so only a strongly consistent list can tell
    billing.stripe.search_delay_s = 3600.0
    make_tenant("acme")
    billing.stripe.add_fault(
        "saved_server_error", method="POST", path="^/v1/customers$", took_effect=took_effect
    )

    # When the tenant's customer is linked
    customer_id, new = billing.service.customers.link("acme")

    # Then Stripe holds one customer, the one linked
    (customer,) = billing.stripe.customers.values()
    assert customer_id == customer["id"] == container.tenants().get("acme").stripe_customer_id
    listed = [r.params for r in billing.stripe.requests if r.method == "GET" and r.path == "/v1/customers"]
    assert [p["email"] for p in listed] == ["billing@acme.example"]
    keys = [r.idempotency_key for r in _customer_posts(billing)]
    if took_effect:  # found by listing its email's customers: made by an earlier attempt, not new
        assert len(set(keys)) == 1 and new is False
    else:  # nothing there: created under a key derived from the old one
        assert keys[-1] == keys[0] + ":a1" and new is True


def test_a_customer_behind_a_replayed_500_is_recovered_without_an_email(billing: Billing) -> None:
    # Given a tenant without an email, and Stripe creating its customer, then saving a 500 under the key
    from datetime import UTC, datetime

    from tests.support import create_tenant

    billing.stripe.search_delay_s = 3600.0
    create_tenant("acme", [("starter", datetime(2025, 1, 1, tzinfo=UTC))], email="")
    billing.stripe.add_fault("saved_server_error", method="POST", path="^/v1/customers$", took_effect=True)

    # When the tenant's customer is linked
    customer_id, new = billing.service.customers.link("acme")

    # Then the customer is found among the customers created in the key's lifetime: still one customer
    (customer,) = billing.stripe.customers.values()
    assert (customer_id, new) == (customer["id"], False)
