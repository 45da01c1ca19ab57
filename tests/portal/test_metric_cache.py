"""The usage page's per-metric figures, cached beside the preview with its stated staleness
(billing.portal.metric_cache).

Evidence that a request did not read ClickHouse is timing-free, as in test_preview_cache: GPU jobs
stored after the figures were cached are absent from the page's figures (read again they would be
there), and the cached item keeps its first computed_at."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

from billing.adapters.aws.clients import dynamodb_client
from billing.adapters.clickhouse.metric_rollups import ClickHouseMetricRollups
from billing.adapters.dynamodb.preview_cache import DynamoMetricFiguresStore
from billing.kernel.periods import Month, parse_instant
from billing.portal.metric_cache import CachedFigures, figures_from_json, figures_json
from billing.portal.metrics import MetricUsage, metrics_shown
from billing.runtime import container
from tests.metering.conftest import load_handler
from tests.portal.conftest import NOW, metered_events
from tests.portal.test_preview_cache import MAX_AGE
from tests.portal.test_preview_warmer import SCHEDULED

NOV = Month(2025, 11)


def cached_figures(tenant_id: str, period: str) -> dict | None:
    return (
        dynamodb_client()
        .get_item(
            TableName=container.settings().billing_table,
            Key={"pk": {"S": f"PREVIEW#{tenant_id}"}, "sk": {"S": f"METRICS#{period}"}},
        )
        .get("Item")
    )


def more_gpu_jobs(tenant_id: str, at: str = "2025-11-20T05:00:00Z") -> None:
    """Forty more GPU jobs (and their seconds) at ``at``, before any time the page reads to."""
    when = parse_instant(at)
    jobs = [e for e in metered_events(tenant_id) if e.type == "gpu_job"][:40]
    container.usage_store().insert_events(
        [e._replace(event_id=f"{e.event_id}-more", timestamp=when, accepted_at=when) for e in jobs]
    )


def fresh(tenant_id: str, end=NOW) -> list[dict]:
    """The page's figures read straight from the rollups to ``end``, as the page data lists them."""
    tenant = container.tenants().get(tenant_id)
    assert tenant is not None
    asked = metrics_shown(tenant, container.plan_catalog(), NOV)
    usage = ClickHouseMetricRollups(container.usage_store()).month(tenant_id, asked, NOV.start, end)
    return [m.to_json() for m in usage]


def test_a_second_request_within_the_max_age_serves_the_cached_figures(portal, metered, clock):
    # Given gpuco's page was opened once: its figures are read and cached as of 15:30
    token = portal.token(metered)
    first = json.loads(portal.data(token)["body"])
    assert first["metrics"] == fresh(metered)
    assert first["metrics_as_of"] == "2025-11-20T15:30:00Z"
    assert cached_figures(metered, "2025-11")["computed_at"]["S"] == "2025-11-20T15:30:00Z"
    # When more GPU jobs arrive and the page is asked again one second short of the max age
    more_gpu_jobs(metered)
    clock(NOW + timedelta(seconds=MAX_AGE - 1))
    second = json.loads(portal.data(token)["body"])
    # Then the figures are exactly the cached ones (the new jobs not read), as of the first request
    assert second["metrics"] == first["metrics"]
    assert second["metrics"] != fresh(metered, NOW + timedelta(seconds=MAX_AGE - 1))
    assert second["metrics_as_of"] == "2025-11-20T15:30:00Z"
    # And the page says so in words
    assert (
        "What your plan charges for, so far this month, as of 15:30 UTC. A charge"
        in portal.page(token)["body"]
    )


def test_after_the_max_age_the_figures_are_read_again(portal, metered, clock):
    # Given cached figures and GPU jobs that arrived after them
    token = portal.token(metered)
    first = json.loads(portal.data(token)["body"])
    more_gpu_jobs(metered)
    # When the page is asked the max age later
    later = NOW + timedelta(seconds=MAX_AGE)
    clock(later)
    second = json.loads(portal.data(token)["body"])
    # Then the figures are read again: they include the new jobs and equal a fresh read
    assert second["metrics"] == fresh(metered, later) != first["metrics"]
    assert second["metrics_as_of"] == "2025-11-20T15:35:00Z"
    assert cached_figures(metered, "2025-11")["computed_at"]["S"] == "2025-11-20T15:35:00Z"


def test_a_tenant_record_change_invalidates_the_cached_figures(portal, metered, clock):
    # Given gpuco's cached figures and GPU jobs that arrived after them
    token = portal.token(metered)
    first = json.loads(portal.data(token)["body"])
    more_gpu_jobs(metered)
    # When gpuco's record changes, a minute later
    tenant = container.tenants().get(metered)
    assert tenant is not None
    container.tenants().save(tenant.model_copy(update={"name": "GPU Company"}))
    clock(NOW + timedelta(seconds=60))
    second = json.loads(portal.data(token)["body"])
    # Then the figures are read again, with the new jobs
    assert second["metrics"] == fresh(metered, NOW + timedelta(seconds=60)) != first["metrics"]
    assert second["metrics_as_of"] == "2025-11-20T15:31:00Z"


def test_a_past_period_is_cached_apart_and_states_no_as_of_time(portal, metered, clock):
    # Given gpuco's current month and October were both shown
    token = portal.token(metered)
    json.loads(portal.data(token)["body"])
    october = json.loads(portal.data(token, "2025-10")["body"])
    # Then each period has its own entry, and October's page names the month, not a time
    assert cached_figures(metered, "2025-11") is not None and cached_figures(metered, "2025-10") is not None
    assert october["metrics_as_of"] == "2025-11-20T15:30:00Z"
    html = portal.page(token, "2025-10")["body"]
    assert "What your plan charges for, in October 2025 (UTC days)" in html


def test_the_warmer_caches_the_figures_of_each_tenant_it_warms(portal, metered, lambda_context, clock):
    # Given gpuco's page was opened at 15:30 and its cached figures have since expired
    token = portal.token(metered)
    json.loads(portal.data(token)["body"])
    run_at = NOW + timedelta(seconds=MAX_AGE + 60)
    clock(run_at)
    # And gpuco ran GPU jobs five minutes before the warmer runs
    more_gpu_jobs(metered, "2025-11-20T15:31:00Z")
    # When the warmer runs
    summary = load_handler("portal_warm").handler(SCHEDULED, lambda_context)
    # Then gpuco's figures were read into the cache as of the run, with the recent jobs
    assert summary["figures_warmed"] >= 1
    assert cached_figures(metered, "2025-11")["computed_at"]["S"] == "2025-11-20T15:36:00Z"
    warmed = fresh(metered, run_at)
    # And a second run right after computes nothing again
    assert load_handler("portal_warm").handler(SCHEDULED, lambda_context)["figures_warmed"] == 0
    # When more jobs arrive after the run and the page is asked a minute later
    more_gpu_jobs(metered, "2025-11-20T15:36:30Z")
    clock(run_at + timedelta(seconds=60))
    data = json.loads(portal.data(token)["body"])
    # Then the page shows the warmed figures, as of the run
    assert data["metrics"] == warmed and data["metrics_as_of"] == "2025-11-20T15:36:00Z"


def test_figures_round_trip_exactly_days_and_missing_values_included(portal, metered):
    # Given gpuco's figures per local day for November, and for October (no events: no value yet)
    tenant = container.tenants().get(metered)
    assert tenant is not None
    rollups = ClickHouseMetricRollups(container.usage_store())
    for month in (NOV, Month(2025, 10)):
        asked = metrics_shown(tenant, container.plan_catalog(), month)
        computed = rollups.month(
            metered, asked, month.start, min(NOW, month.end), daily=True, zone="Asia/Kolkata"
        )
        # When they are written as the cache stores them and read back
        stored = json.loads(json.dumps(figures_json(computed)))
        read = figures_from_json(stored, asked)
        # Then every quantity, missing value and day reads back exactly, in order
        assert _exact(read) == _exact(computed)
    assert any(
        g.quantity is None for m in rollups.month(metered, asked, month.start, month.end) for g in m.groups
    )


def _exact(figures: list[MetricUsage]) -> list[tuple]:
    return [
        (
            m.metric,
            m.group_by,
            [(g.values, g.quantity, list(g.days.items()), str(g.quantity)) for g in m.groups],
        )
        for m in figures
    ]


def test_no_metric_figures_are_cached_for_a_plan_without_catalog_metrics(portal):
    # When acme (a plan with no catalog metric) opens its page
    data = json.loads(portal.data(portal.token("acme"))["body"])
    # Then there is no figure, no as-of time for them, and nothing cached
    assert data["metrics"] == [] and data["metrics_as_of"] is None
    assert cached_figures("acme", "2025-11") is None
    assert Decimal(data["total"]) >= 0


def test_figures_too_large_for_an_item_are_not_cached_and_the_request_goes_on(portal):
    # Given figures of thousands of groups, over DynamoDB's 400 KB item
    store = DynamoMetricFiguresStore(container.settings().billing_table)
    groups = [{"values": [f"user-{i:06d}" * 4], "quantity": "1.5", "days": []} for i in range(12000)]
    huge = CachedFigures([{"metric": "m", "group_by": ["user"], "groups": groups}], NOW, "t", "a")
    # When they are stored
    store.put("acme", NOV, huge)
    # Then nothing is cached (the page reads them again next time) and no error is raised
    assert store.get("acme", NOV) is None
