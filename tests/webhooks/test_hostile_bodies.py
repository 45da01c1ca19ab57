"""correctly signed bodies of the wrong shape are a 400 naming the field, and
store nothing; deep JSON is a 400, never a RecursionError."""

from __future__ import annotations

import copy
import json

import boto3
import pytest

from billing.runtime import container
from tests.dunning.support import T0, customer_deleted_event, invoice_event, make_tenant


def _failed():
    return invoice_event(
        "evt_fail_1", "invoice.payment_failed", "in_acme_2025_11", "acme", T0, attempt_count=1
    )


def _stored_nothing() -> bool:
    ddb = boto3.client("dynamodb")
    s = container.settings()
    billing = ddb.scan(TableName=s.billing_table)["Items"]
    ledger = [i for i in ddb.scan(TableName=s.ledger_table)["Items"] if i["pk"]["S"].startswith("WEBHOOK#")]
    return not billing and not ledger and container.tenants().get("acme").payment_status == "active"


def _with(event: dict, path: str, value) -> dict:
    event = copy.deepcopy(event)
    *parents, last = path.split(".")
    node = event
    for key in parents:
        node = node[key]
    node[last] = value
    return event


@pytest.mark.parametrize(
    "path, value, field",
    [
        ("data.object.metadata", "tenant_id=acme", "data.object.metadata"),
        ("data.object.metadata", ["acme"], "data.object.metadata"),
        ("data.object.metadata.tenant_id", 42, "data.object.metadata.tenant_id"),
        ("data.object.metadata.month", "not-a-month", "data.object.metadata.month"),
        ("created", 10**12, "created"),
        ("created", True, "created"),
        ("id", "evt_" + "x" * 1100, "id"),
        ("data.object.id", "in_" + "x" * 1100, "data.object.id"),
        ("data.object.attempt_count", "1", "data.object.attempt_count"),
        ("data.object.customer", 5, "data.object.customer"),
    ],
)
def test_a_signed_invoice_event_of_the_wrong_shape_is_a_400_naming_the_field(stripe, path, value, field):
    make_tenant("acme")
    status, body = stripe.deliver(_with(_failed(), path, value))
    assert status == 400, body
    assert field in {d["field"] for d in body["details"]} or any(
        d["field"].startswith(field + ".") for d in body["details"]
    ), body
    assert _stored_nothing()


def test_a_signed_customer_deleted_with_non_object_metadata_is_a_400(stripe):
    make_tenant("acme")
    event = _with(customer_deleted_event("evt_del", "acme", T0), "data.object.metadata", "acme")
    status, body = stripe.deliver(event)
    assert status == 400 and body["details"][0]["field"] == "data.object.metadata"
    assert _stored_nothing()


def test_a_signed_body_nested_1000_levels_deep_is_a_400(stripe):
    make_tenant("acme")
    status, body = stripe.deliver('{"id": "evt_1", "data": ' + "[" * 1000 + "]" * 1000 + "}")
    assert status == 400 and body["details"][0]["field"] == "body"
    status, body = stripe.deliver(
        json.dumps(_with(_failed(), "data.object.lines", json.loads("[" * 60 + "]" * 60)))
    )
    assert status == 400


def test_a_well_formed_event_still_passes(stripe):
    make_tenant("acme")
    assert stripe.deliver(_failed())[0] == 200
