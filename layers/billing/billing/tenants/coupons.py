"""Coupons attached to a tenant: percent or fixed amount off, for one month, N months or forever.

Invariants: a coupon applies to the statements of the months from the month of ``starts_at`` on
(``once``: that month only; ``repeating``: ``duration_months`` months; ``forever``: every month);
it never takes a statement below zero (see billing.rating.coupon_lines for the order and formula).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator, model_validator

from billing.kernel.money import reject_float
from billing.kernel.periods import Month, RatedPeriod, iso, rfc3339_field
from billing.kernel.validation import field_error

Duration = Literal["once", "repeating", "forever"]


class Coupon(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    coupon_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    name: str = Field(default="", max_length=256)
    percent_off: Decimal | None = Field(default=None, gt=0, le=100)
    amount_off: Decimal | None = Field(default=None, gt=0)  # in the tenant's currency
    duration: Duration
    duration_months: int | None = Field(default=None, ge=1, le=1200)
    starts_at: datetime

    _no_float = field_validator("percent_off", "amount_off", mode="before")(reject_float)
    _parse = field_validator("starts_at", mode="before")(rfc3339_field)

    @field_serializer("starts_at")
    def _ser(self, value: datetime) -> str:
        return iso(value)

    @model_validator(mode="after")
    def _shape(self) -> Coupon:
        if (self.percent_off is None) == (self.amount_off is None):
            raise field_error(
                "Coupon", "percent_off", "a coupon has exactly one of percent_off and amount_off", None
            )
        if (self.duration == "repeating") != (self.duration_months is not None):
            raise field_error(
                "Coupon",
                "duration_months",
                "duration_months is given exactly when duration is repeating",
                self.duration_months,
            )
        return self

    def applies_to(self, month: RatedPeriod) -> bool:
        """Whether the coupon discounts the period (counted by the month the period starts in)."""
        first = Month.of(self.starts_at)
        if (month.year, month.month) < (first.year, first.month):
            return False
        if self.duration == "forever":
            return True
        months = 1 if self.duration == "once" else (self.duration_months or 1)
        return (month.year - first.year) * 12 + month.month - first.month < months
