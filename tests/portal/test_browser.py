"""The tenant usage page in a real browser: Debian's Chromium, headless, driven by Playwright, against
the portal routes of template.yaml served locally (billing_local.http_api) over moto and chdb.

Skipped, saying why, only where no Chromium is installed (``make test`` installs it as root)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from billing.kernel.periods import Month
from billing.portal.page import usd
from billing.rating.csv import lines_csv
from billing.runtime import container
from billing.runtime.settings import get_settings
from billing_local.http_api import LocalApi, serving, template_routes

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PLATFORM_KEY = "platform-secret-value"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(
            f"no Chromium at {CHROMIUM} (`make browser` installs Debian's as root): browser tests skipped"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
    )
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def site(portal, monkeypatch) -> Iterator[str]:
    """The portal's routes on a local port (the link route keyed by PLATFORM_KEY)."""
    api = LocalApi(template_routes(["tenant_portal"]), {PLATFORM_KEY: "platform-key"})
    with serving(api) as base:
        monkeypatch.setenv("PORTAL_BASE_URL", base)
        get_settings.cache_clear()
        yield base


@pytest.fixture
def page(browser) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


def link(site: str, tenant_id: str, **body: Any) -> str:
    import json
    import urllib.request

    request = urllib.request.Request(
        f"{site}/v1/tenants/{tenant_id}/portal-link",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"x-api-key": PLATFORM_KEY, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        assert response.status == 201
        return json.loads(response.read())["url"]


def points(page: Any, chart: str) -> list[str]:
    return [p.get_attribute("data-day") for p in page.locator(f"#{chart} rect.point").all()]


def test_the_page_loads_with_the_statement_total_and_one_point_per_day(site, page):
    # When acme opens its link
    response = page.goto(link(site, "acme"))
    # Then the page shows the preview's total, and each chart has one point per day so far
    assert response.status == 200
    statement, stored = container.billing_cycle().statement("acme", Month.parse("2025-11"))
    assert not stored
    assert page.text_content("#total") == usd(statement.total)
    assert page.text_content("#lines-total") == usd(statement.total)
    days = [f"2025-11-{d:02d}" for d in range(1, 21)]
    assert points(page, "queries-chart") == days
    assert points(page, "cost-chart") == days
    assert page.locator("#lines tbody tr").count() == len(statement.lines)
    assert "Acme" in page.title() and "UTC" in page.text_content("header")


def test_choosing_the_previous_month_swaps_the_page_through_the_json_route(site, page):
    page.goto(link(site, "acme"))
    with page.expect_response(re.compile(r"/v1/portal/data\?month=2025-10")) as answer:
        page.select_option("#month", "2025-10")
    assert answer.value.status == 200
    page.locator("#status").filter(has_text="Showing 2025-10").wait_for()
    october, _ = container.billing_cycle().statement("acme", Month.parse("2025-10"))
    assert page.text_content("#total") == usd(october.total)
    assert len(points(page, "queries-chart")) == 31
    assert page.url.endswith("&month=2025-10")
    # And without script the form does the same (a reload keeps the month)
    page.reload()
    assert page.text_content("#total") == usd(october.total)


def test_the_prepaid_credit_left_is_shown_and_pays_the_preview(site, page):
    from decimal import Decimal

    from billing.tenants.requests import CreditGrantRequest

    # Given acme holds a 25.00 grant expiring in January (and the preview owes more than that)
    request = CreditGrantRequest(
        grant_id="welcome", amount=Decimal("25.00"), granted_at="2025-11-01T00:00:00Z",
        expires_at="2026-01-01T00:00:00Z",
    )  # fmt: skip
    container.tenant_service().grant_credit("acme", request)
    statement, _ = container.billing_cycle().statement("acme", Month.parse("2025-11"))
    (credit,) = [line for line in statement.lines if line.kind == "credit"]
    assert credit.amount == Decimal("-25.00") and statement.total > 0
    # When acme opens its link
    page.goto(link(site, "acme"))
    # Then the card shows the credit left (no statement issued has used any) and when it expires
    assert page.text_content("#credit-left") == "$25.00"
    assert page.text_content("#credit-note").startswith("1 active grant; the next expires 01 Jan 2026")
    assert page.locator("#credit-left").is_visible()
    # And the preview's credit line and total are the statement's
    row = page.locator('#lines tr[data-line="credit:welcome"]')
    assert row.locator("td[data-amount]").text_content() == "-$25.00"
    assert page.text_content("#total") == usd(statement.total)
    # And on a phone the cards still fit the screen
    page.set_viewport_size({"width": 375, "height": 800})
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 375


def test_an_expired_or_altered_token_gets_403_and_shows_nothing(site, page, clock):
    from datetime import timedelta

    from tests.portal.conftest import NOW

    url = link(site, "acme")
    altered = url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB")
    for bad in (altered, url.replace("token=", "token=x")):
        response = page.goto(bad)
        assert response.status == 403
        text = page.text_content("body")
        assert "Acme" not in text and "$" not in text and page.locator("svg").count() == 0
    clock(NOW + timedelta(hours=2))
    response = page.goto(url)
    assert response.status == 403
    assert "expired" in page.text_content("#error") and "Acme" not in page.text_content("body")


def test_a_token_for_acme_never_shows_globex(site, page):
    url = link(site, "acme")
    for attempt in (url, url + "&tenant_id=globex", url + "&tenant=globex&month=2025-11"):
        assert page.goto(attempt).status == 200
        body = page.content()
        assert "Acme" in body and "globex" not in body.lower()
    globex = link(site, "globex")
    page.goto(globex)
    assert "Globex" in page.title() and "acme" not in page.content().lower()


def test_the_csv_downloads_the_months_lines(site, page, tmp_path):
    page.goto(link(site, "acme"))
    with page.expect_download() as download:
        page.click("#csv")
    saved = tmp_path / "lines.csv"
    download.value.save_as(saved)
    statement, _ = container.billing_cycle().statement("acme", Month.parse("2025-11"))
    assert download.value.suggested_filename == "acme-2025-11-statement-lines.csv"
    assert saved.read_bytes() == lines_csv([statement])


def test_keyboard_labels_and_a_phone_screen(site, page):
    page.goto(link(site, "acme"))
    # Every control is labelled and reachable with Tab, in reading order
    assert page.locator("label[for=month]").count() == 1
    reached = []
    for _ in range(6):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("() => document.activeElement.id || document.activeElement.tagName"))
    assert reached[:2] == ["month", "BUTTON"] and "SUMMARY" in reached and "csv" in reached
    # Charts are images with a title and description (screen readers), and their data is a table
    for chart in ("queries-chart", "cost-chart"):
        assert page.get_attribute(f"#{chart}", "role") == "img"
        assert page.locator(f"#{chart} > title").count() == 1
    # On a phone nothing is wider than the screen, the total is readable
    page.set_viewport_size({"width": 375, "height": 800})
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 375
    assert page.locator("#total").is_visible()


def test_colors_have_enough_contrast():
    from billing.portal.page import CSS

    colors = dict(re.findall(r"--(\w+):(#[0-9a-f]{6})", CSS))

    def luminance(hex_color: str) -> float:  # WCAG 2 relative luminance (colors, not money)
        channels = []
        for i in (1, 3, 5):
            c = int(hex_color[i : i + 2], 16) / 255
            channels.append(c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4)
        return 0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2]

    def ratio(a: str, b: str) -> float:
        la, lb = sorted((luminance(a), luminance(b)), reverse=True)
        return (la + 0.05) / (lb + 0.05)

    # WCAG AA for normal text (4.5:1), text on the page and on cards, and white on the accent buttons
    for fg in ("fg", "muted", "accent", "ok", "warn", "bad"):
        for bg in ("bg", "card"):
            assert ratio(colors[fg], colors[bg]) >= 4.5, (fg, bg)
    assert ratio("#ffffff", colors["accent"]) >= 4.5
