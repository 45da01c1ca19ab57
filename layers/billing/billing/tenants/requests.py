"""The tenants API's request bodies: strict (``"yes"``, ``"5"``, ``1.5``, ``true`` never pass as bool,
int or money; money is a decimal string), unknown fields refused, instants RFC 3339 with an offset;
every problem is a 400 naming its field (``parse_request``)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from billing.kernel.calendar import Interval
from billing.kernel.money import decimal_text
from billing.kernel.periods import rfc3339_field
from billing.kernel.validation import Identifier, parse_model
from billing.tenants.calendar_settings import AnchorKind, anchor_field, time_zone_field
from billing.tenants.coupons import Duration

_instant = rfc3339_field


# Stripe refuses a malformed email (``email_invalid``) on every customer create; checked at signup so
# a tenant record can never make every invoicing attempt fail.
EMAIL_PATTERN = r"^$|^[^@\s]+@[^@\s]+\.[^@\s.]{2,}$"


class SignupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # "yes", "5", true never pass as bool/int
    id: Identifier
    name: str = Field(default="", max_length=256)  # Stripe's customer name limit
    email: str = Field(default="", max_length=256, pattern=EMAIL_PATTERN)
    plan: str = Field(min_length=1, max_length=128)
    effective_at: datetime | None = None
    trial: bool = False
    trial_days: int | None = Field(default=None, ge=0, le=366)
    trial_ends_at: datetime | None = None
    api_key_ids: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=list, max_length=20
    )
    # The billing calendar (billing.kernel.calendar), from the start; absent: UTC calendar months.
    time_zone: str | None = Field(default=None, max_length=64)
    anchor: AnchorKind | datetime | None = None
    interval: Interval | None = None

    _parse = field_validator("effective_at", "trial_ends_at", mode="before")(_instant)
    _zone = field_validator("time_zone", mode="before")(time_zone_field)
    _anchor = field_validator("anchor", mode="before")(anchor_field)


class PlanChangeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    plan: str = Field(min_length=1, max_length=128)
    effective_at: datetime | None = None

    _parse = field_validator("effective_at", mode="before")(_instant)


class CalendarRequest(BaseModel):
    """A change of the billing calendar: the fields left out keep their values; it applies from the
    end of the period holding ``at`` (default now)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    time_zone: str | None = Field(default=None, max_length=64)
    anchor: AnchorKind | datetime | None = None
    interval: Interval | None = None
    at: datetime | None = None

    _zone = field_validator("time_zone", mode="before")(time_zone_field)
    _anchor = field_validator("anchor", mode="before")(anchor_field)
    _parse = field_validator("at", mode="before")(_instant)


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    at: datetime | None = None

    _parse = field_validator("at", mode="before")(_instant)


class CreditGrantRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    grant_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    # not strict: money arrives as text to parse (``decimal_text`` admits nothing else)
    amount: Decimal = Field(gt=0, max_digits=20, decimal_places=9, strict=False)
    currency: str | None = Field(default=None, pattern=r"^[a-z]{3}$")  # None: the tenant's
    granted_at: datetime | None = None
    expires_at: datetime | None = None
    priority: int = Field(default=100, ge=0, le=1_000_000)
    description: str = Field(default="", max_length=256)

    _money = field_validator("amount", mode="before")(decimal_text)
    _parse = field_validator("granted_at", "expires_at", mode="before")(_instant)


class CouponRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    coupon_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    name: str = Field(default="", max_length=256)
    # not strict: money arrives as text to parse (``decimal_text`` admits nothing else)
    percent_off: Decimal | None = Field(
        default=None, gt=0, le=100, max_digits=9, decimal_places=6, strict=False
    )
    amount_off: Decimal | None = Field(default=None, gt=0, max_digits=20, decimal_places=9, strict=False)
    duration: Duration
    duration_months: int | None = Field(default=None, ge=1, le=1200)
    starts_at: datetime | None = None

    _money = field_validator("percent_off", "amount_off", mode="before")(decimal_text)
    _parse = field_validator("starts_at", mode="before")(_instant)


def parse_request(model: type[BaseModel], body: Any) -> Any:
    """A JSON object to a request model, or InvalidRequest naming each bad field and why."""
    return parse_model(model, body)
