"""``billing simulate`` as the tests run it: tenants/plans/price book of this folder, November 2025."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from billing.periods import iso, parse_instant
from billing_cli import _load, app
from tests.conftest import CHDB_PATH
from tests.invoicing.conftest import billing, stripe_double  # noqa: F401 (the Stripe fixtures, for tests here)

DATA = Path(__file__).resolve().parent
HOUR, DAY = timedelta(hours=1), timedelta(days=1)


def ev(tenant: str, eid: str, ts: datetime, type: str = "query", **fields: object) -> dict:
    return {"event_id": eid, "tenant_id": tenant, "timestamp": iso(ts), "type": type, **fields}


def series(tenant: str, prefix: str, start: str, n: int, step: timedelta, **fields: object) -> list[dict]:
    t0 = parse_instant(start)
    return [ev(tenant, f"{prefix}{i}", t0 + i * step, **fields) for i in range(n)]


@pytest.fixture
def simulate(tmp_path, monkeypatch):
    monkeypatch.setenv("CLICKHOUSE_URL", f"chdb://{CHDB_PATH}")
    _load()

    def run(events: list[dict], *extra: str, tenants: Path = DATA / "tenants.yaml", month: str = "2025-11"):
        events_path = tmp_path / "events.jsonl"
        events_path.write_text("".join(json.dumps(e) + "\n" for e in events))
        out, lines = tmp_path / "invoices.csv", tmp_path / "lines.csv"
        result = CliRunner().invoke(
            app,
            [
                "simulate",
                "--tenants",
                str(tenants),
                "--events",
                str(events_path),
                "--month",
                month,
                "--out",
                str(out),
                "--plans",
                str(DATA / "plans.yaml"),
                "--pricebook",
                str(DATA / "pricebook.yaml"),
                "--lines",
                str(lines),
                *extra,
            ],
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output
        by_tenant: dict[str, dict[str, Decimal]] = {}
        rows = {}
        header = lines.read_text().splitlines()[0].split(",")
        import csv

        for row in csv.DictReader(lines.read_text().splitlines()):
            by_tenant.setdefault(row["tenant_id"], {})[row["line_id"]] = Decimal(row["amount"])
            rows[(row["tenant_id"], row["line_id"])] = row
        assert header[0] == "tenant_id"
        return out.read_text(), by_tenant, rows

    return run
