"""The tenant service's billing-calendar operations (a base of ``TenantService``): the calendar a
signup asks for, reading it, and changing it from the next period boundary.

Rules: set at signup the settings apply from the start; changed later they apply from the end of
the period the change is made in, which must be open (409 otherwise), and never for a cancelled
tenant (409); fields a change leaves out keep the values in force (or scheduled) at that boundary.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from billing.kernel.calendar import Calendar
from billing.kernel.errors import Conflict
from billing.kernel.periods import iso, to_ms
from billing.runtime.observability import logger
from billing.tenants.access import PLATFORM, Principal
from billing.tenants.calendar_settings import CalendarSetting, CalendarView, resolve_anchor, settings_of
from billing.tenants.requests import CalendarRequest, SignupRequest
from billing.tenants.tenant import Tenant


class CalendarOperations:
    """What these operations need of the service: its reads, its clock, its open-period check,
    its optimistic read-change-save loop and its quota export (``TenantService`` provides them)."""

    def get(self, tenant_id: str, principal: Principal = PLATFORM, action: str = "manage") -> Tenant:
        raise NotImplementedError

    def _now(self) -> datetime:
        raise NotImplementedError

    def _open(self, instant: datetime, field: str, tenant_id: str | None = None) -> None:
        raise NotImplementedError

    def _update(self, tenant_id: str, apply: Callable[[Tenant], Tenant]) -> Tenant:
        raise NotImplementedError

    def _export_quota(self, tenant: Tenant) -> None:
        raise NotImplementedError

    def _signup_calendar(self, request: SignupRequest, signup_at: datetime) -> list[CalendarSetting]:
        """The calendar a signup asks for, in force from the start (none: the default calendar)."""
        calendar = Calendar(
            request.time_zone or "UTC",
            resolve_anchor(request.anchor, None, signup_at),
            request.interval or "month",
        )
        return [] if calendar.is_default else [CalendarSetting.of(calendar, None)]

    @staticmethod
    def _same_calendar(existing: Tenant, request: SignupRequest, asked: Tenant | None) -> bool:
        """A repeated signup asks for the calendar the tenant has: exactly ``asked``'s when its
        instant was explicit, else the same zone and interval (a ``signup`` anchor moves with "now")."""
        if asked is not None:
            return existing.calendars[:1] == asked.calendars
        first = existing.calendar_history().initial
        return first.time_zone == (request.time_zone or first.time_zone) and first.interval == (
            request.interval or first.interval
        )

    def calendar(self, tenant_id: str, principal: Principal = PLATFORM) -> CalendarView:
        """The tenant's calendar now, its current period and any change scheduled (a platform key,
        or the tenant's own key)."""
        tenant = self.get(tenant_id, principal, "read the billing calendar of")
        return CalendarView.of(tenant.id, tenant.calendar_history(), self._now())

    def change_calendar(
        self, tenant_id: str, request: CalendarRequest, principal: Principal = PLATFORM
    ) -> CalendarView:
        """Schedule a calendar change from the end of the period holding ``request.at`` (default
        now); the fields left out keep the values in force at that boundary."""
        principal.require_platform("manage tenants")
        at = to_ms(request.at) if request.at else self._now()
        self._open(at, "at", tenant_id)

        def apply(tenant: Tenant) -> Tenant:
            if tenant.canceled_at is not None:
                raise Conflict(
                    f"tenant {tenant.id} was cancelled at {iso(tenant.canceled_at)}; its calendar can no longer change",
                    details=[{"field": "at", "reason": "the tenant is cancelled"}],
                )
            history = tenant.calendar_history()
            effective = history.period_of(at).end
            base = history.calendar_at(effective)
            signup = tenant.first_plan_at() or at
            anchor = resolve_anchor(request.anchor, base.anchor, signup)
            wanted = Calendar(request.time_zone or base.time_zone, anchor, request.interval or base.interval)
            changed, _ = history.change(at, wanted)
            if changed == history:
                return tenant
            return tenant.model_copy(update={"calendars": settings_of(changed)})

        tenant = self._update(tenant_id, apply)
        logger.info("calendar changed", extra={"tenant_id": tenant_id, "at": iso(at)})
        self._export_quota(tenant)
        return CalendarView.of(tenant.id, tenant.calendar_history(), at)
