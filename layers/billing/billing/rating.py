"""Monthly rating: a tenant's month of usage to an exact, reproducible statement. Pure (no I/O).

Rules (docs/rating.md states them for operators; this module is the implementation):

* The period is the calendar month in UTC, ending early at ``canceled_at`` (the final statement).
* Pricing segments: maximal half-open intervals ``[start, end)`` of the period with one plan and one
  trial state. A plan entry that repeats the plan already in force does not cut a segment, and an
  event exactly at a boundary belongs to the later segment (the new plan takes effect at its instant).
* Base fee: one line per maximal interval of one plan: ``base_fee x non-trial seconds / month seconds``.
* Queries: graduated tiers over the month's cumulative count of billable (non-trial) queries in
  (timestamp, event_id) order; each query is priced by the tiers of the plan in force at its time at
  its cumulative position, so a plan change does not restart the count. One line per plan and tier.
* Usage cost: the sum of stored event-time ``cost_usd`` of the month's non-trial events, one line.
* Trial: base fee, queries and usage cost are free; trial queries take no tier position. Trial usage
  is shown at 0.00.
* Late data: events of a closed month M' stored after its close are billed on the next statement as
  ``adjustment`` lines naming M': their usage cost, and their non-trial queries priced by the plan in
  force at each query's time, continuing the tier walk of M' after every query of M' already billed.
* Rounding: every line is computed exactly and rounded half-up to cents once; the total is the sum of
  the rounded lines.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any

from billing.money import ZERO, round_cents
from billing.periods import Month, iso, utc
from billing.plans import Plan, PlanCatalog, Tier
from billing.statements import Statement, StatementLine
from billing.tenants import Tenant

RATING_VERSION = "rating/1"
EXACT_PLACES = Decimal("1E-15")  # stored form of amount_exact (rounding to cents uses the full value)


# ---------------------------------------------------------------------------------------------- segments
@dataclass(frozen=True)
class Segment:
    """A maximal interval [start, end) of the statement period with one plan and one trial state."""
    start: datetime
    end: datetime
    plan: str
    trial: bool

    @property
    def seconds(self) -> Decimal:
        return seconds_between(self.start, self.end)


def seconds_between(start: datetime, end: datetime) -> Decimal:
    micro = (end - start) // timedelta(microseconds=1)
    return Decimal(micro) / Decimal(1_000_000)


def statement_period(tenant: Tenant, month: Month) -> tuple[datetime, datetime] | None:
    """[start, end) of the tenant's statement for ``month``; None when it has nothing to bill (not
    subscribed yet, or cancelled before the month began)."""
    first = tenant.first_plan_at()
    if first is None or first >= month.end:
        return None
    end = month.end
    if tenant.canceled_at is not None:
        canceled = utc(tenant.canceled_at)
        if canceled <= month.start:
            return None
        end = min(end, canceled)
    return month.start, end


def is_final(tenant: Tenant, month: Month) -> bool:
    """The month's statement is the tenant's last: it is cancelled after the month began and by its end."""
    return tenant.canceled_at is not None and month.start < utc(tenant.canceled_at) <= month.end


def final_month(tenant: Tenant) -> Month | None:
    """The month of the final statement (a cancellation at 00:00 on the 1st ends the month before)."""
    if tenant.canceled_at is None:
        return None
    month = Month.of(tenant.canceled_at)
    return month.previous() if utc(tenant.canceled_at) == month.start else month


def pricing_segments(tenant: Tenant, month: Month) -> list[Segment]:
    period = statement_period(tenant, month)
    if period is None:
        return []
    start, end = period
    cuts = {start, end}
    cuts.update(utc(p.effective_at) for p in tenant.plans if start < utc(p.effective_at) < end)
    if tenant.trial_ends_at is not None and start < utc(tenant.trial_ends_at) < end:
        cuts.add(utc(tenant.trial_ends_at))
    points = sorted(cuts)
    segments: list[Segment] = []
    for a, b in zip(points, points[1:]):
        plan = tenant.plan_at(a)
        if plan is None:
            continue
        trial = tenant.in_trial(a)
        last = segments[-1] if segments else None
        if last is not None and last.end == a and last.plan == plan and last.trial == trial:
            segments[-1] = Segment(last.start, b, plan, trial)
        else:
            segments.append(Segment(a, b, plan, trial))
    return segments


# ---------------------------------------------------------------------------------------------- usage
@dataclass(frozen=True)
class Usage:
    """Aggregates of stored events (exactly once) over some interval."""
    events: int = 0
    queries: int = 0
    tokens: int = 0
    cost_usd: Decimal = ZERO

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.events + other.events, self.queries + other.queries, self.tokens + other.tokens,
                     self.cost_usd + other.cost_usd)


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
    billed_queries: int                  # non-trial queries of ``month`` already billed (tier position)
    segments: tuple[Usage, ...]          # late events per pricing segment of ``month``


# ---------------------------------------------------------------------------------------------- tiers
@dataclass(frozen=True)
class TierSlice:
    tier_index: int       # 0-based
    quantity: int
    unit_price: Decimal


def walk_tiers(tiers: Sequence[Tier], position: int, count: int) -> list[TierSlice]:
    """Queries at cumulative positions position+1 .. position+count, split by graduated tier."""
    slices: list[TierSlice] = []
    lower = 0
    for index, tier in enumerate(tiers):
        upper = tier.up_to
        a = max(position, lower)
        b = position + count if upper is None else min(position + count, upper)
        if b > a:
            slices.append(TierSlice(index, b - a, tier.unit_price))
        if upper is None:
            break
        lower = upper
    return slices


def tier_label(tiers: Sequence[Tier], index: int) -> str:
    lower = 0 if index == 0 else (tiers[index - 1].up_to or 0)
    upper = tiers[index].up_to
    return f"queries {lower + 1:,}+" if upper is None else f"queries {lower + 1:,}-{upper:,}"


# ---------------------------------------------------------------------------------------------- rating
def _line(**kwargs: Any) -> StatementLine:
    exact = kwargs.pop("exact")
    assert isinstance(exact, Decimal)
    fields: dict[str, Any] = {"unit_price": None, "plan": None, "adjustment_month": None, **kwargs,
                              "amount_exact": _stored_exact(exact), "amount": round_cents(exact)}
    # Fields are built typed right here, so validation is skipped (rating 1,000 tenants must stay fast).
    return StatementLine.model_construct(**fields)


def _stored_exact(value: Decimal) -> Decimal:
    """Terminating amounts are kept as they are; others (proration) to 15 places. Rounding to cents
    always uses the full value (a proration is never within 1e-9 of a half cent unless exactly on it)."""
    if value.as_tuple().exponent >= -15:  # type: ignore[operator]
        return value
    return value.quantize(EXACT_PLACES)


def _fmt_price(value: Decimal) -> str:
    text = f"{value.normalize():f}"
    if "." not in text:
        return text + ".00"
    whole, frac = text.split(".")
    return f"{whole}.{frac.ljust(2, '0')}"


class Rater:
    """Rates tenants against one plan catalog."""

    def __init__(self, catalog: PlanCatalog):
        self.catalog = catalog
        self._digests: dict[tuple[str, ...], str] = {}

    def segments(self, tenant: Tenant, month: Month) -> list[Segment]:
        return pricing_segments(tenant, month)

    def rate(self, tenant: Tenant, month: Month, usage: MonthUsage, late: Iterable[LateUsage] = (), *,
             usage_cutoff: datetime | None = None, segments: list[Segment] | None = None) -> Statement:
        """``segments``: this tenant's ``pricing_segments`` for the month, when the caller has them."""
        with localcontext() as ctx:
            ctx.prec = 60
            return self._rate(tenant, month, usage, list(late), usage_cutoff,
                              segments if segments is not None else self.segments(tenant, month))

    # ------------------------------------------------------------------------------------------
    def _rate(self, tenant: Tenant, month: Month, usage: MonthUsage, late: list[LateUsage],
              usage_cutoff: datetime | None, segments: list[Segment]) -> Statement:
        if len(usage.segments) != len(segments):
            raise ValueError(f"{tenant.id} {month}: {len(usage.segments)} usage segments for {len(segments)} "
                             "pricing segments")
        period = statement_period(tenant, month) or (month.start, month.end)
        lines: list[StatementLine] = []
        lines += self._base_lines(segments, month)
        lines += self._query_lines(segments, usage.segments, position=0, prefix="queries", kind="queries")
        lines += self._usage_lines(segments, usage.segments, period)
        for item in sorted(late, key=lambda x: x.month):
            lines += self._adjustment_lines(tenant, item)
        final = is_final(tenant, month)
        invoice_day = month.last_day.date()
        if final and utc(tenant.canceled_at) < month.end:  # type: ignore[arg-type]
            invoice_day = utc(tenant.canceled_at).date()  # type: ignore[arg-type]
        used_plans = sorted({s.plan for s in segments} | {s.plan for x in late for s in self.segments(tenant, x.month)})
        return Statement.model_construct(
            statement_id=Statement.make_id(tenant.id, str(month)), tenant_id=tenant.id, month=str(month),
            currency=self.catalog.currency, period_start=period[0], period_end=period[1], is_final=final,
            invoice_date=invoice_day.isoformat(), lines=lines, total=sum((l.amount for l in lines), ZERO),
            total_queries=usage.total.queries, total_tokens=usage.total.tokens,
            inputs={
                "rating": RATING_VERSION,
                "plans_digest": self.plans_digest(used_plans),
                "plan_history": [{"plan": p.plan, "effective_at": iso(p.effective_at)} for p in tenant.sorted_plans()],
                "trial_ends_at": iso(tenant.trial_ends_at) if tenant.trial_ends_at else None,
                "canceled_at": iso(tenant.canceled_at) if tenant.canceled_at else None,
                "usage_cutoff": iso(usage_cutoff) if usage_cutoff else None,
                "late_months": [str(x.month) for x in sorted(late, key=lambda x: x.month)],
            })

    def plans_digest(self, plan_ids: Sequence[str]) -> str:
        key = tuple(plan_ids)
        if key not in self._digests:
            self._digests[key] = self._digest(key)
        return self._digests[key]

    def _digest(self, plan_ids: Sequence[str]) -> str:
        document = [self.catalog.get(p).model_dump(mode="json") for p in plan_ids]
        return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]

    def _plan(self, plan_id: str) -> Plan:
        return self.catalog.get(plan_id)

    def _base_lines(self, segments: list[Segment], month: Month) -> list[StatementLine]:
        runs: list[list[Segment]] = []
        for seg in segments:
            if runs and runs[-1][-1].plan == seg.plan and runs[-1][-1].end == seg.start:
                runs[-1].append(seg)
            else:
                runs.append([seg])
        lines = []
        ordinal: dict[str, int] = {}
        month_seconds = Decimal(month.seconds)
        for run in runs:
            plan = self._plan(run[0].plan)
            ordinal[plan.id] = ordinal.get(plan.id, 0) + 1
            seconds = sum((s.seconds for s in run if not s.trial), ZERO)
            exact = plan.base_fee * seconds / month_seconds
            start, end = run[0].start, run[-1].end
            trial_note = " (trial time free)" if any(s.trial for s in run) else ""
            lines.append(_line(
                line_id=f"base:{plan.id}:{ordinal[plan.id]}", kind="base_fee", plan=plan.id,
                description=(f"{plan.name} base fee {_fmt_price(plan.base_fee)}/month x {seconds:f} s of "
                             f"{month.seconds} s, {iso(start)} to {iso(end)}{trial_note}"),
                quantity=seconds, unit_price=None, exact=exact, period_start=start, period_end=end))
        return lines

    def _query_lines(self, segments: Sequence[Segment], usages: Sequence[Usage], *, position: int, prefix: str,
                     kind: str, month: str | None = None) -> list[StatementLine]:
        """Walk the tiers over the segments in time order; aggregate per (plan, tier)."""
        buckets: dict[tuple[str, int], list] = {}
        trial_queries, trial_bounds = 0, None
        for seg, use in zip(segments, usages):
            if seg.trial:
                trial_queries += use.queries
                if use.queries:
                    trial_bounds = (trial_bounds[0] if trial_bounds else seg.start, seg.end)
                continue
            plan = self._plan(seg.plan)
            for piece in walk_tiers(plan.query_tiers, position, use.queries):
                bucket = buckets.setdefault((plan.id, piece.tier_index), [0, piece.unit_price, seg.start, seg.end])
                bucket[0] += piece.quantity
                bucket[3] = seg.end
            position += use.queries
        lines = []
        for (plan_id, index), (quantity, price, start, end) in sorted(
                buckets.items(), key=lambda kv: (kv[1][2], kv[0][1], kv[0][0])):
            plan = self._plan(plan_id)
            lines.append(_line(
                line_id=f"{prefix}:{plan_id}:t{index + 1}", kind=kind, plan=plan_id,
                description=(f"{'Prior-period ' + month + ' ' if month else ''}{plan.name} "
                             f"{tier_label(plan.query_tiers, index)}: {quantity:,} x {_fmt_price(price)}"),
                quantity=Decimal(quantity), unit_price=price, exact=price * quantity, period_start=start,
                period_end=end, adjustment_month=month))
        if trial_queries and not month:
            assert trial_bounds is not None
            lines.append(_line(
                line_id=f"{prefix}:trial", kind=kind, plan=None,
                description=f"Trial queries: {trial_queries:,} x 0.00 (free during trial)",
                quantity=Decimal(trial_queries), unit_price=ZERO, exact=ZERO,
                period_start=trial_bounds[0], period_end=trial_bounds[1]))
        return lines

    def _usage_lines(self, segments: Sequence[Segment], usages: Sequence[Usage],
                     period: tuple[datetime, datetime]) -> list[StatementLine]:
        paid = sum((u for s, u in zip(segments, usages) if not s.trial), Usage())
        trial = sum((u for s, u in zip(segments, usages) if s.trial), Usage())
        lines = [_line(
            line_id="usage", kind="usage_cost", plan=None,
            description=f"Model and storage usage at event-time prices: {paid.events:,} events, "
                        f"{paid.tokens:,} tokens, {paid.cost_usd:f} USD",
            quantity=Decimal(paid.events), unit_price=None, exact=paid.cost_usd,
            period_start=period[0], period_end=period[1])]
        if trial.events:
            lines.append(_line(
                line_id="usage:trial", kind="usage_cost", plan=None,
                description=f"Trial usage: {trial.events:,} events, {trial.tokens:,} tokens "
                            f"(metered {trial.cost_usd:f} USD, free during trial)",
                quantity=Decimal(trial.events), unit_price=ZERO, exact=ZERO,
                period_start=period[0], period_end=period[1]))
        return lines

    def _adjustment_lines(self, tenant: Tenant, late: LateUsage) -> list[StatementLine]:
        segments = self.segments(tenant, late.month)
        if len(late.segments) != len(segments):
            raise ValueError(f"{tenant.id} {late.month}: late usage does not match its pricing segments")
        tag = str(late.month)
        lines = self._query_lines(segments, late.segments, position=late.billed_queries, prefix=f"adj:{tag}:queries",
                                  kind="adjustment", month=tag)
        paid = sum((u for s, u in zip(segments, late.segments) if not s.trial), Usage())
        if paid.events:
            lines.append(_line(
                line_id=f"adj:{tag}:usage", kind="adjustment", plan=None, adjustment_month=tag,
                description=(f"Prior-period {tag} usage stored after its close: {paid.events:,} events, "
                             f"{paid.tokens:,} tokens, {paid.cost_usd:f} USD"),
                quantity=Decimal(paid.events), unit_price=None, exact=paid.cost_usd,
                period_start=late.month.start, period_end=late.month.end))
        return lines


# ---------------------------------------------------------------------------------------------- CSV
CSV_HEADER = "tenant_id,month,total_queries,total_tokens,total_cost_usd,invoice_date"


def invoices_csv(statements: Iterable[Statement]) -> bytes:
    """The month's CSV: one row per statement, sorted by tenant_id, LF line ends."""
    rows = [CSV_HEADER]
    for s in sorted(statements, key=lambda s: s.tenant_id):
        rows.append(f"{_csv_field(s.tenant_id)},{s.month},{s.total_queries},{s.total_tokens},"
                    f"{round_cents(s.total):.2f},{s.invoice_date}")
    return ("\n".join(rows) + "\n").encode()


LINES_HEADER = "tenant_id,month,line_id,kind,plan,quantity,unit_price,amount_exact,amount,adjustment_month,description"


def lines_csv(statements: Iterable[Statement]) -> bytes:
    rows = [LINES_HEADER]
    for s in sorted(statements, key=lambda s: s.tenant_id):
        for line in s.lines:
            rows.append(",".join(_csv_field(v) for v in (
                s.tenant_id, s.month, line.line_id, line.kind, line.plan or "", f"{line.quantity:f}",
                "" if line.unit_price is None else f"{line.unit_price:f}", f"{line.amount_exact:f}",
                f"{line.amount:.2f}", line.adjustment_month or "", line.description)))
    return ("\n".join(rows) + "\n").encode()


def _csv_field(value: str) -> str:
    if any(c in value for c in ',"\n\r'):
        return '"' + value.replace('"', '""') + '"'
    return value
