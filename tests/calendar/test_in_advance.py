"""Base fees in advance (a plan's ``in_advance``), rated by the pure rater: the next period's fee on
each statement, upgrades charged and downgrades or cancellations credited by the second, exact to
the cent and the same on every re-run; plans without it rate exactly as before."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from billing.catalog.plans import Plan, PlanCatalog
from billing.kernel.calendar import Calendar
from billing.kernel.periods import Month
from billing.rating import MonthUsage, Rater, Usage
from billing.tenants.tenant import PlanAssignment, Tenant

CATALOG = PlanCatalog(
    plans=[
        Plan(id="basic", name="Basic", base_fee=Decimal(30), in_advance=True),
        Plan(id="plus", name="Plus", base_fee=Decimal(90), in_advance=True),
        Plan(id="arrears", name="Arrears", base_fee=Decimal(90)),
        Plan(id="year_a", name="Yearly A", base_fee=Decimal(1200), in_advance=True),
        Plan(id="year_b", name="Yearly B", base_fee=Decimal(2400), in_advance=True),
    ]
)
RATER = Rater(CATALOG)
NOVEMBER, DECEMBER = Month(2025, 11), Month(2025, 12)


def tenant(*plans: tuple[str, datetime], **extra) -> Tenant:
    return Tenant(id="t", plans=[PlanAssignment(plan=p, effective_at=at) for p, at in plans], **extra)


def rate(t: Tenant, period) -> list[tuple[str, Decimal, str]]:
    segments = RATER.segments(t, period)
    use = MonthUsage(tuple(Usage() for _ in segments), Usage())
    statement = RATER.rate(t, period, use)
    assert RATER.rate(t, period, use) == statement  # the same on every re-run
    return [(l.line_id, l.amount, l.description) for l in statement.lines if l.kind == "base_fee"]


def test_the_first_statement_charges_its_own_period_and_the_next_in_advance():
    t = tenant(("basic", datetime(2025, 11, 1, tzinfo=UTC)))
    assert rate(t, NOVEMBER) == [
        ("base:basic:1", Decimal("30.00"), "Basic plan, 1-30 Nov 2025"),
        ("base:basic:advance", Decimal("30.00"), "Basic plan, 1-31 Dec 2025 (in advance)"),
    ]
    # And a month with no change carries only the next month's fee
    assert rate(t, DECEMBER) == [
        ("base:basic:advance", Decimal("30.00"), "Basic plan, 1-31 Jan 2026 (in advance)")
    ]


def test_an_upgrade_charges_the_difference_for_the_rest_of_the_period():
    # Given an upgrade from 30 to 90 at 16 December 00:00 (16 of December's 31 days left)
    t = tenant(("basic", datetime(2025, 11, 1, tzinfo=UTC)), ("plus", datetime(2025, 12, 16, tzinfo=UTC)))
    # Then December's statement charges (90 - 30) x 16/31 = 30.967... and January's 90 in advance
    assert rate(t, DECEMBER) == [
        (
            "base:advance-settlement",
            Decimal("30.97"),
            "Plan change, 1-31 Dec 2025: the difference for the rest of the period",
        ),
        ("base:plus:advance", Decimal("90.00"), "Plus plan, 1-31 Jan 2026 (in advance)"),
    ]


def test_a_downgrade_credits_the_unused_part():
    t = tenant(("plus", datetime(2025, 11, 1, tzinfo=UTC)), ("basic", datetime(2025, 12, 16, tzinfo=UTC)))
    # (30 - 90) x 16/31 = -30.967...
    assert rate(t, DECEMBER) == [
        (
            "base:advance-settlement",
            Decimal("-30.97"),
            "Unused part of the fee billed in advance for 1-31 Dec 2025",
        ),
        ("base:basic:advance", Decimal("30.00"), "Basic plan, 1-31 Jan 2026 (in advance)"),
    ]


def test_a_cancellation_credits_the_unused_part_and_bills_nothing_ahead():
    # Given a cancellation at 16 December 00:00: 15 of 31 days used of the 30 billed in advance
    t = tenant(("basic", datetime(2025, 11, 1, tzinfo=UTC)), canceled_at=datetime(2025, 12, 16, tzinfo=UTC))
    # Then 30 x 15/31 - 30 = -15.48, and no January fee
    assert rate(t, DECEMBER) == [
        (
            "base:advance-settlement",
            Decimal("-15.48"),
            "Unused part of the fee billed in advance for 1-31 Dec 2025",
        )
    ]


def test_a_cancellation_exactly_at_the_period_end_bills_nothing_ahead_and_owes_nothing_back():
    t = tenant(("basic", datetime(2025, 11, 1, tzinfo=UTC)), canceled_at=datetime(2026, 1, 1, tzinfo=UTC))
    assert rate(t, DECEMBER) == []


def test_a_yearly_plan_upgraded_in_month_5_with_its_fee_in_advance():
    # Given a yearly anniversary from 15 March 2025 10:00 UTC on Yearly A (1,200 a year, in advance),
    # upgraded to Yearly B (2,400) at the start of month 5 of its second year, 15 July 2026 10:00
    cal = Calendar("UTC", datetime(2025, 3, 15, 10, tzinfo=UTC), "year")
    t = tenant(
        ("year_a", datetime(2025, 3, 15, 10, tzinfo=UTC)), ("year_b", datetime(2026, 7, 15, 10, tzinfo=UTC))
    )
    first, second = (
        cal.period_of(datetime(2025, 6, 1, tzinfo=UTC)),
        cal.period_of(datetime(2026, 6, 1, tzinfo=UTC)),
    )
    # Then the first year's statement is its own fee and the second year's in advance
    assert [a for _, a, _ in rate(t, first)] == [Decimal("1200.00"), Decimal("1200.00")]
    # And the second year's charges (2,400 - 1,200) x 243/365 days = 798.904... for the rest of the
    # year, and the third year's 2,400 in advance
    assert rate(t, second) == [
        (
            "base:advance-settlement",
            Decimal("798.90"),
            "Plan change, 15 Mar 2026 - 15 Mar 2027: the difference for the rest of the period",
        ),
        ("base:year_b:advance", Decimal("2400.00"), "Yearly B plan, 15 Mar 2027 - 15 Mar 2028 (in advance)"),
    ]


def test_plans_billed_in_arrears_rate_exactly_as_before():
    t = tenant(("arrears", datetime(2025, 11, 10, tzinfo=UTC)))
    assert rate(t, NOVEMBER) == [
        ("base:arrears:1", Decimal("63.00"), "Arrears plan, 10-30 Nov 2025 (prorated, 21 of 30 days)")
    ]
    # And a plan's digest does not change for a key left at its default
    assert "in_advance" not in CATALOG.get("arrears").digest_document()
