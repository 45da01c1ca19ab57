"""The usage page of a tenant with a billing calendar: its own periods in the selector (keys as
values, labels in its zone), per-day figures from its local midnight, the period's stored statement
or preview, times in its zone; a key not on the page is refused naming the field."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from billing.kernel.calendar import Calendar
from billing.runtime import container
from billing.tenants.calendar_settings import CalendarSetting
from tests.rating.helpers import event, make_tenant

KOLKATA_NOVEMBER = "2025-10-31T18:30:00Z/2025-11-30T18:30:00Z"
KOLKATA_OCTOBER = "2025-09-30T18:30:00Z/2025-10-31T18:30:00Z"


def calendar(time_zone: str) -> list[CalendarSetting]:
    return [CalendarSetting.of(Calendar(time_zone), None)]


@pytest.fixture
def india(portal: Any) -> str:
    """Given a Kolkata calendar-monthly tenant on starter since its local 1 October, with queries at
    18:00 and 19:00 UTC on 10 November (23:30 on the 10th and 00:30 on the 11th in Kolkata) and one
    in its October period."""
    make_tenant("india", [("starter", "2025-09-30T18:30:00Z")], calendars=calendar("Asia/Kolkata"))
    container.usage_store().insert_events(
        [
            event("india", "in-a", "2025-11-10T18:00:00Z", cost="0.25", tokens=10),
            event("india", "in-b", "2025-11-10T19:00:00Z", cost="0.50", tokens=10),
            event("india", "in-oct", "2025-10-31T18:29:59.999Z", cost="1.00", tokens=10),
        ]
    )
    return "india"


def day_figures(data: dict[str, Any]) -> dict[str, tuple[int, Decimal]]:
    return {d["day"]: (d["queries"], Decimal(d["cost_usd"])) for d in data["days"] if d["queries"]}


def test_a_kolkata_tenant_s_days_start_at_its_local_midnight(portal: Any, india: str) -> None:
    token = portal.token(india)
    # When the page's JSON route is asked for the current period (now: 20 Nov 15:30 UTC, 21:00 local)
    response = portal.data(token)
    assert response["statusCode"] == 200, response
    data = json.loads(response["body"])
    # Then it is the tenant's November (local), and the two queries are on local days 10 and 11
    assert (data["month"], data["timezone"]) == (KOLKATA_NOVEMBER, "Asia/Kolkata")
    assert data["period"]["label"] == "2025-11 (Asia/Kolkata)"
    assert day_figures(data) == {"2025-11-10": (1, Decimal("0.25")), "2025-11-11": (1, Decimal("0.50"))}
    # And every local day from the 1st to today (the 20th, local) is listed
    assert [d["day"] for d in data["days"]] == [date(2025, 11, d).isoformat() for d in range(1, 21)]
    # And the HTML page says so: its zone in the header and the day table, the days local
    html = portal.page(token)["body"]
    assert "all times Asia/Kolkata. Updated 20 Nov 2025, 21:00 Asia/Kolkata." in html
    assert "Per day, Asia/Kolkata days" in html
    assert '<tr><th scope="row">Mon 10 Nov</th><td class="num" data-label="Queries">1</td>' in html
    assert '<tr><th scope="row">Tue 11 Nov</th><td class="num" data-label="Queries">1</td>' in html
    assert "Period-to-date cost" in html and '<label for="month">Period</label>' in html


@pytest.mark.parametrize(
    ("zone", "last_of_10th", "first_of_11th"),
    [
        ("Asia/Kathmandu", "2025-11-10T18:14:59.999Z", "2025-11-10T18:15:00Z"),  # +05:45
        ("Pacific/Marquesas", "2025-11-11T09:29:59.999Z", "2025-11-11T09:30:00Z"),  # -09:30
    ],
)
def test_a_zone_off_utc_by_a_quarter_hour_splits_its_days_at_its_own_midnight(
    portal: Any, zone: str, last_of_10th: str, first_of_11th: str
) -> None:
    # Given a tenant in that zone with a query a millisecond before and one at its local midnight
    make_tenant("zoned", [("starter", "2025-09-01T00:00:00Z")], calendars=calendar(zone))
    container.usage_store().insert_events(
        [event("zoned", "z-a", last_of_10th, cost="0.10"), event("zoned", "z-b", first_of_11th, cost="0.20")]
    )
    # When its page's data is read
    data = json.loads(portal.data(portal.token("zoned"))["body"])
    # Then each query is on its own local day
    assert data["timezone"] == zone
    assert day_figures(data) == {"2025-11-10": (1, Decimal("0.10")), "2025-11-11": (1, Decimal("0.20"))}


def test_the_selector_lists_the_tenant_s_periods_and_shows_a_closed_one_s_stored_statement(
    portal: Any, india: str
) -> None:
    # Given the tenant's October period closed (its statement stored) by the hourly run
    closed = container.tenant_period_close().close_due(datetime(2025, 11, 1, 0, 15, tzinfo=UTC))
    assert [r.period for r in closed.closed] == [KOLKATA_OCTOBER]
    stored = container.statements().get(india, KOLKATA_OCTOBER)
    assert stored is not None
    token = portal.token(india)
    # When the page lists its periods
    html = portal.page(token)["body"]
    # Then the selector holds its periods, keys as values and labels in its zone, newest first
    assert (
        f'<option value="{KOLKATA_NOVEMBER}" selected>2025-11 (Asia/Kolkata)</option>'
        f'<option value="{KOLKATA_OCTOBER}">2025-10 (Asia/Kolkata)</option></select>'
    ) in html
    # When October is chosen by its key
    data = json.loads(portal.data(token, KOLKATA_OCTOBER)["body"])
    # Then its stored statement is shown (not a preview), with its one query on its last local day
    assert data["preview"] is False
    assert data["statement"] == stored.model_dump(mode="json")
    assert day_figures(data) == {"2025-10-31": (1, Decimal("1.00"))}
    assert [p["key"] for p in data["periods"]] == [KOLKATA_NOVEMBER, KOLKATA_OCTOBER]
    # And its local month's YYYY-MM names it too (one period starts in it)
    assert json.loads(portal.data(token, "2025-10")["body"])["month"] == KOLKATA_OCTOBER
    page = portal.page(token, KOLKATA_OCTOBER)["body"]
    assert "Total invoiced" in page
    assert re.search(r"<title>Usage and invoice: [^<]*, 2025-10 \(Asia/Kolkata\)</title>", page), page[:400]


def test_the_current_period_s_statement_is_its_preview(portal: Any, india: str) -> None:
    # When the current period is shown
    data = json.loads(portal.data(portal.token(india))["body"])
    # Then its statement is the preview of that period (the tenant period's close rates it so)
    expected = container.tenant_period_close().rate(
        container.tenants().get(india), container.tenants().get(india).calendar_history().period_of(
            datetime(2025, 11, 20, tzinfo=UTC)
        ), None,
    )  # fmt: skip
    assert data["preview"] is True
    assert data["statement"]["month"] == KOLKATA_NOVEMBER
    assert Decimal(data["total"]) == expected.total
    assert [line["amount"] for line in data["statement"]["lines"]] == [
        line.model_dump(mode="json")["amount"] for line in expected.lines
    ]


@pytest.mark.parametrize("asked", ["2025-08", "2025-09-30T18:30:00Z/2025-10-31T18:30:00.001Z", "soon"])
def test_a_period_not_on_the_page_is_refused_naming_the_field(portal: Any, india: str, asked: str) -> None:
    # When the JSON route is asked for a month (before the first plan) or a key the page does not offer
    response = portal.data(portal.token(india), asked)
    # Then 400, naming the field and what may be chosen
    assert response["statusCode"] == 400, response
    body = json.loads(response["body"])
    [detail] = body["details"]
    assert detail["field"] == "month" and KOLKATA_NOVEMBER in detail["reason"]


def test_a_void_in_the_period_is_listed_and_taken_off_its_local_day(
    portal: Any, india: str, lambda_context: Any
) -> None:
    from tests.conftest import api_event
    from tests.metering.conftest import load_handler

    # Given the query at 00:30 local on 11 November voided
    correction = {
        "correction_id": "c-1",
        "tenant_id": india,
        "event_id": "in-b",
        "action": "void",
        "reason": "duplicate",
    }
    answer = load_handler("corrections").handler(
        api_event({"corrections": [correction]}, path="/v1/corrections"), lambda_context
    )
    assert answer["statusCode"] == 200, answer["body"]
    token = portal.token(india)
    # When the period's page and its October are read
    november = json.loads(portal.data(token)["body"])
    # Then November lists the correction and its local 11th has no query left; October lists none
    assert [(c["correction_id"], c["event_id"]) for c in november["corrections"]] == [("c-1", "in-b")]
    assert day_figures(november) == {"2025-11-10": (1, Decimal("0.25"))}
    assert json.loads(portal.data(token, KOLKATA_OCTOBER)["body"])["corrections"] == []
    assert "Corrections this period" in portal.page(token)["body"]


def test_an_anniversary_period_off_the_quarter_hours_splits_its_first_quarter_exactly(portal: Any) -> None:
    # Given a UTC tenant billed monthly from its signup at 10:07:13.250 on 14 October, with queries a
    # millisecond before and at its 14 November boundary, in the same quarter hour, and later
    signup = datetime(2025, 10, 14, 10, 7, 13, 250000, tzinfo=UTC)
    make_tenant(
        "anna",
        [("starter", "2025-10-14T10:07:13.250Z")],
        calendars=[CalendarSetting.of(Calendar("UTC", signup), None)],
    )
    container.usage_store().insert_events(
        [
            event("anna", "a-1", "2025-11-14T10:07:13.249Z", cost="0.1"),
            event("anna", "a-2", "2025-11-14T10:07:13.250Z", cost="0.2"),
            event("anna", "a-3", "2025-11-14T10:10:00Z", cost="0.4"),
            event("anna", "a-4", "2025-11-20T15:29:00Z", cost="0.8"),
        ]
    )
    token = portal.token("anna")
    # When its current period and the one before are read
    current = json.loads(portal.data(token)["body"])
    previous_key = current["periods"][1]["key"]
    previous = json.loads(portal.data(token, previous_key)["body"])
    # Then each query is in its own period, on its day (UTC), to the millisecond
    assert current["month"] == "2025-11-14T10:07:13.250Z/2025-12-14T10:07:13.250Z"
    assert current["period"]["label"] == "14 Nov 2025 10:07 – 14 Dec 2025 10:07"
    assert day_figures(current) == {"2025-11-14": (2, Decimal("0.6")), "2025-11-20": (1, Decimal("0.8"))}
    assert [d["day"] for d in current["days"]][0] == "2025-11-14"
    assert day_figures(previous) == {"2025-11-14": (1, Decimal("0.1"))}


def test_a_kolkata_period_reads_as_its_month_in_sentences(portal: Any, india: str) -> None:
    token = portal.token(india)
    # When india's page is read, for its current period and for October
    november = portal.page(token)["body"]
    october = portal.page(token, KOLKATA_OCTOBER)["body"]
    # Then the sentences name the period as its local month, the selector keeps the periods' labels
    assert "Queries in November 2025" in november
    assert "Preview of the statement for November 2025, as of 21:00 Asia/Kolkata." in november
    assert f'<option value="{KOLKATA_NOVEMBER}" selected>2025-11 (Asia/Kolkata)</option>' in november
    assert "Queries in October 2025" in october and "2025-10 (Asia/Kolkata)</option>" in october


def test_a_period_that_is_not_a_month_reads_as_its_local_days() -> None:
    from billing.portal.page import period_words

    # Given anniversary periods from a signup on 15 January at 10:00 in Paris, and local months
    anniversary = Calendar("Europe/Paris", anchor=datetime(2026, 1, 15, 9, 0, tzinfo=UTC))
    monthly = Calendar("Asia/Kolkata")
    at = datetime(2026, 1, 20, tzinfo=UTC)
    # Then a sentence names the first by its local days and times, the second as its month, neither
    # with the zone (the page's header names it)
    assert period_words(anniversary.period_of(at)) == "15 Jan 2026 10:00 – 15 Feb 2026 10:00"
    assert period_words(monthly.period_of(at)) == "January 2026"


def test_a_kolkata_grants_expiry_reads_alike_on_the_card_and_the_statement_line(
    portal: Any, india: str
) -> None:
    from billing.tenants.requests import CreditGrantRequest

    # Given india holds a grant that expires at its local midnight starting 1 April 2026
    container.tenant_service().grant_credit(
        india,
        CreditGrantRequest(grant_id="prepaid", amount=Decimal("100.00"), description="Prepaid credit",
                           granted_at="2025-10-01T00:00:00Z", expires_at="2026-03-31T18:30:00Z"),
    )  # fmt: skip
    # When its page is read
    html = portal.page(portal.token(india))["body"]
    # Then the card and the preview's credit line name the same day, the last it can be used
    assert "1 active grant; the next expires 31 Mar 2026." in html
    assert "left, expires 31 Mar 2026)" in html
    assert "01 Apr 2026" not in html
