"""The period-to-date statement preview, cached per tenant and period (a UTC month, or a period of
the tenant's calendar, by its key) with a stated staleness.

Rule (what a cached preview may be served for):
- a stored (issued) statement always wins: it is read first on every request, so a close replaces
  the preview at once and a past period never shows one.
- a cached preview is served only while younger than ``max_age_s`` and only if the tenant's record
  (plan history, cancellation, billing settings) digests to the same value it was computed from: a
  plan change invalidates it at once.
- usage ingested and corrections applied after ``computed_at`` appear at the latest ``max_age_s``
  later; the page says "as of HH:MM" (in the period's time zone) for every preview it shows.
- the cached statement is exactly the computed one (serialized with Decimals as text).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from billing.kernel.calendar import Period
from billing.kernel.periods import Month, utc
from billing.statements.statement import Statement
from billing.tenants.tenant import Tenant, unknown_tenant


@dataclass(frozen=True)
class CachedPreview:
    statement: Statement
    computed_at: datetime
    inputs_digest: str


class PreviewStore(Protocol):
    def get(self, tenant_id: str, month: Month | Period) -> CachedPreview | None: ...

    def put(self, tenant_id: str, month: Month | Period, preview: CachedPreview) -> None: ...


def inputs_digest(tenant: Tenant) -> str:
    """What a preview was rated from, besides usage: the tenant's whole record."""
    return hashlib.sha256(tenant.model_dump_json().encode()).hexdigest()


@dataclass(frozen=True)
class Served:
    statement: Statement
    stored: bool
    as_of: datetime | None  # when a preview's figures were computed; None for a stored statement


class CachedStatements:
    """The statement the page shows: the stored one, a fresh cached preview, or a new preview (then cached)."""

    def __init__(
        self,
        *,
        stored: Callable[[str, Month | Period], Statement | None],
        tenant: Callable[[str], Tenant | None],
        preview: Callable[[str, Month | Period], tuple[Statement, bool]],
        store: PreviewStore,
        clock: Callable[[], datetime],
        max_age_s: int,
    ):
        self.stored = stored
        self.tenant = tenant
        self.preview = preview
        self.store = store
        self.clock = clock
        self.max_age = timedelta(seconds=max_age_s)

    def __call__(self, tenant_id: str, month: Month | Period) -> Served:
        issued = self.stored(tenant_id, month)
        if issued is not None:
            return Served(issued, True, None)
        now = utc(self.clock())
        tenant = self.tenant(tenant_id)
        if tenant is None:
            raise unknown_tenant([tenant_id])
        digest = inputs_digest(tenant)
        cached = self.store.get(tenant_id, month) if self.max_age > timedelta(0) else None
        if cached is not None and cached.inputs_digest == digest and now - cached.computed_at < self.max_age:
            return Served(cached.statement, False, cached.computed_at)
        statement, stored = self.preview(tenant_id, month)  # NotFound (nothing to bill) passes through
        if stored:  # closed between the two reads
            return Served(statement, True, None)
        self.store.put(tenant_id, month, CachedPreview(statement, now, digest))
        return Served(statement, False, now)
