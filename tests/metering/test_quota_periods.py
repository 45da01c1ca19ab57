"""Quotas of a tenant with a billing calendar count per its own period and reset at its start in its
time zone; the 429 and the quota route report that instant (default tenants: tests next to this)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from billing.kernel.calendar import Calendar
from billing.kernel.periods import iso
from billing.tenants.calendar_settings import CalendarSetting
from billing_local.runner import load_module, response_headers
from tests.conftest import api_event
from tests.metering.conftest import make_tenant, usage

KOLKATA = [CalendarSetting.of(Calendar("Asia/Kolkata"), None)]


@pytest.fixture(scope="module")
def status_app():
    return load_module("tenant_status")


def test_a_kolkata_quota_resets_at_local_midnight_on_the_1st_not_at_utc_midnight(env, post):
    # Given a Kolkata tenant with a quota of 3 queries a period, and a UTC tenant with the same quota
    make_tenant("india", quota=3, calendars=KOLKATA)
    make_tenant("acme", quota=3)
    for tenant in ("india", "acme"):
        # When each sends 3 queries late on 30 November in Kolkata (before 18:30 UTC)
        batch = [usage(f"{tenant}-{i}", tenant, ts=f"2025-11-30T18:29:5{i}Z") for i in range(3)]
        assert post({"events": batch})[0] == 202
    # Then the Kolkata tenant's 4th query in its November is refused, reporting its reset at 00:00
    # on 1 December in Kolkata (18:30 UTC)
    status, body, _ = post({"events": [usage("india-3", "india", ts="2025-11-30T18:29:59.999Z")]})
    assert status == 429 and (body["used"], body["resets_at"]) == (3, "2025-11-30T18:30:00Z")
    # And a query at that local midnight counts in its December, so it is accepted
    assert post({"events": [usage("india-4", "india", ts="2025-11-30T18:30:00Z")]})[0] == 202
    # While the UTC tenant's query at the same instant is still in its November: refused until 1 December
    status, body, _ = post({"events": [usage("acme-4", "acme", ts="2025-11-30T18:30:00Z")]})
    assert status == 429 and body["resets_at"] == "2025-12-01T00:00:00Z"


def test_the_quota_route_reads_the_period_counter_and_its_local_reset(env, post, status_app, lambda_context):
    # Given a Kolkata tenant with 2 queries now
    make_tenant("india", plan="free", calendars=KOLKATA)
    now = datetime.now(UTC)
    assert post({"events": [usage(f"q{i}", "india", ts=iso(now)) for i in range(2)]})[0] == 202
    # When the gate reads its quota
    event = api_event("", method="GET", path="/v1/tenants/india/quota", api_key_id="platform-key")
    event["resource"] = "/v1/tenants/{tenant_id}/quota"
    event["pathParameters"] = {"tenant_id": "india"}
    response = status_app.handler(event, lambda_context)
    body = json.loads(response["body"])
    # Then it is this Kolkata period's count, resetting at the period's end (local midnight on the 1st)
    period = Calendar("Asia/Kolkata").period_of(now)
    assert response["statusCode"] == 200 and response_headers(response)["Cache-Control"] == "no-store"
    assert (body["used"], body["limit"], body["resets_at"]) == (2, 100, iso(period.end))
    assert period.local_end().strftime("%d %H:%M") == "01 00:00"
