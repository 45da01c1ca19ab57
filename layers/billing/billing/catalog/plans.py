"""Plans: base fee, monthly query quota, trial length, graduated query tiers, and optionally
``charges`` (any metric, any pricing model), a minimum commitment and a currency.

``query_tiers`` is shorthand for one graduated charge on queries (line ids ``queries:...``); a plan
written without the new keys validates, digests and rates exactly as before they existed. A charge's
tier bounds and package size may be fractional: exact decimals read from their quoted text (``Units``).

Length: the plan file's whole schema (plans, charges, tiers, packages, limits and alerts by
reference) and its load-time checks live together, so that one module says what a valid catalog is;
the charge models and limits keep their own rules in ``billing.rating`` and ``billing.catalog.limits``.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from billing.catalog.documents import load_document
from billing.catalog.limits import AlertRule, Limit, check_catalog, hard_metric_limits, hard_query_limit
from billing.catalog.metrics import BUILT_IN_METRICS, MetricDefinition, check_unique_ids
from billing.catalog.usage_types import BUILT_IN_TYPES, UsageType, check_usage_types
from billing.kernel.money import reject_float
from billing.metering.events import PROPERTY_NAME

# the aggregations a charge prices (billing.rating.measures says how each splits across segments)
CHARGEABLE = ("count", "sum", "max", "latest", "unique_count", "time_weighted_sum")
MAX_GROUP_BY = 4  # properties a charge may group by

UNITS_SCALE = 18  # a bound or package size is exact to 18 decimal places, as event property numbers


def _exact_units(value: object) -> object:
    """A tier bound or package size as written: an integer stays an int (so a plan written with
    integers validates and digests exactly as before fractional units existed); a decimal, quoted
    in YAML (``"0.5"``) or a Decimal in code, is read exactly from its text and kept a Decimal
    unless integral (``"1000.0"`` is 1000); a bare YAML float (``0.5``) may already be inexact and
    is refused, as prices are."""
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError(
            'write a fractional bound or package size as a quoted string, e.g. "0.5", never a float'
        )
    if isinstance(value, int) or value is None:
        return value
    if not isinstance(value, str | Decimal):
        raise ValueError("must be an integer or a decimal written as a quoted string")
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else value
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a decimal number") from None
    if not number.is_finite():
        raise ValueError("must be a finite number")
    if number == number.to_integral_value():
        return int(number)
    exponent = number.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -UNITS_SCALE:
        raise ValueError(f"at most {UNITS_SCALE} decimal places")
    return number.normalize()


def _positive(value: int | Decimal | None) -> int | Decimal | None:
    if value is not None and value <= 0:
        raise ValueError("must be greater than 0")
    return value


# A cumulative tier bound or a package size in units: an int, or an exact Decimal with a fraction.
Units = Annotated[int | Decimal, BeforeValidator(_exact_units), AfterValidator(_positive)]


class Tier(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    up_to: int | None = Field(default=None, gt=0)  # cumulative; None = no upper bound
    unit_price: Decimal = Field(ge=0)

    _no_float = field_validator("unit_price", mode="before")(reject_float)


ChargeModel = Literal["graduated", "volume", "package", "per_unit"]


class ChargeTier(BaseModel):
    """A tier of a graduated or volume charge; ``flat_amount`` is charged once per month when the
    tier is used (graduated: any unit falls in it; volume: the month's total reaches it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    up_to: Units | None = None  # cumulative; None = no upper bound; may be fractional ("0.5")
    unit_price: Decimal = Field(default=Decimal(0), ge=0)
    flat_amount: Decimal = Field(default=Decimal(0), ge=0)

    _no_float = field_validator("unit_price", "flat_amount", mode="before")(reject_float)


def _check_tiers(owner: str, bounds: list[int | Decimal | None]) -> None:
    if not bounds or bounds[-1] is not None or any(b is None for b in bounds[:-1]):
        raise ValueError(f"{owner}: only the last tier may (and must) have up_to: null")
    finite = [b for b in bounds if b is not None]
    if finite != sorted(set(finite)):
        raise ValueError(f"{owner}: tier bounds must strictly increase")


class ValuePrice(BaseModel):
    """The price of the events whose ``price_by`` property is one of ``values``: the charge model's
    own keys, each left out taking the charge's (the default price)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    values: list[str] = Field(min_length=1)
    tiers: list[ChargeTier] | None = None
    package_size: int | None = Field(default=None, gt=0)
    package_price: Decimal | None = Field(default=None, ge=0)
    unit_price: Decimal | None = Field(default=None, ge=0)

    _no_float = field_validator("package_price", "unit_price", mode="before")(reject_float)


class PriceBy(BaseModel):
    """Prices per value of one text property; events with another value (or none) pay the charge's
    own price."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    property: str
    prices: list[ValuePrice] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct(self) -> PriceBy:
        if PROPERTY_NAME.fullmatch(self.property) is None:
            raise ValueError(f"price_by {self.property!r} is not a property name")
        values = [v for p in self.prices for v in p.values]
        if len(values) != len(set(values)):
            raise ValueError(f"price_by {self.property}: a value has two prices")
        return self


class Charge(BaseModel):
    """One priced metric of a plan. ``id`` names the charge across plans: a mid-month plan change
    continues the month's count of a charge with the same id (see billing.rating.charges)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    name: str = ""
    # a built-in metric (queries, input_tokens, output_tokens, tokens, bytes, events) or the id of a
    # catalog metric (billing.catalog.metrics), checked by the catalog
    metric: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    event_type: str | None = Field(default=None, min_length=1)  # only events of this type
    model: str | None = Field(default=None, min_length=1)  # only events of this model
    # one statement line per value of these text properties (a catalog metric only)
    group_by: list[str] = Field(default_factory=list, max_length=MAX_GROUP_BY)
    # prices per value of one text property (a catalog metric only); the charge's own price is the default
    price_by: PriceBy | None = None
    charge_model: ChargeModel
    tiers: list[ChargeTier] = Field(default_factory=list)  # graduated, volume
    package_size: Units | None = None  # package; may be fractional ("0.5")
    package_price: Decimal | None = Field(default=None, ge=0)  # package
    unit_price: Decimal | None = Field(default=None, ge=0)  # per_unit

    _no_float = field_validator("package_price", "unit_price", mode="before")(reject_float)

    @model_validator(mode="after")
    def _shape(self) -> Charge:
        owner = f"charge {self.id}"
        if len(set(self.group_by)) != len(self.group_by):
            raise ValueError(f"{owner}: group_by repeats a property")
        for name in self.group_by:
            if PROPERTY_NAME.fullmatch(name) is None:
                raise ValueError(f"{owner}: group_by {name!r} is not a property name")
        if self.metric not in BUILT_IN_METRICS and (self.event_type is not None or self.model is not None):
            raise ValueError(
                f"{owner}: a charge on catalog metric {self.metric} filters through the metric "
                "(its event_types, models and filters), not event_type or model"
            )
        if self.group_by and self.metric in BUILT_IN_METRICS:
            raise ValueError(f"{owner}: group_by needs a catalog metric, not the built-in {self.metric}")
        if self.price_by is not None:
            if self.metric in BUILT_IN_METRICS:
                raise ValueError(f"{owner}: price_by needs a catalog metric, not the built-in {self.metric}")
            if self.group_by:
                raise ValueError(f"{owner}: give group_by or price_by, not both")
            for index in range(len(self.price_by.prices)):
                self.priced_at(index)  # each value's price is a whole charge of the model
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

    def priced_at(self, index: int | None) -> Charge:
        """This charge at the ``price_by`` price ``index`` (None: its own, the default)."""
        if index is None or self.price_by is None:
            return self
        keys = self.price_by.prices[index].model_dump(exclude={"values"}, exclude_none=True)
        document = {**self.model_dump(exclude={"price_by"}), **keys}
        try:
            return Charge.model_validate(document)
        except ValidationError as exc:
            reason = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
            values = ", ".join(self.price_by.prices[index].values)
            raise ValueError(f"the price of {values}: {reason}") from None


# Charge keys added after charges: left out of the digest while at their defaults.
_LATER_CHARGE_KEYS = ("group_by", "price_by")
# Keys added after the first plan format: left out of the plan digest while at their defaults, so a
# plan file without them digests (and rates) exactly as before.
_LATER_KEYS = ("charges", "minimum_commitment", "currency", "usage_rate", "limits", "alerts", "in_advance")


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
    limits: list[Limit] = Field(default_factory=list)
    alerts: list[AlertRule] = Field(default_factory=list)  # limits and alerts: billing.catalog.limits
    # The base fee is billed at the start of each period (billing.rating.advance); usage always in arrears.
    in_advance: bool = False

    _no_float = field_validator("base_fee", "minimum_commitment", "usage_rate", mode="before")(reject_float)

    @property
    def hard_query_limit(self) -> int | None:
        """The monthly query count ingest admits (None: unlimited) (billing.catalog.limits)."""
        return hard_query_limit(self.query_quota, self.limits)

    @property
    def hard_metric_limits(self) -> dict[str, Decimal]:
        """The hard limits ingest enforces on metrics other than queries (billing.catalog.limits)."""
        return hard_metric_limits(self.limits)

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
        for charge in document.get("charges", []):
            for key in _LATER_CHARGE_KEYS:
                if not charge[key]:
                    del charge[key]
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
        # each plan's limits and alerts on count or sum metrics the catalog knows
        check_catalog(self.metrics, [(p.id, p.query_quota, p.limits, p.alerts) for p in self.plans])
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
        seen: dict[str, tuple[object, ...]] = {}
        for plan in self.plans:
            for c in plan.charges:
                by = c.price_by
                values = (by.property, tuple(tuple(p.values) for p in by.prices)) if by is not None else None
                shape = (
                    c.charge_model,
                    c.metric,
                    c.event_type,
                    c.model,
                    (tuple(c.group_by), values),
                    plan.id,
                )
                first = seen.setdefault(c.id, shape)
                if first[:5] != shape[:5]:
                    raise ValueError(
                        f"charge {c.id}: plans {first[5]} and {plan.id} give it different models, metrics, "
                        "filters, groups or priced values"
                    )
        return self

    @model_validator(mode="after")
    def _charges_on_known_metrics(self) -> PlanCatalog:
        ids = {m.id for m in self.metrics}
        for plan in self.plans:
            for c in plan.charges:
                if c.metric not in BUILT_IN_METRICS and c.metric not in ids:
                    raise ValueError(
                        f"plan {plan.id}, charge {c.id}: metric {c.metric!r} is neither built in "
                        f"({', '.join(sorted(BUILT_IN_METRICS))}) nor defined under `metrics`"
                    )
                if c.metric in ids and self.metric(c.metric).aggregation not in CHARGEABLE:
                    raise ValueError(
                        f"plan {plan.id}, charge {c.id}: metric {c.metric} ({self.metric(c.metric).aggregation}) "
                        f"cannot be charged yet (charges price {', '.join(CHARGEABLE)})"
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
        return cls.model_validate(load_document(path))

    def get(self, plan_id: str) -> Plan:
        for plan in self.plans:
            if plan.id == plan_id:
                return plan
        raise KeyError(plan_id)

    def currency_of(self, plan_id: str) -> str:
        return self.get(plan_id).currency or self.currency

    def __contains__(self, plan_id: object) -> bool:
        return any(p.id == plan_id for p in self.plans)
