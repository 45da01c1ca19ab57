"""Which close covers a tenant's instant: the rule ingest, plan changes and both closes share.

A tenant period that is exactly a UTC calendar month (every period on the default calendar) is
closed by the month close, recorded under the month's ``YYYY-MM`` for every tenant at once; any
other period (a time zone, an anniversary, another interval) is closed per tenant, recorded under
``{tenant_id}@{period key}`` (billing.statements.period_close)."""

from __future__ import annotations

from datetime import datetime

from billing.kernel.calendar import Period
from billing.kernel.periods import Month, PeriodStore
from billing.tenants.tenant import Tenant


def close_key(tenant_id: str, period: Period) -> str:
    """Where the close of ``tenant_id``'s ``period`` is recorded in the PeriodStore."""
    month = period.as_month()
    return str(month) if month is not None else f"{tenant_id}@{period.key}"


def has_own_periods(tenant: Tenant) -> bool:
    """The tenant has (or has scheduled) a calendar other than UTC calendar months."""
    return any(not setting.calendar().is_default for setting in tenant.calendars)


def period_at(tenant: Tenant | None, instant: datetime) -> tuple[str, str]:
    """(close key, name as its customer reads it) of the tenant's period holding ``instant``."""
    if tenant is None or not has_own_periods(tenant):
        month = Month.of(instant)
        return str(month), str(month)
    period = tenant.calendar_history().period_of(instant)
    return close_key(tenant.id, period), period.label()


def closed_at(periods: PeriodStore, tenant: Tenant | None, instant: datetime) -> tuple[str, datetime] | None:
    """(name, closed_at) of the tenant's period holding ``instant`` when it is closed, else None."""
    key, name = period_at(tenant, instant)
    closed = periods.closed_at(key)
    return (name, closed) if closed is not None else None
