"""``billing simulate`` as the tests run it: tenants/plans/price book of this folder, November 2025."""

from __future__ import annotations

import csv
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from billing.kernel.periods import iso, parse_instant
from billing_cli import _load
from tests.conftest import CHDB_PATH
from tests.invoicing.conftest import billing, stripe_double  # noqa: F401 (the Stripe fixtures, for tests here)
from tests.support import run_simulate

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
        done = run_simulate(
            tmp_path,
            events,
            *extra,
            tenants=tenants,
            plans=DATA / "plans.yaml",
            pricebook=DATA / "pricebook.yaml",
            month=month,
        )
        lines = done.lines
        by_tenant: dict[str, dict[str, Decimal]] = {}
        rows = {}
        header = lines.read_text().splitlines()[0].split(",")
        for row in csv.DictReader(lines.read_text().splitlines()):
            by_tenant.setdefault(row["tenant_id"], {})[row["line_id"]] = Decimal(row["amount"])
            rows[(row["tenant_id"], row["line_id"])] = row
        assert header[0] == "tenant_id"
        return done.invoices_csv, by_tenant, rows

    return run
