"""A card on file: the setup session, the webhook that makes the saved card the invoices' default
(idempotent, order-safe), the portal, and what the status API says."""

from __future__ import annotations

import copy
import json
import random

import pytest

from billing.runtime import container
from tests.conftest import api_event
from tests.dunning.support import load_handler


def signup(tenant_id: str) -> None:
    from billing.tenants.tenant import Tenant

    assert container.tenants().create(
        Tenant(
            id=tenant_id, name=tenant_id.title(), email=f"billing@{tenant_id}.example", api_key_ids=["k-own"]
        )
    )


@pytest.fixture(scope="module")
def tenants_app():
    return load_handler("tenants_api")


def call(app, lambda_context, path: str, body: dict | None = None, api_key_id: str = "platform-key"):
    tenant_id = path.split("/")[3]
    request = api_event(
        body or {},
        path=path,
        method="POST",
        api_key_id=api_key_id,
        path_parameters={"tenant_id": tenant_id},
    )
    request["resource"] = "/v1/tenants/{tenant_id}/billing/" + path.rsplit("/", 1)[1]
    response = app.handler(request, lambda_context)
    return response["statusCode"], json.loads(response["body"])


@pytest.fixture
def cards(world, stripe, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PLATFORM_API_KEY_IDS", "platform-key")
    container.reset()
    container.override(clock=stripe.clock)
    return world


def test_setup_session_then_webhook_makes_the_card_the_default(
    cards, stripe, tenants_app, lambda_context
) -> None:
    # Given a tenant without a Stripe customer yet
    signup("acme")

    # When the platform asks for a setup page
    status, body = call(tenants_app, lambda_context, "/v1/tenants/acme/billing/setup", {})

    # Then it gets a Checkout URL for the tenant's customer, created on demand, in setup mode
    assert status == 201, body
    assert body["url"].startswith("https://checkout.stripe.com/")
    customer_id = container.tenants().get("acme").stripe_customer_id
    assert body["customer_id"] == customer_id
    session = cards.double.checkout_sessions[body["session_id"]]
    assert session["mode"] == "setup" and session["customer"] == customer_id
    assert session["success_url"] == container.settings().billing_setup_success_url
    assert stripe.get_status("acme")[1]["payment_method_on_file"] is False

    # When the tenant saves a card and Stripe delivers its events (each twice)
    cards.new_events()
    cards.double.complete_checkout_session(body["session_id"])
    events = cards.new_events()
    assert [e["type"] for e in events] == ["setup_intent.succeeded", "checkout.session.completed"]
    for event in events + events:
        assert stripe.deliver(event)[0] == 200

    # Then the card is the customer's invoice default and the status API says a card is on file
    customer = cards.double.customers[customer_id]
    payment_method = customer["invoice_settings"]["default_payment_method"]
    assert payment_method and cards.double.payment_methods[payment_method]["customer"] == customer_id
    status, view = stripe.get_status("acme")
    assert view["payment_method_on_file"] is True
    assert container.tenants().get("acme").payment_method_id == payment_method
    # and so does the operator CLI
    from typer.testing import CliRunner

    import billing_cli.tenant  # noqa: F401 - registers `billing tenant`
    from billing_cli import app

    out = CliRunner().invoke(app, ["tenant", "status", "acme", "--json"])
    assert json.loads(out.output)["payment_method_on_file"] is True


def portal_configured() -> None:
    """What ``billing stripe sync-catalog`` does for the portal: our configuration, its id recorded."""
    from billing.payments.payment_settings_page import PageSpec, sync_page

    spec = PageSpec(default_return_url=container.settings().billing_portal_return_url)
    sync_page(spec, container.stripe_gateway(), container.payment_settings_page_id())


def test_the_tenants_own_key_may_ask_for_its_pages_and_no_other(
    cards, stripe, tenants_app, lambda_context
) -> None:
    portal_configured()
    signup("acme")
    signup("other")
    assert call(tenants_app, lambda_context, "/v1/tenants/acme/billing/portal", {}, "k-own")[0] == 201
    status, body = call(tenants_app, lambda_context, "/v1/tenants/acme/billing/setup", {}, "k-stranger")
    assert status == 403
    status, body = call(
        tenants_app, lambda_context, "/v1/tenants/acme/billing/setup", {"success_url": "javascript:x"}
    )
    assert status == 400 and body["details"][0]["field"] == "success_url"
    status, body = call(tenants_app, lambda_context, "/v1/tenants/nobody/billing/setup", {})
    assert status == 404


def test_the_portal_session_url_and_return_url(cards, stripe, tenants_app, lambda_context) -> None:
    # Given the catalog sync made our portal configuration
    portal_configured()
    signup("acme")

    # When the tenant asks for its payment settings page
    status, body = call(
        tenants_app,
        lambda_context,
        "/v1/tenants/acme/billing/portal",
        {"return_url": "https://app.example/b"},
    )

    # Then a session of its customer, returning where asked, with our configuration
    assert status == 201 and body["url"].startswith("https://billing.stripe.com/")
    (portal,) = cards.double.portal_sessions.values()
    assert portal["return_url"] == "https://app.example/b"
    assert portal["customer"] == container.tenants().get("acme").stripe_customer_id
    assert portal["configuration"] == container.payment_settings_page_id().get()


def test_without_a_portal_configuration_the_page_is_a_503_naming_the_fix(
    cards, stripe, tenants_app, lambda_context
) -> None:
    # Given an account whose portal was never configured (no sync, no settings saved in the Dashboard)
    signup("acme")

    # When the tenant asks for its payment settings page
    status, body = call(tenants_app, lambda_context, "/v1/tenants/acme/billing/portal", {})

    # Then Stripe refused the session, and the answer says what the operator must run
    assert status == 503 and "billing stripe sync-catalog" in body["message"]
    assert cards.double.portal_sessions == {}

    # When the settings are saved in the Dashboard instead, sessions use that default
    default = cards.double.save_portal_settings()
    assert call(tenants_app, lambda_context, "/v1/tenants/acme/billing/portal", {})[0] == 201
    assert [p["configuration"] for p in cards.double.portal_sessions.values()] == [default["id"]]


def test_two_setups_delivered_in_any_order_end_with_the_newer_card(
    cards, stripe, tenants_app, lambda_context
) -> None:
    # Given two completed setups of one tenant, the second one a minute later
    signup("acme")
    streams = []
    for n in range(2):
        _, body = call(tenants_app, lambda_context, "/v1/tenants/acme/billing/setup", {})
        cards.new_events()
        cards.double.complete_checkout_session(body["session_id"])
        events = cards.new_events()
        for event in events:
            event["data"]["object"]["created"] = 1_700_000_000 + 60 * n
        streams.append(events)
    newer = streams[1][0]["data"]["object"]["payment_method"]

    # When their events arrive shuffled and duplicated, several times
    for seed in range(3):
        stream = [copy.deepcopy(e) for e in streams[0] + streams[1] + streams[0]]
        random.Random(seed).shuffle(stream)
        for event in stream:
            assert stripe.deliver(event)[0] == 200

        # Then the newer card is the default, at Stripe and on the tenant
        customer_id = container.tenants().get("acme").stripe_customer_id
        assert cards.double.customers[customer_id]["invoice_settings"]["default_payment_method"] == newer
        assert container.tenants().get("acme").payment_method_id == newer


def test_a_setup_of_another_customer_is_ignored(cards, stripe, tenants_app, lambda_context) -> None:
    signup("acme")
    _, body = call(tenants_app, lambda_context, "/v1/tenants/acme/billing/setup", {})
    cards.new_events()
    cards.double.complete_checkout_session(body["session_id"])
    for event in cards.new_events():
        event["data"]["object"]["customer"] = "cus_someone_else"
        assert stripe.deliver(event)[1]["status"] in ("ignored", "duplicate")
    assert container.tenants().get("acme").payment_method_id is None


@pytest.mark.parametrize("fault", ["server_error", "timeout"])
@pytest.mark.parametrize("page", ["setup", "portal"])
def test_stripe_failing_makes_the_pages_a_503_with_retry_after(
    cards, stripe, tenants_app, lambda_context, monkeypatch: pytest.MonkeyPatch, page, fault
) -> None:
    # Given a tenant linked to its Stripe customer, and Stripe failing every session request
    # (answering 500, or not answering within the timeout), with a short retry budget
    monkeypatch.setenv("STRIPE_TIMEOUT_S", "0.2")
    monkeypatch.setenv("STRIPE_MAX_ATTEMPTS", "2")
    container.reset()
    container.override(clock=stripe.clock)
    signup("acme")
    container.link_customer("acme")
    portal_configured()
    path = r"^/v1/checkout/sessions$" if page == "setup" else r"^/v1/billing_portal/sessions$"
    cards.double.add_fault(fault, method="POST", path=path, times=-1)

    # When the platform asks for the page
    response = tenants_app.handler(_request(f"/v1/tenants/acme/billing/{page}"), lambda_context)

    # Then it is told to come back later (503 with Retry-After), as for any failing backing service
    assert response["statusCode"] == 503, response
    assert json.loads(response["body"])["error"] == "service_unavailable"
    assert int(response["multiValueHeaders"]["Retry-After"][0]) > 0

    # And once Stripe is back the same request succeeds
    cards.double.clear_faults()
    assert call(tenants_app, lambda_context, f"/v1/tenants/acme/billing/{page}", {})[0] == 201


def _request(path: str) -> dict:
    request = api_event(
        {},
        path=path,
        method="POST",
        api_key_id="platform-key",
        path_parameters={"tenant_id": path.split("/")[3]},
    )
    request["resource"] = "/v1/tenants/{tenant_id}/billing/" + path.rsplit("/", 1)[1]
    return request


def test_a_completed_setup_while_stripe_fails_is_a_503_and_its_redelivery_completes_it(
    cards, stripe, tenants_app, lambda_context, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a completed setup, and Stripe failing every change of the customer (the default card)
    monkeypatch.setenv("STRIPE_MAX_ATTEMPTS", "2")
    container.reset()
    container.override(clock=stripe.clock)
    signup("acme")
    _, body = call(tenants_app, lambda_context, "/v1/tenants/acme/billing/setup", {})
    cards.new_events()
    cards.double.complete_checkout_session(body["session_id"])
    (succeeded, _completed) = cards.new_events()
    cards.double.add_fault("server_error", method="POST", path=r"^/v1/customers/", times=-1)

    # When Stripe delivers setup_intent.succeeded
    status, answer = stripe.deliver(succeeded)

    # Then it is a 503 (Stripe redelivers it), and the tenant has no card on file yet
    assert status == 503, answer
    assert container.tenants().get("acme").payment_method_id is None

    # And the redelivery once Stripe is back makes the card the default
    cards.double.clear_faults()
    status, answer = stripe.deliver(succeeded)
    assert status == 200 and answer["status"] == "processed", answer
    assert container.tenants().get("acme").payment_method_id == succeeded["data"]["object"]["payment_method"]


def test_a_redelivered_card_event_leaves_the_tenant_record_untouched(
    cards, stripe, tenants_app, lambda_context
) -> None:
    # Given acme's completed setup, its two events delivered once
    signup("acme")
    _, body = call(tenants_app, lambda_context, "/v1/tenants/acme/billing/setup", {})
    cards.new_events()
    cards.double.complete_checkout_session(body["session_id"])
    events = cards.new_events()
    for event in events:
        assert stripe.deliver(event)[0] == 200
    applied = container.tenants().get("acme")
    assert applied.payment_method_id is not None
    customer_writes = len(_customer_writes(cards))

    # When Stripe redelivers each (same event id), and the same facts come again under new ids
    again = [copy.deepcopy(e) for e in events]
    for n, event in enumerate(again):
        event["id"] = f"evt_same_facts_{n}"
    for event in events + again:
        status, answer = stripe.deliver(event)
        assert status == 200 and answer.get("changed") in (None, False), answer

    # Then the tenant record is exactly as it was (its version too), and Stripe was not asked to
    # set the same default card again
    assert container.tenants().get("acme") == applied
    assert len(_customer_writes(cards)) == customer_writes


def test_the_mirror_writes_a_payment_method_only_when_it_changes_something(cards) -> None:
    # Given acme's mirror holding a card as of a moment
    from datetime import UTC, datetime, timedelta

    signup("acme")
    store = container.tenants()
    at = datetime(2025, 12, 1, 9, 0, tzinfo=UTC)
    assert store.record_payment_method("acme", "pm_1", at) is True
    version = store.get("acme").version

    # When the same card at the same moment is recorded again, or an older card
    # Then nothing is written (the version stays)
    assert store.record_payment_method("acme", "pm_1", at) is False
    assert store.record_payment_method("acme", "pm_0", at - timedelta(hours=1)) is False
    assert store.get("acme").version == version

    # And each newer fact is written once: the card removed, then another card
    for n, card in enumerate([None, "pm_2"], start=1):
        later = at + timedelta(hours=n)
        assert store.record_payment_method("acme", card, later) is True
        assert store.record_payment_method("acme", card, later) is False
        assert store.get("acme").version == version + n
        assert store.get("acme").payment_method_id == card


def _customer_writes(world) -> list:
    return [r for r in world.double.requests if r.method == "POST" and r.path.startswith("/v1/customers/")]
