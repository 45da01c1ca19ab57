"""Per-metric daily figures (the usage page's and Grafana's): for every aggregation, each day's (UTC,
or local in a zone) and the period's figure per group equals the metric computed from usage_events
FINAL (ClickHouseMetrics, what rating reads), with the events inserted in many blocks, one block
replayed, and events before and after the month; max, latest and unique counts from the rollup
without a void in the period, from the live rows with one."""

from __future__ import annotations

import random
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from billing.adapters.clickhouse.corrections import ClickHouseCorrectionRows
from billing.adapters.clickhouse.metric_queries import ClickHouseMetrics
from billing.adapters.clickhouse.metric_rollups import ClickHouseMetricRollups, figures_sql, reads_rollup
from billing.catalog.metrics import MetricDefinition
from billing.kernel.calendar import local_midnight
from billing.kernel.periods import Month
from billing.metering.correction_rows import negation
from billing.metering.events import StoredEvent
from billing.portal.metrics import MetricAsk, local_days

NOV = Month(2025, 11)
TENANT = "acme"


def metric(metric_id: str, **fields: Any) -> MetricDefinition:
    return MetricDefinition.model_validate(
        {"id": metric_id, "name": metric_id.replace("_", " ").title(), "unit": "units", **fields}
    )


METRICS = {
    "jobs": metric(
        "jobs",
        event_types=["gpu_job"],
        aggregation="count",
        filters=[{"property": "region", "in": ["eu", "us"]}],
    ),
    "gpu_seconds": metric("gpu_seconds", event_types=["gpu_job"], aggregation="sum", property="seconds"),
    "peak_seats": metric("peak_seats", event_types=["seat"], aggregation="max", property="seats"),
    "seats_now": metric("seats_now", event_types=["seat"], aggregation="latest", property="seats"),
    "active_users": metric(
        "active_users", event_types=["gpu_job", "query"], aggregation="unique_count", property="user"
    ),
    "llm_tokens": metric("llm_tokens", event_types=["query"], aggregation="sum", field="tokens"),
    "biggest_prompt": metric(
        "biggest_prompt", event_types=["query"], aggregation="max", field="input_tokens"
    ),
    "storage_gb_hours": metric(
        "storage_gb_hours",
        event_types=["volume"],
        aggregation="time_weighted_sum",
        property="gb",
        per="hour",
        filters=[{"property": "tier", "not_in": ["cold"]}],
    ),
}
ASKED = [
    MetricAsk(METRICS["jobs"]),
    MetricAsk(METRICS["jobs"], ("gpu",)),
    MetricAsk(METRICS["gpu_seconds"]),
    MetricAsk(METRICS["gpu_seconds"], ("gpu", "region")),
    MetricAsk(METRICS["peak_seats"]),
    MetricAsk(METRICS["seats_now"], ("team",)),
    MetricAsk(METRICS["active_users"]),
    MetricAsk(METRICS["active_users"], ("region",)),
    MetricAsk(METRICS["llm_tokens"]),
    MetricAsk(METRICS["biggest_prompt"]),
    MetricAsk(METRICS["storage_gb_hours"]),
    MetricAsk(METRICS["storage_gb_hours"], ("volume",)),
]


def stored(
    event_id: str, at: datetime, kind: str, properties: dict[str, Any], tin: int = 0, tout: int = 0
) -> StoredEvent:
    return StoredEvent(
        TENANT, event_id, at, kind, "gpt-4o" if kind == "query" else "", int(kind == "query"),
        tin, tout, 0, Decimal(0), "v1", at, properties,
    )  # fmt: skip


def seeded(seed: int, count: int) -> list[StoredEvent]:
    """Events of every kind over October to early December: some properties missing, users as text
    and as numbers (the text "7" and the number 7 are two users), ties at one instant."""
    rng = random.Random(seed)
    start = datetime(2025, 10, 20, tzinfo=UTC)
    span = int((datetime(2025, 12, 3, tzinfo=UTC) - start).total_seconds() * 1000)
    events = []
    for i in range(count):
        at = start + timedelta(milliseconds=rng.randrange(span) // 1000 * 1000 * rng.choice([1, 1, 1]))
        kind = rng.choice(["gpu_job", "gpu_job", "query", "seat", "volume"])
        props: dict[str, Any] = {}
        if rng.random() < 0.9:
            props["region"] = rng.choice(["eu", "us", "ap"])
        if kind == "gpu_job":
            props["gpu"] = rng.choice(["h100", "a100", "l4"]) if rng.random() < 0.85 else None
            if rng.random() < 0.9:
                props["seconds"] = Decimal(rng.randrange(1, 10**6)) / 1000
        if kind in ("gpu_job", "query") and rng.random() < 0.8:
            props["user"] = rng.choice([f"u{rng.randrange(40)}", str(rng.randrange(8)), rng.randrange(8)])
        if kind == "seat":
            props["team"] = rng.choice(["red", "blue"])
            props["seats"] = rng.randrange(0, 60)
        if kind == "volume":
            props["volume"] = rng.choice(["v1", "v2"])
            props["tier"] = rng.choice(["hot", "hot", "cold"])
            props["gb"] = Decimal(rng.randrange(1, 5000)) / 10
        props = {k: v for k, v in props.items() if v is not None}
        tin, tout = (rng.randrange(5000), rng.randrange(900)) if kind == "query" else (0, 0)
        events.append(stored(f"e{seed}-{i}", at, kind, props, tin, tout))
    # two events at one instant: the greatest event_id holds (latest, time-weighted)
    tie = datetime(2025, 11, 9, 8, tzinfo=UTC)
    events += [
        stored("tie-a", tie, "seat", {"team": "red", "seats": 7}),
        stored("tie-b", tie, "seat", {"team": "red", "seats": 3}),
        stored("tie-c", tie, "volume", {"volume": "v1", "tier": "hot", "gb": Decimal("12.5")}),
        stored("tie-d", tie, "volume", {"volume": "v1", "tier": "hot", "gb": Decimal("0.25")}),
    ]
    return events


@pytest.fixture
def events(env: Any) -> list[StoredEvent]:
    """Given a tenant's events stored in blocks of 37, and the first block delivered twice."""
    events = seeded(7, 1200)
    random.Random(1).shuffle(events)
    for start in range(0, len(events), 37):
        env.store.insert_events(events[start : start + 37])
    env.store.insert_events(events[:37])  # a replay with the same dedup token: dropped
    return events


def narrowed(
    definition: MetricDefinition, group_by: tuple[str, ...], values: tuple[str, ...]
) -> MetricDefinition:
    """The metric over one group's events only (a group value is the property's text value)."""
    rules = [{"property": n, "in": [v]} for n, v in zip(group_by, values, strict=True)]
    document = definition.model_dump(by_alias=True, exclude_none=True)
    document["filters"] = [*document.get("filters", []), *rules]
    return MetricDefinition.model_validate(document)


def test_every_aggregation_per_day_and_group_equals_the_metric_query(
    env: Any, events: list[StoredEvent]
) -> None:
    assert_figures_equal_the_metric_query(env)


def test_corrected_events_read_as_the_metric_query_reads_them(env: Any, events: list[StoredEvent]) -> None:
    # Given every 7th event voided and every 11th amended (values doubled), as correction rows
    rows = ClickHouseCorrectionRows(env.store)
    corrections: list[tuple[StoredEvent, int, str]] = []
    for i, event in enumerate(e for e in events if e.timestamp.month == 11):
        if i % 7 == 0:
            corrections.append((negation(event, f"c{i}#void", event.accepted_at), -1, event.event_id))
        elif i % 11 == 0:
            doubled = {k: v * 2 if isinstance(v, Decimal) else v for k, v in event.properties.items()}
            corrections.append((negation(event, f"c{i}#void", event.accepted_at), -1, event.event_id))
            corrections.append(
                (event._replace(event_id=f"c{i}#amend", properties=doubled), 1, event.event_id)
            )
    rows.insert(corrections, "corrections-1")
    # Then every figure (counts and sums from the rollup, the others from the live rows) is the
    # metric over the corrected events
    assert_figures_equal_the_metric_query(env)


def assert_figures_equal_the_metric_query(env: Any, zone: str = "UTC") -> None:
    # When the page asks for every metric over November (of the zone) at once
    start, end = local_midnight(date(2025, 11, 1), zone), local_midnight(date(2025, 12, 1), zone)
    figures = ClickHouseMetricRollups(env.store).month(TENANT, ASKED, start, end, daily=True, zone=zone)
    reference = ClickHouseMetrics(env.store)
    # Then each group's period and daily figures (per local day) are the metric over that group's events
    checked = 0
    for usage in figures:
        assert usage.groups, usage.metric.id
        for group in usage.groups:
            if "" in group.values:
                continue  # events lacking the property: no `in` filter selects them
            definition = narrowed(usage.metric, usage.group_by, group.values)
            assert group.quantity == reference.value(definition, TENANT, start, end), (
                usage.metric.id,
                group.values,
            )
            for day in local_days(start, end, zone):
                expected = reference.value(definition, TENANT, day.start, day.end)
                got = group.days.get(day.day)
                if got is None and expected in (None, Decimal(0)):
                    continue  # a day without rows: no value (max, latest) or nothing counted
                assert got == expected, (usage.metric.id, group.values, day.day)
                checked += 1
    assert checked > 500


def test_per_local_day_of_a_zone_off_utc_by_a_half_hour(env: Any, events: list[StoredEvent]) -> None:
    # Given the events, When the figures are asked per day of Asia/Kolkata (+05:30), Then each local
    # day's figure (time-weighted holds split at local midnights) is the metric over that day
    assert_figures_equal_the_metric_query(env, "Asia/Kolkata")


def test_max_latest_and_unique_read_the_rollup_only_while_the_period_has_no_void(
    env: Any, events: list[StoredEvent]
) -> None:
    # Given the events without any correction: the gauges' figures come from the rollup (the
    # cross-checks above compare them with the metric query), and a count of a counter always does
    gauges = [ASKED[4], ASKED[5], ASKED[6]]
    for ask in gauges:
        assert "usage_metrics_quarter_hourly" in figures_sql(ask, no_voids=True)[0]
        assert "usage_events FINAL" in figures_sql(ask, no_voids=False)[0]
    # a max of a counter (no rollup column holds it) and a period off the quarter hours read raw
    assert "usage_events FINAL" in figures_sql(ASKED[9], no_voids=True)[0]
    assert "usage_events FINAL" in figures_sql(ASKED[0], aligned=False)[0]
    rollups = ClickHouseMetricRollups(env.store)
    before = rollups.month(TENANT, gauges, NOV.start, NOV.end, daily=True)
    # When every November event holding the month's peak is voided
    seats = [e for e in events if e.type == "seat" and NOV.contains(e.timestamp)]
    top = max(e.properties["seats"] for e in seats)
    peaks = [e for e in seats if e.properties["seats"] == top]
    ClickHouseCorrectionRows(env.store).insert(
        [(negation(e, f"c-peak{i}#void", e.accepted_at), -1, e.event_id) for i, e in enumerate(peaks)],
        "corrections-peak",
    )
    after = rollups.month(TENANT, gauges, NOV.start, NOV.end, daily=True)
    # Then the figures are read from the live rows and the peak no longer counts
    assert before[0].total == top
    reference = ClickHouseMetrics(env.store)
    assert (
        after[0].total == reference.value(METRICS["peak_seats"], TENANT, NOV.start, NOV.end) < before[0].total
    )
    assert_figures_equal_the_metric_query(env)


def test_grouped_rows_add_up_to_the_metric(env: Any, events: list[StoredEvent]) -> None:
    figures = {
        (u.metric.id, u.group_by): u
        for u in ClickHouseMetricRollups(env.store).month(TENANT, ASKED, NOV.start, NOV.end, daily=True)
    }
    # (a count and a sum: a unique count or a gauge per group need not add up, users and volumes overlap)
    for metric_id, by in [("jobs", ("gpu",)), ("gpu_seconds", ("gpu", "region"))]:
        whole = figures[(metric_id, ())].total
        assert whole is not None and whole > 0
        assert sum(g.quantity or 0 for g in figures[(metric_id, by)].groups) == whole
    # the events lacking a grouping property have their own row, worded "none"
    jobs = figures[("jobs", ("gpu",))]
    assert [g.words(("gpu",)) for g in jobs.groups] == ["gpu: a100", "gpu: h100", "gpu: l4", "gpu: none"]


def test_reads_the_rollup_for_what_the_rollup_holds() -> None:
    assert [reads_rollup(METRICS[m]) for m in METRICS] == [
        True,
        True,
        False,
        False,
        False,
        True,
        False,
        False,
    ]


def test_a_period_without_events(env: Any) -> None:
    [jobs, peak, held] = ClickHouseMetricRollups(env.store).month(
        "nobody", [MetricAsk(METRICS["jobs"]), MetricAsk(METRICS["peak_seats"]), MetricAsk(METRICS["storage_gb_hours"])],
        NOV.start, NOV.end,
    )  # fmt: skip
    assert (jobs.total, peak.total, held.total) == (Decimal(0), None, Decimal(0))
    assert jobs.groups[0].days == {}


def test_the_migration_backfills_events_stored_before_it(env: Any) -> None:
    # Given events stored, then the rollup dropped and migration 0006 applied again
    events = seeded(3, 300)
    env.store.insert_events(events)
    before = ClickHouseMetricRollups(env.store).month(TENANT, ASKED, NOV.start, NOV.end, daily=True)
    time.sleep(1.1)  # the backfill reads the rows stored before the second the view is created
    env.store.client.command("DROP VIEW usage_metrics_daily_mv")
    env.store.client.command("DROP TABLE usage_metrics_daily")
    env.store.client.command(
        "ALTER TABLE schema_migrations DELETE WHERE version = 6 SETTINGS mutations_sync = 1"
    )
    assert env.store.migrate() == ["0006_metric_rollups"]
    # Then every figure is as before
    after = ClickHouseMetricRollups(env.store).month(TENANT, ASKED, NOV.start, NOV.end, daily=True)
    assert [(u.metric.id, [(g.values, g.quantity, g.days) for g in u.groups]) for u in after] == [
        (u.metric.id, [(g.values, g.quantity, g.days) for g in u.groups]) for u in before
    ]
    assert date(2025, 11, 9) in after[0].groups[0].days
