"""The rater: a tenant's month (segments, usage, late usage) to a Statement. Pure and reproducible."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal, localcontext
from typing import Any

from billing.catalog.metrics import BUILT_IN_METRICS
from billing.catalog.plans import Charge, Plan, PlanCatalog
from billing.kernel.money import ZERO
from billing.kernel.periods import RatedPeriod, iso, utc
from billing.rating import wording
from billing.rating.advance import advance_lines, any_in_advance
from billing.rating.charges import adjustment_lines as charge_adjustment_lines
from billing.rating.charges import builtin_units, charge_lines, needs_meters
from billing.rating.commitment import true_up_line
from billing.rating.coupon_lines import coupon_lines
from billing.rating.credit_lines import credit_lines
from billing.rating.lines import line
from billing.rating.measures import Measure
from billing.rating.period_names import period_inputs
from billing.rating.proration import base_fee_lines
from billing.rating.segments import Segment, is_final, pricing_segments, statement_period
from billing.rating.tiers import walk_tiers
from billing.rating.usage import LateUsage, MonthUsage, Usage
from billing.statements.statement import Statement, StatementLine
from billing.tenants.credits import CreditBalance
from billing.tenants.tenant import Tenant

# Recorded in every statement's inputs. It changes whenever the rules change what a statement holds
# for the same inputs: stored statements are immutable, so a statement that differs from a re-rating
# of its inputs must say which rules produced it.
RATING_VERSION = "rating/4"


class Rater:
    """Rates tenants against one plan catalog."""

    def __init__(self, catalog: PlanCatalog):
        self.catalog = catalog
        self._digests: dict[tuple[str, ...], str] = {}

    def segments(self, tenant: Tenant, month: RatedPeriod) -> list[Segment]:
        return pricing_segments(tenant, month)

    def rate(
        self,
        tenant: Tenant,
        month: RatedPeriod,
        usage: MonthUsage,
        late: Iterable[LateUsage] = (),
        *,
        usage_cutoff: datetime | None = None,
        segments: list[Segment] | None = None,
        credits: Sequence[CreditBalance] = (),
    ) -> Statement:
        """``segments``: this tenant's ``pricing_segments`` for the month, when the caller has them;
        ``credits``: the tenant's grants usable in the period with what each has left before this
        statement (billing.tenants.credits.CreditBook.for_statements)."""
        with localcontext() as ctx:
            ctx.prec = 60
            return self._rate(
                tenant,
                month,
                usage,
                list(late),
                usage_cutoff,
                segments if segments is not None else self.segments(tenant, month),
                credits,
            )

    def measures(self, segments: Sequence[Segment]) -> list[Measure]:
        """What rating these segments needs measured: each charge id of the plans in force that
        prices a catalog metric (none for plans charging built-in metrics only)."""
        found: dict[str, Measure] = {}
        for seg in segments:
            for charge in self._plan(seg.plan).charges:
                if charge.metric not in BUILT_IN_METRICS and charge.id not in found:
                    metric = self.catalog.metric(charge.metric)
                    by = (
                        (charge.price_by.property,) if charge.price_by is not None else tuple(charge.group_by)
                    )
                    found[charge.id] = Measure(charge.id, metric, by)
        return list(found.values())

    def units(self, charge: Charge) -> str:
        """What a charge's units are called: a built-in metric's name, or the catalog metric's unit."""
        if charge.metric in BUILT_IN_METRICS:
            return builtin_units(charge)
        return self.catalog.metric(charge.metric).unit

    def needs_meters(self, segments: Sequence[Segment]) -> bool:
        """Whether rating these segments needs per-(type, model) meters (a plan in force has charges)."""
        return needs_meters(segments, self._plan)

    def currency(self, tenant: Tenant) -> str:
        """The tenant's one currency: that of every plan it ever had (mixing is refused)."""
        currencies = {self.catalog.currency_of(p.plan) for p in tenant.plans if p.plan in self.catalog}
        if len(currencies) > 1:
            raise ValueError(f"{tenant.id}: plans in several currencies ({', '.join(sorted(currencies))})")
        return currencies.pop() if currencies else self.catalog.currency

    # ------------------------------------------------------------------------------------------
    def _rate(
        self,
        tenant: Tenant,
        month: RatedPeriod,
        usage: MonthUsage,
        late: list[LateUsage],
        usage_cutoff: datetime | None,
        segments: list[Segment],
        credits: Sequence[CreditBalance],
    ) -> Statement:
        if len(usage.segments) != len(segments):
            raise ValueError(
                f"{tenant.id} {month}: {len(usage.segments)} usage segments for {len(segments)} "
                "pricing segments"
            )
        currency = self.currency(tenant)
        period = statement_period(tenant, month) or (month.start, month.end)
        lines: list[StatementLine] = []
        fees = base_fee_lines(segments, month, self._plan, currency)
        if any_in_advance(tenant, self._plan):
            lines += [l for l in fees if l.plan is None or not self._plan(l.plan).in_advance]
            owed = [l for l in fees if l.plan is not None and self._plan(l.plan).in_advance]
            lines += advance_lines(tenant, month, owed, self._plan, currency)
        else:
            lines += fees
        lines += self._query_lines(
            segments, usage.segments, position=0, prefix="queries", kind="queries", currency=currency
        )
        if self.needs_meters(segments):
            if len(usage.metered) != len(segments):
                raise ValueError(f"{tenant.id} {month}: charges to rate but no meters per segment")
            if self.measures(segments) and len(usage.measured) != len(segments):
                raise ValueError(f"{tenant.id} {month}: catalog-metric charges to rate but nothing measured")
            lines += charge_lines(segments, usage.metered, self._plan, currency, usage.measured, self.units)
        if segments:  # without a period here the statement bills late usage alone: adjustment lines only
            lines += self._usage_lines(segments, usage.segments, period, currency)
        for item in sorted(late, key=lambda x: x.month):
            lines += self._adjustment_lines(tenant, item, currency)
        true_up = true_up_line(
            segments,
            month,
            self._plan,
            sum((l.amount for l in lines if l.kind != "adjustment"), ZERO),
            currency,
            period,
        )
        if true_up is not None:
            lines.append(true_up)
        coupons = [c for c in tenant.coupons if c.applies_to(month)]
        lines += coupon_lines(coupons, month, sum((l.amount for l in lines), ZERO), currency, period)
        lines += credit_lines(credits, sum((l.amount for l in lines), ZERO), currency, period)
        final = is_final(tenant, month)
        invoice_day = month.last_day.date()
        if final and utc(tenant.canceled_at) < month.end:  # type: ignore[arg-type]
            invoice_day = month.local(tenant.canceled_at).date()  # type: ignore[arg-type]
        used_plans = sorted(
            {s.plan for s in segments} | {s.plan for x in late for s in self.segments(tenant, x.month)}
        )
        return Statement.model_construct(
            statement_id=Statement.make_id(tenant.id, str(month)),
            tenant_id=tenant.id,
            month=str(month),
            currency=currency,
            period_start=period[0],
            period_end=period[1],
            is_final=final,
            invoice_date=invoice_day.isoformat(),
            lines=lines,
            total=sum((l.amount for l in lines), ZERO),
            total_queries=usage.total.queries,
            total_tokens=usage.total.tokens,
            total_events=usage.total.events,
            inputs={
                "rating": RATING_VERSION,
                "plans_digest": self.plans_digest(used_plans),
                "plan_history": [
                    {"plan": p.plan, "effective_at": iso(p.effective_at)} for p in tenant.sorted_plans()
                ],
                "trial_ends_at": iso(tenant.trial_ends_at) if tenant.trial_ends_at else None,
                "canceled_at": iso(tenant.canceled_at) if tenant.canceled_at else None,
                "usage_cutoff": iso(usage_cutoff) if usage_cutoff else None,
                "late_months": [str(x.month) for x in sorted(late, key=lambda x: x.month)],
                # Present only when used, so statements without them keep their stored form.
                **({"coupons": [c.model_dump(mode="json") for c in coupons]} if coupons else {}),
                **period_inputs(month),
                **(
                    {
                        "credits": [
                            {"grant_id": c.grant.grant_id, "available": str(c.available)} for c in credits
                        ]
                    }
                    if credits
                    else {}
                ),
            },
        )

    def plans_digest(self, plan_ids: Sequence[str]) -> str:
        key = tuple(plan_ids)
        if key not in self._digests:
            self._digests[key] = self._digest(key)
        return self._digests[key]

    def _digest(self, plan_ids: Sequence[str]) -> str:
        document = [self.catalog.get(p).digest_document() for p in plan_ids]
        return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]

    def _plan(self, plan_id: str) -> Plan:
        return self.catalog.get(plan_id)

    def _query_lines(
        self,
        segments: Sequence[Segment],
        usages: Sequence[Usage],
        *,
        position: int,
        prefix: str,
        kind: str,
        month: str | None = None,
        currency: str = "usd",
        late_period: RatedPeriod | None = None,
    ) -> list[StatementLine]:
        """Walk the tiers over the segments in time order; aggregate per (plan, tier)."""
        buckets: dict[tuple[str, int], list[Any]] = {}
        trial_queries, trial_bounds = 0, None
        for seg, use in zip(segments, usages):
            if seg.trial:
                trial_queries += use.queries
                if use.queries:
                    trial_bounds = (trial_bounds[0] if trial_bounds else seg.start, seg.end)
                continue
            plan = self._plan(seg.plan)
            for piece in walk_tiers(plan.query_tiers, position, use.queries):
                bucket = buckets.setdefault(
                    (plan.id, piece.tier_index), [0, piece.unit_price, seg.start, seg.end]
                )
                bucket[0] += piece.quantity
                bucket[3] = seg.end
            position += use.queries
        lines = []
        several = len({plan_id for plan_id, _ in buckets}) > 1
        for (plan_id, index), (quantity, price, start, end) in sorted(
            buckets.items(), key=lambda kv: (kv[1][2], kv[0][1], kv[0][0])
        ):
            plan = self._plan(plan_id)
            text = wording.query_tier(
                plan.query_tiers, index, quantity, price, currency, plan.name if several else None
            )
            lines.append(
                line(
                    currency,
                    line_id=f"{prefix}:{plan_id}:t{index + 1}",
                    kind=kind,
                    plan=plan_id,
                    description=wording.adjusted(late_period or month, quantity, text) if month else text,
                    quantity=Decimal(quantity),
                    unit_price=price,
                    exact=price * quantity,
                    period_start=start,
                    period_end=end,
                    adjustment_month=month,
                )
            )
        if trial_queries and not month:
            assert trial_bounds is not None
            lines.append(
                line(
                    currency,
                    line_id=f"{prefix}:trial",
                    kind=kind,
                    plan=None,
                    description=wording.trial_queries(trial_queries),
                    quantity=Decimal(trial_queries),
                    unit_price=ZERO,
                    exact=ZERO,
                    period_start=trial_bounds[0],
                    period_end=trial_bounds[1],
                )
            )
        return lines

    def _usage_lines(
        self,
        segments: Sequence[Segment],
        usages: Sequence[Usage],
        period: tuple[datetime, datetime],
        currency: str,
    ) -> list[StatementLine]:
        paid = sum((u for s, u in zip(segments, usages) if not s.trial), Usage())
        trial = sum((u for s, u in zip(segments, usages) if s.trial), Usage())
        exact, rates = self._in_currency(segments, usages, currency)
        lines = [
            line(
                currency,
                line_id="usage",
                kind="usage_cost",
                plan=None,
                description=wording.usage(paid.events, paid.tokens, paid.cost_usd, currency, rates),
                quantity=Decimal(paid.events),
                unit_price=None,
                exact=exact,
                period_start=period[0],
                period_end=period[1],
            )
        ]
        if trial.events:
            lines.append(
                line(
                    currency,
                    line_id="usage:trial",
                    kind="usage_cost",
                    plan=None,
                    description=wording.trial_usage(trial.events, trial.tokens, trial.cost_usd),
                    quantity=Decimal(trial.events),
                    unit_price=ZERO,
                    exact=ZERO,
                    period_start=period[0],
                    period_end=period[1],
                )
            )
        return lines

    def _in_currency(
        self, segments: Sequence[Segment], usages: Sequence[Usage], currency: str
    ) -> tuple[Decimal, list[Decimal]]:
        """The paid segments' USD usage cost in the statement's currency, exactly (each segment at its
        plan's ``usage_rate``), and the rates used, ascending (none for USD)."""
        if currency == "usd":
            return sum((u.cost_usd for s, u in zip(segments, usages) if not s.trial), ZERO), []
        paid = [(s, u) for s, u in zip(segments, usages) if not s.trial]
        exact = sum((u.cost_usd * self.catalog.usage_rate_of(s.plan) for s, u in paid), ZERO)
        return exact, sorted({self.catalog.usage_rate_of(s.plan) for s, _ in paid})

    def _adjustment_lines(self, tenant: Tenant, late: LateUsage, currency: str) -> list[StatementLine]:
        segments = self.segments(tenant, late.month)
        if len(late.segments) != len(segments):
            raise ValueError(f"{tenant.id} {late.month}: late usage does not match its pricing segments")
        tag = str(late.month)
        lines = self._query_lines(
            segments,
            late.segments,
            position=late.billed_queries,
            prefix=f"adj:{tag}:queries",
            kind="adjustment",
            month=tag,
            currency=currency,
            late_period=late.month,
        )
        if self.needs_meters(segments):
            if len(late.metered) != len(segments) or len(late.billed_metered) != len(segments):
                raise ValueError(f"{tenant.id} {late.month}: late charges to rate but no meters per segment")
            if self.measures(segments) and (
                len(late.billed_measured) != len(segments) or len(late.measured_with_late) != len(segments)
            ):
                raise ValueError(
                    f"{tenant.id} {late.month}: late catalog-metric charges but nothing measured"
                )
            lines += charge_adjustment_lines(
                late.month,
                segments,
                late.billed_metered,
                late.metered,
                self._plan,
                currency,
                late.billed_measured,
                late.measured_with_late,
                self.units,
            )
        paid = sum((u for s, u in zip(segments, late.segments) if not s.trial), Usage())
        exact, rates = self._in_currency(segments, late.segments, currency)
        # an amend after the close moves tokens and cost without moving the count of events
        if paid.events or paid.tokens or paid.cost_usd:
            lines.append(
                line(
                    currency,
                    line_id=f"adj:{tag}:usage",
                    kind="adjustment",
                    plan=None,
                    adjustment_month=tag,
                    description=(wording.late_usage if paid.events > 0 else wording.corrected_usage)(
                        late.month, paid.events, paid.tokens, paid.cost_usd, currency, rates
                    ),
                    quantity=Decimal(paid.events),
                    unit_price=None,
                    exact=exact,
                    period_start=late.month.start,
                    period_end=late.month.end,
                )
            )
        return lines
