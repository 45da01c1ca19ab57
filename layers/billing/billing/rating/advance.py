"""Base fees in advance (a plan's ``in_advance``): the fee of a period is billed on the statement of
the period before, usage always in arrears, as Stripe's invoices do.

Rules, for the statement of a period P (a Month or a tenant calendar's Period):
* **The next period's fee.** When the plan in force at P's last millisecond bills in advance and the
  tenant is not cancelled by P's end, the statement carries that plan's base fee for the period
  after P, less the part of it still in the free trial (by seconds).
* **P's own fee is settled.** What P owes for its in-advance plans is computed as in arrears (by the
  second, ``proration.base_fee_lines``). If P's fee was billed in advance (the plan in force at the
  last millisecond before P bills in advance), only the difference is charged: an upgrade charges
  the difference for the rest of the period, a downgrade or a cancellation credits the unused part
  (a negative line). No difference, no line. P's first period (nothing billed before it) is
  charged on its own statement, in full or prorated.
* Everything follows from the plan history, the trial and the cancellation, which cannot change in
  a closed period, so re-rating a period gives the same lines (idempotent), exact to the cent once
  rounded.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal

from billing.catalog.plans import Plan
from billing.kernel.money import ZERO
from billing.kernel.periods import RatedPeriod, utc
from billing.rating import wording
from billing.rating.lines import line
from billing.rating.segments import Segment, seconds_between
from billing.statements.statement import StatementLine
from billing.tenants.tenant import Tenant

_MS = timedelta(milliseconds=1)


def advance_fee(
    tenant: Tenant, period: RatedPeriod, plan_of: Callable[[str], Plan]
) -> tuple[Plan, Decimal, Decimal] | None:
    """(plan, paid seconds, exact fee) billed in advance for ``period``: the plan in force at the
    last millisecond before it, if that plan bills in advance; None otherwise."""
    plan_id = tenant.plan_at(period.start - _MS)
    if plan_id is None or (tenant.canceled_at is not None and utc(tenant.canceled_at) <= period.start):
        return None
    plan = plan_of(plan_id)
    if not plan.in_advance:
        return None
    paid_from = period.start
    if tenant.trial_ends_at is not None and utc(tenant.trial_ends_at) > paid_from:
        paid_from = min(utc(tenant.trial_ends_at), period.end)
    seconds = seconds_between(paid_from, period.end)
    return plan, seconds, plan.base_fee * seconds / Decimal(period.whole_seconds)


def advance_lines(
    tenant: Tenant,
    period: RatedPeriod,
    owed: list[StatementLine],
    plan_of: Callable[[str], Plan],
    currency: str,
) -> list[StatementLine]:
    """The settlement of ``period``'s in-advance fee against ``owed`` (its base-fee lines of
    in-advance plans, computed by the second), and the next period's fee in advance."""
    lines: list[StatementLine] = []
    billed = advance_fee(tenant, period, plan_of)
    if billed is None:
        lines += owed
    else:
        difference = sum((l.amount_exact for l in owed), ZERO) - billed[2]
        if difference:
            lines.append(
                line(
                    currency,
                    line_id="base:advance-settlement",
                    kind="base_fee",
                    plan=billed[0].id,
                    description=_settlement(difference, period.local(period.start), period.local(period.end)),
                    quantity=Decimal(1),
                    exact=difference,
                    period_start=period.start,
                    period_end=period.end,
                )
            )
    following = period.next()
    ahead = advance_fee(tenant, following, plan_of)
    if ahead is not None:
        plan, seconds, exact = ahead
        lines.append(
            line(
                currency,
                line_id=f"base:{plan.id}:advance",
                kind="base_fee",
                plan=plan.id,
                description=_advance(
                    plan.name,
                    following.local(following.start),
                    following.local(following.end),
                    seconds=seconds,
                    whole_seconds=following.whole_seconds,
                ),
                quantity=Decimal(1),
                exact=exact,
                period_start=following.start,
                period_end=following.end,
                prorated_seconds=seconds,
                month_seconds=following.whole_seconds,
            )
        )
    return lines


def in_advance_runs(segments: list[Segment], plan_of: Callable[[str], Plan]) -> list[Segment]:
    """The segments whose plan bills its base fee in advance."""
    return [s for s in segments if plan_of(s.plan).in_advance]


def any_in_advance(tenant: Tenant, plan_of: Callable[[str], Plan]) -> bool:
    return any(plan_of(p.plan).in_advance for p in tenant.plans)


# The customer's words for these lines, built from billing.rating.wording's days and plan names.
def _advance(plan_name: str, start: datetime, end: datetime, *, seconds: Decimal, whole_seconds: int) -> str:
    """``Pro plan, 1-31 Dec 2026 (in advance)``; ``Pro plan, 1-31 Dec 2026 (in advance, 17 of 31 days
    after the free trial)``: a base fee billed before its period (local days)."""
    head = f"{wording.plan_label(plan_name)}, {wording.day_range(start, end)}"
    if seconds == whole_seconds:
        return f"{head} (in advance)"
    share = f"{wording.days(seconds)} of {wording.days(Decimal(whole_seconds))} days"
    return f"{head} (in advance, {share} after the free trial)"


def _settlement(difference: Decimal, start: datetime, end: datetime) -> str:
    """The difference between what a period's plans cost by the second and its fee billed in
    advance: ``Plan change, 1-31 Dec 2026: the difference for the rest of the period`` or
    ``Unused part of the fee billed in advance for 1-31 Dec 2026``."""
    if difference > 0:
        return f"Plan change, {wording.day_range(start, end)}: the difference for the rest of the period"
    return f"Unused part of the fee billed in advance for {wording.day_range(start, end)}"
