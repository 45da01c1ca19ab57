"""The tenant dashboard's days are the tenant's local days: its hidden ``time_zone`` variable reads
the zone exported from the tenant's billing calendar, and every per-day panel (usage, cost, catalog
metrics) starts its days at that zone's midnight, a :30 or :45 offset and a DST change included,
with the figures usage_events holds for those days. A tenant without a calendar keeps UTC days."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from billing.adapters.clickhouse.corrections import ClickHouseCorrectionRows
from billing.adapters.clickhouse.metric_definitions import export_metric_definitions
from billing.adapters.clickhouse.metric_queries import ClickHouseMetrics
from billing.adapters.clickhouse.tenant_quotas import export_tenant_quotas
from billing.metering.correction_rows import negation
from billing.metering.events import StoredEvent
from billing.runtime import container
from billing.tenants.calendar_settings import CalendarSetting
from billing.tenants.tenant import Tenant
from tests.dashboards.test_dashboards import (
    NOVEMBER,
    generate,
    insert,
    metric_catalog,
    priced,
    query,
    run,
)
from tests.portal.test_metric_figures import METRICS, seeded

EXPORTED_AT = datetime(2025, 11, 15, tzinfo=UTC)
ZONES = {
    "kolkata-co": "Asia/Kolkata",
    "la-co": "America/Los_Angeles",
    "utc-co": None,
    "kolkata-evening": "Asia/Kolkata",
    "utc-evening": None,
}


def tenant_in(tenant_id: str, time_zone: str | None) -> Tenant:
    calendars = [CalendarSetting(time_zone=time_zone)] if time_zone else []
    return Tenant(id=tenant_id, calendars=calendars)


def local_day(instant: datetime, time_zone: str) -> date:
    return instant.astimezone(ZoneInfo(time_zone)).date()


def per_day(rows: list[dict[str, Any]], column: str) -> dict[date, Any]:
    """A time series' bars by the date they are drawn at (00:00 UTC of the local date)."""
    for row in rows:
        assert row["time"].replace(tzinfo=UTC).time() == datetime.min.time(), row
    return {row["time"].date(): row[column] for row in rows}


@pytest.fixture
def zoned(env: Any) -> dict[str, list[StoredEvent]]:
    """Given a tenant in Asia/Kolkata (+05:30), one in America/Los_Angeles (DST ends 2 Nov 2025) and
    one without a calendar, each with a month of usage; and a Kolkata and a calendarless tenant
    with only a query at 18:00 and one at 19:00 UTC on 10 November."""
    repo = container.tenants()
    for tenant_id, time_zone in ZONES.items():
        repo.create(tenant_in(tenant_id, time_zone))
    export_tenant_quotas(repo, env.store, container.plan_catalog(), at=EXPORTED_AT)
    events = {}
    for seed, tenant_id in enumerate(ZONES, start=1):
        if tenant_id.endswith("-evening"):
            events[tenant_id] = [
                priced(
                    tenant_id,
                    f"{tenant_id}-{h}",
                    datetime(2025, 11, 10, h, tzinfo=UTC),
                    "query",
                    "gpt-4o",
                    10,
                    h,
                    0,
                )
                for h in (18, 19)
            ]
        else:
            events[tenant_id] = generate(tenant_id, 400, seed)
        insert(env.store, events[tenant_id])
    return events


def test_the_time_zone_variable_is_the_tenants_calendar_zone(zoned: Any, env: Any) -> None:
    variable = query("time_zone")
    # When Grafana sets the hidden variable for each tenant
    zones = {t: run(env.store, variable, t)[0]["time_zone"] for t in ZONES}
    # Then it is the zone of the tenant's calendar, UTC without one
    assert zones == {t: z or "UTC" for t, z in ZONES.items()}
    # And a tenant never exported (usage only) reads as UTC
    assert run(env.store, variable, "unknown-co") == [{"time_zone": "UTC"}]
    # And so does a row written without a zone (as every export before migration 0010)
    env.store.client.insert(
        "tenant_quotas",
        [["old-co", "pro", 100, EXPORTED_AT]],
        column_names=["tenant_id", "plan", "query_quota", "updated_at"],
    )
    assert run(env.store, variable, "old-co") == [{"time_zone": "UTC"}]


def test_events_at_18_and_19_utc_fall_on_two_local_days_in_kolkata(zoned: Any, env: Any) -> None:
    cost = {e.event_id: e.cost_usd for evs in zoned.values() for e in evs}
    # When the tenant dashboard shows November for the Kolkata tenant (23:30 and 00:30 local)
    tokens = per_day(run(env.store, query("Tokens per day"), "kolkata-evening"), "output_tokens")
    costs = per_day(run(env.store, query("Cost per day"), "kolkata-evening"), "cost_usd")
    # Then the 18:00 query is on local 10 November and the 19:00 query on local 11 November
    assert tokens == {date(2025, 11, 10): 18, date(2025, 11, 11): 19}
    assert costs == {
        date(2025, 11, 10): cost["kolkata-evening-18"],
        date(2025, 11, 11): cost["kolkata-evening-19"],
    }
    # And for the tenant without a calendar both are on 10 November (UTC days), as before
    tokens = per_day(run(env.store, query("Tokens per day"), "utc-evening"), "output_tokens")
    costs = per_day(run(env.store, query("Cost per day"), "utc-evening"), "cost_usd")
    assert tokens == {date(2025, 11, 10): 37}
    assert costs == {date(2025, 11, 10): cost["utc-evening-18"] + cost["utc-evening-19"]}


def expected_cost(events: list[StoredEvent], zone: str) -> dict[date, Decimal]:
    cost: dict[date, Decimal] = defaultdict(Decimal)
    for e in events:
        cost[local_day(e.timestamp, zone)] += e.cost_usd
    return dict(cost)


@pytest.mark.parametrize(
    ("tenant", "zone"), [("kolkata-co", "Asia/Kolkata"), ("la-co", "America/Los_Angeles"), ("utc-co", "UTC")]
)
def test_every_local_day_of_the_month_sums_its_events(zoned: Any, env: Any, tenant: str, zone: str) -> None:
    # When the tenant dashboard shows November (UTC range): every local day it touches, whole
    events = zoned[tenant]
    first, last = local_day(NOVEMBER.start, zone), local_day(NOVEMBER.end - timedelta(seconds=1), zone)
    in_days = [e for e in events if first <= local_day(e.timestamp, zone) <= last]
    cost = per_day(run(env.store, query("Cost per day"), tenant), "cost_usd")
    # Then each day's cost is the sum of the cost of that local day's events
    assert cost == expected_cost(in_days, zone)
    # And the range's totals are those days' sums
    (tokens,) = run(env.store, query("Tokens in range"), tenant)
    assert (tokens["input_tokens"], tokens["output_tokens"]) == (
        sum(e.input_tokens for e in in_days),
        sum(e.output_tokens for e in in_days),
    )
    by_model = run(env.store, query("Usage and cost by model"), tenant)
    assert sum(r["cost_usd"] for r in by_model) == sum(cost.values())
    assert sum(r["events"] for r in by_model) == len(in_days)


@pytest.mark.parametrize(
    ("tenant", "zone", "voided"),
    [
        ("kolkata-co", "Asia/Kolkata", False),
        ("la-co", "America/Los_Angeles", False),
        ("kolkata-co", "Asia/Kolkata", True),
    ],
)
def test_catalog_metrics_per_local_day_are_the_metric_of_each_local_day(
    zoned: Any, env: Any, tenant: str, zone: str, voided: bool
) -> None:
    # Given the tenant's GPU jobs, seats, volumes and queries with properties (October 20 to December 3)
    events = [e._replace(tenant_id=tenant, event_id=f"{tenant}-{e.event_id}") for e in seeded(11, 900)]
    env.store.insert_events(events)
    if voided:  # and every 9th of them voided by a correction
        voids = [
            (negation(e, f"c{i}#void", e.accepted_at), -1, e.event_id) for i, e in enumerate(events[::9])
        ]
        ClickHouseCorrectionRows(env.store).insert(voids, "voids-1")
    export_metric_definitions(env.store, metric_catalog(sorted(METRICS)), at=EXPORTED_AT)
    metrics = ClickHouseMetrics(env.store)
    tz = ZoneInfo(zone)
    first, last = local_day(NOVEMBER.start, zone), local_day(NOVEMBER.end - timedelta(seconds=1), zone)
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    for metric_id in sorted(METRICS):
        # When the tenant dashboard charts the metric for November
        rows = run(env.store, query("Catalog metric ${metric} per day"), tenant, metric=metric_id)
        got = {d: Decimal(v) for d, v in per_day(rows, "value").items()}
        # Then each bar is the metric over usage_events FINAL from that local midnight to the next
        # (2 November in Los Angeles is 25 hours long; a voided event counts nowhere, and holds no
        # maximum, last value or distinct value)
        expected = {}
        for day in days:
            start = datetime.combine(day, datetime.min.time(), tz).astimezone(UTC)
            end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tz).astimezone(UTC)
            expected[day] = metrics.value(METRICS[metric_id], tenant, start, end)
        assert got == {d: v for d, v in expected.items() if v is not None and (v != 0 or d in got)}, metric_id
        assert len(got) >= 20, metric_id
