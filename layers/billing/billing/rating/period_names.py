"""A statement's period as its customer reads it, on the documents (Stripe invoices, the page): a
UTC calendar month by its ``YYYY-MM``, a tenant calendar's period by its label in the tenant's time
zone (billing.kernel.calendar.Period.label)."""

from __future__ import annotations

from typing import Any

from billing.kernel.periods import RatedPeriod


def period_inputs(period: RatedPeriod) -> dict[str, Any]:
    """What a statement of ``period`` records of it for the documents: its label and time zone for a
    tenant calendar's period; nothing for a UTC month, whose statements keep their stored form."""
    label = getattr(period, "label", None)
    calendar = getattr(period, "calendar", None)
    if "/" not in str(period) or not callable(label) or calendar is None:  # a UTC month's YYYY-MM
        return {}
    return {"period": {"label": label(), "time_zone": calendar.time_zone}}


def statement_title(is_final: bool, month: str, label: str | None, tenant_id: str) -> str:
    """``Statement 2025-11 for acme``; a tenant calendar's period by its label in the tenant's zone:
    ``Final statement 2025-11 (Asia/Kolkata) for acme``."""
    return f"{'Final statement' if is_final else 'Statement'} {label or month} for {tenant_id}"
