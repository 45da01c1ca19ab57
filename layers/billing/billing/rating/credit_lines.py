"""Credit lines: prepaid credits applied last, after every charge and coupon.

Order: grants in the statement's currency, by ``priority`` (lower first), then earliest
``expires_at`` (grants that never expire last), then ``granted_at``, then ``grant_id``. With T the
running total, each grant burns min(its available balance, T) as one negative ``credit:{grant_id}``
line naming the grant, and T falls by it; nothing is burnt once T <= 0, so a statement never goes
below zero and a grant never below zero.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from billing.kernel.money import round_minor
from billing.rating import wording
from billing.rating.lines import line
from billing.statements.statement import StatementLine
from billing.tenants.credits import CreditBalance

_NEVER = datetime.max.replace(tzinfo=None)


def burn_order(balances: Iterable[CreditBalance]) -> list[CreditBalance]:
    def key(b: CreditBalance) -> tuple[int, datetime, datetime, str]:
        expires = b.grant.expires_at.replace(tzinfo=None) if b.grant.expires_at else _NEVER
        return (b.grant.priority, expires, b.grant.granted_at.replace(tzinfo=None), b.grant.grant_id)

    return sorted(balances, key=key)


def credit_lines(
    balances: Iterable[CreditBalance], total: Decimal, currency: str, period: tuple[datetime, datetime]
) -> list[StatementLine]:
    lines = []
    running = total
    for balance in burn_order(b for b in balances if b.grant.currency == currency):
        available = round_minor(balance.available, currency)
        if running <= 0 or available <= 0:
            continue
        burn = min(available, running)
        grant = balance.grant
        lines.append(
            line(
                currency,
                line_id=f"credit:{grant.grant_id}",
                kind="credit",
                plan=None,
                description=wording.credit(
                    grant.description, grant.grant_id, available - burn, currency, grant.expires_at
                ),
                quantity=Decimal(1),
                unit_price=None,
                exact=-burn,
                period_start=period[0],
                period_end=period[1],
            )
        )
        running -= burn
    return lines
