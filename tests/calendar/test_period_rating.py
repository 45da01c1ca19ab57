"""Rating a tenant calendar's period with the pure rater: base fees per interval prorated by the
seconds of the tenant's own period, days in its time zone; the default calendar rates exactly as
the UTC month it is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from billing.catalog.plans import PlanCatalog
from billing.kernel.calendar import Calendar, CalendarHistory
from billing.kernel.periods import Month
from billing.rating import MonthUsage, Rater, Usage
from billing.runtime.settings import PACKAGE_CONFIG
from billing.tenants.tenant import PlanAssignment, Tenant

CATALOG = PlanCatalog.load(PACKAGE_CONFIG / "plans.yaml")
RATER = Rater(CATALOG)


def tenant(*plans: tuple[str, datetime], **extra) -> Tenant:
    return Tenant(id="t", plans=[PlanAssignment(plan=p, effective_at=at) for p, at in plans], **extra)


def usage(segments: int, queries: int = 0, cost: str = "0") -> MonthUsage:
    use = Usage(queries, queries, 0, Decimal(cost))
    empty = Usage(0, 0, 0, Decimal(0))
    return MonthUsage((use, *([empty] * (segments - 1))), use)


def base_fees(statement) -> list[tuple[str, Decimal, str]]:
    return [(l.plan, l.amount, l.description) for l in statement.lines if l.kind == "base_fee"]


@settings(deadline=None, max_examples=60)
@given(
    st.builds(Month, st.integers(2001, 2098), st.integers(1, 12)),
    st.sampled_from([p.id for p in CATALOG.plans]),
    st.integers(0, 100_000),
    st.integers(1, 27),
)
def test_the_default_calendar_s_period_rates_exactly_as_its_utc_month(month, plan, queries, change_day):
    # Given a tenant on the default calendar with a plan change inside the month
    t = tenant((plan, month.start - timedelta(days=40)), ("pro", month.start + timedelta(days=change_day)))
    period = Calendar().period_of(month.start)
    # When the month and the calendar's period are rated with the same usage
    count = len(RATER.segments(t, month))
    by_month = RATER.rate(t, month, usage(count, queries, "1.25"))
    by_period = RATER.rate(t, period, usage(count, queries, "1.25"))
    # Then the statements are identical, id and digest included
    assert by_period.model_dump(mode="json") == by_month.model_dump(mode="json")


def test_an_anniversary_on_the_31st_pays_one_fee_for_february_in_leap_and_common_years():
    for year, last in ((2024, 29), (2025, 28)):
        # Given a tenant on starter since 31 January 10:00 UTC, anchored on its signup
        signup = datetime(year, 1, 31, 10, tzinfo=UTC)
        cal = Calendar("UTC", signup)
        t = tenant(("starter", signup))
        february = cal.period_of(datetime(year, 2, 10, tzinfo=UTC))
        march = cal.period_of(datetime(year, 3, 10, tzinfo=UTC))
        # Then February's period runs to the last day of February, March's back to the 31st
        assert (february.start, february.end) == (signup, datetime(year, 2, last, 10, tzinfo=UTC))
        assert march.end == datetime(year, 3, 31, 10, tzinfo=UTC)
        # And each whole period is charged the base fee once, exactly
        for period in (february, march):
            statement = RATER.rate(t, period, usage(1))
            assert [(p, a) for p, a, _ in base_fees(statement)] == [("starter", Decimal("29.00"))]
            assert statement.month == f"{period.start:%Y-%m-%dT%H:%M:%SZ}/{period.end:%Y-%m-%dT%H:%M:%SZ}"
        # And an upgrade halfway through February prorates by the seconds of that period
        half = signup + (february.end - signup) / 2
        upgraded = tenant(("starter", signup), ("pro", half))
        statement = RATER.rate(upgraded, february, usage(2))
        assert [(p, a) for p, a, _ in base_fees(statement)] == [
            ("starter", Decimal("14.50")),
            ("pro", Decimal("49.50")),
        ]


def test_a_kolkata_calendar_month_is_billed_from_local_midnight_with_local_days():
    # Given a starter tenant in Asia/Kolkata since 1 November 00:00 local (31 October 18:30 UTC)
    cal = Calendar("Asia/Kolkata")
    signup = datetime(2025, 10, 31, 18, 30, tzinfo=UTC)
    november = cal.period_of(signup)
    t = tenant(("starter", signup))
    # When its November is rated
    statement = RATER.rate(t, november, usage(1, 10, "0.10"))
    # Then it is one whole fee, the days are Kolkata's, and the invoice date its last local day
    assert base_fees(statement) == [("starter", Decimal("29.00"), "Starter plan, 1-30 Nov 2025")]
    assert statement.period_start == signup
    assert statement.period_end == datetime(2025, 11, 30, 18, 30, tzinfo=UTC)
    assert statement.invoice_date == "2025-11-30"


def test_a_los_angeles_month_across_the_dst_change_prorates_by_its_743_hours():
    # Given a Los Angeles tenant upgraded from starter to pro at local midnight on 16 March 2025
    cal = Calendar("America/Los_Angeles")
    march = cal.period_of(datetime(2025, 3, 10, tzinfo=UTC))
    change = datetime(2025, 3, 16, 7, tzinfo=UTC)  # 00:00 PDT
    t = tenant(("starter", datetime(2025, 1, 1, 8, tzinfo=UTC)), ("pro", change))
    # When March is rated
    statement = RATER.rate(t, march, usage(2))
    # Then March is 743 hours; starter had 359 of them (15 days less the lost hour), pro 384:
    # 29 x 359/743 = 14.0121... and 99 x 384/743 = 51.1655...
    assert march.seconds == 743 * 3600
    assert base_fees(statement) == [
        ("starter", Decimal("14.01"), "Starter plan, 1-15 Mar 2025 (prorated, 15 of 31 days)"),
        ("pro", Decimal("51.17"), "Pro plan, 16-31 Mar 2025 (prorated, 16 of 31 days)"),
    ]


def test_a_weekly_period_charges_the_base_fee_per_week():
    # Given a weekly calendar tenant on starter (its base fee is then per week)
    cal = Calendar("Europe/Paris", None, "week")
    week = cal.period_of(datetime(2025, 11, 5, tzinfo=UTC))
    t = tenant(("starter", datetime(2025, 10, 1, tzinfo=UTC)))
    # Then a whole week is one fee, Monday to Sunday in Paris
    statement = RATER.rate(t, week, usage(1))
    assert base_fees(statement) == [("starter", Decimal("29.00"), "Starter plan, 3-9 Nov 2025")]


def test_a_cancellation_at_a_local_midnight_that_is_not_a_utc_midnight():
    # Given a Kolkata tenant cancelled at 16 November 00:00 local (15 November 18:30 UTC)
    cal = Calendar("Asia/Kolkata")
    canceled = datetime(2025, 11, 15, 18, 30, tzinfo=UTC)
    t = tenant(("starter", datetime(2025, 10, 1, tzinfo=UTC)), canceled_at=canceled)
    november = cal.period_of(canceled)
    # When its final statement is rated
    statement = RATER.rate(t, november, usage(1))
    # Then it charges exactly the first 15 local days of 30 (14.50), ends at the cancellation and
    # is dated the local day of the cancellation
    assert base_fees(statement) == [
        ("starter", Decimal("14.50"), "Starter plan, 1-15 Nov 2025 (prorated, 15 of 30 days)")
    ]
    assert statement.is_final and statement.period_end == canceled
    assert statement.invoice_date == "2025-11-16"


def test_the_short_period_after_a_calendar_change_pays_its_share_of_the_new_interval():
    # Given a UTC monthly tenant moving to weekly Los Angeles periods (from 1 March 00:00 UTC)
    history, effective = CalendarHistory().change(
        datetime(2026, 2, 10, tzinfo=UTC), Calendar("America/Los_Angeles", None, "week")
    )
    short = history.period_of(effective)
    t = tenant(("starter", datetime(2026, 1, 1, tzinfo=UTC)))
    # When the short period (to Monday 2 March 00:00 local, 32 hours) is rated
    statement = RATER.rate(t, short, usage(1))
    # Then it pays 32/168 of the weekly fee: 29 x 32/168 = 5.5238...
    assert short.seconds == 32 * 3600 and short.whole_seconds == 168 * 3600
    assert [(p, a) for p, a, _ in base_fees(statement)] == [("starter", Decimal("5.52"))]
