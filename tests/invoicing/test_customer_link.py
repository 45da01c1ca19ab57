"""Linking a tenant's Stripe customer writes one attribute: the invoicing
and tenants API roles may update only ``stripe_customer_id`` and ``version`` of a tenant record, so
the write the code makes must fit that IAM condition, and the first link of a tenant wins."""

from __future__ import annotations

from typing import Any

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
