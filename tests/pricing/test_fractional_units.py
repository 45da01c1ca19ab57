"""Fractional quantities: tier bounds and package sizes are exact decimals (read from their text,
never through a float), units may be fractional (GB-hours), package blocks round up exactly once,
and each line is computed exactly and rounded once; plans written with integers are unchanged."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from math import ceil

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from billing.catalog.plans import Charge, ChargeTier, PlanCatalog
from billing.rating import wording
from billing.rating.charges import MODELS, describe
from billing.rating.lines import line
from billing.rating.package import package
from tests.pricing.test_pricing_properties import plan, total, uses

GB_HOURS = """
plans:
  - id: storage
    name: Storage
    charges:
      - id: held
        name: Storage held
        metric: bytes
        charge_model: graduated
        tiers:
          - {up_to: "0.5", unit_price: "0"}
          - {up_to: "2.5", unit_price: "0.10"}
          - {up_to: null, unit_price: "0.05"}
      - id: blocks
        name: Blocks
        metric: bytes
        charge_model: package
        package_size: "0.5"
        package_price: "0.40"
"""


def d(text: str) -> Decimal:
    return Decimal(text)


def charge_of(yaml_text: str, charge_id: str) -> Charge:
    [p] = PlanCatalog.model_validate(yaml.safe_load(yaml_text)).plans
    return next(c for c in p.charges if c.id == charge_id)


# -- the catalog --------------------------------------------------------------------------------
def test_fractional_bounds_and_package_sizes_load_exactly_from_quoted_text():
    held, blocks = charge_of(GB_HOURS, "held"), charge_of(GB_HOURS, "blocks")
    assert [t.up_to for t in held.tiers] == [d("0.5"), d("2.5"), None]
    assert blocks.package_size == d("0.5")


def test_integral_bounds_stay_integers_so_plans_digest_as_before():
    # Given the same plan with bounds written as integers, quoted integers and "1000.0"
    def digest(bound: object, size: object) -> dict:
        document = {
            "plans": [
                {
                    "id": "p",
                    "name": "P",
                    "charges": [
                        {"id": "g", "metric": "queries", "charge_model": "volume",
                         "tiers": [{"up_to": bound, "unit_price": "1"}, {"up_to": None, "unit_price": "0.5"}]},
                        {"id": "k", "metric": "queries", "charge_model": "package",
                         "package_size": size, "package_price": "1"},
                    ],
                }
            ]
        }  # fmt: skip
        return PlanCatalog.model_validate(document).plans[0].digest_document()

    # Then each reads as the integer, and the plan's digest document is identical
    written = digest(1000, 10)
    assert written["charges"][0]["tiers"][0]["up_to"] == 1000 and written["charges"][1]["package_size"] == 10
    assert digest("1000", "10") == digest("1000.0", "1E+1") == digest(d("1000"), d("10.00")) == written
    # And a fractional one is its exact decimal, however it is spelled
    assert digest("0.50", "2.50")["charges"][0]["tiers"][0]["up_to"] == "0.5"


@pytest.mark.parametrize(
    ("field", "written", "message"),
    [
        ("up_to", 0.5, "quoted string"),
        ("package_size", 0.5, "quoted string"),
        ("up_to", "half", "not a decimal number"),
        ("up_to", "0", "greater than 0"),
        ("package_size", "-0.5", "greater than 0"),
        ("package_size", "NaN", "finite"),
        ("up_to", "0.0000000000000000001", "at most 18 decimal places"),
        ("package_size", True, "quoted string"),
        ("package_size", [1], "an integer or a decimal"),
    ],
)
def test_a_bad_bound_or_package_size_is_refused_with_the_reason(field, written, message):
    charge = (
        {"id": "c", "metric": "queries", "charge_model": "package", "package_size": written, "package_price": "1"}
        if field == "package_size"
        else {"id": "c", "metric": "queries", "charge_model": "graduated",
              "tiers": [{"up_to": written, "unit_price": "1"}, {"up_to": None, "unit_price": "1"}]}
    )  # fmt: skip
    with pytest.raises(ValidationError, match=message):
        PlanCatalog.model_validate({"plans": [{"id": "p", "name": "P", "charges": [charge]}]})


def test_a_yaml_float_never_reaches_a_bound():
    # Given a bound written as a bare YAML float: PyYAML reads it as a float, so it is refused
    unquoted = GB_HOURS.replace('up_to: "0.5"', "up_to: 0.5")
    with pytest.raises(ValidationError, match="quoted string"):
        PlanCatalog.model_validate(yaml.safe_load(unquoted))


# -- hand-worked charges ------------------------------------------------------------------------
def test_graduated_gb_hours_hand_worked_and_split_anywhere():
    # Given 0.3 + 1.7 + 1.25 = 3.25 GB-hours over three segments: 0.5 free, up to 2.5 at $0.10,
    # then $0.05
    held = charge_of(GB_HOURS, "held")
    p = plan(held)
    priced = MODELS["graduated"](uses(p, [d("0.3"), d("1.7"), d("1.25")]))
    # Then the tiers hold 0.5, 2 and 0.75 GB-hours: 0 + 0.20 + 0.0375
    assert [(x.key, x.quantity, x.exact) for x in priced] == [
        ("p:t1", d("0.5"), 0),
        ("p:t2", d("2.0"), d("0.200")),
        ("p:t3", d("0.75"), d("0.0375")),
    ]
    # And the month in one segment is the same
    assert total(MODELS["graduated"](uses(p, [d("3.25")]))) == d("0.2375")
    # And the line is rounded once, half-up, from the exact amount: $0.04 (0.0375)
    last = priced[-1]
    assert line(
        description="x", line_id="l", kind="charge", quantity=last.quantity, exact=last.exact
    ).amount == d("0.04")
    # And the customer reads the fractional tier's range
    assert wording.tier_range(held.tiers, 1) == "over 0.5 up to 2.5"
    assert wording.tier_range(held.tiers, 0) == "up to 0.5"
    assert wording.tier_range(held.tiers, 2) == "over 2.5"
    assert "0.75 bytes" in describe(last, "usd")


def test_volume_gb_hours_on_and_past_a_fractional_bound():
    held = charge_of(GB_HOURS, "held").model_copy(update={"charge_model": "volume"})
    p = plan(held)
    # Given 3.25 GB-hours: every unit at the third tier, $0.1625, the line $0.16
    [reached] = MODELS["volume"](uses(p, [d("0.3"), d("1.7"), d("1.25")]))
    assert (reached.key, reached.exact) == ("p:t3", d("0.1625"))
    assert line(
        description="x", line_id="l", kind="charge", quantity=reached.quantity, exact=reached.exact
    ).amount == d("0.16")
    # And exactly 2.5 GB-hours: the bound is inclusive, so tier 2 prices all of them
    [at_bound] = MODELS["volume"](uses(p, [d("1.2"), d("1.3")]))
    assert (at_bound.key, at_bound.exact) == ("p:t2", d("0.250"))
    # And 2.5 plus the smallest property step reaches tier 3 for every unit
    [past] = MODELS["volume"](uses(p, [d("2.5"), d("1E-18")]))
    assert (past.key, past.quantity, past.exact) == (
        "p:t3",
        d("2.500000000000000001"),
        d("0.12500000000000000005"),
    )


def test_package_blocks_of_half_a_gb_hour_round_up_once():
    blocks = charge_of(GB_HOURS, "blocks")
    p = plan(blocks)
    # Given 0.3, 0.3 and 0.65 GB-hours: the cumulative 0.3, 0.6 and 1.25 open blocks 1, 2 and 3
    [priced] = package(uses(p, [d("0.3"), d("0.3"), d("0.65")]))
    # Then three blocks at $0.40, holding 1.25 GB-hours
    assert (priced.quantity, priced.exact, priced.used) == (3, d("1.20"), d("1.25"))
    assert describe(priced, "usd") == "Blocks: 3 packages of 0.5 bytes at $0.40 (1.25 bytes)"
    # And exactly on a block's end no block is opened early; the smallest step past it opens one
    assert package(uses(p, [d("1.0")]))[0].quantity == 2
    assert package(uses(p, [d("1.0"), d("1E-18")]))[0].quantity == 3


def test_per_unit_fractional_units_computed_exactly_and_rounded_once():
    charge = Charge(id="c", metric="bytes", charge_model="per_unit", unit_price=d("0.0375"))
    [priced] = MODELS["per_unit"](uses(plan(charge), [d("0.5"), d("0.75")]))
    assert (priced.quantity, priced.exact) == (d("1.25"), d("0.046875"))
    assert line(
        description="x", line_id="l", kind="charge", quantity=priced.quantity, exact=priced.exact
    ).amount == d("0.05")


# -- properties ---------------------------------------------------------------------------------
_units = st.decimals(min_value=0, max_value=50, places=3)


@given(
    bounds=st.lists(st.decimals(min_value="0.001", max_value=40, places=3), unique=True, max_size=4),
    size=st.decimals(min_value="0.001", max_value=10, places=3),
    quantities=st.lists(_units, min_size=1, max_size=6),
)
@settings(max_examples=200, deadline=None)
def test_fractional_months_split_anywhere_rate_as_one(bounds, size, quantities):
    # Given fractional tiers and a fractional package size, and a month split into segments
    tiers = [ChargeTier(up_to=b, unit_price=d("0.013")) for b in sorted(bounds)]
    tiers = [*tiers, ChargeTier(up_to=None, unit_price=d("0.007"))]
    month = sum(quantities, Decimal(0))
    for model in ("graduated", "volume"):
        p = plan(Charge(id="c", metric="bytes", charge_model=model, tiers=tiers))  # type: ignore[arg-type]
        # Then the split month rates as the whole month in one segment
        assert total(MODELS[model](uses(p, quantities))) == total(MODELS[model](uses(p, [month])))
    blocks = Charge(id="c", metric="bytes", charge_model="package", package_size=size, package_price=d("1"))
    priced = package(uses(plan(blocks), quantities))
    # And the blocks are ceil(month / size), computed exactly, once
    assert sum((x.quantity for x in priced), Decimal(0)) == ceil(Fraction(month) / Fraction(size))
