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
- ``refresh`` (the warmer's call, billing.portal.preview_warmer) rates and caches a preview ahead of
  any request, by the same rule: a stored statement is never replaced, and a cached preview of the
  same inputs younger than ``keep_younger_than`` is kept as it is.
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
        digest = self._digest(tenant_id)
        cached = self._cached(tenant_id, month, digest, now, self.max_age)
        if cached is not None:
            return Served(cached.statement, False, cached.computed_at)
        return self._rate(tenant_id, month, digest, now)

    def serve(
        self,
        tenant: Tenant,
        month: Month | Period,
        *,
        stored: Statement | None,
        cached: CachedPreview | None,
        digest: str | None = None,
    ) -> Served:
        """The same rule as a call, given the items already read (one batched read of the page):
        the period's stored statement and cached preview (None: absent), and the tenant record
        (``digest``: its ``inputs_digest``, when the caller has it)."""
        if stored is not None:
            return Served(stored, True, None)
        now = utc(self.clock())
        digest = digest or inputs_digest(tenant)
        if self._fresh(cached, digest, now, self.max_age):
            assert cached is not None
            return Served(cached.statement, False, cached.computed_at)
        return self._rate(tenant.id, month, digest, now)

    def refresh(
        self, tenant_id: str, month: Month | Period, *, keep_younger_than: timedelta
    ) -> Served | None:
        """Rate and cache the month's preview now; None when nothing was rated: the month's
        statement is stored, or a cached preview of the same inputs is younger than
        ``keep_younger_than`` (so a repeated run rates nothing twice)."""
        if self.max_age <= timedelta(0) or self.stored(tenant_id, month) is not None:
            return None
        now = utc(self.clock())
        digest = self._digest(tenant_id)
        if self._cached(tenant_id, month, digest, now, min(keep_younger_than, self.max_age)) is not None:
            return None
        served = self._rate(tenant_id, month, digest, now)
        return None if served.stored else served

    def _digest(self, tenant_id: str) -> str:
        tenant = self.tenant(tenant_id)
        if tenant is None:
            raise unknown_tenant([tenant_id])
        return inputs_digest(tenant)

    def _cached(
        self, tenant_id: str, month: Month | Period, digest: str, now: datetime, younger_than: timedelta
    ) -> CachedPreview | None:
        if younger_than <= timedelta(0):
            return None
        cached = self.store.get(tenant_id, month)
        return cached if self._fresh(cached, digest, now, younger_than) else None

    @staticmethod
    def _fresh(cached: CachedPreview | None, digest: str, now: datetime, younger_than: timedelta) -> bool:
        return (
            cached is not None
            and younger_than > timedelta(0)
            and cached.inputs_digest == digest
            and now - cached.computed_at < younger_than
        )

    def _rate(self, tenant_id: str, month: Month | Period, digest: str, now: datetime) -> Served:
        statement, stored = self.preview(tenant_id, month)  # NotFound (nothing to bill) passes through
        if stored:  # closed between the two reads
            return Served(statement, True, None)
        self.store.put(tenant_id, month, CachedPreview(statement, now, digest))
        return Served(statement, False, now)
