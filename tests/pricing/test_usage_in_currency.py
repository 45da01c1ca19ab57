"""Event-time usage cost is in USD (the price book's currency); a plan in another currency bills it at
the plan's fixed ``usage_rate``, exactly, rounded once to the currency's minor unit."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from billing.catalog.plans import PlanCatalog
from billing.kernel.periods import Month
from billing.rating import Rater
from billing.rating.usage import MonthUsage, Usage
from billing.tenants.tenant import PlanAssignment, Tenant

NOVEMBER = Month.parse("2025-11")


def yen_catalog(**extra: object) -> PlanCatalog:
    return PlanCatalog.model_validate(
        {
            "plans": [
                {"id": "yen", "name": "Yen", "currency": "jpy", "usage_rate": "150", **extra},
                {"id": "yen-plus", "name": "Yen Plus", "currency": "jpy", "usage_rate": "149.5"},
                {"id": "dinar", "name": "Dinar", "currency": "kwd", "usage_rate": "0.307"},
            ]
        }
    )


def tenant(*plans: tuple[str, str]) -> Tenant:
    return Tenant(id="t", name="T", plans=[PlanAssignment(plan=p, effective_at=at) for p, at in plans])


def usage_line(statement):
    (line,) = [line for line in statement.lines if line.line_id == "usage"]
    return line


def test_a_yen_plan_bills_usage_at_its_rate_rounded_once():
    # Given a JPY tenant whose month cost 1.234567 USD at event-time prices
    rater = Rater(yen_catalog())
    usage = Usage(events=3, queries=3, tokens=900, cost_usd=Decimal("1.234567"))
    # When the month is rated
    statement = rater.rate(tenant(("yen", "2025-01-01T00:00:00Z")), NOVEMBER, MonthUsage((usage,), usage))
    # Then the usage line is 1.234567 x 150 = 185.18505 JPY exactly, rounded once to 185
    line = usage_line(statement)
    assert (line.amount_exact, line.amount, statement.currency) == (
        Decimal("185.18505"),
        Decimal("185"),
        "jpy",
    )
    assert line.description == "Usage at list prices: 3 requests, 900 tokens (US$1.234567 at ¥150 per US$)"


def test_across_a_plan_change_each_plans_usage_is_converted_at_its_own_rate():
    # Given a JPY tenant moving from yen (150) to yen-plus (149.5) on the 16th
    rater = Rater(yen_catalog())
    before, after = Usage(1, 1, 0, Decimal("2.00")), Usage(1, 1, 0, Decimal("4.00"))
    month = MonthUsage((before, after), before + after)
    t = tenant(("yen", "2025-01-01T00:00:00Z"), ("yen-plus", "2025-11-16T00:00:00Z"))
    # When rated, then 2.00 x 150 + 4.00 x 149.5 = 300 + 598 = 898 JPY
    line = usage_line(rater.rate(t, NOVEMBER, month))
    assert line.amount_exact == Decimal("898.000") and line.amount == Decimal("898")
    assert line.description.endswith("(US$6.00 at ¥149.5 / ¥150 per US$)")


def test_a_three_decimal_currency_keeps_its_fils():
    rater = Rater(yen_catalog())
    usage = Usage(1, 1, 0, Decimal("10.005"))
    line = usage_line(
        rater.rate(tenant(("dinar", "2025-01-01T00:00:00Z")), NOVEMBER, MonthUsage((usage,), usage))
    )
    assert line.amount_exact == Decimal("3.071535") and line.amount == Decimal("3.072")  # half-up once


def test_a_plan_not_in_usd_without_a_rate_is_refused_and_usd_needs_none():
    with pytest.raises(ValidationError, match="usage_rate is required for a plan in JPY"):
        PlanCatalog.model_validate({"plans": [{"id": "yen", "name": "Yen", "currency": "jpy"}]})
    with pytest.raises(ValidationError, match="can only be 1"):
        PlanCatalog.model_validate({"plans": [{"id": "u", "name": "U", "usage_rate": "1.1"}]})
    with pytest.raises(ValidationError, match="quoted strings"):
        yen_catalog(usage_rate=150.0)
    # And a USD plan's usage line is the USD cost, unchanged
    catalog = PlanCatalog.model_validate({"plans": [{"id": "u", "name": "U"}]})
    usage = Usage(1, 1, 0, Decimal("1.005"))
    line = usage_line(
        Rater(catalog).rate(tenant(("u", "2025-01-01T00:00:00Z")), NOVEMBER, MonthUsage((usage,), usage))
    )
    assert (line.amount_exact, line.amount) == (Decimal("1.005"), Decimal("1.01"))
    # (in USD the list price is the amount itself: the words name what was used)
    assert line.description == "Usage at list prices: 1 request, 0 tokens"
