"""The usage page's per-day, per-model and corrections figures, cached beside the preview with its
stated staleness (billing.portal.usage_cache), and a cache hit's reads: one BatchGetItem for every
keyed item (billing.portal.page_reads), the credits and alerts queries, and nothing from ClickHouse.

Evidence that a request did not read ClickHouse is timing-free, as in test_preview_cache: usage
stored after the figures were cached is absent from the page's days and models (read again it
would be there), and the cached item keeps its first computed_at; a hit's calls are counted."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import botocore.client
import pytest

from billing.adapters.aws.clients import dynamodb_client
from billing.adapters.clickhouse.portal_queries import ClickHouseUsageRollups
from billing.kernel.periods import Month, parse_instant
from billing.portal.usage import days_end
from billing.runtime import container
from tests.metering.conftest import load_handler
from tests.portal.conftest import NOW, usage
from tests.portal.test_preview_cache import MAX_AGE, more_usage
from tests.portal.test_preview_warmer import SCHEDULED
from tests.portal.test_tenant_periods import KOLKATA_NOVEMBER, calendar
from tests.rating.helpers import make_tenant

NOV = Month(2025, 11)


def cached_usage(tenant_id: str, period: str) -> dict | None:
    return (
        dynamodb_client()
        .get_item(
            TableName=container.settings().billing_table,
            Key={"pk": {"S": f"PREVIEW#{tenant_id}"}, "sk": {"S": f"USAGE#{period}"}},
        )
        .get("Item")
    )


def fresh(tenant_id: str, at: datetime) -> dict[str, Any]:
    """The days and models read straight from the rollup as at ``at``, as the page's JSON lists them."""
    rollup = ClickHouseUsageRollups(container.usage_store()).period(
        tenant_id, NOV.start, days_end(NOV, at), "UTC"
    )
    return {
        "days": [
            {"day": d.day.isoformat(), "queries": d.queries, "cost_usd": f"{d.cost_usd:f}"}
            for d in rollup.days
        ],
        "models": [
            {
                "model": m.model,
                "events": m.events,
                "queries": m.queries,
                "input_tokens": m.input_tokens,
                "output_tokens": m.output_tokens,
                "cost_usd": f"{m.cost_usd:f}",
            }
            for m in rollup.models
        ],
    }


def shown(data: dict[str, Any]) -> dict[str, Any]:
    return {"days": data["days"], "models": data["models"]}


@pytest.fixture
def calls() -> Iterator[Counter[str]]:
    """Every AWS operation and ClickHouse query made while the test runs, counted by name."""
    counted: Counter[str] = Counter()
    make_api_call = botocore.client.BaseClient._make_api_call
    client = container.usage_store().client
    query = client.query

    def aws(self: Any, operation: str, params: dict[str, Any]) -> Any:
        counted[operation] += 1
        return make_api_call(self, operation, params)

    def clickhouse(*args: Any, **kwargs: Any) -> Any:
        counted["clickhouse"] += 1
        return query(*args, **kwargs)

    botocore.client.BaseClient._make_api_call = aws  # type: ignore[method-assign]
    client.query = clickhouse
    yield counted
    botocore.client.BaseClient._make_api_call = make_api_call  # type: ignore[method-assign]
    del client.query


def test_a_first_request_reads_the_figures_and_caches_them(portal):
    # Given acme's page has never been opened (nothing cached)
    assert cached_usage("acme", "2025-11") is None
    # When it is opened
    data = json.loads(portal.data(portal.token("acme"))["body"])
    # Then its days and models are those of the rollup as of now, and they are cached as of now
    assert shown(data) == fresh("acme", NOW)
    assert data["usage_as_of"] == "2025-11-20T15:30:00Z"
    item = cached_usage("acme", "2025-11")
    assert item is not None and item["computed_at"]["S"] == "2025-11-20T15:30:00Z"


def test_a_second_request_within_the_max_age_serves_the_cached_figures(portal, clock):
    # Given acme's page was opened once at 15:30
    token = portal.token("acme")
    first = json.loads(portal.data(token)["body"])
    # When usage arrives and the page is asked again one second short of the max age
    more_usage("acme")
    clock(NOW + timedelta(seconds=MAX_AGE - 1))
    second = json.loads(portal.data(token)["body"])
    # Then the days and models are exactly the cached ones (the new usage not read), as of 15:30
    assert shown(second) == shown(first) != fresh("acme", NOW + timedelta(seconds=MAX_AGE - 1))
    assert second["usage_as_of"] == "2025-11-20T15:30:00Z"
    assert cached_usage("acme", "2025-11")["computed_at"]["S"] == "2025-11-20T15:30:00Z"
    # And the page says so in words
    assert "Per day and per model as of 15:30 UTC" in portal.page(token)["body"]


def test_after_the_max_age_the_figures_are_read_again(portal, clock):
    # Given cached figures and usage that arrived after them
    token = portal.token("acme")
    first = json.loads(portal.data(token)["body"])
    more_usage("acme")
    # When the page is asked the max age later
    later = NOW + timedelta(seconds=MAX_AGE)
    clock(later)
    second = json.loads(portal.data(token)["body"])
    # Then the figures are read again: they include the new usage and equal a fresh read
    assert shown(second) == fresh("acme", later) != shown(first)
    assert second["usage_as_of"] == "2025-11-20T15:35:00Z"
    assert cached_usage("acme", "2025-11")["computed_at"]["S"] == "2025-11-20T15:35:00Z"


def test_a_tenant_record_change_or_a_new_day_reads_them_again(portal, clock):
    # Given acme's cached figures and usage that arrived after them
    token = portal.token("acme")
    json.loads(portal.data(token)["body"])
    more_usage("acme")
    # When acme's record changes, a minute later
    tenant = container.tenants().get("acme")
    assert tenant is not None
    container.tenants().save(tenant.model_copy(update={"name": "Acme Ltd"}))
    clock(NOW + timedelta(seconds=60))
    # Then the figures are read again
    assert shown(json.loads(portal.data(token)["body"])) == fresh("acme", NOW + timedelta(seconds=60))
    # When the next day starts a minute after figures were cached
    midnight = parse_instant("2025-11-21T00:00:00Z")
    clock(midnight - timedelta(seconds=60))
    token = portal.token("acme")  # the first link has expired by then
    before = json.loads(portal.data(token)["body"])
    clock(midnight + timedelta(seconds=60))
    after = json.loads(portal.data(token)["body"])
    # Then the new day's page lists the new day (its span changed: read again)
    assert [d["day"] for d in after["days"]][-1] == "2025-11-21" != [d["day"] for d in before["days"]][-1]
    assert after["usage_as_of"] == "2025-11-21T00:01:00Z"


def test_a_hit_makes_one_batched_read_and_no_clickhouse_query(portal, clock, calls):
    # Given acme's page was opened once (everything cached)
    token = portal.token("acme")
    portal.data(token)
    # When it is asked again a minute later
    clock(NOW + timedelta(seconds=60))
    calls.clear()
    data = json.loads(portal.data(token)["body"])
    # Then every keyed item came in one BatchGetItem, beside the credits and alerts queries, and
    # nothing was read from ClickHouse
    assert calls == Counter({"BatchGetItem": 1, "Query": 2}), calls
    assert data["usage_as_of"] == data["as_of"] == "2025-11-20T15:30:00Z"


def test_a_calendar_tenant_s_hit_is_one_batched_read_too(portal, clock, calls):
    # Given a Kolkata tenant with usage, whose page was opened once (its keys not a UTC month's)
    make_tenant("india", [("starter", "2025-09-30T18:30:00Z")], calendars=calendar("Asia/Kolkata"))
    container.usage_store().insert_events(usage("india", "2025-11-01T00:00:00Z", 10, 5))
    token = portal.token("india")
    calls.clear()
    first = json.loads(portal.data(token)["body"])
    assert first["month"] == KOLKATA_NOVEMBER
    assert calls["BatchGetItem"] == 2  # the UTC month's keys first, then its period's
    # When it is asked again a minute later
    clock(NOW + timedelta(seconds=60))
    calls.clear()
    second = json.loads(portal.data(token)["body"])
    # Then it is one batched read, nothing from ClickHouse, and the same cached figures
    assert calls == Counter({"BatchGetItem": 1, "Query": 2}), calls
    assert shown(second) == shown(first) and second["usage_as_of"] == "2025-11-20T15:30:00Z"
    assert cached_usage("india", KOLKATA_NOVEMBER) is not None


def test_the_warmer_caches_the_figures_of_each_tenant_it_warms(portal, lambda_context, clock):
    # Given acme's page was opened at 15:30 and its cached figures have since expired
    token = portal.token("acme")
    json.loads(portal.data(token)["body"])
    run_at = NOW + timedelta(seconds=MAX_AGE + 60)
    clock(run_at)
    # And acme used the service five minutes before the warmer runs
    events = usage("acme", "2025-11-20T00:00:00Z", 1, 3, ids="recent")
    at = run_at - timedelta(minutes=5)
    container.usage_store().insert_events([e._replace(timestamp=at, accepted_at=at) for e in events])
    # When the warmer runs
    summary = load_handler("portal_warm").handler(SCHEDULED, lambda_context)
    # Then acme's figures were read into the cache as of the run, with the recent usage
    assert summary["usage_warmed"] >= 1
    assert cached_usage("acme", "2025-11")["computed_at"]["S"] == "2025-11-20T15:36:00Z"
    warmed = fresh("acme", run_at)
    # And a second run right after reads nothing again
    assert load_handler("portal_warm").handler(SCHEDULED, lambda_context)["usage_warmed"] == 0
    # When more usage arrives after the run and the page is asked a minute later
    more_usage("acme")
    clock(run_at + timedelta(seconds=60))
    data = json.loads(portal.data(token)["body"])
    # Then the page shows the warmed figures, as of the run
    assert shown(data) == warmed and data["usage_as_of"] == "2025-11-20T15:36:00Z"
