"""The export of statements of periods of any shape: the periods CSV (billing.rating.csv).

Which statements a month's periods export holds: every stored statement of a period whose last day,
in its tenant's time zone, is in that month: the UTC month's own statements (those of the month
CSV, stored by its close) and those of tenant calendar periods (a Kolkata November, a weekly
tenant's weeks ending in the month, a period after a final one that bills late events). A period
not closed yet has no row: the export reads stored statements only, never a preview.

Where the hourly close writes it: one CSV per closed tenant period, under ``period_csv_name``
(``invoices/periods/{tenant_id}/{start}_{end}.csv`` in the invoices bucket), written when the
period's statement is stored and never rewritten with the same bytes.
"""

from __future__ import annotations

from datetime import timedelta

from billing.kernel.calendar import Period
from billing.kernel.periods import Month
from billing.rating import periods_csv
from billing.statements.close import StatementStore
from billing.statements.statement import Statement
from billing.tenants.closed_periods import has_own_periods
from billing.tenants.tenant import Tenant, TenantStore


def period_csv_name(tenant_id: str, period: Period) -> str:
    """The archive name of a closed tenant period's CSV (InvoiceArchive.key gives its S3 key)."""
    return f"periods/{tenant_id}/{period.key.replace('/', '_')}"


def ends_in(period: Period, month: Month) -> bool:
    """The period's last day, in its time zone, is in ``month``."""
    last = period.last_day
    return (last.year, last.month) == (month.year, month.month)


def tenant_periods_ending_in(tenant: Tenant, month: Month) -> list[Period]:
    """The tenant's own periods (not UTC months) whose last local day is in ``month``, oldest first."""
    if not has_own_periods(tenant):
        return []
    # A period's last local day is in the month when its end is within a day of the month's UTC
    # bounds (offsets are at most 14 hours); a longer period overlapping the window is read whole.
    window = tenant.calendar_history().periods(month.start - timedelta(days=1), month.end + timedelta(days=1))
    return [p for p in window if p.as_month() is None and ends_in(p, month)]


def statements_ending_in(tenants: TenantStore, statements: StatementStore, month: Month) -> list[Statement]:
    """Every stored statement of a period ending in ``month`` (see the module's docstring)."""
    found = {(s.tenant_id, s.month): s for s in statements.list_month(month)}
    for tenant in tenants.list_all():
        for period in tenant_periods_ending_in(tenant, month):
            stored = statements.get(tenant.id, period.key)
            if stored is not None:
                found[(tenant.id, period.key)] = stored
    return list(found.values())


def export_periods_csv(tenants: TenantStore, statements: StatementStore, month: Month) -> bytes:
    """The periods CSV of every stored statement of a period ending in ``month``."""
    return periods_csv(statements_ending_in(tenants, statements, month))
