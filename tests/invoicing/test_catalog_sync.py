"""``billing stripe sync-catalog``: one Stripe Product per plan line kind and per usage kind,
idempotent by metadata, ids recorded; invoice lines name them and keep our amounts to the cent."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import billing_cli.stripe_catalog  # noqa: F401 - registers `billing stripe`
from billing.runtime import container
from billing_cli import app
from tests.invoicing.conftest import MONTH, Billing, make_statement, make_tenant


def _product_posts(billing: Billing) -> list:
    return [r for r in billing.stripe.requests if r.method == "POST" and r.path.startswith("/v1/products")]


def test_sync_creates_each_product_once_and_records_the_ids(billing: Billing) -> None:
    plans = container.plan_catalog().plans
    runner = CliRunner()

    # When the operator looks first (dry run), nothing is written
    dry = runner.invoke(app, ["stripe", "sync-catalog", "--dry-run"], env={"COLUMNS": "160"})
    assert dry.exit_code == 0, dry.output
    assert "plan:starter:base_fee" in dry.output and "create" in dry.output
    assert _product_posts(billing) == [] and container.product_ids().get() == {}

    # When it syncs
    result = runner.invoke(app, ["stripe", "sync-catalog"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output

    # Then one product per plan and line kind, and one for usage, each named by its key; ids recorded
    expected = {f"plan:{p.id}:{k}" for p in plans for k in ("base_fee", "queries")} | {"usage:usage_cost"}
    by_key = {p["metadata"]["billing_key"]: p for p in billing.stripe.products.values()}
    assert set(by_key) == expected
    assert container.product_ids().get() == {k: p["id"] for k, p in by_key.items()}
    assert by_key["plan:starter:base_fee"]["name"] == "Starter plan - base fee"

    # When it runs again, nothing is created or changed
    billing.stripe.reset_requests()
    again = runner.invoke(app, ["stripe", "sync-catalog"])
    assert again.exit_code == 0 and _product_posts(billing) == []
    assert len(billing.stripe.products) == len(expected)


def test_a_renamed_product_is_updated_not_duplicated(billing: Billing) -> None:
    runner = CliRunner()
    runner.invoke(app, ["stripe", "sync-catalog"])
    (product,) = [
        p for p in billing.stripe.products.values() if p["metadata"]["billing_key"] == "usage:usage_cost"
    ]
    product["name"] = "renamed by hand"
    count = len(billing.stripe.products)

    runner.invoke(app, ["stripe", "sync-catalog"])

    assert len(billing.stripe.products) == count
    assert billing.stripe.products[product["id"]]["name"] == "Model and storage usage"


def test_invoice_lines_name_the_synced_products_with_our_amounts(billing: Billing) -> None:
    # Given the catalog synced, and a statement with a base fee and usage
    CliRunner().invoke(app, ["stripe", "sync-catalog"])
    ids = container.product_ids().get()
    container.reset()  # a new process: invoicing reads the recorded ids
    make_tenant("acme")
    make_statement("acme", ["29", "4.4449"])

    # When invoiced
    outcome = container.invoicing_service().invoice("acme", MONTH)

    # Then each item names its product through an inline price of exactly the line's cents
    assert outcome.state == "paid"
    posts = [r.params for r in billing.stripe.requests if r.path == "/v1/invoiceitems" and r.method == "POST"]
    assert [p["price_data"]["product"] for p in posts] == [
        ids["plan:starter:base_fee"],
        ids["usage:usage_cost"],
    ]
    assert [p["price_data"]["unit_amount"] for p in posts] == ["2900", "444"]
    assert billing.stripe.invoices_for("acme")[0]["total"] == 3344


def _portal_posts(billing: Billing) -> list:
    return [
        r
        for r in billing.stripe.requests
        if r.method == "POST" and r.path.startswith("/v1/billing_portal/configurations")
    ]


def test_sync_keeps_one_customer_portal_configuration_and_records_it(
    billing: Billing, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    ids = container.payment_settings_page_id()

    # When the operator looks first (dry run), it says the configuration would be created, and writes nothing
    dry = runner.invoke(app, ["stripe", "sync-catalog", "--dry-run"], env={"COLUMNS": "160"})
    assert dry.exit_code == 0, dry.output
    assert "customer portal configuration: create" in dry.output
    assert _portal_posts(billing) == [] and ids.get() is None

    # When it syncs
    result = runner.invoke(app, ["stripe", "sync-catalog"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output

    # Then one configuration: the invoices, the card, the customer's details; its id recorded
    (config,) = billing.stripe.portal_configurations.values()
    features = config["features"]
    assert features["invoice_history"]["enabled"] and features["payment_method_update"]["enabled"]
    assert features["customer_update"]["allowed_updates"] == ["email", "address", "tax_id"]
    assert config["default_return_url"] == container.settings().billing_portal_return_url
    assert config["metadata"]["billing_key"] == "payment_settings_page" and not config["is_default"]
    assert ids.get() == config["id"]

    # When it runs again, nothing is sent; when the return URL changes, the same one is updated
    billing.stripe.reset_requests()
    again = runner.invoke(app, ["stripe", "sync-catalog"], env={"COLUMNS": "160"})
    assert again.exit_code == 0 and "customer portal configuration: unchanged" in again.output
    assert _portal_posts(billing) == []
    monkeypatch.setenv("BILLING_PORTAL_RETURN_URL", "https://app.example/settings/billing")
    container.reset()
    dry = runner.invoke(app, ["stripe", "sync-catalog", "--dry-run"], env={"COLUMNS": "160"})
    assert "customer portal configuration: update" in dry.output and _portal_posts(billing) == []
    runner.invoke(app, ["stripe", "sync-catalog"], env={"COLUMNS": "160"})
    (updated,) = billing.stripe.portal_configurations.values()
    assert (
        updated["id"] == config["id"]
        and updated["default_return_url"] == "https://app.example/settings/billing"
    )
    assert len(_portal_posts(billing)) == 1 and container.payment_settings_page_id().get() == config["id"]
