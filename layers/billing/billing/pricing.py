"""The price book: versioned provider prices plus markup; an event's cost is frozen at event time."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from billing.events import UsageEvent
from billing.money import ZERO, reject_float, round_event_cost
from billing.periods import iso, parse_instant

MILLION = Decimal(1_000_000)
GIGABYTE = Decimal(1_000_000_000)


class ModelPrice(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    input_per_1m: Decimal = Field(ge=0)
    output_per_1m: Decimal = Field(ge=0)


class PriceVersion(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    effective_from: datetime
    markup: Decimal = Field(ge=0)
    storage_per_gb: Decimal = Field(ge=0)
    models: dict[str, ModelPrice]
    id: str | None = None

    @field_validator("effective_from", mode="before")
    @classmethod
    def _instant(cls, value: Any) -> Any:
        return parse_instant(value) if isinstance(value, str) else value

    _no_float = field_validator("markup", "storage_per_gb", mode="before")(reject_float)

    @property
    def version_id(self) -> str:
        return self.id or iso(self.effective_from)


@dataclass(frozen=True)
class EventCost:
    cost_usd: Decimal
    price_version: str


class UnknownModel(ValueError):
    pass


class NoPriceVersion(ValueError):
    pass


class PriceBook:
    def __init__(self, versions: list[PriceVersion]):
        if not versions:
            raise ValueError("a price book needs at least one version")
        self.versions = sorted(versions, key=lambda v: v.effective_from)
        self._starts = [v.effective_from for v in self.versions]

    @classmethod
    def load(cls, path: Path | str) -> PriceBook:
        document = yaml.safe_load(Path(path).read_text())
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
        with localcontext() as ctx:
            ctx.prec = 60
            return self._cost(event)

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
