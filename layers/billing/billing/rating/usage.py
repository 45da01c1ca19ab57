"""The aggregates of stored usage that rating prices (read by billing.adapters.clickhouse.rating_queries)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from billing.kernel.money import ZERO
from billing.kernel.periods import Month
from billing.rating.measures import Measured


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
class Meter:
    """Counters of the stored events of one (type, model) over some interval: what charges price."""

    type: str
    model: str  # "" for events without a model
    events: int = 0
    queries: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    bytes: int = 0


Meters = tuple[Meter, ...]


@dataclass(frozen=True)
class MonthUsage:
    """A tenant's month: one Usage per pricing segment (same order as ``pricing_segments``) and the
    totals of every stored event of the month (trial included) for the CSV.

    ``metered``: one ``Meters`` per pricing segment, read only when a plan of the month has
    ``charges`` (empty otherwise; the rater refuses to price charges without them).

    ``measured``: one ``Measured`` per pricing segment (charge id -> group -> units), read only
    when a plan of the month charges a catalog metric (billing.rating.measures)."""

    segments: tuple[Usage, ...]
    total: Usage = field(default_factory=Usage)
    metered: tuple[Meters, ...] = ()
    measured: tuple[Measured, ...] = ()


@dataclass(frozen=True)
class LateUsage:
    """Events of a closed earlier month stored after its close (billed as adjustments)."""

    month: Month
    billed_queries: int  # non-trial queries of ``month`` already billed (tier position)
    segments: tuple[Usage, ...]  # late events per pricing segment of ``month``
    # With charges: late events' meters per segment, and the meters of the events already billed.
    metered: tuple[Meters, ...] = ()
    billed_metered: tuple[Meters, ...] = ()
    # With catalog-metric charges: per segment, their units over the billed events, and over the
    # billed and late events together (a late event can change a max, a latest, a unique count).
    billed_measured: tuple[Measured, ...] = ()
    measured_with_late: tuple[Measured, ...] = ()
