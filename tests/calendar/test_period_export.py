"""The periods CSV (billing.statements.period_export) with the real stores (moto, chdb): statements of
periods of any shape exported with exact totals, one CSV per closed tenant period written by the
hourly close, and the month CSV unchanged beside it."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
from typer.testing import CliRunner

from billing.kernel.calendar import Calendar
from billing.kernel.periods import Month
from billing.runtime import container
from billing.tenants.calendar_settings import CalendarSetting
from billing_cli import _load, app
from tests.rating.helpers import event, make_tenant

HEADER = (
    "tenant_id,month,total_queries,total_tokens,total_cost_usd,invoice_date,"
    "period_start,period_end,period_label,time_zone,currency,is_final"
)
KOLKATA_NOVEMBER = "2025-10-31T18:30:00Z/2025-11-30T18:30:00Z"


def _three_tenants(env) -> None:
    """A Kolkata calendar-monthly tenant, a New York weekly tenant (weeks from Monday 3 November,
    00:00 EST = 05:00 UTC) and a default tenant, all on starter (29.00 per interval, 0.01 a query),
    with events on both sides of their period boundaries."""
    make_tenant(
        "india",
        [("starter", "2025-10-31T18:30:00Z")],
        calendars=[CalendarSetting.of(Calendar("Asia/Kolkata"), None)],
    )
    make_tenant(
        "weekly",
        [("starter", "2025-11-03T05:00:00Z")],
        calendars=[CalendarSetting.of(Calendar("America/New_York", interval="week"), None)],
    )
    make_tenant("acme", [("starter", "2025-11-01T00:00:00Z")])
    env.store.insert_events(
        [
            event("india", "in-1", "2025-10-31T18:30:00Z", cost="0.10", tokens=50),
            event("india", "in-2", "2025-11-30T18:29:59.999Z"),
            event("india", "in-dec", "2025-11-30T18:30:00Z"),
            event("weekly", "w1-a", "2025-11-03T05:00:00Z", tokens=100),
            event("weekly", "w1-b", "2025-11-09T12:00:00Z"),
            event("weekly", "w4", "2025-12-01T04:59:59.999Z", cost="0.25"),
            event("weekly", "w5", "2025-12-01T05:00:00Z"),
            event("acme", "acme-1", "2025-11-15T00:00:00Z"),
        ]
    )


def test_periods_of_any_shape_are_exported_with_exact_totals_and_the_month_csv_is_unchanged(env, tmp_path):
    # Given three tenants' November usage, the hourly close after the New York week ending on
    # 30 November (05:15 UTC on 1 December) and the month close of November
    _load()
    _three_tenants(env)
    hourly = container.tenant_period_close().close_due(datetime(2025, 12, 1, 5, 15, tzinfo=UTC))
    container.billing_cycle().close(Month(2025, 11))
    # When the periods ending in November 2025 are exported, and the month's CSV
    runner = CliRunner()
    periods, month = tmp_path / "periods.csv", tmp_path / "month.csv"
    done = runner.invoke(
        app, ["invoice", "export", "--periods-ending-in", "2025-11", "--out", str(periods), "--json"]
    )
    runner.invoke(
        app, ["invoice", "export", "--month", "2025-11", "--out", str(month)], catch_exceptions=False
    )
    # Then the periods CSV holds every statement of a period whose last local day is in November: the
    # default tenant's UTC month, the Kolkata November (29.00 + 2 x 0.01 + 0.10) and the 4 New York
    # weeks (29.00 each, with their queries and usage); not the December ones
    assert done.exit_code == 0, done.output
    assert '"rows": 6' in done.stdout
    assert periods.read_text().splitlines() == [
        HEADER,
        "acme,2025-11,1,0,29.01,2025-11-30,2025-11-01T00:00:00Z,2025-12-01T00:00:00Z,2025-11,UTC,usd,false",
        f"india,{KOLKATA_NOVEMBER},2,50,29.12,2025-11-30,2025-10-31T18:30:00Z,2025-11-30T18:30:00Z,"
        "2025-11 (Asia/Kolkata),Asia/Kolkata,usd,false",
        "weekly,2025-11-03T05:00:00Z/2025-11-10T05:00:00Z,2,100,29.02,2025-11-09,"
        "2025-11-03T05:00:00Z,2025-11-10T05:00:00Z,3 Nov 2025 – 9 Nov 2025 (America/New_York),America/New_York,usd,false",
        "weekly,2025-11-10T05:00:00Z/2025-11-17T05:00:00Z,0,0,29.00,2025-11-16,"
        "2025-11-10T05:00:00Z,2025-11-17T05:00:00Z,10 Nov 2025 – 16 Nov 2025 (America/New_York),America/New_York,usd,false",
        "weekly,2025-11-17T05:00:00Z/2025-11-24T05:00:00Z,0,0,29.00,2025-11-23,"
        "2025-11-17T05:00:00Z,2025-11-24T05:00:00Z,17 Nov 2025 – 23 Nov 2025 (America/New_York),America/New_York,usd,false",
        "weekly,2025-11-24T05:00:00Z/2025-12-01T05:00:00Z,1,0,29.26,2025-11-30,"
        "2025-11-24T05:00:00Z,2025-12-01T05:00:00Z,24 Nov 2025 – 30 Nov 2025 (America/New_York),America/New_York,usd,false",
    ]
    # And the month's CSV keeps its header and meaning: UTC-month statements only
    assert month.read_text() == (
        "tenant_id,month,total_queries,total_tokens,total_cost_usd,invoice_date\n"
        "acme,2025-11,1,0,29.01,2025-11-30\n"
    )
    # And the hourly close wrote each closed period's CSV once, under a key naming tenant and period
    s3, bucket = boto3.client("s3"), container.settings().invoices_bucket
    key = "invoices/periods/india/2025-10-31T18:30:00Z_2025-11-30T18:30:00Z.csv"
    india = [r for r in hourly.closed if r.tenant_id == "india"][0]
    assert (india.csv_key, india.csv_written) == (key, True)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    assert body.splitlines() == [HEADER, periods.read_text().splitlines()[2]]
    assert sorted(r.csv_key for r in hourly.closed if r.tenant_id == "weekly") == [
        f"invoices/periods/weekly/2025-11-{d:02d}T05:00:00Z_2025-{m}T05:00:00Z.csv"
        for d, m in [(3, "11-10"), (10, "11-17"), (17, "11-24"), (24, "12-01")]
    ]


def test_a_period_not_closed_yet_has_no_row_and_a_bad_month_is_a_usage_error(env, tmp_path):
    # Given the same tenants, nothing closed yet
    _load()
    _three_tenants(env)
    runner = CliRunner()
    out = tmp_path / "periods.csv"
    # When the periods ending in November are exported, then with a malformed month, then with both options
    done = runner.invoke(app, ["invoice", "export", "--periods-ending-in", "2025-11", "--out", str(out)])
    bad = runner.invoke(app, ["invoice", "export", "--periods-ending-in", "2025-13", "--out", str(out)])
    both = runner.invoke(
        app, ["invoice", "export", "--month", "2025-11", "--periods-ending-in", "2025-11", "--out", str(out)]
    )
    # Then the export is its header alone (stored statements only, never a preview)
    assert done.exit_code == 0, done.output
    assert out.read_text() == HEADER + "\n"
    # And the malformed month and the two options together are usage errors naming the option
    assert bad.exit_code == 2 and "--periods-ending-in" in bad.output
    assert both.exit_code == 2 and "exactly one" in both.output
