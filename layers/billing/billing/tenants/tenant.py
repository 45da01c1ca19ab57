"""Tenants: identity, append-only plan history, trial, cancellation and payment standing."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from billing.kernel.calendar import CalendarHistory
from billing.kernel.errors import NotFound
from billing.kernel.periods import iso, rfc3339_field
from billing.kernel.validation import ID_MAX_LENGTH, ID_PATTERN
from billing.tenants.calendar_settings import CalendarSetting, calendar_history
from billing.tenants.coupons import Coupon

PaymentStatus = Literal["active", "past_due", "suspended"]


_instant = rfc3339_field


class PlanAssignment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    plan: str
    effective_at: datetime

    _parse = field_validator("effective_at", mode="before")(_instant)

    @field_serializer("effective_at")
    def _ser(self, value: datetime) -> str:
        return iso(value)


class Tenant(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str = Field(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)
    name: str = ""
    email: str = ""
    plans: list[PlanAssignment] = Field(default_factory=list)
    trial_ends_at: datetime | None = None
    canceled_at: datetime | None = None
    # Legacy quota (before plans): used when the tenant has no plan history.
    query_quota: int | None = None
    payment_status: PaymentStatus = "active"
    payment_version: int = 0  # version of the dunning standing mirrored into payment_status
    stripe_customer_id: str | None = None
    # The customer's invoice default payment method, mirrored by the webhook (card on file), and
    # the time at Stripe of the setup or change it came from (newer ones only replace it).
    payment_method_id: str | None = None
    payment_method_at: datetime | None = None
    api_key_ids: list[str] = Field(default_factory=list)
    coupons: list[Coupon] = Field(default_factory=list)  # attached coupons (billing.tenants.coupons)
    # The billing calendar's history (billing.tenants.calendar_settings); none: UTC calendar months.
    calendars: list[CalendarSetting] = Field(default_factory=list)
    version: int = 0

    _parse = field_validator("trial_ends_at", "canceled_at", "payment_method_at", mode="before")(_instant)

    @field_serializer("trial_ends_at", "canceled_at", "payment_method_at")
    def _ser(self, value: datetime | None) -> str | None:
        return iso(value) if value else None

    def sorted_plans(self) -> list[PlanAssignment]:
        return sorted(self.plans, key=lambda p: p.effective_at)

    def plan_at(self, instant: datetime) -> str | None:
        current = None
        for assignment in self.sorted_plans():
            if assignment.effective_at <= instant:
                current = assignment.plan
        return current

    def first_plan_at(self) -> datetime | None:
        plans = self.sorted_plans()
        return plans[0].effective_at if plans else None

    def calendar_history(self) -> CalendarHistory:
        """The tenant's billing periods over time (UTC calendar months when it set none)."""
        return calendar_history(self.calendars)

    def in_trial(self, instant: datetime) -> bool:
        return self.trial_ends_at is not None and instant < self.trial_ends_at

    def is_canceled_at(self, instant: datetime) -> bool:
        return self.canceled_at is not None and instant >= self.canceled_at


class TenantStore(Protocol):
    """Tenant records, read with strong consistency; ``save`` is an optimistic write that fails (a
    conflict, see ``container.is_conflict``) when anyone changed the record since it was read."""

    def get(self, tenant_id: str) -> Tenant | None: ...

    def get_many(self, tenant_ids: Iterable[str]) -> dict[str, Tenant]: ...

    def list_all(self) -> list[Tenant]: ...

    def create(self, tenant: Tenant) -> bool: ...

    def save(self, tenant: Tenant) -> Tenant: ...

    def link_stripe_customer(self, tenant_id: str, customer_id: str) -> str | None:
        """Store the tenant's Stripe customer id unless one is stored already, touching nothing else
        in the record; returns the id stored afterwards (the first link wins), None if no such tenant."""
        ...


def unknown_tenant(tenant_ids: Iterable[str]) -> NotFound:
    """The one "unknown tenant" error (404), naming each id."""
    ids = sorted(set(tenant_ids))
    return NotFound(
        f"unknown tenant {ids[0]}" if len(ids) == 1 else f"unknown tenants: {', '.join(ids)}",
        details=[{"field": "tenant_id", "tenant_id": t, "reason": "unknown tenant"} for t in ids],
    )
