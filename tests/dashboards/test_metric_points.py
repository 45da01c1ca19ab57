"""The catalog-metric panels read ``metric_points`` (migration 0011), one narrow row per live event
per metric; whatever happens to the events (a void, an amend, a copy stored twice) or to the
catalog (a metric changed or removed after its events), every panel equals billing's metric query
(``ClickHouseMetrics`` over ``usage_events FINAL``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from billing.adapters.clickhouse.corrections import ClickHouseCorrectionRows
from billing.adapters.clickhouse.metric_definitions import export_metric_definitions
from billing.adapters.clickhouse.metric_queries import ClickHouseMetrics
from billing.catalog.metrics import MetricDefinition
from billing.catalog.plans import PlanCatalog
from billing.kernel.periods import utc
from billing.metering.correction_rows import negation
from billing.metering.events import StoredEvent
from billing.runtime import container
from tests.dashboards.test_dashboards import NOVEMBER, query, run
from tests.portal.test_metric_figures import METRICS, metric, seeded

TENANTS = ("acme", "globex")
DAYS = [NOVEMBER.start + timedelta(days=d) for d in range(30)]


def catalog(metrics: list[MetricDefinition]) -> PlanCatalog:
    import yaml

    document = yaml.safe_load(container.settings().plans_path.read_text())
    document["usage_types"] = [{"id": t} for t in ("gpu_job", "seat", "volume")]
    document["metrics"] = [m.model_dump(by_alias=True, exclude_none=True) for m in metrics]
    return PlanCatalog.model_validate(document)


def events_of(tenant: str, seed: int, count: int) -> list[StoredEvent]:
    return [e._replace(tenant_id=tenant, event_id=f"{tenant}-{e.event_id}") for e in seeded(seed, count)]


def assert_panels_equal_billing(env: Any, definitions: dict[str, MetricDefinition]) -> None:
    """Each tenant's bar of each November day, and the operator table's month per tenant, equal
    ClickHouseMetrics.value over the same instants."""
    metrics = ClickHouseMetrics(env.store)
    for metric_id, definition in definitions.items():
        charted = 0
        for tenant in TENANTS:
            rows = run(env.store, query("Catalog metric ${metric} per day"), tenant, metric=metric_id)
            got = {utc(r["time"]).date(): Decimal(r["value"]) for r in rows}
            expected = {d.date(): metrics.value(definition, tenant, d, d + timedelta(days=1)) for d in DAYS}
            assert got == {d: v for d, v in expected.items() if v is not None and (v != 0 or d in got)}, (
                metric_id,
                tenant,
            )
            charted += len(got)
        assert charted >= 20, metric_id  # not two empty charts
        rows = run(
            env.store,
            query("Top tenants by catalog metric ${metric}", "billing-operator-overview"),
            None,
            metric=metric_id,
        )
        month = {t: metrics.value(definition, t, NOVEMBER.start, NOVEMBER.end) for t in TENANTS}
        assert {r["tenant"]: Decimal(r["value"]) for r in rows} == {t: v for t, v in month.items() if v}, (
            metric_id
        )


@pytest.fixture
def stored(env: Any) -> dict[str, list[StoredEvent]]:
    """Given the catalog's metrics exported, then two tenants' events stored (the view fills
    metric_points as they arrive)."""
    export_metric_definitions(
        env.store, catalog(list(METRICS.values())), at=datetime(2025, 11, 15, tzinfo=UTC)
    )
    events = {t: events_of(t, seed, 400) for seed, t in enumerate(TENANTS, start=21)}
    for tenant_events in events.values():
        for start in range(0, len(tenant_events), 100):
            env.store.insert_events(tenant_events[start : start + 100])
    return events


def test_voids_amends_and_a_copy_stored_twice(stored: dict[str, list[StoredEvent]], env: Any) -> None:
    acme = stored["acme"]
    # Given every 7th event of acme voided, every 11th amended (voided, and stored again with new
    # numbers), and a copy of some events stored a second time in blocks of their own
    rows = ClickHouseCorrectionRows(env.store)
    rows.insert(
        [(negation(e, f"c{i}#void", e.accepted_at), -1, e.event_id) for i, e in enumerate(acme[::7])], "v"
    )
    amended = [e for e in acme[3::11] if e.properties]
    amends = []
    for i, e in enumerate(amended):
        numbers = {k: (v * 2 + 1 if isinstance(v, Decimal | int) else v) for k, v in e.properties.items()}
        amends.append((negation(e, f"a{i}#void", e.accepted_at), -1, e.event_id))
        amends.append((e._replace(event_id=f"a{i}#amend", properties=numbers), 1, e.event_id))
    rows.insert(amends, "a")
    for e in acme[5::13]:
        env.store.insert_events([e])  # a block of its own: a new dedup token, a second stored copy
    assert env.store.query("SELECT count() - uniqExact(tenant_id, event_id) FROM usage_events")[0][0] > 0
    # Then every panel is billing's figure from the live rows
    assert_panels_equal_billing(env, METRICS)


def test_a_changed_or_removed_metric_is_rebuilt(stored: dict[str, list[StoredEvent]], env: Any) -> None:
    # Given the catalog changes after the events: jobs keeps only eu, peak_seats reads another
    # property, active_users is removed, and a new metric is added
    changed = {
        "jobs": metric(
            "jobs",
            event_types=["gpu_job"],
            aggregation="count",
            filters=[{"property": "region", "in": ["eu"]}],
        ),
        "peak_seats": metric("peak_seats", event_types=["gpu_job"], aggregation="max", property="seconds"),
        "gpu_seconds": METRICS["gpu_seconds"],
        "storage_gb_hours": METRICS["storage_gb_hours"],
        "seat_count": metric("seat_count", event_types=["seat"], aggregation="count"),
    }
    export_metric_definitions(
        env.store, catalog(list(changed.values())), at=datetime(2025, 11, 16, tzinfo=UTC)
    )
    # Then the panels read the new definitions over the events stored before the export
    assert_panels_equal_billing(env, changed)
    assert env.store.query("SELECT count() FROM metric_points WHERE metric_id = 'active_users'") == [(0,)]
    # And events stored after the export are read with them too
    env.store.insert_events(events_of("globex", 31, 200))
    assert_panels_equal_billing(env, changed)
    # And exporting the old catalog back restores the old figures (a rebuilt block equal to an
    # earlier one is not dropped as a duplicate)
    export_metric_definitions(
        env.store, catalog(list(METRICS.values())), at=datetime(2025, 11, 17, tzinfo=UTC)
    )
    assert_panels_equal_billing(env, METRICS)


def test_a_gauge_holds_its_value_from_before_the_range(env: Any) -> None:
    # Given a volume of 10 GB set on 20 October and changed to 4 GB at 06:00 on 3 November
    gauge = {"storage_gb_hours": METRICS["storage_gb_hours"]}
    export_metric_definitions(env.store, catalog(list(gauge.values())), at=datetime(2025, 11, 15, tzinfo=UTC))
    [template] = [e for e in seeded(11, 50) if e.type == "volume"][:1]
    points = [
        template._replace(tenant_id="acme", event_id="v-oct", timestamp=datetime(2025, 10, 20, tzinfo=UTC),
                          properties={"volume": "v1", "tier": "hot", "gb": Decimal(10)}),
        template._replace(tenant_id="acme", event_id="v-nov", timestamp=datetime(2025, 11, 3, 6, tzinfo=UTC),
                          properties={"volume": "v1", "tier": "hot", "gb": Decimal(4)}),
    ]  # fmt: skip
    env.store.insert_events(points)
    rows = run(env.store, query("Catalog metric ${metric} per day"), "acme", metric="storage_gb_hours")
    bars = {utc(r["time"]).date(): Decimal(r["value"]) for r in rows}
    # Then 1 and 2 November hold 10 GB all day, 3 November 6 h of 10 and 18 h of 4, then 4 GB a day
    assert bars[datetime(2025, 11, 1).date()] == 240
    assert bars[datetime(2025, 11, 3).date()] == 60 + 72
    assert bars[datetime(2025, 11, 30).date()] == 96
    assert_panels_equal_billing(env, gauge)
