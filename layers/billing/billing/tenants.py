"""Tenants: identity, append-only plan history, trial, cancellation and payment standing."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from billing.periods import iso, rfc3339_field

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
    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@/+=-]+$")
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
    api_key_ids: list[str] = Field(default_factory=list)
    version: int = 0

    _parse = field_validator("trial_ends_at", "canceled_at", mode="before")(_instant)

    @field_serializer("trial_ends_at", "canceled_at")
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
