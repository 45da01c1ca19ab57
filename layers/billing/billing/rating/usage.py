"""The aggregates of stored usage that rating prices (read by billing.adapters.rating_queries)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from billing.money import ZERO
from billing.periods import Month


@dataclass(frozen=True)
class Usage:
    """Aggregates of stored events (exactly once) over some interval."""

    events: int = 0
    queries: int = 0
    tokens: int = 0
    cost_usd: Decimal = ZERO

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.events + other.events,
            self.queries + other.queries,
            self.tokens + other.tokens,
            self.cost_usd + other.cost_usd,
        )


@dataclass(frozen=True)
class MonthUsage:
    """A tenant's month: one Usage per pricing segment (same order as ``pricing_segments``) and the
    totals of every stored event of the month (trial included) for the CSV."""

    segments: tuple[Usage, ...]
    total: Usage = field(default_factory=Usage)


@dataclass(frozen=True)
class LateUsage:
    """Events of a closed earlier month stored after its close (billed as adjustments)."""

    month: Month
    billed_queries: int  # non-trial queries of ``month`` already billed (tier position)
    segments: tuple[Usage, ...]  # late events per pricing segment of ``month``
