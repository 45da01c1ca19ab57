"""``billing stripe check``: what the Stripe account lacks before going live, judged from its API,
above all whether a tenant without a card would ever be dunned (``invoice.overdue``)."""

from __future__ import annotations

import stripe
from typer.testing import CliRunner

import billing_cli.stripe_catalog  # noqa: F401 - registers `billing stripe`
from billing.payments.setup_check import check_setup
from billing.payments.stripe_webhooks import HANDLED_EVENTS
from billing.runtime import container
from billing_cli import app
from tests.invoicing.conftest import Billing

WIDE = {"COLUMNS": "240"}


def _sdk(billing: Billing) -> stripe.StripeClient:
    return stripe.StripeClient(
        "sk_test_double",
        stripe_version=container.settings().stripe_api_version,
        base_addresses={"api": billing.stripe.api_base},
        max_network_retries=0,
    )


def _endpoint(billing: Billing, events: list[str]) -> None:
    _sdk(billing).v1.webhook_endpoints.create(
        {
            "url": "https://api.example/v1/webhooks/stripe",
            "enabled_events": events,  # type: ignore[typeddict-item]
            "api_version": container.settings().stripe_api_version,
        }
    )


def _rows(output: str) -> dict[str, str]:
    """check -> status, from the table's rows."""
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if len(cells) >= 2 and cells[1] in ("ok", "missing", "warning", "confirm"):
            rows[cells[0]] = cells[1]
    return rows


def test_a_new_account_is_missing_its_webhook_endpoint_and_portal_configuration(billing: Billing) -> None:
    # Given a Stripe account nobody set up
    # When the operator checks it
    result = CliRunner().invoke(app, ["stripe", "check"], env=WIDE)

    # Then it fails, naming what is missing, and what to confirm by hand
    assert result.exit_code == 4, result.output  # not configured
    rows = _rows(result.output)
    assert rows["webhook endpoint"] == "missing" and rows["customer portal configuration"] == "missing"
    assert rows["invoice.overdue timing"] == "confirm" and rows["minimum charge USD"] == "ok"
    assert "nobody is dunned" in result.output


def test_an_endpoint_without_invoice_overdue_would_never_dun_a_tenant_without_a_card(
    billing: Billing,
) -> None:
    # Given the catalog synced and an endpoint receiving every event we handle but invoice.overdue
    assert CliRunner().invoke(app, ["stripe", "sync-catalog"]).exit_code == 0
    _endpoint(billing, [e for e in HANDLED_EVENTS if e != "invoice.overdue"])

    # When the operator checks the account
    result = CliRunner().invoke(app, ["stripe", "check"], env=WIDE)

    # Then it fails on invoice.overdue alone, saying what that costs
    assert result.exit_code == 4, result.output  # not configured
    rows = _rows(result.output)
    assert rows["invoice.overdue"] == "missing" and rows["webhook events"] == "ok"
    assert rows["customer portal configuration"] == "ok"
    assert "would never be dunned" in result.output


def test_a_set_up_account_passes_leaving_the_automation_to_confirm(billing: Billing) -> None:
    # Given the catalog synced and an endpoint receiving every event we handle at our API version
    assert CliRunner().invoke(app, ["stripe", "sync-catalog"]).exit_code == 0
    _endpoint(billing, list(HANDLED_EVENTS))

    # When the operator checks the account, then nothing is missing; the automation is to confirm by hand
    result = CliRunner().invoke(app, ["stripe", "check"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert set(_rows(result.output).values()) == {"ok", "confirm"}


def test_a_plan_currency_without_a_published_minimum_is_a_warning() -> None:
    # Given plans billing in USD and KWD (Stripe publishes no minimum for KWD)
    from billing.adapters.stripe.minimum_charge import minimum_charge

    findings = check_setup(
        endpoints=[],
        handled_events=HANDLED_EVENTS,
        api_version="2026-10-28.endive",
        page_config_id=None,
        page_configs=[],
        currencies=["usd", "kwd"],
        minimum_charge=minimum_charge,
    )
    # Then USD is fine and KWD is a warning saying why
    by_check = {f.check: f for f in findings}
    assert by_check["minimum charge USD"].status == "ok"
    assert by_check["minimum charge KWD"].status == "warning"
    assert "day's rate" in by_check["minimum charge KWD"].detail
