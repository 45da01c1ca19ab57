"""The usage page's month-to-date preview, cached with a stated staleness (billing.portal.preview_cache).

Evidence that a request did not re-rate is timing-free: usage added after the first request is
absent from the second one's statement (rated from ClickHouse it would be there), and the cached
item in BillingTable keeps its first computed_at."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

from billing.adapters.aws.clients import dynamodb_client
from billing.kernel.periods import Month, parse_instant
from billing.runtime import container
from billing.tenants.tenant import PlanAssignment
from tests.portal.conftest import NOW, usage
from tests.portal.test_page_data import statement_route

MAX_AGE = container.settings().portal_preview_max_age_seconds


def cached_item(tenant_id: str, month: str) -> dict:
    return (
        dynamodb_client()
        .get_item(
            TableName=container.settings().billing_table,
            Key={"pk": {"S": f"PREVIEW#{tenant_id}"}, "sk": {"S": f"MONTH#{month}"}},
        )
        .get("Item")
    )


def more_usage(tenant_id: str) -> None:
    """One more day of usage (21 November, before nothing the page has read)."""
    container.usage_store().insert_events(usage(tenant_id, "2025-11-19T00:00:00Z", 1, 40, seed=9, ids="more"))


def test_a_second_request_within_the_max_age_serves_the_cached_preview(portal, lambda_context, clock):
    # Given acme's page was opened once: its preview is rated and stored
    token = portal.token("acme")
    first = json.loads(portal.data(token)["body"])
    item = cached_item("acme", "2025-11")
    assert item is not None and item["computed_at"]["S"] == "2025-11-20T15:30:00Z"
    # And the cached statement is exactly the computed one (Decimals as text, round trip exact)
    assert json.loads(item["body"]["S"]) == first["statement"]
    assert first["as_of"] == "2025-11-20T15:30:00Z"
    # When usage arrives and the page is asked again one second short of the max age
    more_usage("acme")
    clock(NOW + timedelta(seconds=MAX_AGE - 1))
    second = json.loads(portal.data(token)["body"])
    # Then the statement is the cached one (the new usage not rated), as of the first request
    assert second["statement"] == first["statement"]
    assert second["as_of"] == "2025-11-20T15:30:00Z"
    assert cached_item("acme", "2025-11")["computed_at"]["S"] == "2025-11-20T15:30:00Z"
    # And the page says so in words
    html = portal.page(token)["body"]
    assert "Preview as of 15:30 UTC" in html
    assert "as of 15:30 UTC. Amounts in USD." in html


def test_after_the_max_age_the_preview_is_rated_again(portal, lambda_context, clock):
    # Given a cached preview and usage that arrived after it
    token = portal.token("acme")
    first = json.loads(portal.data(token)["body"])
    more_usage("acme")
    # When the page is asked the max age later
    later = NOW + timedelta(seconds=MAX_AGE)
    clock(later)
    second = json.loads(portal.data(token)["body"])
    # Then the preview is rated again: it includes the new usage and equals the statements route
    assert Decimal(second["total"]) > Decimal(first["total"])
    assert second["statement"] == statement_route("acme", "2025-11", lambda_context)["statement"]
    assert second["as_of"] == "2025-11-20T15:35:00Z"
    assert cached_item("acme", "2025-11")["computed_at"]["S"] == "2025-11-20T15:35:00Z"
    assert "Preview as of 15:35 UTC" in portal.page(token)["body"]


def test_a_preview_from_the_day_before_says_its_date(portal, lambda_context, clock):
    # Given acme's preview was rated two minutes before midnight (UTC, its page's zone)
    clock(parse_instant("2025-11-20T23:58:00Z"))
    token = portal.token("acme")
    assert json.loads(portal.data(token)["body"])["as_of"] == "2025-11-20T23:58:00Z"
    # When the page is read a few minutes later, the next day, while that preview is still served
    clock(parse_instant("2025-11-21T00:01:00Z"))
    html = portal.page(token)["body"]
    # Then its "as of" says the day too: a time alone would read as today's
    assert "Preview as of 20 Nov 2025, 23:58 UTC<" in html
    assert "as of 20 Nov 2025, 23:58 UTC. Amounts in USD." in html


def test_an_as_of_time_is_dated_only_when_it_is_not_of_the_local_day():
    from billing.portal.page import as_of_text

    now = parse_instant("2025-11-20T15:30:00Z")  # 21:00 in Kolkata
    # Then a time of the same local day reads as a time, one of another local day with its date
    assert as_of_text(parse_instant("2025-11-20T15:25:00Z"), now, "Asia/Kolkata") == "20:55 Asia/Kolkata"
    assert as_of_text(parse_instant("2025-11-19T18:29:00Z"), now, "Asia/Kolkata") == (
        "19 Nov 2025, 23:59 Asia/Kolkata"
    )
    assert as_of_text(parse_instant("2025-11-19T18:30:00Z"), now, "Asia/Kolkata") == "00:00 Asia/Kolkata"
    assert as_of_text(parse_instant("2025-11-19T23:00:00Z"), now, "UTC") == "19 Nov 2025, 23:00 UTC"


def test_a_plan_change_invalidates_the_cached_preview(portal, lambda_context, clock):
    # Given acme's cached preview on the starter plan
    token = portal.token("acme")
    first = json.loads(portal.data(token)["body"])
    # When acme moves to pro on 10 November, a minute later
    tenant = container.tenants().get("acme")
    assert tenant is not None
    moved = PlanAssignment(plan="pro", effective_at=parse_instant("2025-11-10T00:00:00Z"))
    container.tenants().save(tenant.model_copy(update={"plans": [*tenant.plans, moved]}))
    clock(NOW + timedelta(seconds=60))
    second = json.loads(portal.data(token)["body"])
    # Then the page's preview is rated again on the new plan history, as the statements route says
    assert second["statement"] == statement_route("acme", "2025-11", lambda_context)["statement"]
    assert second["statement"] != first["statement"]
    assert second["as_of"] == "2025-11-20T15:31:00Z"


def test_a_closed_month_reads_its_stored_statement_not_the_cache(portal, lambda_context, clock):
    # Given October's preview was cached while October was open
    token = portal.token("acme")
    json.loads(portal.data(token, "2025-10")["body"])
    assert cached_item("acme", "2025-10") is not None
    # When October is closed and the page asked again within the max age
    container.billing_cycle().close(Month.parse("2025-10"))
    data = json.loads(portal.data(token, "2025-10")["body"])
    # Then the stored statement is shown, with no "as of"
    assert data["preview"] is False and data["as_of"] is None
    assert data["statement"] == statement_route("acme", "2025-10", lambda_context)["statement"]
