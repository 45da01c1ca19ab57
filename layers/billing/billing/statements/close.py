"""The monthly close, month-to-date previews and final (cancellation) statements.

Close of month M (``BillingCycle.close``), safe to run any number of times:
1. refuse while M is not over, and while the usage fallback queue still holds messages (visible, in
   flight or delayed) - ``FallbackNotDrained`` is a 503, the scheduler retries later;
2. record the close once (PeriodRepository: the first writer's ``closed_at`` is the watermark; from
   then on ingest answers 409 for M); ``closed_at`` is read from the usage store's clock
   (``store_clock``: ClickHouse ``now64``), the clock ``stored_at`` is written with; then repair the
   month's drifted quota counters (``reconcile``; no ingest for M can happen any more);
3. rate every tenant with a statement period in M that has no stored statement yet and whose period
   there is that UTC month (``billed_by_month``; other periods: billing.statements.period_close), counting events
   of M stored up to ``closed_at`` and late events of earlier closed months stored after the previous
   close (adjustment lines), and store each statement once (conditional put);
4. record each stored statement's prepaid-credit burns in the credit ledger (a conditional put per
   statement and grant: a re-run burns nothing twice), then enqueue one invoicing job per non-zero
   statement, once (a marker records the send) - a statement paid in full by credits is not invoiced;
5. write the CSV of every stored statement of M to S3 (unchanged bytes are not rewritten);
6. publish ``statement.issued`` (and ``usage.late_adjusted`` for a statement with adjustment lines)
   for every stored statement of M: one message per statement however many runs publish it, and a
   failed publish is published by the next run (billing.outgoing_webhooks.publishing).
A re-run rates nothing already stored, so statements and the CSV are byte-identical.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from billing.kernel.errors import InvalidRequest, NotFound, ServiceUnavailable
from billing.kernel.periods import Month, PeriodStore, iso, parse_instant, to_ms
from billing.outgoing_webhooks.publishing import WebhookPublisher, publish_statement
from billing.rating import LateUsage, MonthUsage, Rater, Segment, final_month, invoices_csv, statement_period
from billing.rating.measures import Measure
from billing.runtime.observability import logger
from billing.statements.statement import Statement
from billing.tenants.closed_periods import has_own_periods
from billing.tenants.credits import CreditBalance, CreditBook
from billing.tenants.tenant import Tenant, TenantStore, unknown_tenant

LATE_LOOKBACK_MONTHS = 3


def billed_by_month(tenant: Tenant, month: Month) -> bool:
    """The month close bills ``tenant`` for ``month``: its period there is exactly that UTC month
    (always, on the default calendar); any other period is closed per tenant
    (billing.statements.period_close)."""
    if not tenant.calendars:
        return True
    return tenant.calendar_history().period_of(month.start).as_month() == month


class FallbackNotDrained(ServiceUnavailable):
    code = "fallback_not_drained"


class StatementStore(Protocol):
    def put_if_absent(self, statement: Statement) -> bool: ...
    def get(self, tenant_id: str, month: Month | str) -> Statement | None: ...
    def list_month(self, month: Month | str) -> list[Statement]: ...


class RatingQueries(Protocol):
    """Exactly-once reads of stored usage (billing.adapters.clickhouse.rating_queries)."""

    def month_usage(
        self,
        segments: Mapping[str, Sequence[Segment]],
        month: Month,
        cutoff: datetime | None,
        *,
        metered: Collection[str] = (),
        measures: Mapping[str, Sequence[Measure]] | None = None,
    ) -> dict[str, MonthUsage]: ...

    def late_usage(
        self,
        month: Month,
        *,
        lower: datetime,
        upper: datetime | None,
        closed: Mapping[Month, datetime],
        segments_of: Callable[[str, Month], Sequence[Segment]],
        billed_until: Mapping[tuple[str, Month], datetime] | None = None,
        tenant_ids: Sequence[str] | None = None,
        needs_meters: Callable[[Sequence[Segment]], bool] | None = None,
        measures: Callable[[Sequence[Segment]], Sequence[Measure]] | None = None,
    ) -> dict[str, list[LateUsage]]: ...


class OwnPeriods(Protocol):
    def issue_final(self, tenant: Tenant) -> Statement | None:
        """The final statement of a cancelled tenant whose last period is not a UTC month, issued
        once; None when its last period is a UTC month (the month's final statement applies)."""
        ...


class InvoicingJobs(Protocol):
    def enqueue_once(self, tenant_id: str, month: str) -> bool: ...


class InvoiceArchive(Protocol):
    def key(self, month: str) -> str: ...

    def put(self, month: str, body: bytes) -> bool: ...


@dataclass
class CloseResult:
    month: str
    closed_at: datetime
    statements: list[Statement]
    created: list[str] = field(default_factory=list)  # tenant ids rated and stored by this run
    enqueued: list[str] = field(default_factory=list)  # tenant ids whose invoicing job this run sent
    csv_key: str = ""
    csv_written: bool = False
    csv: bytes = b""

    def summary(self) -> dict[str, Any]:
        return {
            "month": self.month,
            "closed_at": iso(self.closed_at),
            "statements": len(self.statements),
            "statements_created": len(self.created),
            "jobs_enqueued": len(self.enqueued),
            "csv_key": self.csv_key,
            "csv_written": self.csv_written,
        }


class BillingCycle:
    def __init__(
        self,
        *,
        tenants: TenantStore,
        periods: PeriodStore,
        statements: StatementStore,
        queries: RatingQueries,
        rater: Rater,
        jobs: InvoicingJobs,
        archive: InvoiceArchive,
        fallback_depth: Callable[[], int],
        clock: Callable[[], datetime] | None = None,
        store_clock: Callable[[], datetime] | None = None,
        reconcile: Callable[[Month], object] | None = None,
        credits: CreditBook | None = None,
        webhooks: WebhookPublisher | None = None,
    ):
        self.webhooks = webhooks
        # The close of tenants' own calendar periods (billing.statements.period_close), which issues
        # a calendar tenant's final statement; set by the composition root.
        self.own_periods: OwnPeriods | None = None
        # Watermarks (closed_at, a final statement's cutoff) are compared with ClickHouse's
        # stored_at, so they are read from ClickHouse's clock, never this process's.
        self.store_clock = store_clock or self._clock
        self.reconcile = reconcile
        self.credits = credits
        self.tenants = tenants
        self.periods = periods
        self.statements = statements
        self.queries = queries
        self.rater = rater
        self.jobs = jobs
        self.archive = archive
        self.fallback_depth = fallback_depth
        self.clock = clock or (lambda: datetime.now(UTC))

    def _clock(self) -> datetime:
        return self.clock()

    # ------------------------------------------------------------------------------------------ rating
    def _previous_closes(self, month: Month) -> dict[Month, datetime]:
        closes: dict[Month, datetime] = {}
        m = month
        for _ in range(LATE_LOOKBACK_MONTHS):
            m = m.previous()
            closed_at = self.periods.closed_at(m)
            if closed_at is not None:
                closes[m] = closed_at
        return closes

    def rate(self, tenants: Sequence[Tenant], month: Month, cutoff: datetime | None) -> list[Statement]:
        """Rate tenants for ``month``: events of the month stored up to ``cutoff`` (all when None) plus
        late events of earlier closed months stored after they were billed (up to ``cutoff``). A
        tenant with no period in ``month`` but late events (cancelled earlier) gets a statement of
        adjustment lines only, and none when no late event is billable (trial-time usage is free)."""
        by_id = {t.id: t for t in tenants}
        closes = self._previous_closes(month)
        late: dict[str, list[Any]] = {}
        if closes:
            late = self.queries.late_usage(
                month,
                lower=max(closes.values()),
                upper=cutoff,
                closed=closes,
                billed_until=self._final_cutoffs(tenants, month, closes),
                segments_of=lambda tenant_id, m: (
                    self.rater.segments(by_id[tenant_id], m) if tenant_id in by_id else []
                ),
                tenant_ids=sorted(by_id),
                needs_meters=self.rater.needs_meters,
                measures=self.rater.measures,
            )
        rated = [t for t in tenants if statement_period(t, month) is not None or late.get(t.id)]
        if not rated:
            return []
        segments = {t.id: self.rater.segments(t, month) for t in rated}
        metered = [t for t, segs in segments.items() if self.rater.needs_meters(segs)]
        measures = {t: m for t, segs in segments.items() if (m := self.rater.measures(segs))}
        usage = self.queries.month_usage(segments, month, cutoff, metered=metered, measures=measures)
        credits: dict[str, list[CreditBalance]] = {}
        if self.credits is not None:
            credits = self.credits.for_statements(
                [t.id for t in rated],
                {t.id: Statement.make_id(t.id, str(month)) for t in rated},
                {t.id: statement_period(t, month) or (month.start, month.end) for t in rated},
            )
        statements = [
            self.rater.rate(
                t,
                month,
                usage[t.id],
                late.get(t.id, ()),
                usage_cutoff=cutoff,
                segments=segments[t.id],
                credits=credits.get(t.id, ()),
            )
            for t in rated
        ]
        return [
            s
            for t, s in zip(rated, statements)
            if statement_period(t, month) is not None or any(line.kind == "adjustment" for line in s.lines)
        ]

    def _final_cutoffs(
        self, tenants: Sequence[Tenant], month: Month, closes: dict[Month, datetime]
    ) -> dict[tuple[str, Month], datetime]:
        """(tenant, closed month) -> the cutoff of the tenant's final statement, when that statement is
        the previous month's and (issued at the cancellation) counted less than that month's close.

        The close of the previous month rated no statement for such a tenant, so whatever it stored
        after the final statement's cutoff was billed nowhere: the previous month's own events, and
        late events of the months before it, which that close would have billed as adjustments.

        The month of the final statement is ``final_month``, not the month of ``canceled_at``: they
        differ for a cancellation at 00:00 on the 1st, whose final statement is the previous month's."""
        previous = month.previous()
        out: dict[tuple[str, Month], datetime] = {}
        if previous not in closes:
            return out
        for tenant in tenants:
            if final_month(tenant) != previous:
                continue
            stored = self.statements.get(tenant.id, previous)
            cutoff = stored.inputs.get("usage_cutoff") if stored is not None and stored.is_final else None
            if cutoff and parse_instant(cutoff) < closes[previous]:
                out.update({(tenant.id, m): parse_instant(cutoff) for m in closes})
        return out

    # ------------------------------------------------------------------------------------------ close
    def close(self, month: Month) -> CloseResult:
        now = self.clock()
        if now < month.end:
            raise InvalidRequest(
                f"month {month} is not over yet (it ends at {iso(month.end)})",
                details=[{"field": "month", "reason": "month not over"}],
            )
        closed_at = self.periods.closed_at(month)
        if closed_at is None:
            depth = self.fallback_depth()
            if depth:
                raise FallbackNotDrained(
                    f"the usage fallback queue still holds {depth} message(s); {month} is closed once it is drained",
                    headers={"Retry-After": "300"},
                )
            # Stored to the millisecond: the first run and every re-run use the very same cutoff.
            closed_at = self.periods.close(month, to_ms(self.store_clock()))
        if self.reconcile is not None:  # no ingest for the month from here on: counters are final
            self.reconcile(month)
        result = CloseResult(month=str(month), closed_at=closed_at, statements=[])
        stored = {s.tenant_id for s in self.statements.list_month(month)}
        pending = [t for t in self.tenants.list_all() if t.id not in stored and billed_by_month(t, month)]
        for statement in self.rate(pending, month, closed_at):
            if self.statements.put_if_absent(statement):
                result.created.append(statement.tenant_id)
        result.statements = self.statements.list_month(month)
        for statement in result.statements:
            self._record_burns(statement)
            if statement.total != 0 and self.jobs.enqueue_once(statement.tenant_id, statement.month):
                result.enqueued.append(statement.tenant_id)
        result.csv = invoices_csv(result.statements)
        result.csv_key = self.archive.key(str(month))
        result.csv_written = self.archive.put(str(month), result.csv)
        for statement in result.statements:
            self._publish(statement)
        logger.info("month closed", extra=result.summary())
        return result

    def _publish(self, statement: Statement) -> None:
        if self.webhooks is not None:
            publish_statement(self.webhooks, statement)

    def _record_burns(self, statement: Statement) -> None:
        """The stored statement's credit burns into the ledger, once each (after the statement is
        stored, and again on every re-run: a crash in between loses no burn and doubles none)."""
        if self.credits is not None and any(line.kind == "credit" for line in statement.lines):
            self.credits.record(statement)

    # ------------------------------------------------------------------------------------------ reads
    def statement(self, tenant_id: str, month: Month) -> tuple[Statement, bool]:
        """(statement, stored): the stored statement, or a month-to-date preview when none is stored."""
        stored = self.statements.get(tenant_id, month)
        if stored is not None:
            return stored, True
        tenant = self.tenants.get(tenant_id)
        if tenant is None:
            raise unknown_tenant([tenant_id])
        rated = self.rate([tenant], month, self.periods.closed_at(month))
        if not rated:
            raise NotFound(
                f"tenant {tenant_id} has nothing to bill in {month}",
                details=[{"field": "month", "reason": "no plan in force during this month"}],
            )
        return rated[0], False

    def preview_month(self, month: Month) -> list[Statement]:
        """Every tenant's statement of ``month``: the stored ones, month-to-date previews for the rest."""
        stored = {s.tenant_id: s for s in self.statements.list_month(month)}
        pending = [t for t in self.tenants.list_all() if t.id not in stored and billed_by_month(t, month)]
        previews = self.rate(pending, month, self.periods.closed_at(month))
        return sorted([*stored.values(), *previews], key=lambda s: s.tenant_id)

    def export_csv(self, month: Month) -> bytes:
        return invoices_csv(self.preview_month(month))

    # ------------------------------------------------------------------------------------------ final
    def issue_final(self, tenant: Tenant) -> Statement:
        """The final statement of a cancelled tenant, stored and queued for invoicing at once."""
        if tenant.canceled_at is None:
            raise InvalidRequest(f"tenant {tenant.id} is not cancelled")
        if self.own_periods is not None and has_own_periods(tenant):
            own = self.own_periods.issue_final(tenant)
            if own is not None:
                return own
        month = final_month(tenant)
        assert month is not None
        existing = self.statements.get(tenant.id, month)
        if existing is not None:
            self._publish(existing)  # a repeated cancellation publishes what a cut-off one did not
            return existing
        rated = self.rate([tenant], month, max(to_ms(self.store_clock()), tenant.canceled_at))
        if not rated:
            raise InvalidRequest(f"tenant {tenant.id} has nothing to bill in {month}")
        statement = rated[0]
        if not self.statements.put_if_absent(statement):
            statement = self.statements.get(tenant.id, month) or statement
        self._record_burns(statement)
        if statement.total != 0:
            self.jobs.enqueue_once(tenant.id, str(month))
        self._publish(statement)
        logger.info(
            "final statement issued",
            extra={"tenant_id": tenant.id, "month": str(month), "total": str(statement.total)},
        )
        return statement
