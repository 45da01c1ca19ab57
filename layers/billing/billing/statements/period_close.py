"""The close of tenant calendar periods (billing.kernel.calendar): every period that has ended, of a
tenant whose periods are not UTC calendar months, closed once, on the same hourly schedule as the
month close (functions/monthly_close).

Who closes what: a tenant's period that is exactly a UTC calendar month (every period of a tenant on
the default calendar, and a UTC tenant's calendar month before a calendar change) is closed by the
month close (``BillingCycle.close``), as always; every other period is closed here, per tenant.
``bills_by_month`` is that rule, and both closes use it, so no period is billed twice or never.

Close of a tenant period P, safe to run any number of times:
1. refuse while P is not over, and while the usage fallback queue is not drained (the same 503 as
   the month close);
2. record the close once under ``close_key(tenant, P)`` (PeriodStore: the first ``closed_at`` is the
   watermark; from then on ingest answers 409 for the tenant's events in P, and plan changes in P are
   refused);
3. rate P with the events of P stored up to ``closed_at``, and as adjustment lines the events of the
   tenant's earlier closed periods (up to ``LATE_LOOKBACK`` of them) stored after both their own
   close and the previous period's close, up to ``closed_at``; store the statement once;
4. record its credit burns, enqueue its invoicing job once (non-zero totals), publish it once.
A re-run rates nothing already stored: the statement is byte-identical.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from billing.kernel.calendar import Period
from billing.kernel.errors import InvalidRequest
from billing.kernel.periods import iso, to_ms, utc
from billing.rating import LateUsage, MonthUsage, Segment, statement_period
from billing.rating.measures import Measure
from billing.runtime.observability import logger
from billing.statements.close import BillingCycle, FallbackNotDrained
from billing.statements.statement import Statement
from billing.tenants.closed_periods import close_key, has_own_periods
from billing.tenants.credits import CreditBalance
from billing.tenants.tenant import Tenant

# How far back the hourly run looks for a tenant period that ended and has no statement yet, and
# how many earlier periods' late events a statement bills (the month close looks back 3 months).
DUE_LOOKBACK = timedelta(days=100)
LATE_LOOKBACK = 3


def bills_by_month(period: Period) -> bool:
    """The period is exactly a UTC calendar month: the month close bills it."""
    return period.as_month() is not None


class PeriodUsageReads(Protocol):
    """Exact reads of one tenant's period (billing.adapters.clickhouse.period_queries); with
    ``metered`` (a plan of the period has charges) they carry the meters per segment, with
    ``measures`` (its catalog-metric charges) their units, as the month close's reads do."""

    def usage(
        self,
        tenant_id: str,
        segments: Sequence[Segment],
        period: Period,
        cutoff: datetime | None,
        *,
        metered: bool = False,
        measures: Sequence[Measure] = (),
    ) -> MonthUsage: ...

    def late(
        self,
        tenant_id: str,
        segments: Sequence[Segment],
        period: Period,
        *,
        lower: datetime,
        upper: datetime,
        metered: bool = False,
        measures: Sequence[Measure] = (),
    ) -> LateUsage | None: ...


@dataclass
class PeriodCloseResult:
    tenant_id: str
    period: str
    closed_at: datetime
    statement: Statement | None
    created: bool = False
    enqueued: bool = False

    def summary(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "period": self.period,
            "closed_at": iso(self.closed_at),
            "statement_created": self.created,
            "job_enqueued": self.enqueued,
        }


@dataclass
class DueResult:
    closed: list[PeriodCloseResult] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "periods_closed": len(self.closed),
            "statements_created": sum(r.created for r in self.closed),
            "jobs_enqueued": sum(r.enqueued for r in self.closed),
        }


class TenantPeriodClose:
    """Closes tenant calendar periods with the month close's stores, rater and guards."""

    def __init__(self, cycle: BillingCycle, reads: PeriodUsageReads):
        self.cycle = cycle
        self.reads = reads

    # ------------------------------------------------------------------------------------------ due
    def ended(self, tenant: Tenant, now: datetime) -> Iterator[Period]:
        """The tenant's periods not billed by the month close that ended in the lookback window
        before ``now`` and have something to bill, oldest first."""
        history = tenant.calendar_history()
        for period in history.periods(now - DUE_LOOKBACK, now):
            if period.end <= now and not bills_by_month(period) and statement_period(tenant, period):
                yield period

    def close_due(self, now: datetime | None = None) -> DueResult:
        """Close every ended tenant period that has no stored statement yet (the hourly run)."""
        now = utc(now or self.cycle.clock())
        result = DueResult()
        failed: list[Exception] = []
        for tenant in self.cycle.tenants.list_all():
            if not has_own_periods(tenant):
                continue
            for period in self.ended(tenant, now):
                if self.cycle.statements.get(tenant.id, period.key) is not None:
                    continue
                try:
                    result.closed.append(self.close(tenant, period, now=now))
                except FallbackNotDrained:
                    raise
                except Exception as exc:  # one tenant's failure never holds back the others' closes
                    logger.exception(
                        "tenant period close failed", extra={"tenant_id": tenant.id, "period": period.key}
                    )
                    failed.append(exc)
                    break  # its later periods wait for this one
        logger.info("tenant periods closed", extra=result.summary())
        if failed:  # the invocation fails (alarmed, retried by the next hourly run)
            raise failed[0]
        return result

    # ------------------------------------------------------------------------------------------ close
    def close(self, tenant: Tenant, period: Period, *, now: datetime | None = None) -> PeriodCloseResult:
        cycle = self.cycle
        if utc(now or cycle.clock()) < period.end:
            raise InvalidRequest(
                f"period {period.key} of {tenant.id} is not over yet (it ends at {iso(period.end)})",
                details=[{"field": "period", "reason": "period not over"}],
            )
        key = close_key(tenant.id, period)
        closed_at = cycle.periods.closed_at(key)
        if closed_at is None:
            depth = cycle.fallback_depth()
            if depth:
                raise FallbackNotDrained(
                    f"the usage fallback queue still holds {depth} message(s); "
                    f"{tenant.id}'s period {period.label()} is closed once it is drained",
                    headers={"Retry-After": "300"},
                )
            closed_at = cycle.periods.close(key, to_ms(cycle.store_clock()))
        result = PeriodCloseResult(
            tenant.id, period.key, closed_at, cycle.statements.get(tenant.id, period.key)
        )
        if result.statement is None:
            statement = self.rate(tenant, period, closed_at)
            result.created = cycle.statements.put_if_absent(statement)
            result.statement = cycle.statements.get(tenant.id, period.key) or statement
        statement = result.statement
        cycle._record_burns(statement)
        if statement.total != 0:
            result.enqueued = cycle.jobs.enqueue_once(tenant.id, statement.month)
        cycle._publish(statement)
        logger.info("tenant period closed", extra=result.summary())
        return result

    # ------------------------------------------------------------------------------------------ final
    @staticmethod
    def final_period(tenant: Tenant) -> Period:
        """The period of a cancelled tenant's last billed millisecond: a cancellation at a period's
        first instant (a local midnight for a calendar anchor) ends the period before."""
        assert tenant.canceled_at is not None
        return tenant.calendar_history().period_of(utc(tenant.canceled_at) - timedelta(milliseconds=1))

    def issue_final(self, tenant: Tenant) -> Statement | None:
        """The final statement of a cancelled calendar tenant: its last period up to the cancellation,
        counting the events stored by now; stored, credited, queued and published once each. None
        when that period is a UTC calendar month (the month close's final statement applies)."""
        period = self.final_period(tenant)
        if bills_by_month(period):
            return None
        cycle = self.cycle
        existing = cycle.statements.get(tenant.id, period.key)
        if existing is not None:
            cycle._publish(existing)
            return existing
        assert tenant.canceled_at is not None
        statement = self.rate(tenant, period, max(to_ms(cycle.store_clock()), utc(tenant.canceled_at)))
        if not cycle.statements.put_if_absent(statement):
            statement = cycle.statements.get(tenant.id, period.key) or statement
        cycle._record_burns(statement)
        if statement.total != 0:
            cycle.jobs.enqueue_once(tenant.id, statement.month)
        cycle._publish(statement)
        logger.info(
            "final statement issued",
            extra={"tenant_id": tenant.id, "period": period.key, "total": str(statement.total)},
        )
        return statement

    def rate(self, tenant: Tenant, period: Period, cutoff: datetime | None) -> Statement:
        """The statement of ``tenant``'s ``period``: its events stored by ``cutoff`` (all when None)
        and the late events of its earlier closed periods (adjustment lines)."""
        rater = self.cycle.rater
        segments = rater.segments(tenant, period)
        usage = self.reads.usage(
            tenant.id,
            segments,
            period,
            cutoff,
            metered=rater.needs_meters(segments),
            measures=rater.measures(segments),
        )
        credits: list[CreditBalance] = []
        if self.cycle.credits is not None:
            bounds = statement_period(tenant, period) or (period.start, period.end)
            credits = self.cycle.credits.for_statements(
                [tenant.id], {tenant.id: Statement.make_id(tenant.id, period.key)}, {tenant.id: bounds}
            ).get(tenant.id, [])
        return rater.rate(
            tenant,
            period,
            usage,
            self.late(tenant, period, cutoff),
            usage_cutoff=cutoff,
            segments=segments,
            credits=credits,
        )

    def late(self, tenant: Tenant, period: Period, cutoff: datetime | None) -> list[LateUsage]:
        """Late events of the tenant's closed periods before ``period``: stored after that period's
        close and after the close of the period just before ``period`` (whose statement billed
        everything stored until then), and by ``cutoff``."""
        history = tenant.calendar_history()
        earlier: list[Period] = []
        instant = period.start
        for _ in range(LATE_LOOKBACK):
            previous = history.period_of(instant - timedelta(milliseconds=1))
            earlier.insert(0, previous)
            instant = previous.start
        closes = {p: self.cycle.periods.closed_at(close_key(tenant.id, p)) for p in earlier}
        last_close = closes[earlier[-1]]
        if last_close is None or cutoff is None:
            return []
        found = []
        for p, closed_at in closes.items():
            segments = self.cycle.rater.segments(tenant, p)
            if closed_at is None or not segments:
                continue
            late = self.reads.late(
                tenant.id,
                segments,
                p,
                lower=max(closed_at, last_close),
                upper=cutoff,
                metered=self.cycle.rater.needs_meters(segments),
                measures=self.cycle.rater.measures(segments),
            )
            if late is not None:
                found.append(late)
        return found
