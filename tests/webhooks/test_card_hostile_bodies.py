"""Card events (``checkout.session.completed``, ``setup_intent.succeeded``, ``customer.updated``)
that are correctly signed but of the wrong shape are a 400 naming the field, and change nothing: not
the tenant record, not the customer at Stripe, not the processed-event log. Never a 500, and never a
503, which would tell Stripe (and the operator) to try again input that can never become valid."""

from __future__ import annotations

import copy
from typing import Any

import boto3
import pytest

from billing.payments.card_on_file import SetupRequest
from billing.runtime import container
from tests.dunning.support import T0, stripe_event
from tests.support import create_tenant


@pytest.fixture
def card_events(world) -> dict[str, dict[str, Any]]:
    """Given acme, which opened a setup page and saved a card there (the events not delivered yet)."""
    create_tenant("acme")
    session = container.card_on_file().setup_session("acme", SetupRequest())
    world.new_events()
    world.double.complete_checkout_session(session["session_id"])
    events = {e["type"]: e for e in world.new_events()}
    customer = copy.deepcopy(world.double.customers[session["customer_id"]])
    customer["metadata"] = {"tenant_id": "acme"}
    customer["invoice_settings"]["default_payment_method"] = events["setup_intent.succeeded"]["data"][
        "object"
    ]["payment_method"]
    events["customer.updated"] = stripe_event("evt_customer_updated", "customer.updated", customer, T0)
    return events


def _with(event: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    event = copy.deepcopy(event)
    *parents, last = path.split(".")
    node = event
    for key in parents:
        node = node[key]
    node[last] = value
    return event


def _state(world) -> tuple[Any, ...]:
    """What a card event may change: the tenant record (its version too), the customer's default
    card at Stripe, the processed-event log."""
    tenant = container.tenants().get("acme")
    customer = world.double.customers[tenant.stripe_customer_id]
    ledger = boto3.client("dynamodb").scan(TableName=container.settings().ledger_table)["Items"]
    webhooks = sorted(i["pk"]["S"] for i in ledger if i["pk"]["S"].startswith("WEBHOOK#"))
    return tenant, customer["invoice_settings"]["default_payment_method"], webhooks


def _refused(stripe, world, event: dict[str, Any], field: str) -> None:
    before = _state(world)
    status, body = stripe.deliver(event)
    assert status == 400, body
    assert body["error"] == "invalid_request"
    fields = {d["field"] for d in body["details"]}
    assert field in fields or any(f.startswith(field + ".") for f in fields), body
    assert _state(world) == before


@pytest.mark.parametrize("event_type", ["checkout.session.completed", "setup_intent.succeeded"])
def test_a_card_event_created_outside_the_datetime_range_is_a_400(stripe, world, card_events, event_type):
    # Given a signed card event whose object says it was created in the year 33658
    event = _with(card_events[event_type], "data.object.created", 10**12)
    # When Stripe delivers it, Then it is a 400 naming the field, and nothing changed
    _refused(stripe, world, event, "data.object.created")


@pytest.mark.parametrize(
    "event_type", ["checkout.session.completed", "setup_intent.succeeded", "customer.updated"]
)
def test_a_card_event_whose_tenant_id_is_a_number_is_a_400_not_a_503(stripe, world, card_events, event_type):
    # Given a signed card event whose metadata names the tenant with a number
    event = _with(card_events[event_type], "data.object.metadata.tenant_id", 123)
    # When Stripe delivers it, Then it is a 400 (not a retryable 503) naming the field, and nothing changed
    _refused(stripe, world, event, "data.object.metadata.tenant_id")


@pytest.mark.parametrize(
    "event_type, path, value",
    [
        ("checkout.session.completed", "data.object.created", -(10**12)),
        ("checkout.session.completed", "data.object.created", 1e12),
        ("setup_intent.succeeded", "data.object.created", 1.7e9),
        ("setup_intent.succeeded", "data.object.created", True),
        ("setup_intent.succeeded", "data.object.created", "1700000000"),
        ("checkout.session.completed", "data.object.client_reference_id", 123),
        ("checkout.session.completed", "data.object.setup_intent", 5),
        ("checkout.session.completed", "data.object.customer", ["cus_1"]),
        ("checkout.session.completed", "data.object.mode", 1),
        ("setup_intent.succeeded", "data.object.customer", 5),
        ("setup_intent.succeeded", "data.object.payment_method", {"object": "payment_method"}),
        ("setup_intent.succeeded", "data.object.metadata", "tenant_id=acme"),
        ("setup_intent.succeeded", "data.object.metadata.tenant_id", "x" * 3000),
        ("setup_intent.succeeded", "data.object.id", "seti_" + "x" * 1100),
        ("customer.updated", "data.object.invoice_settings", "pm_1"),
        ("customer.updated", "data.object.invoice_settings.default_payment_method", 5),
        ("customer.updated", "data.object.id", 42),
    ],
)
def test_every_card_field_we_read_refuses_a_value_of_the_wrong_shape(
    stripe, world, card_events, event_type, path, value
):
    # Given a signed card event with one field we read set to a value of the wrong type or size
    event = _with(card_events[event_type], path, value)
    # When Stripe delivers it, Then it is a 400 naming that field, and nothing changed
    _refused(stripe, world, event, path)


def test_well_formed_card_events_still_pass(stripe, world, card_events):
    # Given the three card events as Stripe sends them, When they are delivered
    for event_type in ("setup_intent.succeeded", "checkout.session.completed", "customer.updated"):
        status, body = stripe.deliver(card_events[event_type])
        # Then each is processed
        assert status == 200 and body["status"] == "processed", (event_type, body)
    assert container.tenants().get("acme").payment_method_id is not None
