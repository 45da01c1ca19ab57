"""``billing portal link`` on the configured (test) environment, and the demo data ``serve`` shows."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from billing.kernel.periods import Month, parse_instant
from billing.runtime import container
from billing_cli import _load, app


def test_link_prints_a_url_whose_token_opens_the_tenants_page(portal):
    _load()
    # When an operator asks for acme's link
    result = CliRunner().invoke(
        app, ["portal", "link", "acme", "--base-url", "https://billing.example/prod"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    url = re.search(r"https://billing\.example/prod/v1/portal\?token=(\S+)", result.output)
    assert url, result.output
    # Then the token is acme's, and the page opens with it
    assert container.portal_tokens().verify(url.group(1)).tenant_id == "acme"
    assert portal.page(url.group(1))["statusCode"] == 200
    # And an unknown tenant is refused
    assert CliRunner().invoke(app, ["portal", "link", "nobody"]).exit_code != 0


def test_the_demo_tenant_has_two_months_of_usage_and_an_open_invoice(env, clock):
    from billing_local.portal_demo import seed_demo_tenant

    now = parse_instant("2025-11-20T15:30:00Z")
    seed_demo_tenant("demo-co", now, events_per_month=300)
    view = container.portal_service().view("demo-co", "2025-10")
    assert sum(d.queries for d in view.rollup.days) > 0 and len(view.rollup.days) == 31
    assert [i.month for i in view.open_invoices] == ["2025-10"]
    assert view.open_invoices[0].hosted_invoice_url.startswith("https://")
    current = container.portal_service().view("demo-co")
    assert current.month == Month.parse("2025-11") and current.quota.used > 0
