"""Coupon lines: applied after every charge (and the commitment true-up), before credits.

Formula: coupons that apply to the month are taken in order of ``starts_at`` then ``coupon_id``;
with S the running subtotal (the sum of the rounded lines so far), a percent coupon takes
round_half_up(S x percent_off / 100) and a fixed coupon min(amount_off, S); each is one negative
``coupon:{coupon_id}`` line and S falls by it. A coupon never takes S below zero (nothing is taken
once S <= 0, and no line is written then).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from billing.kernel.money import round_minor
from billing.kernel.periods import RatedPeriod
from billing.rating import wording
from billing.rating.lines import line
from billing.statements.statement import StatementLine
from billing.tenants.coupons import Coupon


def coupon_lines(
    coupons: Iterable[Coupon],
    month: RatedPeriod,
    subtotal: Decimal,
    currency: str,
    period: tuple[datetime, datetime],
) -> list[StatementLine]:
    lines = []
    running = subtotal
    for coupon in sorted(coupons, key=lambda c: (c.starts_at, c.coupon_id)):
        if not coupon.applies_to(month) or running <= 0:
            continue
        if coupon.percent_off is not None:
            off = round_minor(running * coupon.percent_off / 100, currency)
        else:
            assert coupon.amount_off is not None
            off = min(round_minor(coupon.amount_off, currency), running)
        if off <= 0:
            continue
        lines.append(
            line(
                currency,
                line_id=f"coupon:{coupon.coupon_id}",
                kind="coupon",
                plan=None,
                description=wording.coupon(
                    coupon.name, coupon.coupon_id, coupon.percent_off, coupon.amount_off, currency
                ),
                quantity=Decimal(1),
                unit_price=None,
                exact=-off,
                period_start=period[0],
                period_end=period[1],
            )
        )
        running -= off
    return lines
