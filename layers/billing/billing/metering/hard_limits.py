"""Hard limits at ingest on any count or sum metric: what an event adds to each limited metric of its
tenant's plan, how a claim records what it counted, and which events of a chunk fit.

Invariants (with ``billing.metering.claims`` and the ledger adapters):

- an event's **amounts** are its contribution to ``queries`` (1 for a query) and to each metric the
  plan in force at its timestamp limits hard: a count adds 1 when the event matches the metric
  (type, models, filters, as ``billing.adapters.clickhouse.metric_queries`` reads it), a sum adds
  the property (or field) it reads, an exact decimal; zero amounts are left out;
- an event with amounts is claimed in the same DynamoDB transaction that adds them to its tenant's
  month counters (item ``QUOTA#{tenant}#{YYYY-MM}``: ``used`` for queries, one attribute per limited
  metric), on condition each stays within its limit, with no read first; its claim carries the
  **marker** ``counted_marker(month, amounts)``, so whoever releases or voids it takes exactly
  those amounts off, in one transaction with the claim's deletion (or the void's record);
- so each counter equals, at every instant, the sum of the amounts marked on the month's live
  counted claims: what is stored of the metric since its limit applied. Counters hold exact
  decimals (DynamoDB numbers keep 38 digits; a property holds at most 20 + 18).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from operator import attrgetter

from billing.catalog.metrics import BUILT_IN, MetricDefinition
from billing.catalog.plans import PlanCatalog
from billing.metering.events import UsageEvent
from billing.tenants.tenant import Tenant

QUERIES = "queries"  # the query count: the counter's ``used`` attribute, limited by query_quota
ONE_QUERY: Mapping[str, Decimal] = {QUERIES: Decimal(1)}
_ARRIVAL = attrgetter("timestamp", "event_id")
Limits = dict[str, Decimal]  # metric -> the hard limit in force (queries included when limited)


def contribution(metric: MetricDefinition, event: UsageEvent) -> Decimal:
    """What ``event`` adds to ``metric`` (a count or a sum): 0 when it does not match."""
    if event.type not in metric.event_types:
        return Decimal(0)
    if metric.models is not None and (event.model or "") not in metric.models:
        return Decimal(0)
    for rule in metric.filters:
        value = event.properties.get(rule.property)
        holds = type(value) is str and value in (rule.in_ if rule.in_ is not None else rule.not_in or [])
        if holds != (rule.in_ is not None):
            return Decimal(0)
    if metric.aggregation == "count":
        return Decimal(1)
    if metric.field is not None:
        if metric.field == "tokens":
            return Decimal(event.input_tokens + event.output_tokens)
        return Decimal(getattr(event, metric.field))
    value = event.properties.get(metric.property or "")
    return value if isinstance(value, Decimal) else Decimal(0)


def limits_schedule(tenant: Tenant, catalog: PlanCatalog) -> Callable[[datetime], Limits]:
    """The hard limits on metrics other than queries of the plan in force at an instant (the plan
    history bisected as ``billing.metering.quotas.quota_schedule`` does); a tenant before plans has
    none."""
    plans = tenant.sorted_plans()
    starts = [p.effective_at for p in plans]
    segments: list[Limits | None] = [{}] + [None] * len(plans)

    def limits_at(instant: datetime) -> Limits:
        index = bisect.bisect_right(starts, instant)
        found = segments[index]
        if found is None:  # a plan the catalog lacks raises only when an instant falls in it
            found = segments[index] = catalog.get(plans[index - 1].plan).hard_metric_limits
        return found

    return limits_at


def metric_definitions(catalog: PlanCatalog) -> Callable[[str], MetricDefinition]:
    def definition(metric_id: str) -> MetricDefinition:
        return BUILT_IN[metric_id] if metric_id in BUILT_IN else catalog.metric(metric_id)

    return definition


def amounts_of(
    event: UsageEvent, limits: Limits, definition: Callable[[str], MetricDefinition]
) -> dict[str, Decimal]:
    """The event's non-zero amounts: queries, and each metric of ``limits`` (other than queries)."""
    amounts = {QUERIES: Decimal(1)} if event.queries else {}
    for metric_id in limits:
        if metric_id != QUERIES and (amount := contribution(definition(metric_id), event)):
            amounts[metric_id] = amount
    return amounts


def counted_marker(month: str, amounts: Mapping[str, Decimal]) -> str:
    """The claim's ``counted`` attribute: the month alone for one query (as every counted claim was
    before metric limits), else ``month|metric=amount|...``."""
    if len(amounts) == 1 and amounts.get(QUERIES) == 1:  # dict(amounts) == ONE_QUERY, without the copy
        return month
    return month + "".join(f"|{m}={a:f}" for m, a in sorted(amounts.items()))


def read_marker(marker: str) -> tuple[str, dict[str, Decimal]]:
    """(month, amounts) of a claim's ``counted`` attribute."""
    month, *parts = marker.split("|")
    if not parts:
        return month, dict(ONE_QUERY)
    return month, {m: Decimal(a) for m, a in (p.split("=", 1) for p in parts)}


def add_up(amounts: Iterable[Mapping[str, Decimal]]) -> dict[str, Decimal]:
    """Several events' amounts added up, per metric."""
    out: dict[str, Decimal] = {}
    for each in amounts:
        for metric, amount in each.items():
            out[metric] = out.get(metric, Decimal(0)) + amount
    return out


@dataclass(frozen=True)
class Refusal:
    event: UsageEvent
    metric: str
    limit: Decimal
    used: Decimal  # the counter when it was refused


@dataclass
class Admission:
    """Which events of a chunk fit. ``bounds``: metric -> the largest counter value before the chunk
    at which every admitted event still fits (the transaction's condition)."""

    admitted: list[UsageEvent] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    used_after: dict[str, Decimal] = field(default_factory=dict)
    bounds: dict[str, Decimal] = field(default_factory=dict)
    touched: set[str] = field(default_factory=set)  # limited metrics the chunk's events add to


def admit(
    events: Sequence[UsageEvent],
    used: Mapping[str, Decimal],
    limits_at: Callable[[UsageEvent], Limits],
    amounts: Callable[[UsageEvent], Mapping[str, Decimal]],
) -> Admission:
    """Admit events in (timestamp, event_id) order while each limited metric's counter plus the
    event's amount stays within the limit in force at its time (an event adding nothing, or taking
    away, to a metric is never refused on it). Pure: the caller writes the outcome conditionally."""
    return admit_ordered(sorted(events, key=_ARRIVAL), used, limits_at, amounts)


def admit_ordered(
    events: Sequence[UsageEvent],
    used: Mapping[str, Decimal],
    limits_at: Callable[[UsageEvent], Limits],
    amounts: Callable[[UsageEvent], Mapping[str, Decimal]],
) -> Admission:
    """``admit`` of ``events`` already in (timestamp, event_id) order, as taken."""
    decision = Admission(used_after=dict(used))
    start = dict(used)
    now = decision.used_after
    touched, bounds = decision.touched, decision.bounds
    zero = Decimal(0)
    for event in events:
        limits, adds = limits_at(event), amounts(event)
        # the first metric (by name) the event would take over its limit refuses it
        over = None
        for m, a in adds.items() if len(adds) < 2 else sorted(adds.items()):
            if m in limits:
                touched.add(m)
                if over is None and a > 0 and now.get(m, zero) + a > limits[m]:
                    over = Refusal(event, m, limits[m], now.get(m, zero))
        if over is not None:
            decision.refused.append(over)
            continue
        decision.admitted.append(event)
        for metric, amount in adds.items():
            now[metric] = now.get(metric, zero) + amount
            if metric in limits:
                bound = limits[metric] - (now[metric] - start.get(metric, zero))
                bounds[metric] = min(bounds.get(metric, bound), bound)
    return decision
