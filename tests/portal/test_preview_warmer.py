"""The usage page's previews kept warm by PortalWarmFunction (billing.portal.preview_warmer).

Evidence that a page request did not rate is timing-free, as in test_preview_cache: usage stored
after the warmer ran is absent from the page's statement, and the cached item keeps the warmer's
computed_at."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from billing.runtime import container
from billing.runtime.settings import get_settings
from billing_local.template import PROJECT_ROOT
from tests.metering.conftest import load_handler
from tests.portal.conftest import NOW, usage
from tests.portal.test_page_data import statement_route
from tests.portal.test_preview_cache import MAX_AGE, cached_item, more_usage
from tests.portal.test_tenant_periods import KOLKATA_NOVEMBER, calendar
from tests.rating.helpers import make_tenant

SCHEDULED = json.loads((PROJECT_ROOT / "events" / "portal_warm.json").read_text())


def recent_usage(tenant_id: str, minutes_ago: int, ids: str) -> None:
    """A few events timestamped ``minutes_ago`` before the warmer's run."""
    events = usage(tenant_id, "2025-11-20T00:00:00Z", 1, 3, ids=ids)
    at = NOW + timedelta(seconds=MAX_AGE + 60) - timedelta(minutes=minutes_ago)
    container.usage_store().insert_events([e._replace(timestamp=at, accepted_at=at) for e in events])


def warm(lambda_context) -> dict:
    return load_handler("portal_warm").handler(SCHEDULED, lambda_context)


def test_after_a_warm_run_the_page_reads_the_cache_and_does_not_rate(portal, lambda_context, clock):
    # Given acme's page was opened at 15:30 and its cached preview has since expired
    token = portal.token("acme")
    json.loads(portal.data(token)["body"])
    run_at = NOW + timedelta(seconds=MAX_AGE + 60)
    clock(run_at)
    # And acme sent usage five minutes before the warmer runs
    recent_usage("acme", 5, "recent")
    # When the warmer runs
    summary = warm(lambda_context)
    # Then acme's preview was rated into the cache as of the run, with the recent usage
    assert summary["month"] == "2025-11" and summary["warmed"] >= 1 and summary["skipped"] == 0
    assert cached_item("acme", "2025-11")["computed_at"]["S"] == "2025-11-20T15:36:00Z"
    warmed = statement_route("acme", "2025-11", lambda_context)["statement"]
    # When usage arrives after the run and the page is asked a minute later
    more_usage("acme")
    clock(run_at + timedelta(seconds=60))
    data = json.loads(portal.data(token)["body"])
    # Then the page shows the warmed preview (the later usage not rated), as of the warmer's run
    assert data["statement"] == warmed
    assert data["as_of"] == "2025-11-20T15:36:00Z"
    assert cached_item("acme", "2025-11")["computed_at"]["S"] == "2025-11-20T15:36:00Z"


def test_a_second_run_right_after_rates_nothing(portal, lambda_context, clock):
    # Given acme with recent usage and a warm run at 15:36
    clock(NOW + timedelta(seconds=MAX_AGE + 60))
    recent_usage("acme", 5, "recent")
    first = warm(lambda_context)
    assert first["warmed"] >= 1
    # When the run is repeated ten seconds later (a duplicate schedule delivery)
    clock(NOW + timedelta(seconds=MAX_AGE + 70))
    second = warm(lambda_context)
    # Then nothing is rated again: every preview it would warm is kept as the first run left it
    assert second["warmed"] == 0 and second["kept"] == first["warmed"]
    assert cached_item("acme", "2025-11")["computed_at"]["S"] == "2025-11-20T15:36:00Z"


def test_a_tenant_without_recent_usage_is_not_warmed(portal, lambda_context, clock):
    # Given acme's last usage is from the previous day's buckets only (nothing in the last hour)
    clock(NOW + timedelta(days=1, hours=2))  # 21 November, 17:30: acme and globex quiet since the 20th
    # When the warmer runs
    summary = warm(lambda_context)
    # Then no preview is rated
    assert summary["warmed"] == 0
    assert cached_item("acme", "2025-11") is None and cached_item("globex", "2025-11") is None


@pytest.fixture
def one_per_run(portal, monkeypatch):
    """PORTAL_WARM_MAX_TENANTS=1, read when the warmer is first built."""
    monkeypatch.setenv("PORTAL_WARM_MAX_TENANTS", "1")
    get_settings.cache_clear()


def test_a_run_rates_at_most_its_bound_and_names_the_tenants_it_skipped(
    one_per_run, portal, lambda_context, clock, caplog
):
    # Given two tenants with recent usage, acme with more events, and a bound of one tenant a run
    clock(NOW + timedelta(seconds=MAX_AGE + 60))
    recent_usage("acme", 5, "recent")
    recent_usage("acme", 4, "recent-2")
    recent_usage("globex", 3, "recent")
    # When the warmer runs
    summary = warm(lambda_context)
    # Then acme (the most events) is warmed, globex is skipped and the log names it
    assert summary["warmed"] == 1 and summary["skipped"] == 1
    assert cached_item("acme", "2025-11") is not None and cached_item("globex", "2025-11") is None
    assert "globex" in caplog.text


def test_the_schedule_and_the_budget_fit_inside_the_max_age():
    # Given the template's schedule of PortalWarmFunction and the default settings
    from billing_local.template import load_template

    function = load_template()["Resources"]["PortalWarmFunction"]["Properties"]
    (schedule,) = [
        e["Properties"]["Schedule"] for e in function["Events"].values() if e["Type"] == "Schedule"
    ]
    settings = container.settings()
    # Then the container's interval is the template's, and a run reaches each tenant (within its
    # budget plus one rating of the largest measured tenant, 11 s) before the preview expires
    assert schedule == f"rate({container.PORTAL_WARM_INTERVAL_S // 60} minutes)"
    largest_rating_s = 11
    assert (
        container.PORTAL_WARM_INTERVAL_S + settings.portal_warm_budget_seconds + largest_rating_s
        < settings.portal_preview_max_age_seconds
    )
    # And the function's timeout lets the last rating started within the budget finish
    assert function["Timeout"] >= settings.portal_warm_budget_seconds + largest_rating_s


def test_a_calendar_tenant_is_warmed_for_the_period_its_page_shows(portal, lambda_context, clock):
    # Given a Kolkata calendar-monthly tenant that sent usage five minutes before the warmer runs
    make_tenant("india", [("starter", "2025-09-30T18:30:00Z")], calendars=calendar("Asia/Kolkata"))
    run_at = NOW + timedelta(seconds=MAX_AGE + 60)
    clock(run_at)
    recent_usage("india", 5, "india-recent")
    # When the warmer runs
    warm(lambda_context)
    # Then the preview cached is that of its Kolkata November (the period its page shows), not of
    # the UTC month, and the page a minute later shows it as of the warmer's run
    assert cached_item("india", KOLKATA_NOVEMBER)["computed_at"]["S"] == "2025-11-20T15:36:00Z"
    assert cached_item("india", "2025-11") is None
    clock(run_at + timedelta(seconds=60))
    data = json.loads(portal.data(portal.token("india"))["body"])
    assert data["as_of"] == "2025-11-20T15:36:00Z"
