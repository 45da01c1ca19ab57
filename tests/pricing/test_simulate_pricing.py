"""Every pricing model, the commitment, coupons and credits through ``billing simulate``, totals
worked out by hand (plans in tests/pricing/plans.yaml; the price book is zero, so the event-time
usage line is 0.00 and each total is its charges alone). November 2025 has 30 days."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.pricing.conftest import DAY, HOUR, ev, parse_instant, series

T = parse_instant


def november() -> list[dict]:
    events = []
    # graduated on gpt-4o output tokens: 800 + 3,000 + 2,000 = 5,800 (gpt-4o-mini does not count)
    for i, tokens in enumerate([800, 3000, 2000]):
        events.append(
            ev("grad-t", f"g{i}", T("2025-11-02T00:00:00Z") + i * DAY, model="gpt-4o", output_tokens=tokens)
        )
    events.append(ev("grad-t", "gm", T("2025-11-06T00:00:00Z"), model="gpt-4o-mini", output_tokens=10_000))
    events += series("vol-t", "v", "2025-11-02T00:00:00Z", 15, HOUR)
    events += series("switcher", "a", "2025-11-02T00:00:00Z", 8, DAY)  # Volume
    events += series("switcher", "b", "2025-11-16T00:00:00Z", 6, HOUR)  # Volume Plus, first at the change
    events += series("trialist", "t", "2025-11-02T00:00:00Z", 3, DAY)  # in trial
    events += series("trialist", "p", "2025-11-12T00:00:00Z", 12, HOUR)
    events += [
        ev("pkg-t", "s0", T("2025-11-03T00:00:00Z"), type="storage", bytes=2500),
        ev("pkg-t", "s1", T("2025-11-04T00:00:00Z"), type="storage", bytes=600),
        ev("pkg-t", "q0", T("2025-11-05T00:00:00Z"), bytes=5000),  # a query's bytes: not storage
    ]
    events += series("unit-t", "e", "2025-11-03T00:00:00Z", 3, DAY, type="embedding",
                     model="text-embedding-3-small", input_tokens=100)  # fmt: skip
    events += series("unit-t", "q", "2025-11-03T00:00:00Z", 2, DAY, model="gpt-4o", input_tokens=1000)
    events += series("committed-t", "c", "2025-11-03T00:00:00Z", 5, DAY)
    events += series("committed-half", "c", "2025-11-17T00:00:00Z", 100, HOUR)
    events += series("committed-over", "c", "2025-11-03T00:00:00Z", 600, HOUR)
    events += series("yen-t", "y", "2025-11-12T00:00:00Z", 5, DAY)
    return events


def test_every_pricing_model_through_billing_simulate(simulate):
    # Given one tenant per model and rule, when November is simulated
    csv, lines, rows = simulate(november())
    # Then the CSV keeps its header; each total is worked out by hand below
    assert csv.splitlines() == [
        "tenant_id,month,total_queries,total_tokens,total_cost_usd,invoice_date",
        "committed-half,2025-11,100,0,25.00,2025-11-30",  # (5.00 + 10.00) -> minimum 25.00
        "committed-over,2025-11,600,0,70.00,2025-11-30",  # 10.00 + 60.00 above 50.00: no true-up
        "committed-t,2025-11,5,0,50.00,2025-11-30",  # 10.00 + 0.50 -> minimum 50.00
        "couponed,2025-11,0,0,67.50,2025-11-30",  # 100 - 25.00 (loyal) - 10% of 75.00 (welcome)
        "credited,2025-11,0,0,0.00,2025-11-30",  # 100 - 20% = 80.00, paid by credits c 10 + b 70
        "grad-t,2025-11,4,15800,11.08,2025-11-30",  # 2.00 + 4.00 + 5.08
        "partly-credited,2025-11,0,0,70.00,2025-11-30",  # 100 - 30.00 credit
        "pkg-t,2025-11,1,0,2.00,2025-11-30",  # 3,100 bytes = 4 packages x 0.50
        "switcher,2025-11,14,0,17.88,2025-11-30",  # 0.40 + 15.00 + 0.48 + 2.00
        "trialist,2025-11,15,0,1.60,2025-11-30",  # 12 paid calls reach tier 2: 12 x 0.05 + 1.00
        "unit-t,2025-11,2,2300,0.09,2025-11-30",  # 3 x 0.02 + 300 x 0.0001
        "vol-t,2025-11,15,0,1.75,2025-11-30",  # 15 x 0.05 + 1.00
        "yen-t,2025-11,5,0,684,2025-11-30",  # JPY: 1000 x 20/30 = 666.67 -> 667, 5 x 3.3 = 16.5 -> 17
    ]

    # Graduated with a flat fee per tier: 1-1,000 @0.001 + 1.00; 1,001-5,000 @0.0005 + 2.00; 5,001+ @0.0001 + 5.00
    assert lines["grad-t"] == {
        "base:grad:1": Decimal("0.00"),
        "queries:grad:t1": Decimal("0.00"),
        "charge:out:grad:t1": Decimal("2.00"),
        "charge:out:grad:t2": Decimal("4.00"),
        "charge:out:grad:t3": Decimal("5.08"),  # 800 x 0.0001 + 5.00
        "usage": Decimal("0.00"),
    }
    assert rows[("grad-t", "charge:out:grad:t3")]["description"] == (
        "gpt-4o output over 5,000 at $0.0001 + $5.00 flat (800 output tokens)"
    )
    # Volume: the month's 15 calls reach tier 2, every call at 0.05, the tier's flat fee once
    assert lines["vol-t"]["charge:calls:vol:t2"] == Decimal("1.75")
    # A plan change mid-month with a volume charge: the month's 14 calls decide tier 2 in both plans;
    # each plan's calls at its own tier-2 price; the flat fee under the plan of the last call
    assert {k: v for k, v in lines["switcher"].items() if k.startswith(("charge", "base"))} == {
        "base:vol:1": Decimal("0.00"),
        "base:vol2:1": Decimal("15.00"),
        "charge:calls:vol:t2": Decimal("0.40"),  # 8 x 0.05
        "charge:calls:vol2:t2": Decimal("2.48"),  # 6 x 0.08 + 2.00
    }
    # Trial: trial calls are free and take no place in the volume total
    assert lines["trialist"]["charge:calls:trial"] == Decimal("0.00")
    assert rows[("trialist", "charge:calls:trial")]["quantity"] == "3"
    assert lines["trialist"]["charge:calls:vol:t2"] == Decimal("1.60")
    # Package: 3,100 bytes of storage events = 4 blocks (the last one partial, rounded up once)
    assert rows[("pkg-t", "charge:storage:pkg")]["quantity"] == "4"
    assert lines["pkg-t"]["charge:storage:pkg"] == Decimal("2.00")
    # Per unit: events of a type, and tokens of one model
    assert lines["unit-t"]["charge:embeds:unit"] == Decimal("0.06")
    assert lines["unit-t"]["charge:embed-tokens:unit"] == Decimal("0.03")
    # Minimum commitment, prorated like the base fee (half a month: 25.00), true-up line
    assert lines["committed-t"]["commitment:true_up"] == Decimal("39.50")
    assert lines["committed-half"]["commitment:true_up"] == Decimal("10.00")
    assert "commitment:true_up" not in lines["committed-over"]
    # Coupons in order of start: fixed 25.00 (forever, from October), then 10% (once, November);
    # the 2-month coupon from September is over
    assert lines["couponed"] == {
        "base:flat:1": Decimal("100.00"),
        "usage": Decimal("0.00"),
        "coupon:loyal": Decimal("-25.00"),
        "coupon:welcome": Decimal("-7.50"),
    }
    # Credits after the coupon, by priority then earliest expiry; expired and later grants unused
    assert {k: v for k, v in lines["credited"].items() if k.startswith(("coupon", "credit"))} == {
        "coupon:partner": Decimal("-20.00"),
        "credit:c-first": Decimal("-10.00"),
        "credit:b-soon": Decimal("-70.00"),
    }
    assert rows[("credited", "credit:b-soon")]["description"].startswith("Prepaid credit b-soon ($30.00 left")
    # JPY: amounts in whole yen, one rounding per line
    assert lines["yen-t"] == {  # 1000 x 1,728,000 s / 2,592,000 s
        "base:yen:1": Decimal("667"),
        "queries:yen:t1": Decimal("0"),
        "charge:yen-calls:yen": Decimal("17"),
        "usage": Decimal("0"),
    }


def test_sharded_workers_grant_credits_and_coupons_as_one_process(simulate):
    # Given the same month and tenants (coupons and credits in the tenants file)
    one_csv, one_lines, _ = simulate(november(), "--workers", "1")
    # When two worker processes share the tenants, each on its own in-memory stores
    two_csv, two_lines, _ = simulate(november(), "--workers", "2")
    # Then every worker granted its tenants' credits and coupons: the same statements, line by line
    assert two_csv == one_csv
    assert two_lines == one_lines
    assert two_lines["credited"]["credit:b-soon"] == Decimal("-70.00")
    assert two_lines["couponed"]["coupon:welcome"] == Decimal("-7.50")


def test_a_bad_credit_in_the_tenants_file_is_refused_naming_the_entry(simulate, tmp_path):
    # Given a tenants file whose credit has a float amount
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(
        "tenants:\n"
        "  - id: t1\n"
        "    plans: [{plan: flat, effective_at: '2025-10-01T00:00:00Z'}]\n"
        "    credits: [{grant_id: g1, amount: 5.5}]\n"
    )
    # When it is simulated, then it is refused before any work, naming the tenant, entry and field
    with pytest.raises(AssertionError, match=r"tenant t1: credit #0: amount"):
        simulate([], tenants=tenants)
