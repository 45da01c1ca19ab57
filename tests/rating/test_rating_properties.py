"""Property tests of the pure rating engine: tiers, proration and month boundaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from billing.catalog.plans import PlanCatalog, Tier
from billing.kernel.periods import Month
from billing.rating import LateUsage, MonthUsage, Rater, Usage, pricing_segments, walk_tiers
from billing.runtime.settings import PACKAGE_CONFIG
from billing.tenants.tenant import PlanAssignment, Tenant

CATALOG = PlanCatalog.load(PACKAGE_CONFIG / "plans.yaml")
RATER = Rater(CATALOG)
PLANS = [p.id for p in CATALOG.plans]

months = st.builds(Month, st.integers(1970, 2200), st.integers(1, 12))
plan_ids = st.sampled_from(PLANS)
money = st.decimals(min_value=0, max_value=50, places=9, allow_nan=False, allow_infinity=False)


def tenant(*plans: tuple[str, datetime], **extra) -> Tenant:
    return Tenant(id="t", plans=[PlanAssignment(plan=p, effective_at=at) for p, at in plans], **extra)


def instant_in(month: Month, fraction: float) -> datetime:
    """An instant inside the month, to the millisecond."""
    ms = int(month.seconds * 1000 * fraction)
    return month.start + timedelta(milliseconds=ms)


def one_segment_usage(queries: int, cost: Decimal) -> MonthUsage:
    use = Usage(queries, queries, 0, cost)
    return MonthUsage((use,), use)


@settings(deadline=None)
@given(
    month=months,
    plan=plan_ids,
    fraction=st.floats(0.0001, 0.9999),
    queries=st.integers(0, 200_000),
    share=st.floats(0, 1),
    cost=money,
)
def test_splitting_a_month_at_any_instant_never_changes_an_unchanged_plan(
    month, plan, fraction, queries, share, cost
):
    # Given a plan held all month, and the same plan re-entered at an arbitrary instant
    start = month.start - timedelta(days=3)
    whole = tenant((plan, start))
    split = tenant((plan, start), (plan, instant_in(month, fraction)))
    # Then the pricing segments are the same (one), so the statements are identical
    assert pricing_segments(split, month) == pricing_segments(whole, month)
    a = RATER.rate(whole, month, one_segment_usage(queries, cost))
    b = RATER.rate(split, month, one_segment_usage(queries, cost))
    assert a.lines == b.lines and a.total == b.total
    # And the graduated tiers give the same quantities whether the queries are walked in one or two runs
    first = int(queries * share)
    walked = walk_tiers(CATALOG.get(plan).query_tiers, 0, first) + walk_tiers(
        CATALOG.get(plan).query_tiers, first, queries - first
    )
    per_tier: dict[int, int] = {}
    for piece in walked:
        per_tier[piece.tier_index] = per_tier.get(piece.tier_index, 0) + piece.quantity
    assert per_tier == {
        p.tier_index: p.quantity for p in walk_tiers(CATALOG.get(plan).query_tiers, 0, queries)
    }


@settings(deadline=None)
@given(
    month=months,
    plan=plan_ids,
    queries=st.integers(0, 200_000),
    more=st.integers(0, 50_000),
    cost=money,
    extra_cost=money,
)
def test_totals_are_monotone_in_usage(month, plan, queries, more, cost, extra_cost):
    # Given a tenant on one plan all month
    t = tenant((plan, month.start))
    # When it uses more (queries or event cost)
    low = RATER.rate(t, month, one_segment_usage(queries, cost))
    high = RATER.rate(t, month, one_segment_usage(queries + more, cost + extra_cost))
    # Then no line and no total goes down
    assert high.total >= low.total
    lows = {l.line_id: l.amount for l in low.lines}
    assert all(l.amount >= lows.get(l.line_id, Decimal(0)) for l in high.lines)


@settings(deadline=None)
@given(month=months, a=plan_ids, b=plan_ids, fraction=st.floats(0.0001, 0.9999))
def test_plan_segments_tile_the_month_and_proration_adds_up(month, a, b, fraction):
    # Given a plan change at any instant of any month (leap years and month ends included)
    change = instant_in(month, fraction)
    t = tenant((a, month.start - timedelta(seconds=1)), (b, change))
    segments = pricing_segments(t, month)
    # Then the segments cover the month without gap or overlap
    assert segments[0].start == month.start and segments[-1].end == month.end
    assert all(x.end == y.start for x, y in zip(segments, segments[1:]))
    assert sum(s.seconds for s in segments) == month.seconds
    # And the exact base fees are the in-force fractions of each monthly fee, rounded once per line
    statement = RATER.rate(t, month, MonthUsage(tuple(Usage() for _ in segments), Usage()))
    base = [l for l in statement.lines if l.kind == "base_fee"]
    exact = sum((l.amount_exact for l in base), Decimal(0))
    if a == b:
        assert len(base) == 1 and base[0].amount == CATALOG.get(a).base_fee
    else:
        expected = (
            CATALOG.get(a).base_fee * segments[0].seconds + CATALOG.get(b).base_fee * segments[1].seconds
        ) / month.seconds
        assert abs(exact - expected) < Decimal("1e-12")
        assert abs(sum(l.amount for l in base) - expected) <= Decimal("0.01")


@settings(deadline=None)
@given(year=st.integers(1900, 2400))
def test_month_lengths_are_calendar_months_in_utc(year):
    feb = Month(year, 2)
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    assert feb.seconds == (29 if leap else 28) * 86400
    assert sum(Month(year, m).seconds for m in range(1, 13)) == (366 if leap else 365) * 86400
    assert Month(year, 12).end == datetime(year + 1, 1, 1, tzinfo=UTC)


@settings(deadline=None)
@given(month=months, fraction=st.floats(0.0001, 0.9999))
def test_a_trial_costs_nothing_and_takes_no_tier_positions(month, fraction):
    # Given a starter tenant whose trial ends inside the month, 1,500 queries on each side
    trial_end = instant_in(month, fraction)
    t = tenant(("starter", month.start), trial_ends_at=trial_end)
    segments = pricing_segments(t, month)
    assert [s.trial for s in segments] == [True, False]
    use = Usage(1500, 1500, 0, Decimal("1.5"))
    statement = RATER.rate(t, month, MonthUsage((use, use), use + use))
    amounts = {l.line_id: l.amount for l in statement.lines}
    # Then the paid queries start at position 1: 1,000 @0.01 + 500 @0.008; trial lines are 0.00
    assert amounts["queries:starter:t1"] == Decimal("10.00") and amounts["queries:starter:t2"] == Decimal(
        "4.00"
    )
    assert (
        amounts["queries:trial"] == 0 and amounts["usage:trial"] == 0 and amounts["usage"] == Decimal("1.50")
    )


@settings(max_examples=50, deadline=None)
@given(
    tiers=st.lists(st.integers(1, 1000), min_size=0, max_size=4, unique=True),
    position=st.integers(0, 5000),
    count=st.integers(0, 5000),
)
def test_walking_tiers_conserves_queries(tiers, position, count):
    bounds = sorted(tiers)
    plan_tiers = [Tier(up_to=b, unit_price=Decimal("0.01")) for b in bounds] + [
        Tier(up_to=None, unit_price=Decimal(0))
    ]
    pieces = walk_tiers(plan_tiers, position, count)
    assert sum(p.quantity for p in pieces) == count
    assert [p.tier_index for p in pieces] == sorted({p.tier_index for p in pieces})


def test_a_cancellation_at_midnight_on_the_first_makes_the_previous_month_final():
    from billing.rating import final_month

    t = tenant(("starter", datetime(2025, 10, 1, tzinfo=UTC)), canceled_at=datetime(2025, 12, 1, tzinfo=UTC))
    nov = Month(2025, 11)
    assert final_month(t) == nov
    statement = RATER.rate(t, nov, MonthUsage((Usage(),), Usage()))
    assert (
        statement.is_final and statement.invoice_date == "2025-11-30" and statement.total == Decimal("29.00")
    )
    assert pricing_segments(t, Month(2025, 12)) == []


@settings(deadline=None)
@given(
    month=months,
    at_midnight=st.booleans(),
    queries=st.integers(0, 5000),
    others=st.integers(0, 50),
    billed=st.integers(0, 20_000),
    cost=money,
)
def test_a_statement_of_late_usage_alone_holds_its_adjustment_lines_only(
    month, at_midnight, queries, others, billed, cost
):
    # Given a tenant whose final statement was the previous month's (cancelled at 00:00 on the 1st of
    # this month, or the millisecond before), and late usage of that month
    previous = month.previous()
    canceled = month.start - (timedelta(0) if at_midnight else timedelta(milliseconds=1))
    t = tenant(("starter", previous.start - timedelta(days=3)), canceled_at=canceled)
    assert pricing_segments(t, month) == []
    assume(queries + others > 0)
    late = LateUsage(previous, billed, (Usage(queries + others, queries, 0, cost),))
    # When this month's statement is rated
    statement = RATER.rate(t, month, MonthUsage((), Usage()), [late])
    # Then every line is an adjustment naming the previous month: no usage line of 0.00, no base fee
    assert statement.lines
    assert all(l.kind == "adjustment" and l.adjustment_month == str(previous) for l in statement.lines)
    assert statement.total == sum(l.amount for l in statement.lines)
    assert not statement.is_final and statement.invoice_date == month.last_day.date().isoformat()


def _unit_price(plan_id: str, position: int) -> tuple[int, Decimal]:
    lower = 0
    for index, tier in enumerate(CATALOG.get(plan_id).query_tiers):
        if tier.up_to is None or position <= tier.up_to:
            return index, tier.unit_price
        lower = tier.up_to
    raise AssertionError(lower)


@settings(deadline=None, max_examples=60)
@given(
    month=months,
    plans=st.lists(plan_ids, min_size=1, max_size=4),
    cuts=st.lists(st.floats(0.001, 0.999), min_size=3, max_size=3),
    trial=st.booleans(),
    offsets=st.lists(st.floats(0, 0.9999), max_size=300),
    at_boundary=st.integers(0, 40),
)
def test_segment_counts_price_exactly_like_each_query_in_order(
    month, plans, cuts, trial, offsets, at_boundary
):
    # Given a plan history changing at arbitrary instants, maybe a trial ending inside the month
    changes = sorted(instant_in(month, c) for c in cuts)
    history = [(plans[0], month.start - timedelta(days=2))] + [
        (p, changes[i % 3]) for i, p in enumerate(plans[1:])
    ]
    history = [(p, at) for p, at in history if all(at != other for q, other in history if q != p)]
    t = tenant(*history, trial_ends_at=changes[1] if trial else None)
    # And queries at arbitrary instants, some exactly at a plan change
    stamps = [instant_in(month, o) for o in offsets] + [changes[0]] * at_boundary
    # When they are priced one by one in (timestamp, event_id) order...
    reference: dict[tuple[str, int], Decimal] = {}
    position = 0
    for at in sorted(stamps):
        if t.in_trial(at):
            continue
        position += 1
        plan = t.plan_at(at)
        index, price = _unit_price(plan, position)
        reference[(plan, index)] = reference.get((plan, index), Decimal(0)) + price
    # ...and by the engine from per-segment counts
    segments = pricing_segments(t, month)
    counts = [sum(1 for at in stamps if s.start <= at < s.end) for s in segments]
    usage = MonthUsage(tuple(Usage(n, n, 0, Decimal(0)) for n in counts), Usage())
    statement = RATER.rate(t, month, usage)
    engine = {
        (l.plan, int(l.line_id.rsplit(":t", 1)[1]) - 1): l.amount_exact
        for l in statement.lines
        if l.kind == "queries" and l.plan
    }
    # Then every (plan, tier) amount is the same
    assert {k: v for k, v in reference.items()} == engine
