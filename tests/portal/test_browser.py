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
    assert page.text_content("#credit-note").startswith("1 active grant; the next expires 1 Jan 2026.")
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


# ------------------------------------------------------------------------------- phone layout, chart axes
PHONE = {"width": 375, "height": 800}

# Every table cell (every column, the details' day table opened) is rendered, inside the screen and
# inside its scroll box, and its text is not cut; or, where the box scrolls sideways, the box shows
# its shading, and no figure is split over two lines. Every column header is on screen, or each of its cells shows it as a label, or it is
# the rows' own heading (first column). Returns the problems found, as text.
TABLE_CHECK = r"""() => {
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  const vw = document.documentElement.clientWidth, problems = [];
  // a figure (digits, separators, a currency sign; not part of a date, time or name) split over
  // two lines reads as two figures
  const brokenNumbers = cell => {
    const broken = [];
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const m of node.textContent.matchAll(/(?<![\w.,:-])-?\$?\d[\d,.]*(?![\w:-])/g)) {
        const range = document.createRange();
        range.setStart(node, m.index); range.setEnd(node, m.index + m[0].length);
        if (new Set([...range.getClientRects()].map(r => Math.round(r.top))).size > 1) broken.push(m[0]);
      }
    }
    return broken;
  };
  const rendered = el => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  document.querySelectorAll('#content table').forEach((table, t) => {
    const name = table.id || 'table ' + t;
    const heads = [...table.querySelectorAll('thead th')];
    const scroller = table.closest('.scroll');
    const box = scroller ? scroller.getBoundingClientRect() : {left: 0, right: vw};
    const scrolls = !!scroller && scroller.scrollWidth > scroller.clientWidth + 1;
    const shaded = !!scroller && getComputedStyle(scroller).backgroundImage.includes('gradient');
    const labelled = heads.map(() => true);
    for (const row of table.querySelectorAll('tbody tr, tfoot tr')) {
      let col = 0;
      for (const cell of row.cells) {
        const here = col, head = (heads[here] || {}).textContent || 'column ' + here;
        col += cell.colSpan;
        const label = getComputedStyle(cell, '::before').content;
        if (row.parentElement.tagName === 'TBODY' && here > 0 && cell.textContent.trim() && label !== JSON.stringify(head))
          labelled[here] = false;
        if (!rendered(cell)) {
          if (cell.textContent.trim()) problems.push(`${name}: ${head} "${cell.textContent.trim()}" is hidden`);
          continue;
        }
        const r = cell.getBoundingClientRect();
        const inside = r.left >= Math.max(0, box.left) - 1 && r.right <= Math.min(vw, box.right) + 1;
        if (!inside && !(scrolls && shaded))
          problems.push(`${name}: ${head} "${cell.textContent.trim()}" spans ${Math.round(r.left)}-${Math.round(r.right)} px, outside 0-${vw} with no scroll shading`);
        for (const number of brokenNumbers(cell))
          problems.push(`${name}: ${head} "${number}" is broken across lines`);
        if (cell.scrollWidth > cell.clientWidth + 1)
          problems.push(`${name}: ${head} "${cell.textContent.trim()}" is cut (${cell.scrollWidth} px in ${cell.clientWidth})`);
      }
    }
    heads.forEach((th, i) => {
      const r = th.getBoundingClientRect();
      const onScreen = rendered(th) && r.left >= -1 && r.right <= vw + 1 && th.scrollWidth <= th.clientWidth + 1;
      if (!onScreen && !labelled[i] && i > 0)
        problems.push(`${name}: header "${th.textContent}" is neither on screen nor a label of its cells`);
    });
  });
  return problems;
}"""

# Per chart: the ticks (value, label, box), the bars (value, height), the plot's height, the text boxes.
CHART_AXES = """(id) => {
  const svg = document.getElementById(id), frame = svg.getBoundingClientRect();
  const box = el => { const r = el.getBoundingClientRect(); return {left: r.left, right: r.right, top: r.top, bottom: r.bottom, height: r.height}; };
  return {
    frame: box(svg),
    ticks: [...svg.querySelectorAll('text.tick')].map(t => ({value: t.dataset.value, label: t.textContent, box: box(t)})),
    bars: [...svg.querySelectorAll('rect.point')].map(b => ({value: b.dataset.value, height: b.height.baseVal.value})),
    axis: (() => { const l = svg.querySelectorAll('line.axis')[1]; return l.y2.baseVal.value - l.y1.baseVal.value; })(),
    texts: [...svg.querySelectorAll('text')].map(box),
    desc: svg.querySelector('desc').textContent,
  };
}"""


@pytest.fixture
def extremes(portal) -> dict[str, str]:
    """Given three more tenants: newco with no usage yet, tinyco whose month so far cost fractions of a
    cent, bigco with 2,469,000 queries costing $12,345,678 and more on one day (a long model name, billions
    of tokens)."""
    from decimal import Decimal

    from billing.kernel.periods import parse_instant
    from billing.metering.events import StoredEvent
    from tests.rating.helpers import make_tenant

    def event(tenant: str, n: int, at: str, cost: str, *, queries: int = 1, model: str = "gpt-4o-mini",
              tokens: int = 100) -> StoredEvent:  # fmt: skip
        ts = parse_instant(at)
        return StoredEvent(
            tenant_id=tenant, event_id=f"{tenant}-{n}", timestamp=ts, type="query", model=model,
            queries=queries, input_tokens=tokens, output_tokens=tokens // 3, bytes=0,
            cost_usd=Decimal(cost), price_version="2025-01-01T00:00:00Z", accepted_at=ts,
        )  # fmt: skip

    for tenant in ("newco", "tinyco", "bigco"):
        make_tenant(tenant, [("starter", "2025-11-01T00:00:00Z")])
    container.usage_store().insert_events(
        [
            event("tinyco", 1, "2025-11-03T10:00:00Z", "0.0001"),
            event("tinyco", 2, "2025-11-03T11:00:00Z", "0.0002"),
            event("tinyco", 3, "2025-11-12T09:00:00Z", "0.00007"),
            event("bigco", 0, "2025-11-02T10:00:00Z", "1234.5", queries=250, model="gpt-4o"),
            event(
                "bigco",
                1,
                "2025-11-18T10:00:00Z",
                "12345678",
                tokens=9_876_543_210,
                model="claude-3-5-sonnet-20241022-long-context-preview",
            ),  # fmt: skip
        ]
        # a stored event counts at most 255 queries: millions of them are thousands of events
        + [event("bigco", n, "2025-11-18T11:00:00Z", "0.25", queries=250) for n in range(2, 9_878)]
    )
    return {"zero": "newco", "tiny": "tinyco", "huge": "bigco"}


def table_problems(page: Any) -> list[str]:
    return page.evaluate(TABLE_CHECK)


def test_every_tables_columns_can_be_read_on_a_phone_and_wider(site, page, extremes):
    for tenant in ("acme", extremes["tiny"], extremes["huge"]):
        # When each tenant opens its page on a 375 px screen
        page.set_viewport_size(PHONE)
        page.goto(link(site, tenant))
        # Then the page does not scroll sideways, and every column of every table can be read:
        # on screen, labelled, and not cut
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 375, tenant
        assert page.locator("#models").count() == 1 and page.locator("#lines").count() == 1
        assert table_problems(page) == [], tenant
        # And the statement's unit prices and the models' metered cost are there to read
        model_costs = page.locator("#models td[data-label='Metered cost']").all()
        assert model_costs and all(c.is_visible() for c in model_costs)
        prices = [c for c in page.locator("#lines tbody td.unit").all() if c.text_content()]
        assert all(c.is_visible() for c in prices)
        # And just above the phone layout, and on a wide screen, the tables are ordinary tables
        # with their headers, every column inside the screen
        for width in (600, 1280):
            page.set_viewport_size({"width": width, "height": 900})
            assert page.locator("#models thead th").nth(3).is_visible()
            assert table_problems(page) == [], (tenant, width)
            assert page.evaluate("() => document.documentElement.scrollWidth") <= width


def test_a_table_too_wide_for_its_box_shows_scroll_shading(site, page):
    # Given a phone where the models table is forced back to one unbreakable row per model
    page.set_viewport_size(PHONE)
    page.goto(link(site, "acme"))
    page.evaluate("""() => document.querySelectorAll('#models tr, #models th, #models td').forEach(el => {
        el.style.setProperty('display', el.tagName === 'TR' ? 'table-row' : 'table-cell', 'important');
        el.style.setProperty('white-space', 'nowrap', 'important');
    })""")
    # Then its box scrolls and is shaded on the side with more to see, and the check accepts it
    scroller = page.locator("#models").locator("xpath=..")
    assert scroller.evaluate("e => e.scrollWidth > e.clientWidth")
    assert "gradient" in scroller.evaluate("e => getComputedStyle(e).backgroundImage")
    assert not [p for p in table_problems(page) if p.startswith("models")]
    # And the page itself still does not scroll sideways
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 375


def axes(page: Any, chart: str) -> dict[str, Any]:
    return page.evaluate(CHART_AXES, chart)


def assert_sane_axis(chart: dict[str, Any], *, tenant: str) -> None:
    """Ticks start at 0, rise in equal round steps, the top one at or above the highest bar and less
    than 2.5 times it; every label differs, no text overlaps another or leaves the chart; bars are as
    tall as their value on that axis."""
    from decimal import Decimal

    values = [Decimal(t["value"]) for t in chart["ticks"]]
    labels = [t["label"] for t in chart["ticks"]]
    peak = max(Decimal(b["value"]) for b in chart["bars"])
    assert values[0] == 0 and labels[0] in ("0", "$0"), (tenant, labels)
    assert len(set(labels)) == len(labels), (tenant, labels)
    if peak == 0:
        assert values == [0], (tenant, labels)
        assert max(b["height"] for b in chart["bars"]) <= 1, tenant
        assert "nothing recorded" in chart["desc"]
    else:
        steps = {b - a for a, b in zip(values, values[1:], strict=False)}
        assert len(steps) == 1 and 3 <= len(values) <= 5 or values == [0, 1], (tenant, labels)
        (step,) = steps
        assert step.normalize().as_tuple().digits[0] in (1, 2, 5), (tenant, step)
        assert peak <= values[-1] < peak * Decimal("2.5"), (tenant, peak, labels)
        assert all(label.strip("$0.") for label in labels[1:]), (tenant, labels)  # no "$0.00" tick
        for bar in chart["bars"]:
            expected = chart["axis"] * float(Decimal(bar["value"]) / values[-1])
            assert abs(bar["height"] - max(expected, 1)) < 0.6, (tenant, bar)
    frame = chart["frame"]
    for text in chart["texts"]:
        assert frame["left"] - 1 <= text["left"] and text["right"] <= frame["right"] + 1, (tenant, text)
        assert frame["top"] - 1 <= text["top"] and text["bottom"] <= frame["bottom"] + 1, (tenant, text)
        assert text["height"] >= 9, (tenant, "chart text too small to read", text)
    ticks = sorted((t["box"] for t in chart["ticks"]), key=lambda b: b["top"])
    for upper, lower in zip(ticks, ticks[1:], strict=False):
        assert upper["bottom"] <= lower["top"] + 1, (tenant, "tick labels overlap", labels)


@pytest.mark.parametrize("width", [375, 1280])
def test_chart_axes_are_round_and_readable_for_zero_tiny_and_huge_usage(site, page, extremes, width):
    page.set_viewport_size({"width": width, "height": 900})
    for kind, tenant in [("normal", "acme"), *extremes.items()]:
        # When each tenant opens its page
        page.goto(link(site, tenant))
        # Then both charts' value axes are sane for its figures
        for chart in ("queries-chart", "cost-chart"):
            assert_sane_axis(axes(page, chart), tenant=f"{kind} {chart} at {width}px")
    # And a tiny cost reads as what it is, never $0.00
    page.goto(link(site, extremes["tiny"]))
    cost = axes(page, "cost-chart")
    assert [t["label"] for t in cost["ticks"]] == ["$0", "$0.0001", "$0.0002", "$0.0003"]
    assert page.text_content('#cost-chart rect[data-day="2025-11-03"] > title') == "03 Nov: $0.0003"
    # And a huge one is abbreviated on the axis
    page.goto(link(site, extremes["huge"]))
    assert [t["label"] for t in axes(page, "cost-chart")["ticks"]] == ["$0", "$5M", "$10M", "$15M"]
    assert [t["label"] for t in axes(page, "queries-chart")["ticks"]] == ["0", "1M", "2M", "3M"]


def test_metric_rows_read_on_a_phone(site, page, metered):
    from tests.portal.conftest import LONG_GPU

    # When gpuco, whose plan charges GPU time per gpu and region, opens its page on a 375 px screen
    page.set_viewport_size(PHONE)
    page.goto(link(site, metered))
    # Then the page does not scroll sideways and every metric row can be read: name, group, quantity
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 375
    assert page.locator("#metrics tbody tr").count() == 10
    assert table_problems(page) == []
    row = page.locator(f"#metrics tr[data-group='gpu: {LONG_GPU}, region: us']")
    assert row.locator("th").inner_text().splitlines() == ["GPU time", f"gpu: {LONG_GPU}, region: us"]
    quantity = row.locator("td[data-label='Quantity']")
    assert quantity.is_visible() and quantity.inner_text().endswith("GPU-seconds")
    label = quantity.evaluate("td => getComputedStyle(td, '::before').content")
    assert label == '"Quantity"'  # the column's header, shown by each cell on a phone
    assert row.bounding_box()["width"] <= 375
    # And wider, the table is an ordinary table with its headers
    for width in (600, 1280):
        page.set_viewport_size({"width": width, "height": 900})
        assert page.locator("#metrics thead th").nth(1).is_visible()
        assert table_problems(page) == [], width


def test_the_corrections_block_reads_on_a_phone(site, page, lambda_context):
    import json

    from tests.conftest import api_event
    from tests.metering.conftest import load_handler

    # Given an acme event voided with a long reason and one amended
    items = [
        {"correction_id": "c-void", "tenant_id": "acme", "event_id": "acme-02-0001", "action": "void",
         "reason": "Sent twice by our retry after a timeout in the nightly export job"},
        {"correction_id": "c-amend", "tenant_id": "acme", "event_id": "acme-03-0001", "action": "amend",
         "reason": "wrong token count", "values": {"input_tokens": 900, "model": "gpt-4o-mini"}},
    ]  # fmt: skip
    response = load_handler("corrections").handler(
        api_event({"corrections": items}, path="/v1/corrections"), lambda_context
    )
    assert response["statusCode"] == 200, json.loads(response["body"])
    # When acme opens its page on a 375 px screen
    page.set_viewport_size(PHONE)
    page.goto(link(site, "acme"))
    # Then the block lists both, the page does not scroll sideways, and every column can be read
    assert page.locator("#corrections tbody tr").count() == 2
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 375
    assert table_problems(page) == []
    row = page.locator("#corrections tr[data-correction='c-void']")
    reason = row.locator("td[data-label='Reason']")
    assert reason.is_visible() and "nightly export" in reason.inner_text()
    assert reason.evaluate("td => getComputedStyle(td, '::before').content") == '"Reason"'
    assert row.bounding_box()["width"] <= 375
    # And wider, it is an ordinary table with its headers
    for width in (600, 1280):
        page.set_viewport_size({"width": width, "height": 900})
        assert page.locator("#corrections thead th").nth(3).is_visible()
        assert table_problems(page) == [], width


# The selected option's text, in the select's font, fits the select between its padding and its arrow.
SELECTED_FITS = """s => {
  const cs = getComputedStyle(s), ctx = document.createElement('canvas').getContext('2d');
  ctx.font = `${cs.fontWeight} ${cs.fontSize} ${cs.fontFamily}`;
  const text = ctx.measureText(s.options[s.selectedIndex].text).width;
  return text + parseFloat(cs.paddingLeft) + parseFloat(cs.paddingRight) + 20 <= s.clientWidth;
}"""


@pytest.fixture
def kolkata_metered(metered) -> str:
    """Given gpuin, on the GPU plan since its local 1 October on its own calendar in Asia/Kolkata
    (+05:30), with gpuco's November jobs and seats, and an open invoice of its October period."""
    from billing.invoicing import InvoiceRecord
    from tests.portal.conftest import metered_events
    from tests.portal.test_tenant_periods import KOLKATA_OCTOBER, calendar
    from tests.rating.helpers import make_tenant

    make_tenant(
        "gpuin", [("gpu", "2025-09-30T18:30:00Z")], name="GPU India", calendars=calendar("Asia/Kolkata")
    )
    container.usage_store().insert_events(metered_events("gpuin"))
    container.invoice_records().save(
        InvoiceRecord(
            tenant_id="gpuin", month=KOLKATA_OCTOBER, statement_id=f"gpuin:{KOLKATA_OCTOBER}", state="sent",
            total_cents=71546, invoice_id="in_gpuin", invoice_status="open", invoice_number="GPUIN-0007",
            hosted_invoice_url="https://invoice.stripe.com/i/acct_test/test_gpuin",
        )
    )  # fmt: skip
    return "gpuin"


@pytest.mark.parametrize("width", [375, 600, 1280])
def test_a_kolkata_tenant_with_catalog_metrics_reads_on_a_phone_and_wider(site, page, kolkata_metered, width):
    # When gpuin, on its own Asia/Kolkata calendar with a grouped catalog charge, opens its page
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(link(site, kolkata_metered))
    # Then the page does not scroll sideways, every table can be read, and the period form is on screen
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width
    assert page.locator("#metrics tbody tr").count() == 10
    assert table_problems(page) == []
    inner = page.locator("header").evaluate(
        "h => { const r = h.getBoundingClientRect(), cs = getComputedStyle(h);"
        " return [r.left + parseFloat(cs.paddingLeft), r.right - parseFloat(cs.paddingRight)]; }"
    )
    for control in ("#month", "#month-form button", "label[for=month]"):
        box = page.locator(control).bounding_box()
        assert inner[0] - 1 <= box["x"] and box["x"] + box["width"] <= inner[1] + 1, (control, box, inner)
    assert page.locator("#month").evaluate(SELECTED_FITS), "the selected period's label is cut"
    # And the zone is named where times are shown, the period read as its month in sentences
    assert "all times Asia/Kolkata" in page.text_content("header")
    assert page.text_content("#queries").replace(",", "").isdigit()
    assert "Queries in November 2025" in page.text_content("#content .cards")
    statement_note = page.locator("#statement-h + p").text_content()
    assert statement_note.startswith("Preview of the statement for November 2025, as of 21:00 Asia/Kolkata")
    metrics_note = page.locator("#metrics-h + p").text_content()
    assert "so far this period, as of 21:00 Asia/Kolkata." in metrics_note
    assert metrics_note.count("Asia/Kolkata") == 1
    invoice = page.locator('#invoices li[data-invoice="in_gpuin"]').text_content()
    assert invoice.startswith("View and pay invoice GPUIN-0007 for October 2025: $715.46")
    # And nothing reads like an identifier or a key: no period key, no raw zone label in the content
    content = page.text_content("#content")
    assert "T18:30:00Z" not in content and "(Asia/Kolkata)" not in content
    # And the day table says whose days they are, not where its figures come from
    assert "Per day, Asia/Kolkata days" in content and "rollup" not in content
