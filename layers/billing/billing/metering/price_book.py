"""The price book: versioned provider prices plus markup; an event's cost is frozen at event time."""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Context, Decimal, Inexact, InvalidOperation, localcontext
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator

from billing.catalog.documents import load_document
from billing.kernel.money import ZERO, reject_float, round_event_cost
from billing.kernel.periods import iso, parse_instant
from billing.metering.events import BUILT_IN_TYPES, PROPERTY_NAME, PropertyValue, UsageEvent

MILLION = Decimal(1_000_000)
GIGABYTE = Decimal(1_000_000_000)
# Arithmetic that must be exact: any rounding raises Inexact (and the exact-by-definition path is taken).
_EXACT = Context(prec=60, traps=[Inexact, InvalidOperation])
_PREC60 = Context(prec=60)  # a cost of fewer than 60 digits in nanodollars is never rounded here


class ModelPrice(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    input_per_1m: Decimal = Field(ge=0)
    output_per_1m: Decimal = Field(ge=0)


_BUILT_IN_TYPES = frozenset(BUILT_IN_TYPES)  # priced by tokens and bytes


class UsageTypePrice(BaseModel):
    """The provider price of a declared usage type: ``per_unit`` USD per unit of the event's numeric
    property ``property``; with ``by``, the text property named by its one key selects another
    price per value (``{gpu: {h100: "0.0009"}}``), any other value or none keeping ``per_unit``.
    The markup applies on top, as to tokens and bytes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    property: str = Field(pattern=PROPERTY_NAME.pattern)
    per_unit: Decimal = Field(ge=0)
    by: dict[str, dict[str, Decimal]] = Field(default_factory=dict, max_length=1)

    _no_float = field_validator("per_unit", mode="before")(reject_float)

    @field_validator("by", mode="before")
    @classmethod
    def _no_float_by_value(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for prices in value.values():
                if isinstance(prices, dict):
                    for price in prices.values():
                        reject_float(price)
        return value

    @field_validator("by")
    @classmethod
    def _prices_by_value(cls, value: dict[str, dict[str, Decimal]]) -> dict[str, dict[str, Decimal]]:
        for name, prices in value.items():
            if PROPERTY_NAME.fullmatch(name) is None:
                raise ValueError(f"by: {name!r} is not a property name")
            if not prices:
                raise ValueError(f"by {name}: give at least one value: price")
            if any(price < 0 for price in prices.values()):
                raise ValueError(f"by {name}: a price is at least 0")
        return value

    def price_of(self, properties: Mapping[str, PropertyValue]) -> Decimal:
        """USD per unit (before markup) for an event with these properties."""
        for name, prices in self.by.items():
            value = properties.get(name)
            if type(value) is str and value in prices:
                return prices[value]
        return self.per_unit


class PriceVersion(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    effective_from: datetime
    markup: Decimal = Field(ge=0)
    storage_per_gb: Decimal = Field(ge=0)
    models: dict[str, ModelPrice]
    # Declared usage types (billing.catalog.usage_types) priced per unit of a numeric property; an
    # event of a type not listed costs 0.
    usage_types: dict[str, UsageTypePrice] = Field(default_factory=dict)
    id: str | None = None

    @field_validator("usage_types")
    @classmethod
    def _declared_types_only(cls, value: dict[str, UsageTypePrice]) -> dict[str, UsageTypePrice]:
        for name in value:
            if name in _BUILT_IN_TYPES:
                raise ValueError(
                    f"usage type {name}: query, embedding and storage are priced by models and bytes"
                )
            if PROPERTY_NAME.fullmatch(name) is None:
                raise ValueError(f"usage type {name!r}: not a usage type id")
        return value

    @field_validator("effective_from", mode="before")
    @classmethod
    def _instant(cls, value: Any) -> Any:
        return parse_instant(value) if isinstance(value, str) else value

    _no_float = field_validator("markup", "storage_per_gb", mode="before")(reject_float)

    @property
    def version_id(self) -> str:
        return self.id or iso(self.effective_from)


class EventCost(NamedTuple):
    cost_usd: Decimal
    price_version: str


class UnknownModel(ValueError):
    pass


class NoPriceVersion(ValueError):
    pass


class MissingMeasure(ValueError):
    """An event of a priced usage type without the non-negative number its price is per."""

    def __init__(self, field: str, reason: str):
        super().__init__(reason)
        self.field = field


@dataclass(frozen=True)
class _Folded:
    """A version's prices with the markup and the unit folded in: USD per input token, per output
    token (by model) and per byte, each exact; and the same prices as integers (``_Scaled``)."""

    per_token: dict[str, tuple[Decimal, Decimal]]
    per_byte: Decimal
    scaled: _Scaled | None = None

    @classmethod
    def of(cls, version: PriceVersion) -> _Folded | None:
        """None when a folded price is not exact in 60 digits (then every cost takes ``_cost``)."""
        try:
            factor = _EXACT.add(1, version.markup)
            per_token = {
                model: (
                    _EXACT.divide(_EXACT.multiply(price.input_per_1m, factor), MILLION),
                    _EXACT.divide(_EXACT.multiply(price.output_per_1m, factor), MILLION),
                )
                for model, price in version.models.items()
            }
            per_byte = _EXACT.divide(_EXACT.multiply(version.storage_per_gb, factor), GIGABYTE)
        except (Inexact, InvalidOperation):
            return None
        return cls(per_token, per_byte, _Scaled.of(per_token, per_byte))


# A cost's nanodollars below this bound have fewer than 60 digits: so does every product and sum
# the Decimal path forms (each is at most the total), so that path would have been exact too.
_SCALED_LIMIT = 10**60


@dataclass(frozen=True)
class _Scaled:
    """The folded prices as integers: each price is ``integer * 10**exponent`` for one exponent of the
    version (the smallest of its prices', at most -9), so a cost is an integer sum of count times
    integer price, which is exact; ``unit`` is 10**(-9 - exponent), that many per nanodollar."""

    per_token: dict[str, tuple[int, int]]
    per_byte: int
    unit: int

    @classmethod
    def of(cls, per_token: dict[str, tuple[Decimal, Decimal]], per_byte: Decimal) -> _Scaled | None:
        """None unless every price is finite and carries no minus sign (a -0 price makes -0 costs,
        which an integer cannot say: those versions keep the Decimal path)."""
        prices = [per_byte, *(price for pair in per_token.values() for price in pair)]
        if any(not p.is_finite() or p.is_signed() for p in prices):
            return None
        exponent = min(-9, *(int(p.as_tuple().exponent) for p in prices))

        def scaled(price: Decimal) -> int:
            _sign, digits, own = price.as_tuple()  # own >= exponent: a whole number of units
            return int("".join(map(str, digits)) + "0" * (int(own) - exponent))

        return cls(
            {model: (scaled(a), scaled(b)) for model, (a, b) in per_token.items()},
            scaled(per_byte),
            10 ** (-9 - exponent),
        )

    def cost(
        self, rates: tuple[int, int] | None, input_tokens: int, output_tokens: int, size: int
    ) -> Decimal | None:
        """``round_event_cost`` of the exact cost (``rates`` None: bytes alone), or None when it has
        60 digits or more (then the Decimal path decides, as before)."""
        total = self.per_byte * size
        if rates is not None:
            total += rates[0] * input_tokens + rates[1] * output_tokens
        if total >= _SCALED_LIMIT:
            return None
        nanos, rest = divmod(total, self.unit)
        if rest + rest >= self.unit:  # half up (a cost is never negative)
            nanos += 1
        return Decimal(nanos).scaleb(-9, _PREC60)


class PriceBook:
    """Invariant: ``cost`` is the formula of ``_cost`` (provider cost plus markup, rounded half-up to
    nanodollars once). Its fast path multiplies the counts by the folded prices of ``_Folded``: in
    exact arithmetic that is the same number, so it is taken only while every step is exact (60
    digits, Inexact trapped), and the same rounding then gives the same Decimal."""

    def __init__(self, versions: list[PriceVersion]):
        if not versions:
            raise ValueError("a price book needs at least one version")
        self.versions = sorted(versions, key=lambda v: v.effective_from)
        self._starts = [v.effective_from for v in self.versions]
        self._folded = [_Folded.of(v) for v in self.versions]
        self._ids = [v.version_id for v in self.versions]

    @classmethod
    def load(cls, path: Path | str) -> PriceBook:
        document = load_document(path)
        return cls.from_document(document)

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> PriceBook:
        return cls([PriceVersion.model_validate(v) for v in document["versions"]])

    def version_at(self, instant: datetime) -> PriceVersion:
        index = bisect.bisect_right(self._starts, instant) - 1
        if index < 0:
            raise NoPriceVersion(f"no price book version in force at {iso(instant)}")
        return self.versions[index]

    def cost(self, event: UsageEvent) -> EventCost:
        if event.type not in _BUILT_IN_TYPES:
            return self._usage_type_cost(event)
        index = bisect.bisect_right(self._starts, event.timestamp) - 1
        folded = self._folded[index] if index >= 0 else None
        if folded is not None:
            model = event.model or ""
            rates = folded.per_token.get(model)
            tokens = event.input_tokens or event.output_tokens or event.model
            if (scaled := folded.scaled) is not None and (rates is not None or not tokens):
                # the same exact sum in integers: a cost of Decimal's fast path, to the digit
                exact = scaled.cost(
                    scaled.per_token[model] if tokens and rates is not None else None,
                    event.input_tokens,
                    event.output_tokens,
                    event.bytes,
                )
                if exact is not None:
                    return EventCost(exact, self._ids[index])
            if rates is not None or not tokens:
                try:  # a zero count adds exactly nothing: skipped
                    amount = _EXACT.multiply(folded.per_byte, event.bytes) if event.bytes else ZERO
                    if tokens and rates is not None:
                        if event.input_tokens:
                            amount = _EXACT.add(amount, _EXACT.multiply(rates[0], event.input_tokens))
                        if event.output_tokens:
                            amount = _EXACT.add(amount, _EXACT.multiply(rates[1], event.output_tokens))
                    return EventCost(round_event_cost(amount), self._ids[index])
                except (Inexact, InvalidOperation):
                    pass
        with localcontext() as ctx:  # unknown model, no version, or not exact: the formula itself
            ctx.prec = 60
            return self._cost(event)

    def _usage_type_cost(self, event: UsageEvent) -> EventCost:
        """A declared type's cost: its property times the version's price, plus markup, rounded once.
        Exact whatever the digits: a product has at most as many digits as its factors together, and
        the context holds that many. An event of a type the version prices must carry the property
        as a number >= 0 (``MissingMeasure``): its cost is frozen, so a cost of 0 for a forgotten
        measure could never be corrected."""
        version = self.version_at(event.timestamp)
        price = version.usage_types.get(event.type)
        if price is None:
            return EventCost(round_event_cost(ZERO), version.version_id)
        quantity = event.properties.get(price.property)
        if type(quantity) is not Decimal or quantity < 0:
            raise MissingMeasure(
                f"properties.{price.property}",
                f"{event.type} events are priced per {price.property} (price book version "
                f"{version.version_id}): it must be a number >= 0",
            )
        unit = price.price_of(event.properties)
        factor = 1 + version.markup
        with localcontext() as ctx:
            ctx.prec = sum(len(d.as_tuple().digits) for d in (quantity, unit, factor)) + 2
            ctx.traps[Inexact] = True
            amount = quantity * unit * factor
        return EventCost(round_event_cost(amount), version.version_id)

    def _cost(self, event: UsageEvent) -> EventCost:
        version = self.version_at(event.timestamp)
        provider = ZERO
        if event.input_tokens or event.output_tokens or event.model:
            price = version.models.get(event.model or "")
            if price is None:
                raise UnknownModel(
                    f"unknown model {event.model!r} in price book version {version.version_id}"
                )
            provider += (
                event.input_tokens * price.input_per_1m + event.output_tokens * price.output_per_1m
            ) / MILLION
        provider += Decimal(event.bytes) / GIGABYTE * version.storage_per_gb
        return EventCost(round_event_cost(provider * (1 + version.markup)), version.version_id)
