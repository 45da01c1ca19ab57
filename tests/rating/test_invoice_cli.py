"""``billing invoice preview|export|close`` against the configured (test) environment."""

from __future__ import annotations

import json

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


def test_close_prints_json_or_a_table_not_a_dict_repr(env):
    _load()
    make_tenant("acme", [("starter", "2025-10-01T00:00:00Z")])
    env.store.insert_events(queries("acme", 3, "2025-11-02T00:00:00Z"))
    runner = CliRunner()
    # Given a month to close, When it is closed with --json
    done = runner.invoke(app, ["invoice", "close", "--month", "2025-11", "--json"], catch_exceptions=False)
    # Then stdout is exactly the JSON summary, and progress went to stderr
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)
    assert summary["month"] == "2025-11" and summary["statements"] == 1
    assert summary["statements_created"] == 1 and summary["jobs_enqueued"] == 1
    assert "closed 2025-11 in" in done.stderr
    # When it is closed again without --json: a table of the statements, no Python dict
    again = runner.invoke(app, ["invoice", "close", "--month", "2025-11"], catch_exceptions=False)
    assert again.exit_code == 0
    assert "{'" not in again.stdout and "acme" in again.stdout and "29.03 USD" in again.stdout
    assert "1 statement(s), 0 stored now" in again.stdout
