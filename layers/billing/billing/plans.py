"""Plans: base fee, monthly query quota, trial length and graduated query tiers."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from billing.money import reject_float


class Tier(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    up_to: int | None = Field(default=None, gt=0)  # cumulative; None = no upper bound
    unit_price: Decimal = Field(ge=0)

    _no_float = field_validator("unit_price", mode="before")(reject_float)


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    name: str
    base_fee: Decimal = Field(default=Decimal(0), ge=0)
    query_quota: int | None = Field(default=None, ge=0)  # None = unlimited
    trial_days: int = Field(default=0, ge=0)
    query_tiers: list[Tier] = Field(default_factory=lambda: [Tier(up_to=None, unit_price=Decimal(0))])
    stripe_product_id: str | None = None

    _no_float = field_validator("base_fee", mode="before")(reject_float)

    @model_validator(mode="after")
    def _tiers_ascending(self) -> Plan:
        bounds = [t.up_to for t in self.query_tiers]
        if not bounds or bounds[-1] is not None or any(b is None for b in bounds[:-1]):
            raise ValueError(f"plan {self.id}: only the last tier may (and must) have up_to: null")
        finite = [b for b in bounds if b is not None]
        if finite != sorted(set(finite)):
            raise ValueError(f"plan {self.id}: tier bounds must strictly increase")
        return self


class PlanCatalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    currency: str = "usd"
    plans: list[Plan]

    @classmethod
    def load(cls, path: Path | str) -> PlanCatalog:
        return cls.model_validate(yaml.safe_load(Path(path).read_text()))

    def get(self, plan_id: str) -> Plan:
        for plan in self.plans:
            if plan.id == plan_id:
                return plan
        raise KeyError(plan_id)

    def __contains__(self, plan_id: object) -> bool:
        return any(p.id == plan_id for p in self.plans)
