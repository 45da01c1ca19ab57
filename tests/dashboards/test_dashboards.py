"""Every Grafana panel's SQL (and variable query), macros filled in as the ClickHouse plugin does,
runs against the real schema (chdb) and returns the figures billing uses."""

from __future__ import annotations

import importlib.util
import json
import random
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.adapters.clickhouse.metric_definitions import export_metric_definitions
from billing.adapters.clickhouse.metric_queries import ClickHouseMetrics
from billing.adapters.clickhouse.tenant_quotas import current_quotas, export_tenant_quotas
from billing.adapters.clickhouse.usage_store import ClickHouseUsageStore
from billing.catalog.plans import PlanCatalog
from billing.kernel.periods import Month, utc
from billing.metering.events import StoredEvent, UsageEvent
from billing.runtime import container
from billing.tenants.tenant import PlanAssignment, Tenant
from billing_local.grafana import (
    Dashboard,
    Query,
    TemplateError,
    TimeRange,
    load_dashboards,
    render,
    shares,
)
from tests.portal.test_metric_figures import METRICS, seeded

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS_DIR = ROOT / "dashboards"
NOVEMBER = Month(2025, 11)
RANGE = TimeRange.of(NOVEMBER.start, NOVEMBER.end - timedelta(seconds=1))
MODELS = ["gpt-4o-mini", "gpt-4o", "claude-3-5-haiku", "text-embedding-3-small"]
DASHBOARDS = load_dashboards(DASHBOARDS_DIR)
ALL_QUERIES = [q for d in DASHBOARDS for q in d.queries()]


# ---------------------------------------------------------------------------------------------- helpers
def priced(
    tenant: str, event_id: str, ts: datetime, kind: str, model: str | None, tin: int, tout: int, nbytes: int
) -> StoredEvent:
    event = UsageEvent(
        event_id=event_id,
        tenant_id=tenant,
        timestamp=ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        type=kind,
        model=model,
        input_tokens=tin,
        output_tokens=tout,
        bytes=nbytes,
    )
    cost = container.price_book().cost(event)
    return StoredEvent(
        tenant_id=tenant,
        event_id=event_id,
        timestamp=event.timestamp,
        type=kind,
        model=model or "",
        queries=event.queries,
        input_tokens=tin,
        output_tokens=tout,
        bytes=nbytes,
        cost_usd=cost.cost_usd,
        price_version=cost.price_version,
        accepted_at=event.timestamp,
    )


def generate(tenant: str, count: int, seed: int, month: Month = NOVEMBER) -> list[StoredEvent]:
    rng = random.Random(seed)
    events = []
    for i in range(count):
        ts = month.start + timedelta(seconds=rng.randrange(month.seconds), milliseconds=rng.randrange(1000))
        kind = rng.choice(["query", "query", "query", "embedding", "storage"])
        if kind == "query":
            events.append(
                priced(
                    tenant,
                    f"{tenant}-{seed}-{i}",
                    ts,
                    kind,
                    rng.choice(MODELS[:3]),
                    rng.randrange(5000),
                    rng.randrange(2000),
                    rng.randrange(10_000),
                )
            )
        elif kind == "embedding":
            events.append(
                priced(tenant, f"{tenant}-{seed}-{i}", ts, kind, MODELS[3], rng.randrange(9000), 0, 0)
            )
        else:
            events.append(priced(tenant, f"{tenant}-{seed}-{i}", ts, kind, None, 0, 0, rng.randrange(10**9)))
    return events


def insert(store: ClickHouseUsageStore, events: list[StoredEvent], block: int = 200) -> None:
    for start in range(0, len(events), block):  # many blocks = many unmerged rollup parts
        store.insert_events(events[start : start + block])


def run(
    store: ClickHouseUsageStore,
    query: Query,
    tenant: str | None,
    time_range: TimeRange = RANGE,
    metric: str = "gpu_seconds",
) -> list[dict[str, Any]]:
    variables: dict[str, str | list[str]] = (
        {"tenant": tenant, "metric": metric} if tenant else {"metric": metric}
    )
    if tenant:  # the hidden time_zone variable, as Grafana sets it for the selected tenant
        board = next(d for d in DASHBOARDS if d.title == query.dashboard)
        variables = board.resolve(variables, time_range, store.query)
    result = store.client.query(render(query.raw_sql, time_range, variables))
    return query.transform([dict(zip(result.column_names, row)) for row in result.result_rows])


def query(title: str, dashboard: str = "billing-tenant-usage") -> Query:
    """What the panel (or variable) of this title shows: a shared panel's source query, transformed."""
    board = next(d for d in DASHBOARDS if d.uid == dashboard)
    return board.shown(title)


def in_november(events: list[StoredEvent]) -> list[StoredEvent]:
    return [e for e in events if NOVEMBER.contains(e.timestamp)]


def metric_catalog(metric_ids: list[str]) -> PlanCatalog:
    """The shipped catalog with these metrics (of tests/portal/test_metric_figures) and their types."""
    import yaml

    document = yaml.safe_load(container.settings().plans_path.read_text())
    document["usage_types"] = [{"id": t} for t in ("gpu_job", "seat", "volume")]
    document["metrics"] = [METRICS[m].model_dump(by_alias=True, exclude_none=True) for m in metric_ids]
    return PlanCatalog.model_validate(document)


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture
def usage(env: Any) -> dict[str, list[StoredEvent]]:
    """Given three tenants on different plans, a month of usage, edge events just outside November,
    and a block delivered twice (a replay with the same dedup token)."""
    repo = container.tenants()
    plans_at = datetime(2025, 10, 1, tzinfo=UTC)
    repo.create(Tenant(id="acme", plans=[PlanAssignment(plan="pro", effective_at=plans_at)]))
    repo.create(Tenant(id="globex", plans=[PlanAssignment(plan="starter", effective_at=plans_at)]))
    repo.create(Tenant(id="initech", query_quota=None))  # no plan, no quota: unlimited
    repo.create(Tenant(id="hooli", query_quota=500))  # legacy quota, no usage at all
    export_tenant_quotas(repo, env.store, container.plan_catalog(), at=datetime(2025, 11, 15, tzinfo=UTC))

    events = {
        "acme": generate("acme", 1500, 1),
        "globex": generate("globex", 400, 2),
        "initech": generate("initech", 250, 3),
    }
    events["acme"] += [
        priced(
            "acme",
            "edge-oct",
            datetime(2025, 10, 31, 23, 59, 59, 999000, tzinfo=UTC),
            "query",
            "gpt-4o",
            10**6,
            0,
            0,
        ),
        priced("acme", "edge-dec", datetime(2025, 12, 1, tzinfo=UTC), "query", "gpt-4o", 10**6, 0, 0),
        priced("acme", "edge-first", datetime(2025, 11, 1, tzinfo=UTC), "query", "gpt-4o", 1000, 10, 0),
    ]
    # GPU jobs, seats, volumes and queries with properties, October 20 to December 3
    events["acme"] += seeded(11, 900)
    export_metric_definitions(
        env.store, metric_catalog(sorted(METRICS)), at=datetime(2025, 11, 15, tzinfo=UTC)
    )
    for tenant_events in events.values():
        insert(env.store, tenant_events)
    env.store.insert_events(events["acme"][:200])  # the same first block again: dropped by its token
    return events


# ---------------------------------------------------------------------------------------------- files
def test_dashboard_files_match_their_generator() -> None:
    spec = importlib.util.spec_from_file_location("dashboards_build", DASHBOARDS_DIR / "build.py")
    assert spec and spec.loader
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    for name, text in build.render_all().items():
        assert (DASHBOARDS_DIR / name).read_text() == text, (
            f"run python dashboards/build.py ({name} is stale)"
        )


def test_every_target_uses_the_provisioned_clickhouse_datasource() -> None:
    import yaml

    provisioned = yaml.safe_load((DASHBOARDS_DIR / "provisioning/datasources/clickhouse.yaml").read_text())
    source = provisioned["datasources"][0]
    assert source["type"] == "grafana-clickhouse-datasource"
    providers = yaml.safe_load((DASHBOARDS_DIR / "provisioning/dashboards/billing.yaml").read_text())[
        "providers"
    ]
    assert providers[0]["type"] == "file"
    assert {d.uid for d in DASHBOARDS} == {"billing-tenant-usage", "billing-operator-overview"}
    for board in DASHBOARDS:
        assert board.model["timezone"] == "utc"
        ids = {panel["id"]: panel for panel in board.panels()}
        for panel in board.panels():
            assert panel["targets"], panel["title"]
            if (shown := shares(panel)) is not None:
                # a panel showing another's results: that panel queries ClickHouse itself
                assert shares(ids[shown]) is None and panel["targets"][0]["datasource"] == panel["datasource"]
                continue
            for target in panel["targets"]:
                assert target["datasource"] == {"type": source["type"], "uid": source["uid"]}
                assert target["editorType"] == "sql" and target["format"] in (0, 1)
                assert ";" not in target["rawSql"]


def test_the_expander_refuses_what_it_cannot_check() -> None:
    with pytest.raises(TemplateError, match="unknown macro"):
        render("SELECT 1 WHERE $__conditionalAll(x, $tenant)", RANGE, {"tenant": "a"})
    with pytest.raises(TemplateError, match="unknown template variable"):
        render("SELECT ${nope}", RANGE)
    sql = render(
        "SELECT 1 WHERE t = ${tenant:singlequote} AND $__timeFilter(ts) AND $__dateFilter(d)",
        TimeRange.of(datetime(2025, 11, 1, tzinfo=UTC), datetime(2025, 11, 2, 12, tzinfo=UTC)),
        {"tenant": "o'neil"},
    )
    assert sql == (
        "SELECT 1 WHERE t = 'o\\'neil' AND ts >= toDateTime(1761955200) AND ts <= toDateTime(1762084800)"
        " AND d >= toDate('2025-11-01') AND d <= toDate('2025-11-02')"
    )


# ---------------------------------------------------------------------------------------------- every query
def test_every_query_runs_against_the_real_schema(usage: dict[str, list[StoredEvent]], env: Any) -> None:
    assert len(ALL_QUERIES) >= 12
    failures = []
    for q in ALL_QUERIES:
        # When each query runs with its macros and variables filled in
        try:
            rows = run(env.store, q, "acme")
        except Exception as exc:  # collect them all: one report names every broken panel
            failures.append(f"{q.dashboard} / {q.title}: {exc}")
            continue
        # Then ClickHouse accepts it and it returns data for the month
        if not rows:
            failures.append(f"{q.dashboard} / {q.title}: no rows")
        elif q.format == 0 and [next(iter(r.values())) for r in rows] != sorted(
            next(iter(r.values())) for r in rows
        ):
            failures.append(f"{q.dashboard} / {q.title}: time series not sorted by its first (time) column")
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------------------------------------- figures
def test_month_to_date_cost_is_the_sum_billing_uses(usage: dict[str, list[StoredEvent]], env: Any) -> None:
    expected = sum((e.cost_usd for e in in_november(usage["acme"])), Decimal(0))
    (row,) = run(env.store, query("Month-to-date cost"), "acme")
    assert row["cost_usd"] == expected
    assert row["cost_usd"] == env.store.month_usage("acme", NOVEMBER)["cost_usd"]
    # Halfway through the month, only the days so far count.
    mid = TimeRange.of(NOVEMBER.start, datetime(2025, 11, 15, 12, tzinfo=UTC))
    (row,) = run(env.store, query("Month-to-date cost"), "acme", mid)
    assert row["cost_usd"] == sum(
        (e.cost_usd for e in in_november(usage["acme"]) if e.timestamp < datetime(2025, 11, 16, tzinfo=UTC)),
        Decimal(0),
    )


def test_operator_month_to_date_covers_every_tenant(usage: dict[str, list[StoredEvent]], env: Any) -> None:
    (row,) = run(env.store, query("Month-to-date cost, all tenants", "billing-operator-overview"), None)
    assert row["cost_usd"] == sum(
        (e.cost_usd for evs in usage.values() for e in in_november(evs)), Decimal(0)
    )
    assert row["tenants"] == 3


def test_queries_per_hour(usage: dict[str, list[StoredEvent]], env: Any) -> None:
    expected: dict[datetime, int] = defaultdict(int)
    for e in in_november(usage["acme"]):
        expected[e.timestamp.replace(minute=0, second=0, microsecond=0)] += e.queries
    rows = run(env.store, query("Queries per hour"), "acme")
    assert {utc(r["time"]): r["queries"] for r in rows} == dict(expected)  # hours with any event
    # A range starting mid-hour still shows that whole hour (as a bar for the hour).
    part = TimeRange.of(datetime(2025, 11, 3, 12, 30, tzinfo=UTC), datetime(2025, 11, 3, 14, 10, tzinfo=UTC))
    rows = run(env.store, query("Queries per hour"), "acme", part)
    hours = [datetime(2025, 11, 3, h, tzinfo=UTC) for h in (12, 13, 14)]
    assert {utc(r["time"]): r["queries"] for r in rows} == {h: expected[h] for h in hours if h in expected}


def test_tokens_and_cost_per_day(usage: dict[str, list[StoredEvent]], env: Any) -> None:
    tokens: dict[datetime, list[int]] = defaultdict(lambda: [0, 0])
    cost: dict[datetime, Decimal] = defaultdict(Decimal)
    for e in in_november(usage["globex"]):
        day = e.timestamp.replace(hour=0, minute=0, second=0, microsecond=0)
        tokens[day][0] += e.input_tokens
        tokens[day][1] += e.output_tokens
        cost[day] += e.cost_usd
    token_rows = run(env.store, query("Tokens per day"), "globex")
    assert {utc(r["time"]): [r["input_tokens"], r["output_tokens"]] for r in token_rows} == dict(tokens)
    cost_rows = run(env.store, query("Cost per day"), "globex")
    assert {utc(r["time"]): r["cost_usd"] for r in cost_rows} == dict(cost)


def test_usage_and_cost_by_model_match_billing(usage: dict[str, list[StoredEvent]], env: Any) -> None:
    rows = run(env.store, query("Usage and cost by model"), "acme")
    billing = env.store.month_usage("acme", NOVEMBER)
    by_model = {("(storage)" if m["model"] == "" else m["model"]): m for m in billing["by_model"]}
    assert {r["model"]: (r["events"], r["queries"], r["cost_usd"]) for r in rows} == {
        k: (m["events"], m["queries"], m["cost_usd"]) for k, m in by_model.items()
    }
    assert [r["cost_usd"] for r in rows] == sorted((r["cost_usd"] for r in rows), reverse=True)


def test_quota_used_percent(usage: dict[str, list[StoredEvent]], env: Any) -> None:
    used = sum(e.queries for e in in_november(usage["acme"]))
    (row,) = run(env.store, query("Quota used %"), "acme")
    assert (row["used"], row["quota"]) == (used, 100_000)  # the pro plan's quota
    assert row["used_pct"] == pytest.approx(round(100 * used / 100_000, 2))
    (row,) = run(env.store, query("Quota used %"), "initech")
    assert row["quota"] is None and row["used_pct"] is None  # unlimited
    (row,) = run(env.store, query("Quota used %"), "hooli")
    assert (row["used"], row["quota"], row["used_pct"]) == (0, 500, 0)


def test_a_newer_quota_export_wins(usage: dict[str, list[StoredEvent]], env: Any) -> None:
    # Given acme moves to enterprise and the quotas are exported again
    repo = container.tenants()
    acme = repo.get("acme")
    assert acme is not None
    repo.save(
        acme.model_copy(
            update={
                "plans": [
                    *acme.plans,
                    PlanAssignment(plan="enterprise", effective_at=datetime(2025, 11, 20, tzinfo=UTC)),
                ]
            }
        )
    )
    export_tenant_quotas(repo, env.store, container.plan_catalog(), at=datetime(2025, 11, 21, tzinfo=UTC))
    # Then the dashboards read the newest quota
    assert current_quotas(env.store)["acme"] == 1_000_000
    (row,) = run(env.store, query("Quota used %"), "acme")
    assert row["quota"] == 1_000_000


def test_top_tenants(usage: dict[str, list[StoredEvent]], env: Any) -> None:
    rows = run(env.store, query("Top tenants by cost", "billing-operator-overview"), None)
    costs = {t: sum((e.cost_usd for e in in_november(evs)), Decimal(0)) for t, evs in usage.items()}
    assert [r["tenant"] for r in rows] == sorted(costs, key=lambda t: -costs[t])
    assert {r["tenant"]: (r["cost_usd"], r["plan"], r["quota"]) for r in rows} == {
        "acme": (costs["acme"], "pro", 100_000),
        "globex": (costs["globex"], "starter", 10_000),
        "initech": (costs["initech"], "", None),
    }
    pressure = run(
        env.store, query("Top tenants by quota used % (this month)", "billing-operator-overview"), None
    )
    assert [r["tenant"] for r in pressure] == ["globex", "acme"]  # initech is unlimited


def test_tenant_variable_lists_tenants_with_usage_or_a_quota(
    usage: dict[str, list[StoredEvent]], env: Any
) -> None:
    rows = run(env.store, query("tenant"), None)
    assert [r["tenant_id"] for r in rows] == ["acme", "globex", "hooli", "initech"]


def test_a_replayed_block_is_not_counted_twice(usage: dict[str, list[StoredEvent]], env: Any) -> None:
    # The fixture inserted acme's first block twice; rollups and billing both count it once.
    (row,) = run(env.store, query("Queries this month / quota"), "acme")
    assert row["used"] == env.store.month_usage("acme", NOVEMBER)["queries"]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(
            st.integers(0, NOVEMBER.seconds - 1),
            st.sampled_from(MODELS[:3]),
            st.integers(0, 10**6),
            st.integers(0, 10**6),
        ),
        min_size=1,
        max_size=40,
    ),
    st.integers(1, 40),
)
def test_property_month_to_date_equals_the_sum_of_costs(
    env: Any, spec: list[tuple[int, str, int, int]], block: int
) -> None:
    tenant = f"prop-{uuid.uuid4().hex[:12]}"  # hypothesis reseeds `random` per example
    events = [
        priced(tenant, f"e{i}", NOVEMBER.start + timedelta(seconds=s), "query", model, tin, tout, 0)
        for i, (s, model, tin, tout) in enumerate(spec)
    ]
    insert(env.store, events, block)
    (row,) = run(env.store, query("Month-to-date cost"), tenant)
    assert row["cost_usd"] == sum((e.cost_usd for e in events), Decimal(0))
    (quota,) = run(env.store, query("Queries this month / quota"), tenant)
    assert quota["used"] == len(events)


# ---------------------------------------------------------------------------------------------- catalog metrics
def test_metric_variable_lists_the_newest_export(usage: dict[str, list[StoredEvent]], env: Any) -> None:
    rows = run(env.store, query("metric"), None)
    assert [r["id"] for r in rows] == sorted(METRICS)
    # When the catalog loses all but two metrics and is exported again, Then only those are listed
    export_metric_definitions(
        env.store, metric_catalog(["jobs", "peak_seats"]), at=datetime(2025, 11, 16, tzinfo=UTC)
    )
    assert [r["id"] for r in run(env.store, query("metric"), None)] == ["jobs", "peak_seats"]
    # And a catalog without metrics lists none
    export_metric_definitions(env.store, metric_catalog([]), at=datetime(2025, 11, 17, tzinfo=UTC))
    assert run(env.store, query("metric"), None) == []


@pytest.mark.parametrize("metric_id", sorted(METRICS))
def test_metric_per_day_is_the_metric_query_of_each_day(
    usage: dict[str, list[StoredEvent]], env: Any, metric_id: str
) -> None:
    # When the tenant dashboard charts a catalog metric for November
    rows = run(env.store, query("Catalog metric ${metric} per day"), "acme", metric=metric_id)
    got = {utc(r["time"]).date(): Decimal(r["value"]) for r in rows}
    # Then each day's bar is the metric computed from usage_events FINAL over that UTC day
    metrics = ClickHouseMetrics(env.store)
    days = [NOVEMBER.start + timedelta(days=d) for d in range(30)]
    expected = {
        day.date(): metrics.value(METRICS[metric_id], "acme", day, day + timedelta(days=1)) for day in days
    }
    assert {d: v for d, v in got.items()} == {
        d: v for d, v in expected.items() if v is not None and (v != 0 or d in got)
    }
    assert len(got) >= 20, metric_id


@pytest.mark.parametrize("metric_id", sorted(METRICS))
def test_top_tenants_by_metric(usage: dict[str, list[StoredEvent]], env: Any, metric_id: str) -> None:
    # Given globex's events of the same kinds
    env.store.insert_events(
        [e._replace(tenant_id="globex", event_id="g" + e.event_id) for e in seeded(5, 300)]
    )
    rows = run(
        env.store,
        query("Top tenants by catalog metric ${metric}", "billing-operator-overview"),
        None,
        metric=metric_id,
    )
    metrics = ClickHouseMetrics(env.store)
    # Then each tenant's month is the metric over its November, highest first
    expected = {
        t: metrics.value(METRICS[metric_id], t, NOVEMBER.start, NOVEMBER.end)
        for t in ("acme", "globex", "initech", "hooli")
    }
    assert {r["tenant"]: Decimal(r["value"]) for r in rows} == {t: v for t, v in expected.items() if v}
    assert [r["value"] for r in rows] == sorted((r["value"] for r in rows), reverse=True)


def test_dashboards_load_as_json() -> None:
    for path in DASHBOARDS_DIR.glob("*.json"):
        model = json.loads(path.read_text())
        assert isinstance(Dashboard(path, model).queries(), list)


def test_shared_panels_show_their_source_query_transformed() -> None:
    # Given the tenant dashboard: the quota panels and the day panels share another panel's query
    board = next(d for d in DASHBOARDS if d.uid == "billing-tenant-usage")
    sent = {q.title for q in board.queries() if q.kind == "panel"}
    assert sent.isdisjoint({"Quota used %", "Queries this month / quota", "Tokens in range", "Cost per day"})
    assert board.shown("Quota used %").raw_sql == board.shown("Month-to-date cost").raw_sql
    tokens = board.shown("Tokens in range")
    assert tokens.raw_sql == board.shown("Tokens per day").raw_sql
    # When the days' rows are transformed as "Tokens in range" does, Then they are summed to one row
    day = datetime(2025, 11, 1, tzinfo=UTC)
    rows = [
        {"time": day, "input_tokens": 3, "output_tokens": 1, "cost_usd": Decimal("0.5")},
        {"time": day + timedelta(days=1), "input_tokens": 4, "output_tokens": 2, "cost_usd": Decimal(1)},
    ]
    assert tokens.transform(rows) == [{"input_tokens": 7, "output_tokens": 3}]
    # And no days give one row without figures, which the panel shows as its noValue: 0, as the SQL
    # sum of no rows did
    assert tokens.transform([]) == [{}]
    assert tokens.panel["fieldConfig"]["defaults"]["noValue"] == "0"
    assert board.shown("Cost per day").transform(rows) == [
        {"time": day, "cost_usd": Decimal("0.5")},
        {"time": day + timedelta(days=1), "cost_usd": Decimal(1)},
    ]
    with pytest.raises(TemplateError, match="not supported"):
        Query("d", "panel", "t", "A", "", transformations=({"id": "merge", "options": {}},)).transform(rows)
