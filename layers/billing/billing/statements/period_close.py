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
4. record its credit burns, enqueue its invoicing job once (non-zero totals), write its CSV (the
   periods CSV of this one statement, under ``period_csv_name``: unchanged bytes are not rewritten),
   publish it once.
A re-run rates nothing already stored: the statement is byte-identical.

A cancelled tenant's final statement (``issue_final``, at the cancellation) bills its last period F
up to a cutoff, so what is stored after that cutoff is late, as on the month path:
- F itself is still closed by the first run after it ends (its close is recorded, so ingest refuses
  its events from then on; the final statement stays as issued);
- each of the ``LATE_LOOKBACK`` periods after F (``after_final``) is closed by the first run after it
  ends, with a statement of adjustment lines only under its key: the late events of the periods
  before it stored after the previous statement's cutoff (the final statement's for the first, the
  previous such close for the others) and by its own close. When there is none, that is recorded
  under ``nothing_late_key`` instead, so no later run rates it again. Events of F stored after the
  last of these closes are billed nowhere (the lookback, as the month close's 3 months).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from billing.kernel.calendar import Period
from billing.kernel.errors import InvalidRequest
from billing.kernel.periods import iso, parse_instant, to_ms, utc
from billing.rating import LateUsage, MonthUsage, Segment, Usage, periods_csv, statement_period
from billing.rating.measures import Measure
from billing.runtime.observability import logger
from billing.statements.close import BillingCycle, FallbackNotDrained
from billing.statements.period_export import period_csv_name
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


def nothing_late_key(tenant_id: str, period: Period) -> str:
    """Where the close of a period after a tenant's final one records that it found nothing late."""
    return f"{close_key(tenant_id, period)}#nothing-late"


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
    csv_key: str = ""
    csv_written: bool = False

    def summary(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "period": self.period,
            "closed_at": iso(self.closed_at),
            "statement_created": self.created,
            "job_enqueued": self.enqueued,
            "csv_key": self.csv_key,
            "csv_written": self.csv_written,
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

    def after_final(self, tenant: Tenant, now: datetime) -> Iterator[Period]:
        """The periods after a cancelled tenant's final one that bill its late events (at most
        ``LATE_LOOKBACK``, not billed by the month close), ended in the lookback window, oldest first."""
        if tenant.canceled_at is None:
            return
        history = tenant.calendar_history()
        period = self.final_period(tenant)
        for _ in range(LATE_LOOKBACK):
            period = history.period_of(period.end)
            if period.end > now:
                return
            if period.end > now - DUE_LOOKBACK and not bills_by_month(period):
                yield period

    def _pending(self, tenant: Tenant, period: Period) -> bool:
        """The period still needs its close: no statement stored, or the final statement (issued at
        the cancellation) of a period whose close is not recorded yet."""
        stored = self.cycle.statements.get(tenant.id, period.key)
        if stored is None:
            return self.cycle.periods.closed_at(nothing_late_key(tenant.id, period)) is None
        return stored.is_final and self.cycle.periods.closed_at(close_key(tenant.id, period)) is None

    def close_due(self, now: datetime | None = None) -> DueResult:
        """Close every ended tenant period still pending (the hourly run): with no stored statement,
        a final period not recorded closed, and the periods after it that bill its late events."""
        now = utc(now or self.cycle.clock())
        result = DueResult()
        failed: list[Exception] = []
        for tenant in self.cycle.tenants.list_all():
            if not has_own_periods(tenant):
                continue
            for period in [*self.ended(tenant, now), *self.after_final(tenant, now)]:
                if not self._pending(tenant, period):
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
            if statement_period(tenant, period) is None:  # after the final period: late events only
                late_only = self.rate_late(tenant, period, closed_at)
                if late_only is None:
                    cycle.periods.close(nothing_late_key(tenant.id, period), closed_at)
                    logger.info("tenant period closed", extra=result.summary())
                    return result
                statement = late_only
            else:
                statement = self.rate(tenant, period, closed_at)
            result.created = cycle.statements.put_if_absent(statement)
            result.statement = cycle.statements.get(tenant.id, period.key) or statement
        statement = result.statement
        cycle._record_burns(statement)
        if statement.total != 0:
            result.enqueued = cycle.jobs.enqueue_once(tenant.id, statement.month)
        name = period_csv_name(tenant.id, period)
        result.csv_key = cycle.archive.key(name)
        result.csv_written = cycle.archive.put(name, periods_csv([statement]))
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

    def rate_late(self, tenant: Tenant, period: Period, cutoff: datetime) -> Statement | None:
        """The statement of a ``period`` after ``tenant``'s final one: adjustment lines only, for the
        late events ``late_after_final`` finds; None when none is billable (trial-time usage is free)."""
        late = self.late_after_final(tenant, period, cutoff)
        if not late:
            return None
        credits: list[CreditBalance] = []
        if self.cycle.credits is not None:
            credits = self.cycle.credits.for_statements(
                [tenant.id],
                {tenant.id: Statement.make_id(tenant.id, period.key)},
                {tenant.id: (period.start, period.end)},
            ).get(tenant.id, [])
        statement = self.cycle.rater.rate(
            tenant, period, MonthUsage((), Usage()), late, usage_cutoff=cutoff, segments=[], credits=credits
        )
        return statement if any(line.kind == "adjustment" for line in statement.lines) else None

    def late_after_final(self, tenant: Tenant, period: Period, cutoff: datetime) -> list[LateUsage]:
        """Late events for ``period``, one of those after the cancelled tenant's final period F: the
        events of the ``LATE_LOOKBACK`` periods before it stored by ``cutoff`` and after the previous
        statement's cutoff (F's own events included: the final statement counted those stored by its
        cutoff, before F's close), and, for an earlier period, after its own close."""
        history = tenant.calendar_history()
        final = self.final_period(tenant)
        previous = history.period_of(period.start - timedelta(milliseconds=1))
        if previous == final:
            stored = self.cycle.statements.get(tenant.id, final.key)
            billed = stored.inputs.get("usage_cutoff") if stored is not None and stored.is_final else None
            watermark = parse_instant(billed) if billed else None
        else:
            watermark = self.cycle.periods.closed_at(close_key(tenant.id, previous))
        if watermark is None:
            return []
        found = []
        for p in self._before(tenant, period):
            segments = self.cycle.rater.segments(tenant, p)
            if not segments:
                continue
            lower = watermark
            if p != final:
                closed_at = self.cycle.periods.closed_at(close_key(tenant.id, p))
                if closed_at is None:
                    continue
                lower = max(closed_at, watermark)
            found += self._late_of(tenant, segments, p, lower, cutoff)
        return found

    @staticmethod
    def _before(tenant: Tenant, period: Period) -> list[Period]:
        """The ``LATE_LOOKBACK`` periods of the tenant before ``period``, oldest first."""
        history = tenant.calendar_history()
        earlier: list[Period] = []
        instant = period.start
        for _ in range(LATE_LOOKBACK):
            previous = history.period_of(instant - timedelta(milliseconds=1))
            earlier.insert(0, previous)
            instant = previous.start
        return earlier

    def late(self, tenant: Tenant, period: Period, cutoff: datetime | None) -> list[LateUsage]:
        """Late events of the tenant's closed periods before ``period``: stored after that period's
        close and after the close of the period just before ``period`` (whose statement billed
        everything stored until then), and by ``cutoff``."""
        earlier = self._before(tenant, period)
        closes = {p: self.cycle.periods.closed_at(close_key(tenant.id, p)) for p in earlier}
        last_close = closes[earlier[-1]]
        if last_close is None or cutoff is None:
            return []
        found = []
        for p, closed_at in closes.items():
            segments = self.cycle.rater.segments(tenant, p)
            if closed_at is None or not segments:
                continue
            found += self._late_of(tenant, segments, p, max(closed_at, last_close), cutoff)
        return found

    def _late_of(
        self, tenant: Tenant, segments: list[Segment], period: Period, lower: datetime, upper: datetime
    ) -> list[LateUsage]:
        """The events of ``period`` first stored in (lower, upper], with its meters and measures."""
        rater = self.cycle.rater
        late = self.reads.late(
            tenant.id,
            segments,
            period,
            lower=lower,
            upper=upper,
            metered=rater.needs_meters(segments),
            measures=rater.measures(segments),
        )
        return [] if late is None else [late]
