"""What ``billing demo`` tells the reader at the end, and the metrics line it keeps off its console."""

from __future__ import annotations

from rich.console import Console

from billing_cli.demo.pipeline import MONTH, next_steps


def test_the_demo_ends_with_the_quickstart_and_where_its_files_are():
    # Given the demo's last stage has run, When it ends
    console = Console(record=True, width=200)
    next_steps(console)
    text = console.export_text()
    # Then it names the CSV it wrote, the server to start, the signup call and the usage page link
    assert f"invoices/test/invoices-{MONTH}.csv" in text
    assert "billing serve --api-key dev-key" in text and "BILLING=http://127.0.0.1:8787 KEY=dev-key" in text
    assert '"$BILLING/v1/tenants" ' in text and "README's ten-minute quickstart" in text
    assert "/v1/tenants/acme/portal-link" in text


def test_no_cold_start_metric_is_printed_when_metrics_are_disabled(monkeypatch):
    from aws_lambda_powertools.metrics.provider import cold_start

    from billing_local.runner import _skip_cold_start_metric_when_disabled

    monkeypatch.setattr(cold_start, "is_cold_start", True)
    # Given metrics are on (tests that check metrics), the cold start is left to Powertools
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    _skip_cold_start_metric_when_disabled()
    assert cold_start.is_cold_start is True
    # When the demo or `billing serve` disables them, Then no ColdStart line will be printed
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    _skip_cold_start_metric_when_disabled()
    assert cold_start.is_cold_start is False
