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
