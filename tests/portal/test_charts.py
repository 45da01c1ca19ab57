"""The usage page's chart axes without a browser: round ticks from 0 for zero, tiny, ordinary and huge
series (the browser suite checks the same drawn, at 375 px and on a desktop)."""

from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal

import pytest

from billing.portal.charts import axis_ticks, bar_chart, tick_label
from billing.portal.page import metered_usd, usd
from billing.portal.view import DayUsage


def labels(peak: str, *, whole: bool = False, prefix: str = "$") -> list[str]:
    ticks = axis_ticks(Decimal(peak), whole=whole)
    step = ticks[1] if len(ticks) > 1 else Decimal(1)
    return [tick_label(t, step, ticks[-1], prefix) for t in ticks]


@pytest.mark.parametrize(
    ("peak", "whole", "expected"),
    [
        ("0", False, ["$0"]),
        ("0.0003", False, ["$0", "$0.0001", "$0.0002", "$0.0003"]),
        ("0.00031", False, ["$0", "$0.0001", "$0.0002", "$0.0003", "$0.0004"]),
        ("0.999", False, ["$0", "$0.25", "$0.50", "$0.75", "$1.00"]),
        ("12.34", False, ["$0", "$5", "$10", "$15"]),
        ("12345678", False, ["$0", "$5M", "$10M", "$15M"]),
        ("3300000000", False, ["$0", "$1B", "$2B", "$3B", "$4B"]),
    ],
)
def test_money_axes_rise_in_round_steps_from_zero(peak, whole, expected):
    assert labels(peak, whole=whole) == expected


@pytest.mark.parametrize(
    ("peak", "expected"),
    [
        ("1", ["0", "1"]),
        ("3", ["0", "1", "2", "3"]),
        ("47", ["0", "20", "40", "60"]),
        ("9000", ["0", "2,500", "5,000", "7,500", "10,000"]),
        ("250000", ["0", "100k", "200k", "300k"]),
        ("2469000", ["0", "1M", "2M", "3M"]),
    ],
)
def test_count_axes_have_whole_ticks(peak, expected):
    assert labels(peak, whole=True, prefix="") == expected


def test_a_sub_cent_cost_keeps_two_significant_digits_and_cents_stay_cents():
    assert metered_usd(Decimal("0.0003")) == "$0.0003"
    assert metered_usd(Decimal("0.000312345")) == "$0.00031"
    assert metered_usd(Decimal("0")) == "$0.00"
    assert metered_usd(Decimal("0.01")) == usd(Decimal("0.01"))
    assert metered_usd(Decimal("12345678.005")) == usd(Decimal("12345678.005"))


def chart(costs: list[str]) -> str:
    start = date(2025, 11, 1)
    days = [DayUsage(start + timedelta(days=i), 0, Decimal(c)) for i, c in enumerate(costs)]
    return bar_chart("cost-chart", "Metered cost", days, lambda d: d.cost_usd, metered_usd, prefix="$")


def test_a_month_of_zeros_draws_no_tall_bar_and_no_dollar_peak():
    # Given a new tenant's month: every day zero
    svg = chart(["0"] * 20)
    # Then the axis is the 0 tick alone, every bar is the 1px baseline mark, and it says so
    assert re.findall(r'<text class="tick"[^>]*>([^<]*)<', svg) == ["$0"]
    assert set(re.findall(r'<rect class="point"[^>]* height="([\d.]+)"', svg)) == {"1.0"}
    desc = re.search(r"<desc[^>]*>([^<]*)<", svg)
    assert desc is not None and "$" not in desc.group(1) and "nothing recorded" in desc.group(1)
    assert "Nothing recorded</text>" in svg


def test_the_tallest_bar_reaches_its_value_on_the_axis_not_the_top():
    # Given a tiny month whose highest day cost $0.0003 (the axis tops at $0.0004 for $0.00031)
    svg = chart(["0.0001", "0.00031", "0"])
    heights = [Decimal(h) for h in re.findall(r'<rect class="point"[^>]* height="([\d.]+)"', svg)]
    plot = Decimal(176)  # CHART_H - CHART_TOP - CHART_BOTTOM
    assert abs(heights[1] - plot * Decimal("0.00031") / Decimal("0.0004")) < Decimal("0.1")
    assert heights[2] == 1
    assert "03 Nov: $0.00<" in svg and "02 Nov: $0.00031<" in svg
