"""Migration 0009: the quarter-hour rollups sum, per local day of any time zone, exactly what
usage_events holds (corrections included), and the migration backfills the rows stored before it."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from billing.adapters.clickhouse.corrections import ClickHouseCorrectionRows
from billing.metering.correction_rows import negation
from tests.portal.test_metric_figures import TENANT, seeded

ZONES = [
    "UTC",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Pacific/Marquesas",
    "America/Los_Angeles",
    "Pacific/Kiritimati",
]


def per_local_day_raw(env: Any, zone: str) -> list[tuple[Any, ...]]:
    return env.store.query(
        "SELECT toDate(timestamp, {z:String}) AS d, sum(sign), sum(queries), sum(input_tokens), "
        "sum(output_tokens), sum(cost_usd) FROM usage_events FINAL WHERE tenant_id = {t:String} "
        "GROUP BY d ORDER BY d",
        {"t": TENANT, "z": zone},
    )


def per_local_day_rollup(env: Any, zone: str) -> list[tuple[Any, ...]]:
    return env.store.query(
        "SELECT toDate(quarter, {z:String}) AS d, sum(events), sum(queries), sum(input_tokens), "
        "sum(output_tokens), sum(cost_usd) FROM usage_quarter_hourly WHERE tenant_id = {t:String} "
        "GROUP BY d ORDER BY d",
        {"t": TENANT, "z": zone},
    )


def per_local_day_metric_rollup(env: Any, zone: str) -> list[tuple[Any, ...]]:
    return env.store.query(
        "SELECT toDate(quarter, {z:String}) AS d, type, sum(events), sum(total) "
        "FROM usage_metrics_quarter_hourly WHERE tenant_id = {t:String} AND property IN ('', 'seconds') "
        "GROUP BY d, type, property ORDER BY d, type, sum(total)",
        {"t": TENANT, "z": zone},
    )


def per_local_day_metric_raw(env: Any, zone: str) -> list[tuple[Any, ...]]:
    return env.store.query(
        "SELECT d, type, e, tot FROM ("
        " SELECT toDate(timestamp, {z:String}) AS d, type, sum(sign) AS e, toDecimal256(0, 18) AS tot, '' AS p"
        " FROM usage_events FINAL WHERE tenant_id = {t:String} GROUP BY d, type"
        " UNION ALL"
        " SELECT toDate(timestamp, {z:String}) AS d, type, sum(sign) AS e,"
        "  sum(toDecimal256(number_properties['seconds'], 18)) AS tot, 'seconds' AS p"
        " FROM usage_events FINAL WHERE tenant_id = {t:String} AND mapContains(number_properties, 'seconds')"
        " GROUP BY d, type) ORDER BY d, type, tot",
        {"t": TENANT, "z": zone},
    )


@pytest.fixture
def corrected(env: Any) -> None:
    """Given a tenant's events stored in blocks (one replayed), and every 9th event voided."""
    events = seeded(11, 900)
    random.Random(2).shuffle(events)
    for start in range(0, len(events), 41):
        env.store.insert_events(events[start : start + 41])
    env.store.insert_events(events[:41])
    voids = [(negation(e, f"c{i}#void", e.accepted_at), -1, e.event_id) for i, e in enumerate(events[::9])]
    ClickHouseCorrectionRows(env.store).insert(voids, "voids-1")


@pytest.mark.parametrize("zone", ZONES)
def test_local_days_from_quarter_hours_equal_the_raw_events(env: Any, corrected: None, zone: str) -> None:
    # When each local day is summed from the quarter-hour rollups
    # Then it equals usage_events FINAL's figures of that local day
    assert per_local_day_rollup(env, zone) == per_local_day_raw(env, zone)
    assert per_local_day_metric_rollup(env, zone) == per_local_day_metric_raw(env, zone)


def test_the_migration_backfills_events_stored_before_it(env: Any) -> None:
    # Given events stored, then the quarter-hour rollups dropped and migration 0009 applied again
    env.store.insert_events(seeded(5, 300))
    before = per_local_day_rollup(env, "Asia/Kolkata"), per_local_day_metric_rollup(env, "Asia/Kolkata")
    time.sleep(1.1)  # the backfill reads the rows stored before the second the view is created
    for name in ("usage_quarter_hourly", "usage_metrics_quarter_hourly"):
        env.store.client.command(f"DROP VIEW {name}_mv")
        env.store.client.command(f"DROP TABLE {name}")
    env.store.client.command(
        "ALTER TABLE schema_migrations DELETE WHERE version = 9 SETTINGS mutations_sync = 1"
    )
    assert env.store.migrate() == ["0009_quarter_hour_rollups"]
    # Then every local day's figures are as before
    assert (
        per_local_day_rollup(env, "Asia/Kolkata"),
        per_local_day_metric_rollup(env, "Asia/Kolkata"),
    ) == before
    assert len(before[0]) > 30
