"""What the page shows: the statement exactly as GET /v1/tenants/{id}/statements/{month} returns it,
per-day figures from the rollup equal to usage_events FINAL, quota, standing, open invoices, CSV."""

from __future__ import annotations

import base64
import json
import re
from datetime import date
from decimal import Decimal

import pytest

from billing.invoicing import InvoiceRecord
from billing.kernel.periods import Month
from billing.rating.csv import lines_csv
from billing.runtime import container
from tests.conftest import api_event
from tests.metering.conftest import load_handler
from tests.portal.conftest import usage


def statement_route(tenant_id: str, month: str, lambda_context) -> dict:
    event = api_event(
        "",
        path=f"/v1/tenants/{tenant_id}/statements/{month}",
        method="GET",
        path_parameters={"tenant_id": tenant_id, "month": month},
    )
    response = load_handler("tenants_api").handler(event, lambda_context)
    assert response["statusCode"] == 200, response
    return json.loads(response["body"])


def final_per_day(tenant_id: str, month: Month) -> dict[date, tuple[int, Decimal]]:
    rows = container.usage_store().query(
        """SELECT toDate(timestamp), sum(queries), sum(cost_usd) FROM usage_events FINAL
           WHERE tenant_id = {t:String} AND timestamp >= {s:DateTime64(3, 'UTC')} AND timestamp < {e:DateTime64(3, 'UTC')}
           GROUP BY 1""",
        {"t": tenant_id, "s": month.start, "e": month.end},
    )
    return {d: (int(q), Decimal(c)) for d, q, c in rows}


@pytest.mark.parametrize("month", ["2025-11", "2025-10"])
def test_the_page_shows_the_statement_exactly_as_the_statements_route(portal, lambda_context, month):
    token = portal.token("acme")
    # When the page's JSON route and the statements route are asked for the same month
    data = json.loads(portal.data(token, month)["body"])
    expected = statement_route("acme", month, lambda_context)
    # Then the statement (every line, every amount, the total) is the same, preview flag included
    assert data["statement"] == expected["statement"]
    assert data["preview"] is expected["preview"] is True
    assert Decimal(data["total"]) == Decimal(expected["statement"]["total"]) > 0
    # And the HTML page shows that total and one row per line with the same amounts
    html = portal.page(token, month)["body"]
    assert f'id="total" data-amount="{Decimal(expected["statement"]["total"]):.2f}"' in html
    amounts = re.findall(r'<tr data-line="[^"]+">.*?data-amount="([0-9.-]+)"', html)
    assert amounts == [f"{Decimal(line['amount']):.2f}" for line in expected["statement"]["lines"]]


def test_an_issued_statement_is_shown_as_stored(portal, lambda_context, clock):
    # Given October is closed (its statement stored)
    from billing.kernel.periods import parse_instant

    clock(parse_instant("2025-11-01T00:20:00Z"))
    container.billing_cycle().close(Month.parse("2025-10"))
    clock(parse_instant("2025-11-20T15:30:00Z"))
    token = portal.token("acme")
    data = json.loads(portal.data(token, "2025-10")["body"])
    assert data["preview"] is False
    assert data["statement"] == statement_route("acme", "2025-10", lambda_context)["statement"]
    assert "Statement issued 2025-10-31" in portal.page(token, "2025-10")["body"]


def test_per_day_figures_come_from_the_rollup_and_equal_usage_events_final(portal):
    # Given acme's October and November usage (conftest), When the page data is read
    token = portal.token("acme")
    data = json.loads(portal.data(token)["body"])
    month = Month.parse("2025-11")
    exact = final_per_day("acme", month)
    # Then the current month has one entry per day up to today (20 November), zeros included
    assert [d["day"] for d in data["days"]] == [f"2025-11-{n:02d}" for n in range(1, 21)]
    for day in data["days"]:
        q, c = exact.get(date.fromisoformat(day["day"]), (0, Decimal(0)))
        assert (day["queries"], Decimal(day["cost_usd"])) == (q, c), day
    # And the model table adds up to the month, and to the statement's usage line
    assert sum(m["queries"] for m in data["models"]) == sum(q for q, _ in exact.values())
    usage_cost = sum((Decimal(m["cost_usd"]) for m in data["models"]), Decimal(0))
    assert usage_cost == sum((c for _, c in exact.values()), Decimal(0))
    usage_line = next(line for line in data["statement"]["lines"] if line["line_id"] == "usage")
    assert Decimal(usage_line["amount_exact"]) == usage_cost
    # And a past month lists every one of its days
    october = json.loads(portal.data(token, "2025-10")["body"])
    assert len(october["days"]) == 31


def test_a_day_without_usage_is_a_zero_point(portal):
    container.usage_store().insert_events(usage("newco", "2025-11-03T00:00:00Z", 1, 3))
    from tests.rating.helpers import make_tenant

    make_tenant("newco", [("pro", "2025-11-01T00:00:00Z")])
    data = json.loads(portal.data(portal.token("newco"))["body"])
    assert len(data["days"]) == 20
    assert [d["queries"] > 0 for d in data["days"]].count(True) == 1
    assert data["days"][0] == {"day": "2025-11-01", "queries": 0, "cost_usd": "0"}
    assert data["months"] == ["2025-11"]  # nothing before the first plan is selectable


def test_quota_standing_and_open_invoices(portal):
    # Given acme used 426 queries of its 10,000 this month, is past due, and has an open invoice for
    # October with a Stripe hosted link (and a paid one would not be listed)
    container.ledger().quota_set("acme", "2025-11", 426, None, 2_000_000_000)
    tenant = container.tenants().get("acme")
    container.tenants().save(tenant.model_copy(update={"payment_status": "past_due"}))
    container.invoice_records().save(
        InvoiceRecord(
            tenant_id="acme",
            month="2025-10",
            statement_id="acme:2025-10",
            state="payment_failed",
            total_cents=3512,
            invoice_id="in_123",
            invoice_status="open",
            invoice_number="A-0001",
            hosted_invoice_url="https://invoice.stripe.com/i/acct_1/test_abc",
            stripe_total=3512,
        )
    )
    container.invoice_records().save(
        InvoiceRecord(
            tenant_id="acme",
            month="2025-11",
            statement_id="acme:2025-11",
            state="paid",
            total_cents=100,
            invoice_id="in_456",
            invoice_status="paid",
        )
    )
    token = portal.token("acme")
    data = json.loads(portal.data(token)["body"])
    assert data["quota"] == {"used": 426, "limit": 10000, "resets_at": "2025-12-01T00:00:00Z"}
    assert data["payment_status"] == "past_due"
    assert [i["invoice_id"] for i in data["open_invoices"]] == ["in_123"]
    assert data["open_invoices"][0]["amount"] == "35.12"
    html = portal.page(token)["body"]
    assert (
        '<a href="https://invoice.stripe.com/i/acct_1/test_abc" target="_blank" rel="noopener noreferrer">'
        in html
    )
    assert "426 / 10,000" in html and "Resets 01 Dec 2025, 00:00 UTC" in html
    assert "Payment overdue" in html and "$35.12" in html


@pytest.mark.parametrize(
    ("currency", "minor", "json_amount", "shown"),
    [("jpy", 3512, "3512", "¥3,512"), ("kwd", 3512, "3.512", "3.512 KWD")],
)
def test_an_open_invoice_is_shown_in_its_currencys_minor_units(portal, currency, minor, json_amount, shown):
    # Given an open invoice in a currency without cents (Stripe's amount: 3512 yen, or 3.512 dinars)
    container.invoice_records().save(
        InvoiceRecord(
            tenant_id="acme",
            month="2025-10",
            statement_id="acme:2025-10",
            state="sent",
            total_cents=minor,
            currency=currency,
            invoice_id="in_jp",
            invoice_status="open",
            stripe_total=minor,
        )
    )
    # When the page and its data are read
    token = portal.token("acme")
    (invoice,) = json.loads(portal.data(token)["body"])["open_invoices"]
    # Then the amount is Stripe's minor units at the currency's exponent, not divided by 100
    assert (invoice["amount"], invoice["currency"]) == (json_amount, currency)
    assert f"{shown} (open)" in portal.page(token)["body"]


def test_a_month_not_on_the_page_is_a_400_naming_month(portal):
    token = portal.token("acme")
    for month in ("2025-13", "2025-12", "2025-08", "last"):
        data = portal.data(token, month)
        assert data["statusCode"] == 400, month
        assert json.loads(data["body"])["details"][0]["field"] == "month"
        page = portal.page(token, month)
        assert page["statusCode"] == 400 and page["body"].startswith("<!doctype html>")


def test_the_csv_link_holds_the_statement_lines(portal, lambda_context):
    token = portal.token("acme")
    html = portal.page(token)["body"]
    link = re.search(r'id="csv" download="([^"]+)" href="data:text/csv;charset=utf-8;base64,([^"]+)"', html)
    assert link and link.group(1) == "acme-2025-11-statement-lines.csv"
    statement, _ = container.billing_cycle().statement("acme", Month.parse("2025-11"))
    assert base64.b64decode(link.group(2)) == lines_csv([statement])


def test_numbers_are_formatted_for_people_and_utc_is_said(portal):
    from billing.portal.page import count, usd

    assert usd(Decimal("1234567.005")) == "$1,234,567.01" and usd(Decimal("-3")) == "-$3.00"
    assert count(2592000) == "2,592,000" and count(Decimal("1.50")) == "1.5"
    html = portal.page(portal.token("acme"))["body"]
    assert "all times UTC" in html and "Updated 20 Nov 2025, 15:30 UTC" in html


def test_page_headers_keep_the_token_private_and_load_nothing_external(portal):
    response = portal.page(portal.token("acme"))
    headers = {k: v[0] for k, v in response["multiValueHeaders"].items()}
    assert headers["Referrer-Policy"] == "no-referrer" and headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert not re.search(
        r'(src|href)="(https?:)?//', response["body"].replace('href="https://invoice.stripe.com', "")
    )


def test_the_page_shows_the_prepaid_credit_left_as_the_status_api(portal, lambda_context, clock):
    from billing.kernel.periods import parse_instant
    from billing.tenants.requests import CreditGrantRequest

    # Given acme holds two grants from September: 10.00 (burns first) and 500.00 expiring in January
    service = container.tenant_service()
    for grant_id, amount, priority, expires in (
        ("first", "10.00", 0, None),
        ("big", "500.00", 1, "2026-01-01T00:00:00Z"),
    ):
        service.grant_credit(
            "acme",
            CreditGrantRequest(grant_id=grant_id, amount=Decimal(amount), priority=priority,
                               granted_at="2025-09-01T00:00:00Z", expires_at=expires),
        )  # fmt: skip
    # And October is closed: its statement burns the credits it is paid with
    clock(parse_instant("2025-11-01T00:20:00Z"))
    october = container.billing_cycle().close(Month.parse("2025-10")).statements[0]
    clock(parse_instant("2025-11-20T15:30:00Z"))
    owed = sum((line.amount for line in october.lines if line.kind != "credit"), Decimal(0))
    assert october.total == 0 and 10 < owed < 510
    # When acme opens its page
    token = portal.token("acme")
    data = json.loads(portal.data(token)["body"])
    # Then the balance is what October left (510.00 less what it burnt), as the status API says
    left = Decimal("510.00") - owed
    assert data["credits"]["balance"] == {"usd": f"{left:.2f}"}
    status = load_handler("tenant_status").handler(
        api_event("", path="/v1/tenants/acme/status", method="GET", path_parameters={"tenant_id": "acme"}),
        lambda_context,
    )
    assert json.loads(status["body"])["credits"] == data["credits"]
    html = portal.page(token)["body"]
    assert f'id="credit-left" data-amounts="usd:{left:.2f}">${left:,.2f}</p>' in html
    assert "1 active grant; the next expires 1 Jan 2026." in html
    # And November's preview is paid from that balance exactly as the statements route says
    assert data["statement"] == statement_route("acme", "2025-11", lambda_context)["statement"]
    assert data["statement"]["total"] == "0.00"
    credit_line = next(line for line in data["statement"]["lines"] if line["line_id"] == "credit:big")
    # And the card says the expiry in the statement line's words
    assert ", expires 1 Jan 2026)" in credit_line["description"]
    # And a tenant holding no grants gets no credit card
    other = portal.token("globex")
    assert json.loads(portal.data(other)["body"])["credits"] is None
    assert "credit-left" not in portal.page(other)["body"]


def test_money_is_shown_in_the_statements_currency():
    from billing.portal.page import money

    assert money(Decimal("-1234.50"), "usd") == "-$1,234.50"
    assert money(Decimal("1230"), "jpy") == "¥1,230"
    assert money(Decimal("99"), "eur") == "€99.00"
    assert money(Decimal("1.235"), "kwd") == "1.235 KWD"
