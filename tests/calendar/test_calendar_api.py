"""The billing calendar through the tenants API (API Gateway events, the real handler, moto): set at
signup, read, changed from the next period boundary, validated field by field."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from billing.kernel.calendar import Calendar
from billing.runtime import container
from tests.conftest import api_event
from tests.metering.conftest import load_handler


@pytest.fixture(scope="module")
def tenants_app() -> Any:
    return load_handler("tenants_api")


@pytest.fixture
def call(tenants_app, lambda_context):
    def _call(
        method: str, path: str, body: Any = None, *, api_key_id: str = "platform-key"
    ) -> tuple[int, dict]:
        event = api_event(body if body is not None else "", path=path, method=method, api_key_id=api_key_id)
        response = tenants_app.handler(event, lambda_context)
        return response["statusCode"], json.loads(response["body"])

    return _call


SIGNUP = {
    "id": "acme",
    "plan": "starter",
    "effective_at": "2026-01-31T10:00:00Z",
    "api_key_ids": ["acme-key"],
}


def test_a_tenant_without_settings_is_on_utc_calendar_months(env, call):
    # Given a tenant signed up with no calendar settings
    status, tenant = call("POST", "/v1/tenants", SIGNUP)
    # Then nothing is stored for its calendar, and the calendar read is UTC months
    assert status == 201 and tenant["calendars"] == []
    status, view = call("GET", "/v1/tenants/acme/calendar")
    assert status == 200
    assert (view["time_zone"], view["anchor"], view["interval"]) == ("UTC", "calendar", "month")
    assert view["scheduled"] is None
    assert container.tenants().get("acme").calendar_history().initial == Calendar()


def test_a_signup_anniversary_in_a_time_zone_applies_from_the_start(env, call):
    # Given a Kolkata tenant signed up on 31 January 15:30 local, anchored on its signup
    status, tenant = call(
        "POST",
        "/v1/tenants",
        {**SIGNUP, "time_zone": "Asia/Kolkata", "anchor": "signup", "interval": "month"},
    )
    # Then the stored calendar is that anniversary from the start
    assert status == 201
    assert tenant["calendars"] == [
        {
            "time_zone": "Asia/Kolkata",
            "anchor": "2026-01-31T10:00:00Z",
            "interval": "month",
            "effective_at": None,
        }
    ]
    # And its periods run from the 31st (the last day of shorter months) at 15:30 local
    history = container.tenants().get("acme").calendar_history()
    february = history.period_of(container.tenants().get("acme").first_plan_at())
    assert february.label() == "31 Jan 2026 15:30 – 28 Feb 2026 15:30 (Asia/Kolkata)"
    # And the tenant's own key reads it
    status, view = call("GET", "/v1/tenants/acme/calendar", api_key_id="acme-key")
    assert status == 200 and view["anchor"] == "2026-01-31T10:00:00Z"
    assert call("GET", "/v1/tenants/acme/calendar", api_key_id="other-key")[0] == 403


def test_a_change_applies_from_the_end_of_the_period_it_is_made_in(env, call):
    # Given a UTC monthly tenant
    call("POST", "/v1/tenants", SIGNUP)
    # When it moves to Los Angeles weekly periods on 10 February
    status, view = call(
        "POST",
        "/v1/tenants/acme/calendar",
        {"time_zone": "America/Los_Angeles", "interval": "week", "at": "2026-02-10T12:00:00Z"},
    )
    # Then February stays a whole UTC month and the change is scheduled for 1 March 00:00 UTC
    assert status == 200
    assert view["current_period"]["key"] == "2026-02"
    assert view["scheduled"] == {
        "time_zone": "America/Los_Angeles",
        "anchor": "calendar",
        "interval": "week",
        "effective_at": "2026-03-01T00:00:00Z",
    }
    # And the first period after it is short: to the next Monday 00:00 in Los Angeles (2 March 08:00 UTC)
    history = container.tenants().get("acme").calendar_history()
    first = history.period_of(history.changes[0].effective_at)
    assert first.key == "2026-03-01T00:00:00Z/2026-03-02T08:00:00Z"
    assert first.fraction == Decimal(32 * 3600) / Decimal(7 * 86400)
    assert first.seconds == 32 * 3600 and first.full().seconds == 7 * 86400
    # And a later change of the interval alone keeps the scheduled zone
    status, view = call(
        "POST", "/v1/tenants/acme/calendar", {"interval": "quarter", "at": "2026-02-11T00:00:00Z"}
    )
    assert (
        view["scheduled"]["time_zone"] == "America/Los_Angeles" and view["scheduled"]["interval"] == "quarter"
    )
    # And changing back before it takes effect cancels it
    status, view = call(
        "POST",
        "/v1/tenants/acme/calendar",
        {"time_zone": "UTC", "interval": "month", "at": "2026-02-12T00:00:00Z"},
    )
    assert status == 200 and view["scheduled"] is None
    assert container.tenants().get("acme").calendars == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"time_zone": "Mars/Olympus_Mons"}, "time_zone"),
        ({"time_zone": "+05:30"}, "time_zone"),
        ({"time_zone": 5}, "time_zone"),
        ({"anchor": "tomorrow"}, "anchor"),
        ({"anchor": "2026-02-30T00:00:00Z"}, "anchor"),
        ({"interval": "fortnight"}, "interval"),
        ({"at": "soon"}, "at"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_settings_are_a_400_naming_the_field_and_change_nothing(env, call, body, field):
    call("POST", "/v1/tenants", SIGNUP)
    before = container.tenants().get("acme")
    status, error = call("POST", "/v1/tenants/acme/calendar", body)
    assert status == 400
    assert [d["field"] for d in error["details"]] == [field]
    assert container.tenants().get("acme") == before
    # And the same at signup
    if field not in ("at", "colour"):
        status, error = call("POST", "/v1/tenants", {**SIGNUP, "id": "other", **body})
        assert status == 400 and [d["field"] for d in error["details"]] == [field]


def test_calendar_changes_are_for_platform_keys_known_tenants_and_open_periods(env, call):
    call("POST", "/v1/tenants", SIGNUP)
    assert call("POST", "/v1/tenants/acme/calendar", {"interval": "year"}, api_key_id="acme-key")[0] == 403
    assert call("POST", "/v1/tenants/nobody/calendar", {"interval": "year"})[0] == 404
    assert call("GET", "/v1/tenants/nobody/calendar")[0] == 404
    # Given February closed / Then a change made in it is a 409
    container.periods().close("2026-02", container.clock()())
    status, error = call(
        "POST", "/v1/tenants/acme/calendar", {"interval": "year", "at": "2026-02-20T00:00:00Z"}
    )
    assert status == 409 and error["details"][0]["field"] == "at"
    # And a cancelled tenant's calendar no longer changes
    call("POST", "/v1/tenants/acme/cancel", {"at": "2026-03-05T00:00:00Z"})
    status, _ = call("POST", "/v1/tenants/acme/calendar", {"interval": "year", "at": "2026-03-06T00:00:00Z"})
    assert status == 409


def test_a_repeated_signup_with_another_calendar_is_a_conflict(env, call):
    assert call("POST", "/v1/tenants", {**SIGNUP, "time_zone": "Asia/Kolkata"})[0] == 201
    assert call("POST", "/v1/tenants", {**SIGNUP, "time_zone": "Asia/Kolkata"})[0] == 200
    assert call("POST", "/v1/tenants", {**SIGNUP, "time_zone": "Europe/Paris"})[0] == 409
