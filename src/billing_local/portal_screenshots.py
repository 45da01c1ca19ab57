"""The usage page's documentation screenshots (docs/guides/portal.png and portal-phone.png).

``python -m billing_local.portal_screenshots [OUT_DIR]`` builds a throwaway environment (moto,
embedded ClickHouse) at a fixed moment (20 November 2025, 15:30 UTC: 21:00 in Kolkata), creates a
tenant on its own calendar in Asia/Kolkata whose plan charges catalog metrics, with usage since its
local 1 October, a prepaid grant and an open October invoice, serves the portal routes and has
Debian's Chromium (headless, driven by Playwright; nothing is downloaded) save the whole page at
1280 px and at 375 px wide. The same inputs give the same page, so the images change only when the
page does."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from billing.kernel.calendar import Calendar, Period
from billing.kernel.periods import Month, iso, parse_instant
from billing.metering.events import StoredEvent, UsageEvent
from billing.runtime import container
from billing.runtime.settings import PACKAGE_CONFIG
from billing.tenants.calendar_settings import CalendarSetting
from billing.tenants.tenant import PlanAssignment, Tenant
from billing_local.usage_generator import month_of_usage

NOW = parse_instant("2025-11-20T15:30:00Z")
TENANT = "sitara-labs"
ZONE = "Asia/Kolkata"
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = {"portal.png": 1280, "portal-phone.png": 375}

# A product that sells queries and GPU time: a plan with a base fee and query tiers that also
# charges GPU seconds per GPU, active users and its peak of seats.
USAGE_TYPES = [{"id": "gpu_job", "name": "GPU job", "unit": "job"}, {"id": "seat", "unit": "change"}]
METRICS = [
    {"id": "gpu_seconds", "name": "GPU time", "unit": "GPU-seconds", "event_types": ["gpu_job"],
     "aggregation": "sum", "property": "seconds"},
    {"id": "active_users", "name": "Active users", "unit": "users", "event_types": ["gpu_job"],
     "aggregation": "unique_count", "property": "user"},
    {"id": "peak_seats", "name": "Peak seats", "unit": "seats", "event_types": ["seat"],
     "aggregation": "max", "property": "seats"},
]  # fmt: skip
PLAN = {
    "id": "growth", "name": "Growth", "base_fee": "49.00", "query_quota": 20000, "trial_days": 0,
    "query_tiers": [{"up_to": 5000, "unit_price": "0.008"}, {"up_to": None, "unit_price": "0.005"}],
    "charges": [
        {"id": "gpu", "name": "GPU time", "metric": "gpu_seconds", "group_by": ["gpu"],
         "charge_model": "per_unit", "unit_price": "0.0006"},
        {"id": "users", "name": "Active users", "metric": "active_users", "charge_model": "per_unit",
         "unit_price": "2.00"},
        {"id": "seats", "name": "Peak seats", "metric": "peak_seats", "charge_model": "per_unit",
         "unit_price": "5.00"},
    ],
}  # fmt: skip


def write_plans(directory: Path) -> Path:
    document = yaml.safe_load((PACKAGE_CONFIG / "plans.yaml").read_text())
    document["usage_types"] = USAGE_TYPES
    document["metrics"] = METRICS
    document["plans"].append(PLAN)
    path = directory / "plans.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def metered_events(tenant_id: str, start: datetime, end: datetime) -> list[StoredEvent]:
    """GPU jobs every 50 minutes on three GPUs by 12 users, and the seat count changing every few days."""
    events = []
    gpus = ["h100", "a100", "l4"]
    at, n = start, 0
    while at < end:
        properties: dict[str, Any] = {"gpu": gpus[n % 3], "user": f"user-{(n * 5) % 12}"}
        properties["seconds"] = Decimal(60 + (n * 37) % 1800)
        events.append(StoredEvent(tenant_id, f"job-{n}", at, "gpu_job", "", 0, 0, 0, 0, Decimal(0), "v1", at,
                                  properties))  # fmt: skip
        at, n = at + timedelta(minutes=50), n + 1
    for i, seats in enumerate([8, 9, 11, 10, 12, 14, 13, 15, 15, 16, 18, 17, 21, 19, 22, 24, 23]):
        at = start + timedelta(days=3 * i, hours=4)
        if at < end:
            events.append(StoredEvent(tenant_id, f"seats-{i}", at, "seat", "", 0, 0, 0, 0, Decimal(0), "v1", at,
                                      {"seats": seats}))  # fmt: skip
    return events


def seed(now: datetime) -> str:
    """The tenant, its usage since its local 1 October (queries through the ingest service, so the
    quota counts them), a prepaid grant, and its October statement's open invoice."""
    from billing.invoicing import InvoiceRecord
    from billing.tenants.requests import CreditGrantRequest

    start = parse_instant("2025-09-30T18:30:00Z")  # 1 October, 00:00 in Kolkata
    tenant = Tenant(
        id=TENANT,
        name="Sitara Labs Pvt Ltd",
        email=f"billing@{TENANT}.example",
        plans=[PlanAssignment(plan="growth", effective_at=start)],
        calendars=[CalendarSetting.of(Calendar(ZONE), None)],
    )
    container.tenants().create(tenant)
    service = container.ingest_service()
    for month, count in ((Month.parse("2025-10"), 5200), (Month.parse("2025-11"), 4300)):
        events = [
            UsageEvent.model_validate(e)
            for e in month_of_usage(TENANT, month, count, seed=7, prefix=f"{month}-")
            if e["timestamp"] < iso(now)
        ]
        for first in range(0, len(events), 500):
            service.ingest(events[first : first + 500])
    container.usage_store().insert_events(metered_events(TENANT, start, now))
    container.tenant_service().grant_credit(
        TENANT,
        CreditGrantRequest(grant_id="launch", amount=Decimal("50.00"), granted_at="2025-10-01T00:00:00Z",
                           expires_at="2026-03-31T18:30:00Z", description="Launch credit"),
    )  # fmt: skip
    stored = container.tenants().get(TENANT) or tenant
    october = container.portal_service().parse_month(stored, "2025-10")
    assert isinstance(october, Period)
    statement = container.tenant_period_close().rate(stored, october, None)
    container.invoice_records().save(
        InvoiceRecord(
            tenant_id=TENANT,
            month=str(october),
            statement_id=statement.statement_id,
            state="finalized",
            total_cents=int(statement.total * 100),
            invoice_id="in_demo_sitara_202510",
            invoice_status="open",
            invoice_number="SITARA-0007",
            hosted_invoice_url="https://invoice.stripe.com/i/acct_demo/test_demo",
        )
    )
    return TENANT


@contextmanager
def served_page() -> Iterator[str]:
    """The demo tenant's page, served locally at the fixed moment: yields its URL."""
    from billing_local.http_api import LocalApi, serving, template_routes
    from billing_local.sandbox import sandbox

    with tempfile.TemporaryDirectory() as directory, sandbox(plans_path=write_plans(Path(directory))):
        container.override(clock=lambda: NOW)
        tenant_id = seed(NOW)
        token, _ = container.portal_tokens().issue(tenant_id, timedelta(hours=1))
        with serving(LocalApi(template_routes(["tenant_portal"]), {})) as base:
            yield f"{base}/v1/portal?token={token}"


def capture(out: Path) -> list[Path]:
    """Save the whole page at each width of SHOTS into ``out``."""
    from playwright.sync_api import sync_playwright

    saved = []
    with served_page() as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox"])
        for name, width in SHOTS.items():
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.goto(url)
            page.screenshot(path=str(out / name), full_page=True)
            saved.append(out / name)
            page.close()
        browser.close()
    return saved


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    # The handlers' JSON logs (a line per ingested batch) and EMF metrics would bury the two lines.
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    from billing.runtime.observability import logger

    logger.setLevel(logging.WARNING)
    out = Path(args[0] if args else "docs/guides")
    out.mkdir(parents=True, exist_ok=True)
    for path in capture(out):
        print(f"{path}: {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
