"""The data the tenant's usage page shows (the link that opens it: ``billing.portal.tokens``).

Invariants:
- the page's routes take the tenant from the verified token only, never from a parameter, and only
  ever read.
- the page shows one of the tenant's billing periods: a UTC calendar month for a tenant on the
  default calendar (``Month``, keyed ``YYYY-MM``), else a period of its calendar
  (``billing.kernel.calendar.Period``, keyed by its period key, named by its label).
- the statement shown is the period's stored statement, else its preview (the same close/preview
  services are asked; nothing is re-rated here), so the page's total is what is invoiced.
- per-day and per-model figures come from the quarter-hour rollup summed per local day of the
  period's time zone (never a scan of raw events); per-metric figures (``billing.portal.metrics``)
  from the per-metric quarter-hour rollup (``billing.adapters.clickhouse.metric_rollups`` says when
  raw rows are read instead).
- the preview, the per-day, per-model and corrections figures and the per-metric figures are served
  from their caches by one stated-staleness rule (``preview_cache``, ``usage_cache``,
  ``metric_cache``: the same tenant record, younger than the max age, "as of" shown); every keyed
  item a request needs comes from one batched read (``page_reads``), so a request whose cached
  items are fresh reads nothing from ClickHouse and does no work that grows with the tenant's events.
- the prepaid-credit balance is the one the status API shows (``CreditBook.summary``: unexpired
  grants less the burns of issued statements), shown only to a tenant that holds grants.
- every instant and day shown is in the period's time zone (UTC for a tenant without a calendar).

Length: the view's data types, its JSON form and the service that assembles it from the services
owning each figure (choosing the period among the tenant's, and the days shown of it) belong
together; split, the period rules would be stated twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from billing.catalog.plans import PlanCatalog
from billing.kernel.calendar import Period
from billing.kernel.errors import InvalidRequest, NotFound
from billing.kernel.money import exponent, fmt_minor
from billing.kernel.periods import Month, iso, utc
from billing.metering.quota_windows import quota_window
from billing.metering.quotas import Limit, quota_limit
from billing.portal.metric_cache import CachedMetricFigures
from billing.portal.metrics import MetricAsk, MetricFigures, MetricUsage, metrics_shown
from billing.portal.page_reads import PageItems, PageKeys, PageReads
from billing.portal.preview_cache import CachedStatements, inputs_digest
from billing.portal.usage import (  # re-exported: the page and the adapters name them from here
    DayUsage,
    ModelUsage,
    MonthRollup,
    Shown,
    UsageRollups,
    zone_of,
)
from billing.portal.usage_cache import CachedUsageFigures
from billing.rating.csv import lines_csv
from billing.statements.statement import Statement
from billing.tenants.closed_periods import has_own_periods
from billing.tenants.tenant import Tenant, TenantStore, unknown_tenant

__all__ = [
    "DayUsage",
    "ModelUsage",
    "MonthRollup",
    "PortalService",
    "PortalView",
    "Shown",
    "UsageRollups",
    "zone_of",
]

MONTHS_SHOWN = 12  # the current period and up to 11 before it (never before the first plan)
EXPECTED_KEYS_KEPT = 4096  # the keys of so many (tenant, month text) asked before are remembered


class CreditSummaries(Protocol):
    def summary(self, tenant_id: str, now: datetime) -> dict[str, Any]:
        """``{"balance": {currency: amount}, "grants": [...]}`` (billing.tenants.credits.CreditBook)."""
        ...


@dataclass(frozen=True)
class Quota:
    used: int
    limit: Limit
    resets_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {"used": self.used, "limit": self.limit, "resets_at": iso(self.resets_at)}


@dataclass(frozen=True)
class OpenInvoice:
    month: str
    invoice_id: str
    number: str | None
    status: str
    amount_cents: int  # Stripe's integer amount: minor units of ``currency`` (cents, yen, fils)
    currency: str
    hosted_invoice_url: str | None

    @property
    def amount(self) -> Decimal:
        return Decimal(self.amount_cents).scaleb(-exponent(self.currency))

    def to_json(self) -> dict[str, Any]:
        return {
            "month": self.month,
            "invoice_id": self.invoice_id,
            "number": self.number,
            "status": self.status,
            "amount": fmt_minor(self.amount, self.currency),
            "currency": self.currency,
            "hosted_invoice_url": self.hosted_invoice_url,
        }


@dataclass(frozen=True)
class PortalView:
    """Everything the page shows for one tenant and period."""

    tenant_id: str
    tenant_name: str
    month: Shown
    months: list[Shown]  # selectable, newest first
    generated_at: datetime
    statement: Statement | None  # None: no plan in force that month (nothing to bill)
    stored: bool  # True: the issued statement; False: a month-to-date preview
    rollup: MonthRollup
    quota: Quota
    payment_status: str
    open_invoices: list[OpenInvoice] = field(default_factory=list)
    credits: dict[str, Any] | None = None  # the credit summary; None: the tenant holds no grants
    alerts: list[dict[str, Any]] = field(default_factory=list)  # the month's active alert thresholds
    # the catalog metrics the month's plans charge, period to date (none: the section is left out)
    metrics: list[MetricUsage] = field(default_factory=list)
    # the applied corrections of the month's usage (billing.portal.corrections_block), newest first
    corrections: list[dict[str, Any]] = field(default_factory=list)
    as_of: datetime | None = None  # a preview's figures were computed then (cached: up to the max age ago)
    # when the metric figures were computed (cached: up to the max age ago); None: read now, uncached
    metrics_as_of: datetime | None = None
    # when the per-day and per-model figures and the corrections were read (cached: up to the max age ago)
    usage_as_of: datetime | None = None

    @property
    def time_zone(self) -> str:
        """The zone every day and time of the page is shown in."""
        return zone_of(self.month)

    @property
    def total(self) -> Decimal:
        return self.statement.total if self.statement is not None else Decimal("0.00")

    def lines_csv(self) -> bytes:
        return lines_csv([self.statement] if self.statement is not None else [])

    def csv_filename(self) -> str:
        return f"{self.tenant_id}-{self.month}-statement-lines.csv".replace("/", "_")

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "tenant_name": self.tenant_name,
            "month": str(self.month),
            "months": [str(m) for m in self.months],
            **self._period_json(),
            "generated_at": iso(self.generated_at),
            "timezone": self.time_zone,
            "preview": not self.stored,
            "as_of": iso(self.as_of) if self.as_of is not None else None,
            "total": f"{self.total:.2f}",
            "statement": self.statement.model_dump(mode="json") if self.statement is not None else None,
            "days": [
                {"day": d.day.isoformat(), "queries": d.queries, "cost_usd": f"{d.cost_usd:f}"}
                for d in self.rollup.days
            ],
            "models": [
                {
                    "model": m.model,
                    "events": m.events,
                    "queries": m.queries,
                    "input_tokens": m.input_tokens,
                    "output_tokens": m.output_tokens,
                    "cost_usd": f"{m.cost_usd:f}",
                }
                for m in self.rollup.models
            ],
            "quota": self.quota.to_json(),
            "payment_status": self.payment_status,
            "open_invoices": [i.to_json() for i in self.open_invoices],
            "credits": self.credits,
            "alerts": self.alerts,
            "metrics": [m.to_json() for m in self.metrics],
            "metrics_as_of": iso(self.metrics_as_of) if self.metrics_as_of is not None else None,
            "usage_as_of": iso(self.usage_as_of) if self.usage_as_of is not None else None,
            "corrections": self.corrections,
        }

    def _period_json(self) -> dict[str, Any]:
        """A tenant calendar's periods (key, label, UTC bounds); nothing for a UTC-month page."""
        if not isinstance(self.month, Period):
            return {}

        def one(p: Shown) -> dict[str, Any]:
            label = p.label() if isinstance(p, Period) else str(p)
            return {"key": str(p), "label": label, "start": iso(p.start), "end": iso(p.end)}

        return {"period": one(self.month), "periods": [one(p) for p in self.months]}


OPEN_STATUSES = frozenset({"open", "uncollectible"})


class PortalService:
    """Assembles a PortalView from the services that own each figure (read only)."""

    def __init__(
        self,
        *,
        tenants: TenantStore,
        catalog: PlanCatalog,
        reads: PageReads,
        statements: CachedStatements,
        usage: CachedUsageFigures,
        clock: Callable[[], datetime],
        credits: CreditSummaries | None = None,
        alerts: Callable[[str, str], Sequence[Any]] | None = None,
        metrics: MetricFigures | CachedMetricFigures | None = None,
    ):
        self.alerts = alerts  # (tenant, period) -> its alert states (billing.alerts.evaluation)
        self.tenants = tenants
        self.catalog = catalog
        self.reads = reads  # the page's keyed DynamoDB reads, batched
        self.statements = statements
        self.usage = usage  # per day, per model and the corrections block, cached
        self.clock = clock
        self.credits = credits
        self.metrics = metrics
        # (tenant, month text) -> the keys its last page needed: what the next one asks for first
        self._expected: dict[tuple[str, str], PageKeys] = {}
        self._executor: ThreadPoolExecutor | None = None

    def tenant(self, tenant_id: str) -> Tenant:
        tenant = self.tenants.get(tenant_id)
        if tenant is None:
            raise unknown_tenant([tenant_id])
        return tenant

    @staticmethod
    def selectable_months(tenant: Tenant, now: datetime) -> list[Month]:
        """The current month and the ones before it, back to the first plan's (at most MONTHS_SHOWN)."""
        current = Month.of(now)
        if tenant.canceled_at is not None and tenant.canceled_at < current.start:
            current = Month.of(tenant.canceled_at - timedelta(milliseconds=1))
        first = tenant.first_plan_at()
        oldest = Month.of(first) if first is not None else current
        months = [current]
        while len(months) < MONTHS_SHOWN and months[-1] > oldest:
            months.append(months[-1].previous())
        return months

    @classmethod
    def selectable(cls, tenant: Tenant, now: datetime) -> list[Shown]:
        """The periods the page offers, newest first: UTC months for a tenant on the default
        calendar (``selectable_months``), else its calendar's periods (a change cuts one short),
        the current one and those before it back to the first plan's (at most MONTHS_SHOWN)."""
        if not has_own_periods(tenant):
            return list(cls.selectable_months(tenant, now))
        calendars = tenant.calendar_history()
        current = calendars.period_of(now)
        if tenant.canceled_at is not None and tenant.canceled_at < current.start:
            current = calendars.period_of(tenant.canceled_at - timedelta(milliseconds=1))
        first = tenant.first_plan_at()
        periods = [current]
        while len(periods) < MONTHS_SHOWN and first is not None and periods[-1].start > first:
            periods.append(calendars.period_of(periods[-1].start - timedelta(milliseconds=1)))
        return list(periods)

    def parse_month(self, tenant: Tenant, text: str | None) -> Shown:
        """The period ``text`` names among those offered: a ``YYYY-MM`` month, or a tenant period's
        key (or ``YYYY-MM`` when exactly one of its periods starts in that local month); the current
        one when none is given. 400 naming ``month`` for anything else."""
        return self._pick(self.selectable(tenant, self.clock()), text)

    @staticmethod
    def _pick(shown: list[Shown], text: str | None) -> Shown:
        if not text:
            return shown[0]
        if isinstance(shown[0], Period):
            for period in shown:
                if str(period) == text:
                    return period
            # a month's YYYY-MM names the one offered period starting (locally) in that month
            starting = [p for p in shown if isinstance(p, Period) and f"{p.year:04d}-{p.month:02d}" == text]
            if len(starting) == 1:
                return starting[0]
            raise InvalidRequest(
                f"period {text} is not available on this page",
                details=[{"field": "month", "reason": f"choose one of {', '.join(str(p) for p in shown)}"}],
            )
        try:
            month = Month.parse(text)
        except ValueError:
            raise InvalidRequest(
                "month must be YYYY-MM", details=[{"field": "month", "reason": "not YYYY-MM"}]
            ) from None
        if month not in shown:
            raise InvalidRequest(
                f"month {month} is not available on this page",
                details=[{"field": "month", "reason": f"choose one of {', '.join(str(m) for m in shown)}"}],
            )
        return month

    def view(self, tenant_id: str, month_text: str | None = None) -> PortalView:
        """The page's data: its keyed items in one batched read (two when the tenant's record names
        keys the first did not ask for), the credits and alerts queries beside them, and the cached
        figures (statement preview, per day and model, corrections, per metric) served by their
        stated-staleness rule: a hit reads nothing from ClickHouse."""
        now = utc(self.clock())
        statement: Statement | None
        asked = (tenant_id, month_text or "")
        expected = self._expected.get(asked) or self._utc_keys(month_text, now)
        # The two DynamoDB queries (credits; alerts, of the quota window expected) overlap the
        # batched read and the rest.
        pool = self._pool()
        credits_later = pool.submit(self._credits, tenant_id, now)
        alerts_later = pool.submit(self._alerts, tenant_id, expected.quota)
        items = self.reads.read(tenant_id, expected)
        tenant = items.tenant
        if tenant is None:
            raise unknown_tenant([tenant_id])
        months = self.selectable(tenant, now)
        month = self._pick(months, month_text)
        current = month.contains(now)
        at = now if current else month.end - timedelta(milliseconds=1)
        # The quota counts in the tenant's own period (its UTC month by default): the one holding
        # now in the current period, else the one the period ends in.
        window = quota_window(tenant, at)
        keys = PageKeys(str(month), window.key, tuple(str(m) for m in months))
        missing = keys.missing(expected)
        if missing is not None:
            items.merge(self.reads.read(tenant_id, missing, tenant=False))
        if window.key != expected.quota:
            alerts_later = pool.submit(self._alerts, tenant_id, window.key)
        if len(self._expected) >= EXPECTED_KEYS_KEPT:
            self._expected.clear()
        self._expected[asked] = keys
        digest = inputs_digest(tenant)  # the record every cached figure must have been computed from
        key = str(month)
        try:
            answer = self.statements.serve(
                tenant, month, stored=items.stored.get(key), cached=items.previews.get(key), digest=digest
            )
            statement, stored, as_of = answer.statement, answer.stored, answer.as_of
        except NotFound:
            statement, stored, as_of = None, False, None
        usage = self.usage.serve(tenant, month, items.usage.get(key), digest=digest)
        metrics, metrics_as_of = self._metrics(tenant, month, now, items, digest)
        credits = credits_later.result()
        alerts = alerts_later.result()
        quota = Quota(
            used=items.quota_used.get(window.key, 0),
            limit=quota_limit(tenant, self.catalog, at),
            resets_at=window.end,
        )
        return PortalView(
            tenant_id=tenant.id,
            tenant_name=tenant.name or tenant.id,
            month=month,
            months=months,
            generated_at=now,
            statement=statement,
            stored=stored,
            as_of=as_of,
            rollup=usage.rollup,
            usage_as_of=usage.as_of,
            quota=quota,
            payment_status=tenant.payment_status,
            open_invoices=self._open_invoices(items, months),
            credits=credits,
            alerts=alerts,
            metrics=metrics,
            metrics_as_of=metrics_as_of,
            corrections=usage.corrections,
        )

    def _pool(self) -> ThreadPoolExecutor:
        """The threads the page's queries run on, started once per process (not per request)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="portal")
        return self._executor

    @staticmethod
    def _utc_keys(month_text: str | None, now: datetime) -> PageKeys:
        """The keys a tenant on UTC calendar months needs (what a page asks for first when it has
        not served this tenant and month text before): the month named (else the current one), its
        quota counter and the invoices of the months offered at most."""
        current = Month.of(now)
        try:
            month = Month.parse(month_text) if month_text else current
        except ValueError:
            month = current
        months = [current]
        while len(months) < MONTHS_SHOWN:
            months.append(months[-1].previous())
        return PageKeys(str(month), str(month), tuple(str(m) for m in months))

    def _alerts(self, tenant_id: str, period: str) -> list[dict[str, Any]]:
        """The active thresholds of the tenant period ``period`` (its key, as alerts record it)."""
        if self.alerts is None:
            return []
        return [a.to_json() for a in self.alerts(tenant_id, period) if a.state == "active"]

    def _metrics(
        self,
        tenant: Tenant,
        month: Shown,
        now: datetime,
        items: PageItems | None = None,
        digest: str | None = None,
    ) -> tuple[list[MetricUsage], datetime | None]:
        """The period's charged catalog metrics so far: to now in the current period, else whole;
        with when they were computed, when cached (billing.portal.metric_cache; ``items``: the
        page's batched read, holding the cached entry if there is one)."""
        asked = metrics_shown(tenant, self.catalog, month)
        if self.metrics is None or not asked:
            return [], None
        if isinstance(self.metrics, CachedMetricFigures):
            if items is None:
                figures = self.metrics.period(tenant.id, month, asked, zone=zone_of(month))
            else:
                cached = items.metrics.get(str(month))
                figures = self.metrics.serve(tenant, month, asked, cached, zone=zone_of(month), digest=digest)
            return figures.usage, figures.as_of
        end = min(now, month.end) if month.contains(now) else month.end
        return self.metrics.month(tenant.id, asked, month.start, end, zone=zone_of(month)), None

    def metrics_asked(self, tenant_id: str, period: Shown) -> list[MetricAsk]:
        """The catalog metrics the tenant's page shows for ``period`` (what the warmer caches)."""
        return metrics_shown(self.tenant(tenant_id), self.catalog, period)

    def _credits(self, tenant_id: str, now: datetime) -> dict[str, Any] | None:
        if self.credits is None:
            return None
        summary = self.credits.summary(tenant_id, now)
        return summary if summary["grants"] else None

    @staticmethod
    def _open_invoices(items: PageItems, months: Sequence[Shown]) -> list[OpenInvoice]:
        out = []
        records = items.invoice_records(str(m) for m in months)
        for record in sorted(records, key=lambda r: str(r.month), reverse=True):
            if not record.invoice_id or record.invoice_status not in OPEN_STATUSES:
                continue
            out.append(
                OpenInvoice(
                    month=str(record.month),
                    invoice_id=str(record.invoice_id),
                    number=record.invoice_number,
                    status=str(record.invoice_status),
                    amount_cents=int(
                        record.stripe_total if record.stripe_total is not None else record.total_cents
                    ),
                    currency=str(record.currency),
                    hosted_invoice_url=record.hosted_invoice_url,
                )
            )
        return out
