"""The dashboards' ``tenant_quotas`` follows the tenants: a signup, a plan change and a calendar
change export the tenant's row at once (real chdb), an export that fails never fails the change, and
the scheduled alert evaluation re-exports every tenant as the safety net."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from billing.runtime import container
from billing.tenants.requests import CalendarRequest, PlanChangeRequest, SignupRequest
from billing.tenants.service import TenantService
from billing_local.runner import load_module

NOW = datetime(2025, 11, 15, 12, tzinfo=UTC)


def newest(env: Any, tenant_id: str) -> tuple[str, int | None, str] | None:
    """The newest row of the tenant in ``tenant_quotas``: (plan, query_quota, time_zone)."""
    rows = env.store.query(
        "SELECT argMax(tuple(plan, query_quota, time_zone), updated_at) FROM tenant_quotas "
        "WHERE tenant_id = {t:String} GROUP BY tenant_id",
        {"t": tenant_id},
    )
    return tuple(rows[0][0]) if rows else None  # type: ignore[return-value]


@pytest.fixture
def service(env: Any) -> TenantService:
    """The container's tenant service at a fixed now: mid-November 2025, every month still open."""
    svc = container.tenant_service()
    svc.clock = lambda: NOW
    return svc


def test_a_calendar_change_in_force_now_reaches_the_dashboards_zone_at_once(env, service) -> None:
    # Given a tenant signed up in September on UTC calendar months: its row says UTC
    service.signup(SignupRequest(id="acme", plan="starter", effective_at=datetime(2025, 9, 1, tzinfo=UTC)))
    assert newest(env, "acme") == ("starter", 10000, "UTC")
    # When its calendar zone changes through the service, from the end of October's period (in force now)
    service.change_calendar(
        "acme", CalendarRequest(time_zone="Asia/Kolkata", at=datetime(2025, 10, 10, tzinfo=UTC))
    )
    # Then tenant_quotas' newest row for it has the new zone, its quota unchanged
    assert newest(env, "acme") == ("starter", 10000, "Asia/Kolkata")


def test_a_plan_change_reaches_the_dashboards_quota_at_once(env, service) -> None:
    # Given a starter tenant
    service.signup(SignupRequest(id="acme", plan="starter", effective_at=datetime(2025, 9, 1, tzinfo=UTC)))
    # When it moves to pro from November 1 (in force now)
    service.change_plan("acme", PlanChangeRequest(plan="pro", effective_at=datetime(2025, 11, 1, tzinfo=UTC)))
    # Then its newest row has pro's quota; and exporting it again changes nothing a dashboard reads
    assert newest(env, "acme") == ("pro", 100000, "UTC")
    service.change_plan("acme", PlanChangeRequest(plan="pro", effective_at=datetime(2025, 11, 2, tzinfo=UTC)))
    assert newest(env, "acme") == ("pro", 100000, "UTC")


def test_a_change_effective_later_keeps_the_row_in_force_until_the_scheduled_export(
    env, service, lambda_context
) -> None:
    # Given a starter tenant, and a calendar change made now (effective from December 1)
    service.signup(SignupRequest(id="acme", plan="starter", effective_at=datetime(2025, 9, 1, tzinfo=UTC)))
    service.change_calendar("acme", CalendarRequest(time_zone="Asia/Kolkata"))
    # Then the dashboards keep the zone in force now
    assert newest(env, "acme") == ("starter", 10000, "UTC")
    # And once December has come, the scheduled export (the alert evaluation's run) writes the new zone
    container.override(clock=lambda: datetime(2025, 12, 1, 0, 5, tzinfo=UTC))
    result = load_module("alert_evaluation").handler({}, lambda_context)
    assert result["quotas_exported"] == 1
    assert newest(env, "acme") == ("starter", 10000, "Asia/Kolkata")


def test_an_export_that_fails_never_fails_or_undoes_the_change(env, service, caplog) -> None:
    # Given a tenant, and ClickHouse refusing the export
    service.signup(SignupRequest(id="acme", plan="starter", effective_at=datetime(2025, 9, 1, tzinfo=UTC)))

    def refused(tenant: Any, at: datetime) -> None:
        raise ConnectionError("clickhouse down")

    service.export_quota = refused
    # When its plan changes
    tenant = service.change_plan(
        "acme", PlanChangeRequest(plan="pro", effective_at=datetime(2025, 11, 1, tzinfo=UTC))
    )
    # Then the change is saved and answered, the failure logged, and the dashboards keep the old row
    assert [p.plan for p in tenant.sorted_plans()] == ["starter", "pro"]
    assert [p.plan for p in container.tenants().get("acme").sorted_plans()] == ["starter", "pro"]
    assert "tenant quota export failed" in caplog.text
    assert newest(env, "acme") == ("starter", 10000, "UTC")
