"""Operator CLI: db migrate, ingest FILE.jsonl (same code path as the Lambda), usage."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from billing_cli import _load, app
from tests.metering.conftest import make_tenant, stored, usage

_load()
runner = CliRunner()


def test_db_migrate_is_idempotent(env):
    # Given a migrated database (the env fixture migrates), When migrate runs again
    result = runner.invoke(app, ["db", "migrate"])
    # Then nothing is applied twice
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output
    versions = env.store.query("SELECT version FROM schema_migrations ORDER BY version")
    assert len(versions) == len({v for v in versions})
    assert {"usage_events", "usage_hourly", "usage_daily"} <= {r[0] for r in env.store.query("SHOW TABLES")}


def test_ingest_a_jsonl_file_twice_counts_each_event_once(env, tmp_path):
    # Given a tenant and a JSON-lines file with one bad line
    make_tenant(plan="starter")
    lines = [json.dumps(usage(f"f-{i}", ts=f"2025-11-0{1 + i % 9}T00:00:00Z")) for i in range(30)]
    lines.insert(5, '{"event_id": "broken", "tenant_id": "acme-corp"}')
    path = tmp_path / "usage.jsonl"
    path.write_text("\n".join(lines) + "\n")
    # When it is ingested twice
    first = runner.invoke(app, ["ingest", str(path), "--batch-size", "7"])
    second = runner.invoke(app, ["ingest", str(path)])
    # Then the bad line is reported with its number, and the 30 events are stored once
    assert (
        first.exit_code == 5 and "line 6" in first.output
    )  # partial success and "accepted: 30" in first.output
    assert "duplicates: 30" in second.output
    assert stored(env)["events"] == 30


def test_usage_prints_the_month_by_model(env, post):
    make_tenant(plan="starter")
    post(
        {
            "events": [
                usage("u-1", input_tokens=1_000_000, output_tokens=0),
                usage("u-2", ts="2025-11-04T00:00:00Z", model="gpt-4o", input_tokens=10, output_tokens=0),
            ]
        }
    )
    result = runner.invoke(
        app, ["usage", "--tenant", "acme-corp", "--month", "2025-11"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    # gpt-4o-mini: 1e6 * 0.15 / 1e6 * 1.25 = 0.1875
    assert "0.187500000" in result.output and "gpt-4o " in result.output and "TOTAL" in result.output
    bad = runner.invoke(app, ["usage", "--tenant", "acme-corp", "--month", "2025-13"])
    assert bad.exit_code == 2 and "YYYY-MM" in bad.output
