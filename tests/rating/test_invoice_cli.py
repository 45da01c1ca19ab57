"""``billing invoice preview|export|close`` against the configured (test) environment."""

from __future__ import annotations

from typer.testing import CliRunner

from billing.kernel.periods import Month
from billing.runtime import container
from billing_cli import _load, app
from tests.rating.helpers import make_tenant, queries


def test_preview_export_and_close(env, tmp_path):
    _load()
    make_tenant("acme", [("starter", "2025-10-01T00:00:00Z")])
    env.store.insert_events(queries("acme", 3, "2025-11-02T00:00:00Z"))
    runner = CliRunner()
    # A month-to-date preview prints the lines and stores nothing
    preview = runner.invoke(
        app, ["invoice", "preview", "--tenant", "acme", "--month", "2025-11"], catch_exceptions=False
    )
    assert preview.exit_code == 0 and "preview" in preview.output and "29.03" in preview.output
    assert container.statements().get("acme", "2025-11") is None
    # The close stores it; export writes the contract CSV
    assert (
        runner.invoke(app, ["invoice", "close", "--month", "2025-11"], catch_exceptions=False).exit_code == 0
    )
    out = tmp_path / "nov.csv"
    assert runner.invoke(app, ["invoice", "export", "--month", "2025-11", "--out", str(out)]).exit_code == 0
    assert out.read_text() == (
        "tenant_id,month,total_queries,total_tokens,total_cost_usd,invoice_date\n"
        "acme,2025-11,3,0,29.03,2025-11-30\n"
    )
    assert container.periods().closed_at(Month(2025, 11)) is not None
    # A bad month is a usage error, not a traceback
    bad = runner.invoke(app, ["invoice", "preview", "--tenant", "acme", "--month", "2025-13"])
    assert bad.exit_code == 2 and "YYYY-MM" in bad.output
    unknown = runner.invoke(app, ["invoice", "preview", "--tenant", "nobody", "--month", "2025-11"])
    assert unknown.exit_code == 1 and "unknown tenant nobody" in unknown.output
