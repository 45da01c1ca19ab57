"""Credits, coupons and charges through the real close, the tenants and status APIs and Stripe
(moto + chdb + the Stripe double), plans of tests/pricing/plans.yaml."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import pytest

from billing.kernel.periods import Month
from billing.runtime import container
from tests.conftest import api_event
from tests.invoicing.conftest import Billing
from tests.metering.conftest import load_handler
from tests.pricing.conftest import DATA
from tests.rating.helpers import make_tenant, queries

NOV, DEC = Month(2025, 11), Month(2025, 12)


@pytest.fixture(autouse=True)
def pricing_plans(env, monkeypatch):
    # after env, which starts every setting unset
    monkeypatch.setenv("PLANS_PATH", str(DATA / "plans.yaml"))
    container.reset()


@pytest.fixture
def call(lambda_context):
    apps = {"tenants_api": load_handler("tenants_api"), "tenant_status": load_handler("tenant_status")}

    def _call(function: str, method: str, path: str, body: Any = None, params: dict | None = None):
        event = api_event(
            body if body is not None else "", path=path, method=method, api_key_id="platform-key",
            path_parameters=params,
        )  # fmt: skip
        response = apps[function].handler(event, lambda_context)
        return response["statusCode"], json.loads(response["body"])

    return _call


def grant(call, tenant: str, **body: Any) -> tuple[int, dict]:
    return call("tenants_api", "POST", f"/v1/tenants/{tenant}/credits", body, {"tenant_id": tenant})


def test_credits_are_granted_once_burnt_once_and_shown_by_the_status_api(env, call):
    # Given a Flat tenant (100.00/month) with two grants through the tenants API
    make_tenant("acme", [("flat", "2025-10-01T00:00:00Z")])
    first = {"grant_id": "promo", "amount": "60.00", "priority": 1, "granted_at": "2025-10-15T00:00:00Z"}
    assert grant(call, "acme", **first)[0] == 201
    assert grant(call, "acme", **first)[0] == 200  # the same grant again: a no-op
    status, body = grant(call, "acme", **{**first, "amount": "61.00"})
    assert status == 409 and body["details"][0]["field"] == "grant_id"
    status, body = grant(call, "acme", grant_id="x", amount=5.5)
    assert status == 400 and body["details"][0]["field"] == "amount"
    status, body = grant(call, "acme", grant_id="x", amount="5", currency="eur")
    assert status == 400 and body["details"][0]["field"] == "currency"
    assert (
        grant(call, "acme", grant_id="topup", amount="50.00", priority=2, granted_at="2025-10-20T00:00:00Z")[
            0
        ]
        == 201
    )

    # When November is closed twice, and December once
    cycle = container.billing_cycle()
    november = cycle.close(NOV).statements[0]
    again = cycle.close(NOV).statements[0]
    # Then November burns promo in full (priority 1) and 40.00 of topup: total 0.00, not invoiced
    assert {l.line_id: l.amount for l in november.lines if l.kind == "credit"} == {
        "credit:promo": Decimal("-60.00"),
        "credit:topup": Decimal("-40.00"),
    }
    assert november.total == 0 and again == november
    # And the ledger holds each burn once; the re-run burnt nothing twice
    grants, burns = container.credit_book().ledger.entries("acme")
    assert sorted((b.grant_id, b.amount) for b in burns) == [
        ("promo", Decimal("60.00")),
        ("topup", Decimal("40.00")),
    ]
    status, body = call("tenants_api", "GET", "/v1/tenants/acme/credits", None, {"tenant_id": "acme"})
    assert status == 200 and [(g["grant_id"], g["remaining"]) for g in body["grants"]] == [
        ("promo", "0.00"),
        ("topup", "10.00"),
    ]
    # And the status API shows the balance left
    status, body = call("tenant_status", "GET", "/v1/tenants/acme/status", None, {"tenant_id": "acme"})
    assert status == 200 and body["credits"]["balance"] == {"usd": "10.00"}
    # And December uses what is left: 100.00 - 10.00
    december = cycle.close(DEC).statements[0]
    assert {l.line_id: l.amount for l in december.lines if l.kind == "credit"} == {
        "credit:topup": Decimal("-10.00")
    }
    assert december.total == Decimal("90.00")


def test_a_coupon_is_attached_once_through_the_api_and_applied_before_credits(env, call):
    make_tenant("beta", [("flat", "2025-10-01T00:00:00Z")])
    coupon = {"coupon_id": "launch", "percent_off": "25", "duration": "repeating", "duration_months": 1,
              "starts_at": "2025-11-01T00:00:00Z"}  # fmt: skip
    path, params = "/v1/tenants/beta/coupons", {"tenant_id": "beta"}
    assert call("tenants_api", "POST", path, coupon, params)[0] == 201
    status, body = call("tenants_api", "POST", path, coupon, params)
    assert status == 200 and len(body["coupons"]) == 1
    status, body = call("tenants_api", "POST", path, {**coupon, "coupon_id": "bad", "duration": "repeating",
                                                      "duration_months": None}, params)  # fmt: skip
    assert status == 400
    grant(call, "beta", grant_id="g", amount="100", granted_at="2025-10-01T00:00:00Z")
    november = container.billing_cycle().close(NOV).statements[0]
    # 100.00 - 25% = 75.00, then the credit pays the 75.00
    assert [(l.line_id, l.amount) for l in november.lines if l.kind in ("coupon", "credit")] == [
        ("coupon:launch", Decimal("-25.00")),
        ("credit:g", Decimal("-75.00")),
    ]
    december = container.billing_cycle().close(DEC).statements[0]
    assert [l.line_id for l in december.lines if l.kind == "coupon"] == []  # one month only
    assert december.total == Decimal("75.00")  # the grant's last 25.00


def test_late_events_of_a_volume_charge_adjust_by_the_difference(env):
    # Given a Volume tenant whose 15 November calls reached tier 2 (15 x 0.05 + 1.00), November closed
    make_tenant("acme", [("vol", "2025-10-01T00:00:00Z")])
    env.store.insert_events(queries("acme", 15, "2025-11-02T00:00:00Z", prefix="n"))
    cycle = container.billing_cycle()
    november = cycle.close(NOV).statements[0]
    assert november.total == Decimal("1.75")
    time.sleep(0.01)
    # When 10 more November calls are stored after the close
    env.store.insert_events(queries("acme", 10, "2025-11-20T00:00:00Z", prefix="late"))
    december = cycle.close(DEC).statements[0]
    # Then December re-rates November's volume charge with them (25 calls: tier 3, 25 x 0.02 = 0.50)
    # less what was billed (tier 2, 1.75): the tier-2 line comes off, the tier-3 line goes on
    assert {(l.line_id, l.quantity, l.amount) for l in december.lines if l.kind == "adjustment"} == {
        ("adj:2025-11:charge:calls:vol:t3", Decimal(25), Decimal("0.50")),
        ("adj:2025-11:charge:calls:vol:t2", Decimal(-15), Decimal("-1.75")),
        ("adj:2025-11:queries:vol:t1", Decimal(10), Decimal("0.00")),  # the plan's (free) query tiers
        ("adj:2025-11:usage", Decimal(10), Decimal("0.00")),
    }
    assert cycle.close(DEC).statements == [december]


def test_negative_lines_become_negative_invoice_items_and_stripe_total_is_ours(billing: Billing, call):
    # Given a Flat tenant with a fixed coupon and a credit that pays part of the month
    make_tenant("gamma", [("flat", "2025-10-01T00:00:00Z")])
    container.tenant_service()  # built after the Stripe settings
    call("tenants_api", "POST", "/v1/tenants/gamma/coupons",
         {"coupon_id": "c10", "amount_off": "10.00", "duration": "forever", "starts_at": "2025-11-01T00:00:00Z"},
         {"tenant_id": "gamma"})  # fmt: skip
    grant(call, "gamma", grant_id="g", amount="33.33", granted_at="2025-10-01T00:00:00Z")
    statement = container.billing_cycle().close(NOV).statements[0]
    assert statement.total == Decimal("56.67")  # 100.00 - 10.00 - 33.33
    # When it is invoiced
    outcome = container.invoicing_service().invoice("gamma", "2025-11")
    # Then Stripe holds each line as an item, coupon and credit as negative items, and its total is ours
    invoice = billing.stripe.invoices_for("gamma")[0]
    items = {line["metadata"]["line_id"]: line["amount"] for line in invoice["lines"]["data"]}
    assert items["coupon:c10"] == -1000 and items["credit:g"] == -3333 and items["base:flat:1"] == 10000
    assert invoice["total"] == 5667 and outcome.state in ("paid", "sent")  # sent: no card on file yet
