"""What a customer reads on each statement line: every line kind rated by the real rater (pure, no
I/O) and its words checked, in USD, JPY and EUR; the audit data stays in the line's fields."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from billing.catalog.plans import PlanCatalog
from billing.kernel.periods import Month
from billing.rating import RATING_VERSION, Rater, lines_csv
from billing.rating import wording as w
from billing.rating.usage import LateUsage, Meter, MonthUsage, Usage
from billing.statements.statement import Statement
from billing.tenants.coupons import Coupon
from billing.tenants.credits import CreditBalance, CreditGrant
from billing.tenants.tenant import PlanAssignment, Tenant

NOV = Month.parse("2026-11")
OCT = Month.parse("2026-10")
MONTH_SECONDS = 30 * 86_400

TIERS = [{"up_to": 10000, "unit_price": "0.008"}, {"up_to": 50000, "unit_price": "0.006"}]
CHARGES = [
    {
        "id": "out",
        "name": "GPT-4o output",
        "metric": "output_tokens",
        "model": "gpt-4o",
        "charge_model": "graduated",
        "tiers": [
            {"up_to": 1000000, "unit_price": "0.00001"},
            {"up_to": None, "unit_price": "0.000005", "flat_amount": "5.00"},
        ],
    },
    {
        "id": "calls",
        "name": "Agent calls",
        "metric": "events",
        "event_type": "agent",
        "charge_model": "volume",
        "tiers": [
            {"up_to": 1000, "unit_price": "0.05"},
            {"up_to": None, "unit_price": "0.04", "flat_amount": "2.00"},
        ],
    },
    {
        "id": "storage",
        "name": "Storage",
        "metric": "bytes",
        "event_type": "storage",
        "charge_model": "package",
        "package_size": 1000000,
        "package_price": "0.50",
    },
    {
        "id": "embeds",
        "name": "Embeddings",
        "metric": "events",
        "event_type": "embedding",
        "charge_model": "per_unit",
        "unit_price": "0.02",
    },
]

CATALOG = PlanCatalog.model_validate(
    {
        "usage_types": [{"id": "agent", "name": "Agent calls"}],
        "plans": [
            {"id": "pro", "name": "Pro", "base_fee": "99.00", "query_tiers": [*TIERS, {"up_to": None, "unit_price": "0.004"}]},
            {"id": "starter", "name": "Starter", "base_fee": "29.00", "query_tiers": [{"up_to": None, "unit_price": "0.01"}]},
            {"id": "metered", "name": "Metered", "base_fee": "0", "charges": CHARGES},
            {"id": "committed", "name": "Committed", "base_fee": "10.00", "minimum_commitment": "500.00"},
            {
                "id": "yen", "name": "Yen", "currency": "jpy", "usage_rate": "150", "base_fee": "12000",
                "query_tiers": [{"up_to": 1000, "unit_price": "0.5"}, {"up_to": None, "unit_price": "2"}],
            },
            {
                "id": "euro", "name": "Euro", "currency": "eur", "usage_rate": "0.92", "base_fee": "99.00",
                "query_tiers": [{"up_to": None, "unit_price": "0.007"}],
            },
        ]
    }
)  # fmt: skip


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def tenant(*plans: tuple[str, str], **extra: object) -> Tenant:
    return Tenant(
        id="acme",
        name="Acme",
        plans=[PlanAssignment(plan=p, effective_at=t) for p, t in plans],
        **extra,  # type: ignore[arg-type]
    )


def rate(
    t: Tenant, *usages: Usage, metered: tuple = (), late=(), credits=(), month: Month = NOV
) -> Statement:
    total = sum(usages, Usage())
    return Rater(CATALOG).rate(t, month, MonthUsage(tuple(usages), total, metered), late, credits=credits)


def words(statement: Statement) -> dict[str, tuple[str, Decimal, Decimal]]:
    return {l.line_id: (l.description, l.quantity, l.amount) for l in statement.lines}


# ------------------------------------------------------------------------------- the number forms
def test_money_is_in_the_currencys_form_with_its_minor_unit():
    assert w.money(Decimal("99"), "usd") == "$99.00"
    assert w.money(Decimal("-1234.5"), "usd") == "-$1,234.50"
    assert w.money(Decimal("99"), "eur") == "€99.00"
    assert w.money(Decimal("12000"), "jpy") == "¥12,000"  # no minor unit
    assert w.money(Decimal("184.5"), "jpy") == "¥185"  # half-up, like the line
    assert w.money(Decimal("1.2345"), "kwd") == "1.235 KWD"  # three decimals, code after
    assert w.unit_price(Decimal("0.008"), "usd") == "$0.008"
    assert w.unit_price(Decimal("0.01"), "usd") == "$0.01"
    assert w.unit_price(Decimal("2"), "usd") == "$2.00"
    assert w.unit_price(Decimal("0.5"), "jpy") == "¥0.5"
    assert w.unit_price(Decimal("2"), "jpy") == "¥2"


def test_counts_have_separators_and_large_tokens_are_compact():
    assert w.count(2238) == "2,238"
    assert w.count(Decimal("1234.5")) == "1,234.5"
    assert w.count(Decimal("1234.123456")) == "1,234.123456"
    assert w.count(Decimal("2400.666666666666666667")) == "about 2,400.666667"
    assert [w.compact(n) for n in (9800, 10000, 12345, 8750000, 999950, 2500000000)] == [
        "9,800", "10K", "12.3K", "8.75M", "1M", "2.5B",
    ]  # fmt: skip


def test_periods_are_shown_as_days_within_a_month_across_months_and_across_years():
    assert w.day_range(at("2026-11-01T00:00:00Z"), at("2026-12-01T00:00:00Z")) == "1-30 Nov 2026"
    assert w.day_range(at("2026-11-28T00:00:00Z"), at("2026-12-04T00:00:00Z")) == "28 Nov - 3 Dec 2026"
    assert w.day_range(at("2026-12-28T00:00:00Z"), at("2027-01-04T00:00:00Z")) == "28 Dec 2026 - 3 Jan 2027"
    assert w.day_range(at("2026-11-07T00:00:00Z"), at("2026-11-07T05:00:00Z")) == "7 Nov 2026"
    assert w.month_name("2026-10") == "October 2026"
    assert [w.days(Decimal(s)) for s in (2_073_600, 2_148_224, 3_600, 86_400)] == [
        "24",
        "24.9",
        "under 0.1",
        "1",
    ]


def test_a_description_too_long_for_stripe_is_cut_at_a_word_boundary():
    text = "Storage " + "package " * 80
    cut = w.fit(text)
    assert len(text) > w.DESCRIPTION_LIMIT >= len(cut)
    assert cut.endswith("package…") and text.startswith(cut[:-1])
    assert w.fit("Pro plan, 1-30 Nov 2026") == "Pro plan, 1-30 Nov 2026"


# ------------------------------------------------------------------------------- every line kind
def test_a_full_month_reads_as_the_plan_its_tiers_and_its_usage():
    # Given a Pro tenant all of November: 12,000 queries, 2,238 requests and 8.75M tokens
    usage = Usage(events=2238, queries=12000, tokens=8_750_000, cost_usd=Decimal("24.473982723"))
    statement = rate(tenant(("pro", "2026-01-01T00:00:00Z")), usage)
    # Then each line says what it is in words, with a count a person can check
    assert words(statement) == {
        "base:pro:1": ("Pro plan, 1-30 Nov 2026", Decimal(1), Decimal("99.00")),
        "queries:pro:t1": ("Queries 1-10,000 at $0.008 (10,000 queries)", Decimal(10000), Decimal("80.00")),
        "queries:pro:t2": (
            "Queries 10,001-50,000 at $0.006 (2,000 queries)",
            Decimal(2000),
            Decimal("12.00"),
        ),
        "usage": ("Usage at list prices: 2,238 requests, 8.75M tokens", Decimal(2238), Decimal("24.47")),
    }
    # And the base fee's proration stays in the line's data for audit, not in its words
    (base,) = [l for l in statement.lines if l.kind == "base_fee"]
    assert (base.prorated_seconds, base.month_seconds) == (Decimal(MONTH_SECONDS), MONTH_SECONDS)
    assert base.amount_exact == Decimal("99.00")
    assert statement.inputs["rating"] == RATING_VERSION == "rating/4"


def test_a_mid_month_signup_reads_as_the_days_it_pays_for():
    # Given a signup on 7 November at 00:00, and one at an odd instant of the 6th
    whole = rate(tenant(("pro", "2026-11-07T00:00:00Z")), Usage())
    odd = rate(tenant(("pro", "2026-11-06T03:16:15.701Z")), Usage())
    # Then the fee reads as the days paid for, quantity 1; the seconds stay on the line
    assert words(whole)["base:pro:1"] == (
        "Pro plan, 7-30 Nov 2026 (prorated, 24 of 30 days)",
        Decimal(1),
        Decimal("79.20"),
    )
    (line,) = [l for l in odd.lines if l.kind == "base_fee"]
    assert line.description == "Pro plan, 6-30 Nov 2026 (prorated, 24.9 of 30 days)"
    assert (line.quantity, line.prorated_seconds, line.month_seconds) == (
        Decimal(1),
        Decimal("2148224.299"),
        MONTH_SECONDS,
    )
    assert abs(line.amount_exact - Decimal("99.00") * Decimal("2148224.299") / MONTH_SECONDS) < Decimal(
        "1E-14"
    )
    assert line.amount == Decimal("82.05")


def test_a_trial_reads_as_free_and_the_fee_as_the_days_after_it():
    # Given a trial to 15 November: 40 trial queries, then 300 paid ones
    t = tenant(("pro", "2026-11-01T00:00:00Z"), trial_ends_at=at("2026-11-15T00:00:00Z"))
    trial = Usage(events=50, queries=40, tokens=120_000, cost_usd=Decimal("0.42"))
    paid = Usage(events=310, queries=300, tokens=9_000, cost_usd=Decimal("1.10"))
    statement = rate(t, trial, paid)
    assert words(statement) == {
        "base:pro:1": (
            "Pro plan, 1-30 Nov 2026 (prorated, 16 of 30 days after the free trial 1-14 Nov 2026)",
            Decimal(1),
            Decimal("52.80"),
        ),
        "queries:pro:t1": ("Queries 1-10,000 at $0.008 (300 queries)", Decimal(300), Decimal("2.40")),
        "queries:trial": ("Queries during the free trial: 40 (free)", Decimal(40), Decimal("0.00")),
        "usage": ("Usage at list prices: 310 requests, 9,000 tokens", Decimal(310), Decimal("1.10")),
        "usage:trial": (
            "Usage during the free trial: 50 requests, 120K tokens ($0.42 at list prices, free)",
            Decimal(50),
            Decimal("0.00"),
        ),
    }


def test_a_plan_change_names_the_plan_of_each_tier_and_each_fee():
    # Given Starter to the 16th, then Pro: 100 queries on each
    t = tenant(("starter", "2026-01-01T00:00:00Z"), ("pro", "2026-11-16T00:00:00Z"))
    statement = rate(t, Usage(100, 100, 0, Decimal(0)), Usage(100, 100, 0, Decimal(0)))
    text = {l.line_id: l.description for l in statement.lines}
    assert text["base:starter:1"] == "Starter plan, 1-15 Nov 2026 (prorated, 15 of 30 days)"
    assert text["base:pro:1"] == "Pro plan, 16-30 Nov 2026 (prorated, 15 of 30 days)"
    assert text["queries:starter:t1"] == "100 queries at $0.01 (Starter plan)"
    assert text["queries:pro:t1"] == "Queries 1-10,000 at $0.008 (100 queries, Pro plan)"


def meters(*ms: Meter) -> tuple[Meter, ...]:
    return tuple(ms)


def test_charges_of_every_model_read_as_units_at_a_price():
    # Given a month of output tokens (graduated), agent calls (volume), storage (package), embeddings
    metered = meters(
        Meter("query", "gpt-4o", events=10, queries=10, output_tokens=1_200_000),
        Meter("agent", "", events=1500),
        Meter("storage", "", events=3, bytes=3_200_000),
        Meter("embedding", "", events=300),
    )
    usage = Usage(events=1813, queries=10, tokens=1_200_000, cost_usd=Decimal(0))
    statement = rate(tenant(("metered", "2026-01-01T00:00:00Z")), usage, metered=(metered,))
    text = {l.line_id: (l.description, l.quantity, l.amount) for l in statement.lines if l.kind == "charge"}
    assert text == {
        "charge:out:metered:t1": (
            "GPT-4o output 1-1,000,000 at $0.00001 (1M output tokens)",
            Decimal(1_000_000),
            Decimal("10.00"),
        ),
        "charge:out:metered:t2": (
            "GPT-4o output over 1,000,000 at $0.000005 + $5.00 flat (200K output tokens)",
            Decimal(200_000),
            Decimal("6.00"),
        ),
        "charge:calls:metered:t2": (
            "Agent calls: 1,500 events at $0.04 + $2.00 flat (the price for over 1,000 a month)",
            Decimal(1500),
            Decimal("62.00"),
        ),
        "charge:storage:metered": (
            "Storage: 4 packages of 1M bytes at $0.50 (3.2M bytes)",
            Decimal(4),
            Decimal("2.00"),
        ),
        "charge:embeds:metered": ("Embeddings: 300 events at $0.02", Decimal(300), Decimal("6.00")),
    }


def test_trial_charges_read_as_free():
    t = tenant(("metered", "2026-11-01T00:00:00Z"), trial_ends_at=at("2026-11-10T00:00:00Z"))
    trial = meters(Meter("embedding", "", events=3))
    statement = rate(t, Usage(3, 0, 0, Decimal(0)), Usage(), metered=(trial, meters()))
    (line,) = [l for l in statement.lines if l.line_id == "charge:embeds:trial"]
    assert (line.description, line.quantity, line.amount) == (
        "Embeddings during the free trial: 3 events (free)",
        Decimal(3),
        Decimal("0.00"),
    )


def test_late_usage_reads_as_from_its_month():
    # Given October's 10,000 queries billed and 2 more stored after its close, with their cost
    late = LateUsage(OCT, billed_queries=9999, segments=(Usage(3, 2, 1_500, Decimal("1.25")),))
    statement = rate(tenant(("pro", "2026-01-01T00:00:00Z")), Usage(), late=[late])
    text = {
        l.line_id: (l.description, l.quantity, l.amount) for l in statement.lines if l.kind == "adjustment"
    }
    assert text == {
        "adj:2026-10:queries:pro:t1": (
            "Late usage from October 2026: Queries 1-10,000 at $0.008 (1 query)",
            Decimal(1),
            Decimal("0.01"),
        ),
        "adj:2026-10:queries:pro:t2": (
            "Late usage from October 2026: Queries 10,001-50,000 at $0.006 (1 query)",
            Decimal(1),
            Decimal("0.01"),
        ),
        "adj:2026-10:usage": (
            "Late usage from October 2026: 3 requests, 1,500 tokens at list prices",
            Decimal(3),
            Decimal("1.25"),
        ),
    }


def test_a_late_charge_reads_as_re_rated_with_what_was_billed_before():
    billed = (meters(Meter("embedding", "", events=10)),)
    more = (meters(Meter("embedding", "", events=2)),)
    late = LateUsage(OCT, 0, (Usage(2, 0, 0, Decimal(0)),), metered=more, billed_metered=billed)
    statement = rate(tenant(("metered", "2026-01-01T00:00:00Z")), Usage(), metered=(meters(),), late=[late])
    (line,) = [l for l in statement.lines if l.line_id == "adj:2026-10:charge:embeds:metered"]
    assert (line.description, line.quantity, line.amount) == (
        "Late usage from October 2026: Embeddings: 12 events at $0.02; billed before: 10 for $0.20",
        Decimal(2),
        Decimal("0.04"),
    )


def test_commitment_coupons_and_credits_read_by_their_names():
    # Given a 500.00 commitment, two coupons and a named credit grant with an expiry
    coupons = [
        Coupon(coupon_id="LAUNCH", name="Launch offer", percent_off=Decimal("20"), duration="forever",
               starts_at=at("2026-10-01T00:00:00Z")),
        Coupon(coupon_id="WELCOME", amount_off=Decimal("10"), duration="once",
               starts_at=at("2026-11-01T00:00:00Z")),
    ]  # fmt: skip
    grant = CreditGrant(
        tenant_id="acme", grant_id="g1", amount=Decimal("500"), currency="usd",
        granted_at=at("2026-10-01T00:00:00Z"), expires_at=at("2027-01-01T00:00:00Z"),
        description="Welcome credit",
    )  # fmt: skip
    t = tenant(("committed", "2026-01-01T00:00:00Z"), coupons=coupons)
    statement = rate(t, Usage(1, 0, 0, Decimal("1.00")), credits=[CreditBalance(grant, Decimal("500"))])
    assert {l.line_id: (l.description, l.amount) for l in statement.lines if l.kind != "usage_cost"} == {
        "base:committed:1": ("Committed plan, 1-30 Nov 2026", Decimal("10.00")),
        "commitment:true_up": (
            "Top-up to the minimum commitment of $500.00 ($11.00 used)",
            Decimal("489.00"),
        ),
        "coupon:LAUNCH": ("Launch offer: 20% off", Decimal("-100.00")),
        "coupon:WELCOME": ("Coupon WELCOME: $10.00 off", Decimal("-10.00")),
        "credit:g1": ("Welcome credit (prepaid, $110.00 left, expires 1 Jan 2027)", Decimal("-390.00")),
    }
    assert all(l.quantity == 1 for l in statement.lines if l.kind in ("commitment", "coupon", "credit"))


def test_a_prorated_commitment_says_so():
    statement = rate(tenant(("committed", "2026-11-16T00:00:00Z")), Usage())
    (line,) = [l for l in statement.lines if l.kind == "commitment"]
    assert line.description == "Top-up to the minimum commitment of $250.00, prorated ($5.00 used)"


def test_yen_amounts_have_no_minor_unit():
    # Given a JPY tenant from the 7th: 1,200 queries, usage converted at 150 yen per dollar
    usage = Usage(events=12, queries=1200, tokens=40_000, cost_usd=Decimal("1.234567"))
    statement = rate(tenant(("yen", "2026-11-07T00:00:00Z")), usage)
    assert words(statement) == {
        "base:yen:1": ("Yen plan, 7-30 Nov 2026 (prorated, 24 of 30 days)", Decimal(1), Decimal("9600")),
        "queries:yen:t1": ("Queries 1-1,000 at ¥0.5 (1,000 queries)", Decimal(1000), Decimal("500")),
        "queries:yen:t2": ("Queries over 1,000 at ¥2 (200 queries)", Decimal(200), Decimal("400")),
        "usage": (
            "Usage at list prices: 12 requests, 40K tokens (US$1.234567 at ¥150 per US$)",
            Decimal(12),
            Decimal("185"),
        ),
    }


def test_euro_amounts_read_in_euros():
    coupon = Coupon(coupon_id="SPRING", name="Spring", amount_off=Decimal("5"), duration="once",
                    starts_at=at("2026-11-01T00:00:00Z"))  # fmt: skip
    usage = Usage(events=5, queries=2000, tokens=0, cost_usd=Decimal("10.00"))
    statement = rate(tenant(("euro", "2026-01-01T00:00:00Z"), coupons=[coupon]), usage)
    assert words(statement) == {
        "base:euro:1": ("Euro plan, 1-30 Nov 2026", Decimal(1), Decimal("99.00")),
        "queries:euro:t1": ("2,000 queries at €0.007", Decimal(2000), Decimal("14.00")),
        "usage": (
            "Usage at list prices: 5 requests, 0 tokens (US$10.00 at €0.92 per US$)",
            Decimal(5),
            Decimal("9.20"),
        ),
        "coupon:SPRING": ("Spring: €5.00 off", Decimal(1), Decimal("-5.00")),
    }


@pytest.mark.parametrize("plan", ["pro", "metered", "yen", "euro"])
def test_no_line_shows_seconds_or_instants_and_the_same_input_rates_the_same(plan):
    # Given a mid-month signup on any plan, rated twice
    t = tenant((plan, "2026-11-06T03:16:15.701Z"))
    usage = Usage(events=7, queries=7, tokens=70, cost_usd=Decimal("0.7"))
    metered = (meters(Meter("embedding", "", events=7)),) if plan == "metered" else ()
    first, second = rate(t, usage, metered=metered), rate(t, usage, metered=metered)
    # Then the statement is reproducible, byte for byte, CSV included
    assert first.model_dump_json() == second.model_dump_json()
    assert lines_csv([first]) == lines_csv([second])
    # And no description shows seconds or an ISO instant, or is longer than Stripe takes
    for line in first.lines:
        assert " s of " not in line.description and "T00:00" not in line.description, line.description
        assert len(line.description) <= w.DESCRIPTION_LIMIT
    # And the lines CSV keeps the audit data: exact amounts and the fee's seconds
    rows = lines_csv([first]).decode().splitlines()
    assert rows[0].endswith(",description,prorated_seconds,month_seconds")
    (base_row,) = [r for r in rows if f",base:{plan}:1," in r]
    assert base_row.endswith(f",2148224.299,{MONTH_SECONDS}")


def test_a_line_worded_past_stripes_limit_is_cut_on_the_statement_itself():
    # Given a charge whose name alone is longer than Stripe takes
    long_name = "Very long charge name " * 30
    catalog = PlanCatalog.model_validate(
        {
            "plans": [
                {
                    "id": "wordy",
                    "name": "Wordy",
                    "charges": [
                        {**CHARGES[3], "name": long_name},
                    ],
                }
            ]
        }
    )
    t = tenant(("wordy", "2026-01-01T00:00:00Z"))
    metered = (meters(Meter("embedding", "", events=3)),)
    statement = Rater(catalog).rate(t, NOV, MonthUsage((Usage(3, 0, 0, Decimal(0)),), Usage(), metered))
    (line,) = [l for l in statement.lines if l.kind == "charge"]
    # Then the line's description is cut at a word boundary within the limit, the amount untouched
    assert len(line.description) <= w.DESCRIPTION_LIMIT and line.description.endswith("…")
    assert long_name.startswith(line.description[:-1] + " ")  # a whole word before the cut
    assert line.amount == Decimal("0.06")
