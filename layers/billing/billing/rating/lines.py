"""Building statement lines: exact amounts kept, rounded half-up once to the currency's minor unit."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from billing.kernel.money import round_minor
from billing.rating.wording import fit
from billing.statements.statement import StatementLine

EXACT_PLACES = Decimal("1E-15")  # stored form of amount_exact (rounding to cents uses the full value)


def line(currency: str = "usd", **kwargs: Any) -> StatementLine:
    exact = kwargs.pop("exact")
    assert isinstance(exact, Decimal)
    kwargs["description"] = fit(kwargs["description"])  # what Stripe takes, and so what every reader sees
    fields: dict[str, Any] = {
        "unit_price": None,
        "plan": None,
        "adjustment_month": None,
        "prorated_seconds": None,
        "month_seconds": None,
        **kwargs,
        "amount_exact": stored_exact(exact),
        "amount": round_minor(exact, currency),
    }
    # Fields are built typed right here, so validation is skipped (rating 1,000 tenants must stay fast).
    return StatementLine.model_construct(**fields)


def stored_exact(value: Decimal) -> Decimal:
    """Terminating amounts are kept as they are; others (proration) to 15 places. Rounding to cents
    always uses the full value (a proration is never within 1e-9 of a half cent unless exactly on it)."""
    if value.as_tuple().exponent >= -15:  # type: ignore[operator]
        return value
    return value.quantize(EXACT_PLACES)
