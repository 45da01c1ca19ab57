"""Helpers every test area shares."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from billing.runtime import container
from billing.tenants.tenant import PlanAssignment, Tenant


def create_tenant(
    tenant_id: str, plans: list[tuple[str, Any]] | list[PlanAssignment] | None = None, **fields: Any
) -> Tenant:
    """Store a tenant (name and email derived from its id unless given) and return it as stored.

    ``plans``: ``[(plan, effective_at), ...]`` or assignments; each area wraps this with its defaults."""
    fields.setdefault("name", tenant_id.title())
    fields.setdefault("email", f"billing@{tenant_id}.example")
    assignments = [
        p if isinstance(p, PlanAssignment) else PlanAssignment(plan=p[0], effective_at=p[1])
        for p in plans or []
    ]
    tenant = Tenant(id=tenant_id, plans=assignments, **fields)
    assert container.tenants().create(tenant), f"tenant {tenant_id} exists already"
    stored = container.tenants().get(tenant_id)
    assert stored is not None
    return stored


@dataclass(frozen=True)
class SimulateRun:
    invoices: Path  # the --out CSV
    lines: Path  # the --lines CSV
    output: str  # what the command printed

    @property
    def invoices_csv(self) -> str:
        return self.invoices.read_text()


def run_simulate(
    directory: Path,
    events: Iterable[dict[str, Any]] | Path,
    *extra: str,
    tenants: Path,
    plans: Path,
    pricebook: Path | None = None,
    month: str = "2025-11",
    raw_lines: Sequence[str] = (),
) -> SimulateRun:
    """``billing simulate`` through the CLI as an operator runs it (the caller points CLICKHOUSE_URL at
    the embedded engine): ``events`` an events file, or events written as JSON lines followed by
    ``raw_lines`` as they are; exit code 0 asserted."""
    from typer.testing import CliRunner

    from billing_cli import app

    events_path = events if isinstance(events, Path) else directory / "events.jsonl"
    if not isinstance(events, Path):
        events_path.write_text(
            "".join(json.dumps(e) + "\n" for e in events) + "".join(l + "\n" for l in raw_lines)
        )
    out, lines = directory / "invoices.csv", directory / "lines.csv"
    args = ["simulate", "--tenants", str(tenants), "--events", str(events_path), "--month", month]
    args += ["--out", str(out), "--plans", str(plans), "--lines", str(lines)]
    if pricebook is not None:
        args += ["--pricebook", str(pricebook)]
    result = CliRunner().invoke(app, [*args, *extra], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return SimulateRun(out, lines, result.output)
