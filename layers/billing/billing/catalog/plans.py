"""Plans: base fee, monthly query quota, trial length, graduated query tiers, and optionally
``charges`` (any metric, any pricing model), a minimum commitment and a currency.

``query_tiers`` is shorthand for one graduated charge on queries (line ids ``queries:...``); a plan
written without the new keys validates, digests and rates exactly as before they existed.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from billing.catalog.metrics import MetricDefinition, check_unique_ids
from billing.catalog.usage_types import BUILT_IN_TYPES, UsageType, check_usage_types
from billing.kernel.money import reject_float


class Tier(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    up_to: int | None = Field(default=None, gt=0)  # cumulative; None = no upper bound
    unit_price: Decimal = Field(ge=0)

    _no_float = field_validator("unit_price", mode="before")(reject_float)


Metric = Literal["queries", "input_tokens", "output_tokens", "tokens", "bytes", "events"]
ChargeModel = Literal["graduated", "volume", "package", "per_unit"]


class ChargeTier(BaseModel):
    """A tier of a graduated or volume charge; ``flat_amount`` is charged once per month when the
    tier is used (graduated: any unit falls in it; volume: the month's total reaches it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    up_to: int | None = Field(default=None, gt=0)  # cumulative; None = no upper bound
    unit_price: Decimal = Field(default=Decimal(0), ge=0)
    flat_amount: Decimal = Field(default=Decimal(0), ge=0)

    _no_float = field_validator("unit_price", "flat_amount", mode="before")(reject_float)


def _check_tiers(owner: str, bounds: list[int | None]) -> None:
    if not bounds or bounds[-1] is not None or any(b is None for b in bounds[:-1]):
        raise ValueError(f"{owner}: only the last tier may (and must) have up_to: null")
    finite = [b for b in bounds if b is not None]
    if finite != sorted(set(finite)):
        raise ValueError(f"{owner}: tier bounds must strictly increase")


class Charge(BaseModel):
    """One priced metric of a plan. ``id`` names the charge across plans: a mid-month plan change
    continues the month's count of a charge with the same id (see billing.rating.charges)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    name: str = ""
    metric: Metric
    event_type: str | None = Field(default=None, min_length=1)  # only events of this type
    model: str | None = Field(default=None, min_length=1)  # only events of this model
    charge_model: ChargeModel
    tiers: list[ChargeTier] = Field(default_factory=list)  # graduated, volume
    package_size: int | None = Field(default=None, gt=0)  # package
    package_price: Decimal | None = Field(default=None, ge=0)  # package
    unit_price: Decimal | None = Field(default=None, ge=0)  # per_unit

    _no_float = field_validator("package_price", "unit_price", mode="before")(reject_float)

    @model_validator(mode="after")
    def _shape(self) -> Charge:
        owner = f"charge {self.id}"
        if self.charge_model in ("graduated", "volume"):
            _check_tiers(owner, [t.up_to for t in self.tiers])
            if self.package_size is not None or self.package_price is not None or self.unit_price is not None:
                raise ValueError(f"{owner}: a {self.charge_model} charge is priced by its tiers only")
        elif self.charge_model == "package":
            if self.package_size is None or self.package_price is None:
                raise ValueError(f"{owner}: a package charge needs package_size and package_price")
            if self.tiers or self.unit_price is not None:
                raise ValueError(f"{owner}: a package charge is priced by package_price only")
        else:
            if self.unit_price is None:
                raise ValueError(f"{owner}: a per_unit charge needs unit_price")
            if self.tiers or self.package_size is not None or self.package_price is not None:
                raise ValueError(f"{owner}: a per_unit charge is priced by unit_price only")
        return self

    @property
    def label(self) -> str:
        return self.name or self.id


# Keys added after the first plan format: left out of the plan digest while at their defaults, so a
# plan file without them digests (and rates) exactly as before.
_LATER_KEYS = ("charges", "minimum_commitment", "currency", "usage_rate")


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    name: str
    base_fee: Decimal = Field(default=Decimal(0), ge=0)
    query_quota: int | None = Field(default=None, ge=0)  # None = unlimited
    trial_days: int = Field(default=0, ge=0)
    query_tiers: list[Tier] = Field(default_factory=lambda: [Tier(up_to=None, unit_price=Decimal(0))])
    stripe_product_id: str | None = None
    charges: list[Charge] = Field(default_factory=list)
    minimum_commitment: Decimal | None = Field(default=None, ge=0)  # per month, prorated like base_fee
    currency: str | None = Field(default=None, pattern=r"^[a-z]{3}$")  # None = the catalog's
    # Units of the plan's currency per USD of event-time usage cost (the price book is in USD): the
    # plan's fixed rate, so a statement stays reproducible. Required for a plan not in USD.
    usage_rate: Decimal | None = Field(default=None, gt=0)

    _no_float = field_validator("base_fee", "minimum_commitment", "usage_rate", mode="before")(reject_float)

    @model_validator(mode="after")
    def _tiers_ascending(self) -> Plan:
        _check_tiers(f"plan {self.id}", [t.up_to for t in self.query_tiers])
        ids = [c.id for c in self.charges]
        if len(ids) != len(set(ids)):
            raise ValueError(f"plan {self.id}: charge ids must be unique")
        if "queries" in ids:
            raise ValueError(f"plan {self.id}: charge id 'queries' is taken by query_tiers")
        return self

    def digest_document(self) -> dict[str, Any]:
        """What the statement's plans_digest hashes: the plan, without later keys left at defaults."""
        document = self.model_dump(mode="json")
        for key in _LATER_KEYS:
            if not document[key]:
                del document[key]
        return document


class PlanCatalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    currency: str = Field(default="usd", pattern=r"^[a-z]{3}$")
    plans: list[Plan]
    # Usage measures over event types and properties (billing.catalog.metrics); none by default.
    metrics: list[MetricDefinition] = Field(default_factory=list)
    # Event types beyond the built-in query, embedding and storage (billing.catalog.usage_types).
    usage_types: list[UsageType] = Field(default_factory=list)
    _event_types: frozenset[str] = PrivateAttr(default=frozenset(BUILT_IN_TYPES))

    @model_validator(mode="after")
    def _one_definition_per_metric(self) -> PlanCatalog:
        check_unique_ids(self.metrics)
        return self

    @model_validator(mode="after")
    def _only_known_types(self) -> PlanCatalog:
        """Metrics and charges read only types events can carry: a misspelt type would count nothing."""
        known = check_usage_types(self.usage_types)
        self._event_types = known
        listed = ", ".join(sorted(known))
        for metric in self.metrics:
            for name in metric.event_types:
                if name not in known:
                    raise ValueError(f"metric {metric.id}: unknown usage type {name!r} (known: {listed})")
        for plan in self.plans:
            for charge in plan.charges:
                if charge.event_type is not None and charge.event_type not in known:
                    raise ValueError(
                        f"plan {plan.id}, charge {charge.id}: unknown usage type {charge.event_type!r} "
                        f"(known: {listed})"
                    )
        return self

    @property
    def event_types(self) -> frozenset[str]:
        """Every ``type`` an event may carry: the built-in types and the declared ones."""
        return self._event_types

    def metric(self, metric_id: str) -> MetricDefinition:
        for metric in self.metrics:
            if metric.id == metric_id:
                return metric
        raise KeyError(metric_id)

    @model_validator(mode="after")
    def _one_meaning_per_charge_id(self) -> PlanCatalog:
        """A charge id continues its count across a plan change, so it means one thing everywhere."""
        seen: dict[str, tuple[str, str, str | None, str | None, str]] = {}
        for plan in self.plans:
            for c in plan.charges:
                shape = (c.charge_model, c.metric, c.event_type, c.model, plan.id)
                first = seen.setdefault(c.id, shape)
                if first[:4] != shape[:4]:
                    raise ValueError(
                        f"charge {c.id}: plans {first[4]} and {plan.id} give it different models, metrics or filters"
                    )
        return self

    @model_validator(mode="after")
    def _usage_in_the_plans_currency(self) -> PlanCatalog:
        """Event-time usage cost is in USD: a plan in another currency says how many units a USD is."""
        for plan in self.plans:
            currency = plan.currency or self.currency
            if currency != "usd" and plan.usage_rate is None:
                raise ValueError(
                    f"plan {plan.id}: usage_rate is required for a plan in {currency.upper()} "
                    f"({currency.upper()} per USD of event-time usage cost, a quoted string)"
                )
            if currency == "usd" and plan.usage_rate not in (None, 1):
                raise ValueError(f"plan {plan.id}: a USD plan's usage_rate can only be 1")
        return self

    def usage_rate_of(self, plan_id: str) -> Decimal:
        """Plan-currency units per USD of event-time usage cost (1 for a USD plan)."""
        rate = self.get(plan_id).usage_rate
        return Decimal(1) if rate is None else rate

    @classmethod
    def load(cls, path: Path | str) -> PlanCatalog:
        return cls.model_validate(yaml.safe_load(Path(path).read_text()))

    def get(self, plan_id: str) -> Plan:
        for plan in self.plans:
            if plan.id == plan_id:
                return plan
        raise KeyError(plan_id)

    def currency_of(self, plan_id: str) -> str:
        return self.get(plan_id).currency or self.currency

    def __contains__(self, plan_id: object) -> bool:
        return any(p.id == plan_id for p in self.plans)
