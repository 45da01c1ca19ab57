"""Invariants each pricing model promises, checked by hypothesis over the pure rating functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from billing.catalog.plans import Charge, ChargeTier, Plan
from billing.kernel.periods import Month
from billing.rating.charges import MODELS
from billing.rating.coupon_lines import coupon_lines
from billing.rating.credit_lines import burn_order, credit_lines
from billing.rating.package import package
from billing.rating.pricing_types import Use
from billing.rating.tiers import tier_index
from billing.tenants.coupons import Coupon
from billing.tenants.credits import CreditBalance, CreditGrant

START = datetime(2025, 11, 1, tzinfo=UTC)
NOVEMBER = Month(2025, 11)
PERIOD = (NOVEMBER.start, NOVEMBER.end)
prices = st.decimals(min_value=0, max_value=5, places=4)


@st.composite
def tiered(draw: st.DrawFn, model: str) -> Charge:
    bounds = sorted(draw(st.sets(st.integers(1, 500), max_size=4)))
    tiers = [
        ChargeTier(
            up_to=b, unit_price=draw(prices), flat_amount=draw(st.sampled_from([Decimal(0), Decimal("1.5")]))
        )
        for b in [*bounds, None]
    ]
    return Charge(id="c", metric="queries", charge_model=model, tiers=tiers)  # type: ignore[arg-type]


@st.composite
def charges(draw: st.DrawFn) -> Charge:
    model = draw(st.sampled_from(["graduated", "volume", "package", "per_unit"]))
    if model in ("graduated", "volume"):
        return draw(tiered(model))
    if model == "package":
        return Charge(id="c", metric="queries", charge_model="package", package_size=draw(st.integers(1, 50)),
                      package_price=draw(prices))  # fmt: skip
    return Charge(id="c", metric="queries", charge_model="per_unit", unit_price=draw(prices))


def plan(charge: Charge, plan_id: str = "p") -> Plan:
    return Plan(id=plan_id, name=plan_id.upper(), charges=[charge])


def uses(p: Plan, quantities: list[int]) -> list[Use]:
    """One use per segment, in time order (an hour each)."""
    return [
        Use(p, p.charges[0], q, START + i * timedelta(hours=1), START + (i + 1) * timedelta(hours=1))
        for i, q in enumerate(quantities)
    ]


def total(priced: list) -> Decimal:
    return sum((x.exact for x in priced), Decimal(0))


@given(charge=charges(), n=st.integers(0, 2000), extra=st.integers(0, 500), cut=st.integers(0, 2000))
@settings(max_examples=300, deadline=None)
def test_graduated_package_per_unit_totals_are_monotone_and_split_invariant(charge, n, extra, cut):
    # Given a month of n units on one plan, and the same month split at any instant
    p = plan(charge)
    price = MODELS[charge.charge_model]
    whole = total(price(uses(p, [n])))
    cut = min(cut, n)
    split = total(price(uses(p, [cut, n - cut])))
    # Then splitting changes nothing (volume: the tier is the month's; package: blocks counted once)
    assert split == whole
    # And, except for volume (a higher tier may price every unit lower: the volume cliff), more
    # usage never costs less
    if charge.charge_model != "volume":
        assert total(price(uses(p, [n + extra]))) >= whole


@given(charge=tiered("volume"), quantities=st.lists(st.integers(0, 300), min_size=1, max_size=6))
@settings(max_examples=200, deadline=None)
def test_a_volume_month_split_anywhere_across_plans_gets_one_tier(charge, quantities):
    # Given the month's units spread over segments alternating between two plans with the same tiers
    a, b = plan(charge, "a"), plan(charge, "b")
    segs = [
        Use(
            a if i % 2 == 0 else b,
            charge,
            q,
            START + i * timedelta(hours=1),
            START + (i + 1) * timedelta(hours=1),
        )
        for i, q in enumerate(quantities)
    ]
    priced = MODELS["volume"](segs)
    month_total = sum(quantities)
    if month_total == 0:
        assert priced == []
        return
    # Then every line is priced at the tier the month's total reaches
    index = tier_index(charge.tiers, month_total)
    assert {x.key.split(":")[1] for x in priced} == {f"t{index + 1}"}
    assert sum(x.quantity for x in priced) == month_total
    # And the whole equals one plan's unsplit month (same prices), flat fee included once
    assert total(priced) == total(MODELS["volume"](uses(a, [month_total])))


@given(size=st.integers(1, 40), quantities=st.lists(st.integers(0, 200), min_size=1, max_size=8))
@settings(max_examples=300, deadline=None)
def test_package_blocks_round_up_exactly_once(size, quantities):
    charge = Charge(
        id="c", metric="queries", charge_model="package", package_size=size, package_price=Decimal("1")
    )
    priced = package(uses(plan(charge), quantities))
    n = sum(quantities)
    assert sum((x.quantity for x in priced), Decimal(0)) == -(-n // size)


grants = st.builds(
    lambda i, amount, priority, days: CreditGrant(
        tenant_id="t",
        grant_id=f"g{i}",
        amount=amount,
        currency="usd",
        granted_at=START - timedelta(days=30),
        expires_at=None if days is None else START + timedelta(days=days),
        priority=priority,
    ),
    st.integers(0, 10_000),
    st.decimals(min_value=Decimal("0.01"), max_value=500, places=2),
    st.integers(0, 3),
    st.one_of(st.none(), st.integers(1, 90)),
)


@given(
    balances=st.lists(
        st.tuples(grants, st.decimals(min_value=0, max_value=500, places=2)),
        max_size=6,
        unique_by=lambda g: g[0].grant_id,
    ),
    owed=st.decimals(min_value=-50, max_value=1000, places=2),
)
@settings(max_examples=300, deadline=None)
def test_credits_never_make_a_total_negative_and_burn_in_the_documented_order(balances, owed):
    available = [CreditBalance(g, min(a, g.amount)) for g, a in balances]
    lines = credit_lines(available, owed, "usd", PERIOD)
    burnt = {l.line_id.removeprefix("credit:"): -l.amount for l in lines}
    # Then the total never goes below zero, nor any grant below zero
    assert owed - sum(burnt.values(), Decimal(0)) >= min(owed, Decimal(0))
    assert all(0 < burnt[b.grant.grant_id] <= b.available for b in available if b.grant.grant_id in burnt)
    # And a grant burns only once every grant before it (priority, then earliest expiry) is used up
    order = [b for b in burn_order(available) if b.available > 0]
    for i, b in enumerate(order):
        if b.grant.grant_id in burnt:
            assert all(burnt.get(x.grant.grant_id) == x.available for x in order[:i])
    # And what is burnt is exactly min(owed, all available)
    assert sum(burnt.values(), Decimal(0)) == max(
        Decimal(0), min(owed, sum((b.available for b in available), Decimal(0)))
    )


@given(
    subtotal=st.decimals(min_value=0, max_value=10_000, places=2),
    percent=st.decimals(min_value=Decimal("0.01"), max_value=100, places=2),
    fixed=st.decimals(min_value=Decimal("0.01"), max_value=500, places=2),
    credit=st.decimals(min_value=0, max_value=5_000, places=2),
)
@settings(max_examples=300, deadline=None)
def test_a_coupon_then_credits_equals_the_documented_formula(subtotal, percent, fixed, credit):
    # Given a fixed coupon (earlier start), a percent coupon and one credit grant
    coupons = [
        Coupon(coupon_id="fixed", amount_off=fixed, duration="forever", starts_at=START - timedelta(days=40)),
        Coupon(coupon_id="pct", percent_off=percent, duration="once", starts_at=START),
    ]
    after_coupons = subtotal + sum(
        (l.amount for l in coupon_lines(coupons, NOVEMBER, subtotal, "usd", PERIOD)), Decimal(0)
    )
    grant = CreditGrant(
        tenant_id="t", grant_id="g", amount=credit or Decimal("0.01"), currency="usd", granted_at=START
    )
    final = after_coupons + sum(
        (l.amount for l in credit_lines([CreditBalance(grant, credit)], after_coupons, "usd", PERIOD)),
        Decimal(0),
    )
    # Then: S1 = S - min(fixed, S); S2 = S1 - round_half_up(S1 x p / 100); total = max(0, S2 - credit)
    s1 = subtotal - min(fixed, subtotal)
    s2 = s1 - (s1 * percent / 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    assert after_coupons == s2
    assert final == max(Decimal(0), s2 - credit)
