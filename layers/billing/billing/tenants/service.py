"""Tenant lifecycle: signup (optionally with a trial), plan changes, cancellation (final statement).

Rules:
* Instants are kept to the millisecond (like usage timestamps); "now" is the default everywhere.
* Nothing may change inside a closed billing period (409; the tenant's own period when it has a
  calendar, else the UTC month): a signup or plan change effective in a closed period, or a
  cancellation dated in one, is refused; a cancellation at a period's first instant ends the period
  before (its final statement is that period's), so that period must be open too.
* The plan history is append-only: a change must be effective after the latest entry (409 otherwise)
  and before the cancellation, if any.
* Trial: ``trial_ends_at`` explicit, or ``trial_days`` explicit, or ``trial: true`` for the plan's
  ``trial_days``, counted from the first plan's ``effective_at``. A plan change keeps the trial end.
* Cancellation is effective now (or at a given past instant of an open month); the final statement
  is issued at once and its invoicing job enqueued when it is not zero. Cancelling twice returns the
  same tenant and statement.
* The billing calendar: ``billing.tenants.calendar_service``.
* A signup, a plan change and a calendar change export the tenant's quota and time zone in force now
  to the dashboards (``export_quota``) once saved; an export that fails is logged and never undoes
  or fails the change (the scheduled export writes the row).
* A tenant has one currency: a plan change to a plan of another currency is refused (409).
* Credits: a grant is written once under its ``grant_id`` (repeating it is a no-op, another grant
  under the same id a 409), in the tenant's currency. Coupons: attached once under their
  ``coupon_id`` (the same again is a no-op, a different one a 409); they start in an open month.

Length: every operation here shares the read-change-save loop (``_update``) and the open-period
check; the calendar's operations are in their own module, a base of this class.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import ValidationError

from billing.catalog.plans import PlanCatalog
from billing.kernel.errors import Conflict, InvalidRequest
from billing.kernel.periods import MAX_INSTANT, Month, PeriodStore, iso, to_ms
from billing.kernel.validation import validation_details
from billing.runtime.observability import logger
from billing.statements.statement import Statement
from billing.tenants import closed_periods
from billing.tenants.access import PLATFORM, Principal
from billing.tenants.calendar_service import CalendarOperations
from billing.tenants.coupons import Coupon
from billing.tenants.credits import CreditBook, CreditGrant
from billing.tenants.requests import (
    CancelRequest,
    CouponRequest,
    CreditGrantRequest,
    PlanChangeRequest,
    SignupRequest,
)
from billing.tenants.tenant import PlanAssignment, Tenant, TenantStore

if TYPE_CHECKING:
    from billing.dunning.service import DunningService, StatusView
    from billing.statements.close import BillingCycle

__all__ = ["TenantService"]


SAVE_ATTEMPTS = 5


class TenantService(CalendarOperations):
    def __init__(
        self,
        *,
        tenants: TenantStore,
        catalog: PlanCatalog,
        periods: PeriodStore,
        cycle: BillingCycle | Callable[[], BillingCycle],
        is_conflict: Callable[[Exception], bool],
        clock: Callable[[], datetime] | None = None,
        link_customer: Callable[[str], object] | None = None,
        dunning: Callable[[], DunningService] | None = None,
        credits: CreditBook | None = None,
        export_quota: Callable[[Tenant, datetime], object] | None = None,
    ):
        self.dunning = dunning  # the payment standing's reader (status)
        self.credits = credits
        self.link_customer = link_customer  # creates the Stripe customer once (billing.invoicing)
        self.tenants = tenants
        self.catalog = catalog
        self.periods = periods
        self._cycle = cycle  # a factory: reading a tenant's status never builds the ClickHouse side
        self.is_conflict = is_conflict
        self.clock = clock or (lambda: datetime.now(UTC))
        # refreshes a tenant's row of the dashboards' quotas and time zone (billing.metering.quota_export)
        self.export_quota = export_quota

    @property
    def cycle(self) -> BillingCycle:
        if callable(self._cycle) and not hasattr(self._cycle, "issue_final"):
            self._cycle = self._cycle()
        return self._cycle  # type: ignore[return-value]

    # ------------------------------------------------------------------------------------------ checks
    def _now(self) -> datetime:
        return to_ms(self.clock())

    def _plan(self, plan_id: str, field: str = "plan") -> None:
        if plan_id not in self.catalog:
            known = ", ".join(p.id for p in self.catalog.plans)
            raise InvalidRequest(
                f"unknown plan {plan_id!r}",
                details=[{"field": field, "reason": f"unknown plan; one of: {known}"}],
            )

    def _open(self, instant: datetime, field: str, tenant_id: str | None = None) -> None:
        """409 when ``instant`` is in a closed period: the tenant's own period when it has a calendar
        (billing.tenants.closed_periods), else the UTC month."""
        tenant = self.tenants.get(tenant_id) if tenant_id is not None else None
        closed = closed_periods.closed_at(self.periods, tenant, instant)
        if closed is not None:
            name, closed_at = closed
            raise Conflict(
                f"billing period {name} was closed at {iso(closed_at)}; it can no longer change",
                details=[{"field": field, "reason": f"{iso(instant)} falls in closed period {name}"}],
            )

    def get(self, tenant_id: str, principal: Principal = PLATFORM, action: str = "manage") -> Tenant:
        """The tenant, if ``principal`` may ``action`` it (404 unknown, 403 not the key's; see Principal)."""
        return principal.require(tenant_id, self.tenants.get(tenant_id), action)

    # ------------------------------------------------------------------------------------------ reads
    def statement(
        self, tenant_id: str, month: Month, principal: Principal = PLATFORM
    ) -> tuple[Statement, bool]:
        """(statement, stored) of a tenant's month: a platform key, or the tenant's own key."""
        self.get(tenant_id, principal, "read the statements of")
        return self.cycle.statement(tenant_id, month)

    def status(self, tenant_id: str, principal: Principal = PLATFORM) -> StatusView:
        """The finished status view: dunning standing, invoices and audit trail, with the
        ``payment_status`` mirrored on the tenant record (what ingest enforces)."""
        tenant = self.get(tenant_id, principal, "read the status of")
        assert self.dunning is not None, "TenantService built without a dunning reader"
        return (
            self.dunning()
            .status(tenant_id)
            .with_payment_status(tenant.payment_status, tenant.payment_method_id is not None)
        )

    # ------------------------------------------------------------------------------------------ signup
    def signup(self, request: SignupRequest, principal: Principal = PLATFORM) -> tuple[Tenant, bool]:
        """Create the tenant; (tenant, created). Repeating the same signup returns the stored tenant."""
        principal.require_platform("manage tenants")
        self._plan(request.plan)
        effective_at = to_ms(request.effective_at) if request.effective_at else self._now()
        self._open(effective_at, "effective_at")
        trial_ends_at = self._trial_end(request, effective_at)
        tenant = Tenant(
            id=request.id,
            name=request.name,
            email=request.email,
            plans=[PlanAssignment(plan=request.plan, effective_at=effective_at)],
            trial_ends_at=trial_ends_at,
            api_key_ids=request.api_key_ids,
            calendars=self._signup_calendar(request, effective_at),
        )
        if self.tenants.create(tenant):
            logger.info("tenant created", extra={"tenant_id": tenant.id, "plan": request.plan})
            created = self._linked(self.get(tenant.id))
            self._export_quota(created)
            return created, True
        existing = self.get(tenant.id)
        same = (
            existing.plans[:1] == tenant.plans
            and existing.name == tenant.name
            and existing.email == tenant.email
            and existing.trial_ends_at == tenant.trial_ends_at
            and self._same_calendar(existing, request, tenant)
        )
        if request.effective_at is None:  # "now" differs between retries: compare what the caller sent
            same = (
                bool(existing.plans)
                and existing.plans[0].plan == request.plan
                and existing.name == tenant.name
                and existing.email == tenant.email
                and self._same_calendar(existing, request, None)
            )
        if not same:
            raise Conflict(
                f"tenant {tenant.id} exists already with different details",
                details=[{"field": "id", "reason": "already taken"}],
            )
        return self._linked(existing), False

    def _linked(self, tenant: Tenant) -> Tenant:
        """The tenant with its Stripe customer, created once (a retried signup finds it). Best effort:
        when Stripe is unreachable the signup still succeeds and the first invoice creates it."""
        if self.link_customer is None or tenant.stripe_customer_id:
            return tenant
        try:
            self.link_customer(tenant.id)
        except Exception:
            logger.warning(
                "stripe customer not created at signup; the first invoice will create it",
                extra={"tenant_id": tenant.id},
                exc_info=True,
            )
            return tenant
        return self.get(tenant.id)

    def _trial_end(self, request: SignupRequest, effective_at: datetime) -> datetime | None:
        if request.trial_ends_at is not None:
            end = to_ms(request.trial_ends_at)
            if end <= effective_at:
                raise InvalidRequest(
                    "trial_ends_at must be after effective_at",
                    details=[{"field": "trial_ends_at", "reason": "not after effective_at"}],
                )
            return end
        days = request.trial_days
        if days is None and request.trial:
            days = self.catalog.get(request.plan).trial_days
        if not days:
            return None
        trial_end = effective_at + timedelta(days=days)
        if trial_end >= MAX_INSTANT:
            raise InvalidRequest(
                f"the trial would end at {iso(trial_end)}, past {iso(MAX_INSTANT)}",
                details=[{"field": "trial_days", "reason": "the trial would end past the accepted range"}],
            )
        return trial_end

    # ------------------------------------------------------------------------------------------ plan
    def change_plan(
        self, tenant_id: str, request: PlanChangeRequest, principal: Principal = PLATFORM
    ) -> Tenant:
        principal.require_platform("manage tenants")
        self._plan(request.plan)
        effective_at = to_ms(request.effective_at) if request.effective_at else self._now()
        self._open(effective_at, "effective_at", tenant_id)

        def apply(tenant: Tenant) -> Tenant:
            currencies = {self.catalog.currency_of(p.plan) for p in tenant.plans if p.plan in self.catalog}
            wanted = self.catalog.currency_of(request.plan)
            if currencies and wanted not in currencies:
                raise Conflict(
                    f"tenant {tenant.id} is billed in {', '.join(sorted(currencies))}; plan {request.plan} is in {wanted}",
                    details=[{"field": "plan", "reason": "a tenant has one currency"}],
                )
            latest = tenant.sorted_plans()[-1].effective_at if tenant.plans else None
            if latest is not None and effective_at <= latest:
                raise Conflict(
                    f"the plan history is append-only: a change must be effective after {iso(latest)}",
                    details=[
                        {"field": "effective_at", "reason": f"not after the latest change {iso(latest)}"}
                    ],
                )
            if tenant.canceled_at is not None:
                # The final statement was issued (and queued) at the cancellation: a change at any
                # time, even before canceled_at, would never be billed.
                raise Conflict(
                    f"tenant {tenant.id} was cancelled at {iso(tenant.canceled_at)} and its final "
                    "statement is issued; its plan history can no longer change",
                    details=[{"field": "effective_at", "reason": "the tenant is cancelled"}],
                )
            plans = [*tenant.plans, PlanAssignment(plan=request.plan, effective_at=effective_at)]
            return tenant.model_copy(update={"plans": plans})

        tenant = self._update(tenant_id, apply)
        logger.info(
            "plan changed",
            extra={"tenant_id": tenant_id, "plan": request.plan, "effective_at": iso(effective_at)},
        )
        self._export_quota(tenant)
        return tenant

    # ------------------------------------------------------------------------------------------ cancel
    def cancel(
        self, tenant_id: str, request: CancelRequest | None = None, principal: Principal = PLATFORM
    ) -> tuple[Tenant, Statement]:
        principal.require_platform("manage tenants")
        request = request or CancelRequest()
        now = self._now()
        tenant = self.get(tenant_id)
        if tenant.canceled_at is not None:
            return tenant, self.cycle.issue_final(tenant)
        at = to_ms(request.at) if request.at else now
        if at > now:
            raise InvalidRequest(
                "a cancellation is effective now or at a past instant, never in the future",
                details=[{"field": "at", "reason": "in the future"}],
            )
        # The final statement is the month of the last millisecond billed: at 00:00 on the 1st that
        # is the month before, which must still be open as well.
        self._open(at, "at", tenant_id)
        self._open(at - timedelta(milliseconds=1), "at", tenant_id)

        def apply(current: Tenant) -> Tenant:
            if current.canceled_at is not None:
                return current
            first = current.first_plan_at()
            if first is None or at <= first:
                raise InvalidRequest(
                    "a cancellation must come after the first plan took effect",
                    details=[{"field": "at", "reason": "not after the first plan"}],
                )
            return current.model_copy(update={"canceled_at": at})

        tenant = self._update(tenant_id, apply)
        canceled_at = iso(tenant.canceled_at) if tenant.canceled_at else None
        logger.info("tenant cancelled", extra={"tenant_id": tenant_id, "canceled_at": canceled_at})
        return tenant, self.cycle.issue_final(tenant)

    # ------------------------------------------------------------------------------------------ credits
    def currency(self, tenant: Tenant) -> str:
        currencies = sorted(
            {self.catalog.currency_of(p.plan) for p in tenant.plans if p.plan in self.catalog}
        )
        return currencies[0] if currencies else self.catalog.currency

    def _book(self) -> CreditBook:
        if self.credits is None:
            raise RuntimeError("no credit ledger configured")
        return self.credits

    def grant_credit(
        self, tenant_id: str, request: CreditGrantRequest, principal: Principal = PLATFORM
    ) -> tuple[CreditGrant, bool]:
        """Write the grant once; (grant, created). The same grant again returns the stored one."""
        principal.require_platform("manage tenants")
        tenant = self.get(tenant_id, principal)
        currency = self.currency(tenant)
        if request.currency is not None and request.currency != currency:
            raise InvalidRequest(
                f"tenant {tenant_id} is billed in {currency}",
                details=[{"field": "currency", "reason": f"must be the tenant's currency {currency}"}],
            )
        try:
            grant = CreditGrant(
                tenant_id=tenant_id,
                grant_id=request.grant_id,
                amount=request.amount,
                currency=currency,
                granted_at=to_ms(request.granted_at) if request.granted_at else self._now(),
                expires_at=to_ms(request.expires_at) if request.expires_at else None,
                priority=request.priority,
                description=request.description,
            )
        except ValidationError as exc:
            raise InvalidRequest("invalid credit grant", details=validation_details(exc)) from None
        book = self._book()
        if book.ledger.add_grant(grant):
            logger.info("credit granted", extra={"tenant_id": tenant_id, "grant_id": grant.grant_id})
            return grant, True
        stored = book.ledger.get_grant(tenant_id, grant.grant_id)
        assert stored is not None
        same = stored.model_dump(exclude={"granted_at"}) == grant.model_dump(exclude={"granted_at"}) and (
            request.granted_at is None or stored.granted_at == grant.granted_at
        )
        if not same:
            raise Conflict(
                f"credit grant {grant.grant_id} exists already with different details",
                details=[{"field": "grant_id", "reason": "already taken"}],
            )
        return stored, False

    def credits_of(self, tenant_id: str, principal: Principal = PLATFORM) -> list[dict[str, object]]:
        self.get(tenant_id, principal, "read the credits of")
        return self._book().status(tenant_id, self._now())

    # ------------------------------------------------------------------------------------------ coupons
    def attach_coupon(
        self, tenant_id: str, request: CouponRequest, principal: Principal = PLATFORM
    ) -> tuple[Tenant, bool]:
        principal.require_platform("manage tenants")
        self.get(tenant_id, principal)
        starts_at = to_ms(request.starts_at) if request.starts_at else self._now()
        try:
            coupon = Coupon(
                coupon_id=request.coupon_id,
                name=request.name,
                percent_off=request.percent_off,
                amount_off=request.amount_off,
                duration=request.duration,
                duration_months=request.duration_months,
                starts_at=starts_at,
            )
        except ValidationError as exc:
            raise InvalidRequest("invalid coupon", details=validation_details(exc)) from None
        self._open(starts_at, "starts_at", tenant_id)
        created = []

        def apply(tenant: Tenant) -> Tenant:
            existing = next((c for c in tenant.coupons if c.coupon_id == coupon.coupon_id), None)
            if existing is not None:
                ignore = {"starts_at"} if request.starts_at is None else set()
                if existing.model_dump(exclude=ignore) != coupon.model_dump(exclude=ignore):
                    raise Conflict(
                        f"coupon {coupon.coupon_id} is attached already with different details",
                        details=[{"field": "coupon_id", "reason": "already attached"}],
                    )
                return tenant
            created.append(True)
            return tenant.model_copy(update={"coupons": [*tenant.coupons, coupon]})

        tenant = self._update(tenant_id, apply)
        return tenant, bool(created)

    def _export_quota(self, tenant: Tenant) -> None:
        """Export the tenant's quota and time zone in force now for the dashboards, after a change of
        its plans or calendar was saved. A failure is logged, never raised: the change stands, and the
        next export (the scheduled one, every few minutes) writes the row. A change effective later
        than now is exported by the first scheduled export after it takes effect."""
        if self.export_quota is None:
            return
        try:
            self.export_quota(tenant, self._now())
        except Exception:
            logger.exception(
                "tenant quota export failed; the next scheduled export writes it",
                extra={"tenant_id": tenant.id},
            )

    # ------------------------------------------------------------------------------------------ save
    def _update(self, tenant_id: str, apply: Callable[[Tenant], Tenant]) -> Tenant:
        """Read, change, save with the version check; re-read and re-apply when someone raced us."""
        for _ in range(SAVE_ATTEMPTS):
            current = self.get(tenant_id)
            changed = apply(current)
            if changed is current:
                return current
            try:
                return self.tenants.save(changed)
            except Exception as exc:
                if not self.is_conflict(exc):
                    raise
        raise Conflict(
            f"tenant {tenant_id} is being changed concurrently; retry",
            details=[{"field": "tenant_id", "reason": "concurrent update"}],
        )
