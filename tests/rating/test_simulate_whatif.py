"""Pricing what-ifs through ``billing simulate --compare-plans/--compare-pricebook``: the same events
under two catalogs, both admissions simulated, the comparison worked out by hand.

Plans (tests/rating/data/plans.yaml): basic 30.00/month, tiers 1-10 @0.10, 11-20 @0.05; free 0.00,
quota 5, every query @0.50; plus 60.00. The proposal: basic at 36.00, free's quota down to 3.
A gpt-4o query with 100,000 input tokens costs 100,000 x 2.50 / 1e6 x 1.25 = 0.3125 at event time.
"""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from rich.console import Console

from billing.kernel.periods import Month, iso, parse_instant
from billing_cli import _load
from billing_cli.simulate import PlainProgress, run_with_progress
from billing_local.simulation import Catalog, SimulationSpec
from tests.conftest import CHDB_PATH
from tests.support import run_simulate

DATA = Path(__file__).resolve().parent / "data"
TENANTS = """tenants:
  - {id: steady, plans: [{plan: basic, effective_at: "2025-10-01T00:00:00Z"}]}
  - {id: capped, plans: [{plan: free, effective_at: "2025-10-01T00:00:00Z"}]}
  - {id: idle, plans: [{plan: plus, effective_at: "2025-10-01T00:00:00Z"}]}
"""


def queries(tenant: str, n: int, tokens: int = 0) -> list[dict]:
    start = parse_instant("2025-11-03T00:00:00Z")
    out = []
    for i in range(n):
        event = {
            "event_id": f"{tenant}-{i}",
            "tenant_id": tenant,
            "timestamp": iso(start + i * timedelta(hours=1)),
        }
        event["type"] = "query"
        if tokens:
            event.update(model="gpt-4o", input_tokens=tokens)
        out.append(event)
    return out


@pytest.fixture
def month(tmp_path, monkeypatch) -> dict[str, Path]:
    monkeypatch.setenv("CLICKHOUSE_URL", f"chdb://{CHDB_PATH}")
    _load()
    files = {"tenants": tmp_path / "tenants.yaml", "events": tmp_path / "events.jsonl"}
    files["tenants"].write_text(TENANTS)
    events = queries("steady", 12, tokens=100_000) + queries("capped", 8)
    files["events"].write_text("".join(json.dumps(e) + "\n" for e in events))
    proposed = (DATA / "plans.yaml").read_text()
    proposed = proposed.replace('base_fee: "30.00"', 'base_fee: "36.00"').replace(
        "query_quota: 5\n", "query_quota: 3\n"
    )
    files["proposed"] = tmp_path / "proposed.yaml"
    files["proposed"].write_text(proposed)
    return files


def run(files: dict[str, Path], tmp_path: Path, *extra: str) -> str:
    done = run_simulate(
        tmp_path, files["events"], *extra, tenants=files["tenants"], plans=DATA / "plans.yaml"
    )
    return done.output


def test_a_proposed_plans_file_is_compared_tenant_by_tenant_and_line_by_line(month, tmp_path):
    # When November is simulated under the current plans and the proposal
    output = run(
        month, tmp_path, "--compare-plans", str(month["proposed"]), "--out-diff", str(tmp_path / "diff.csv")
    )
    # Then the diff has, largest change first, both totals, the difference and the lines that moved:
    # steady's base fee 30.00 -> 36.00; capped: 5 x 0.50 -> 3 x 0.50, because the lower quota
    # refuses 2 queries at ingest that the current one accepts; idle unchanged
    assert (tmp_path / "diff.csv").read_text() == (
        "tenant_id,item,current,proposed,difference,admission\n"
        "steady,total,34.85,40.85,6.00,\n"  # 30 + 10 x 0.10 + 2 x 0.05 + usage 12 x 0.3125
        "steady,base:basic:1,30.00,36.00,6.00,\n"
        "capped,total,2.50,1.50,-1.00,2 queries the current catalog accepts are refused\n"
        "capped,queries:free:t1,2.50,1.50,-1.00,\n"
        "idle,total,60.00,60.00,0.00,\n"
        "*,total,97.35,102.35,5.00,admission differs for 1 tenant(s)\n"
    )
    # And the output says which tenants the proposal's admission affects
    assert "changes admission at ingest for 1 tenant(s)" in output
    assert "capped: 2 queries the current catalog accepts are refused" in output
    # And the CSV written is the current catalog's
    assert "steady,2025-11,12,1200000,34.85,2025-11-30" in (tmp_path / "invoices.csv").read_text()


def test_a_proposed_price_book_changes_event_time_costs_only(month, tmp_path):
    # Given a price book where gpt-4o input costs 5.00 per million, markup 0
    book = tmp_path / "book.yaml"
    book.write_text(
        'versions:\n  - effective_from: "2025-01-01T00:00:00Z"\n    markup: "0"\n'
        '    storage_per_gb: "0"\n    models:\n      gpt-4o: {input_per_1m: "5.00", output_per_1m: "0"}\n'
    )
    # When compared with the shipped one: 12 x 100,000 x 2.50 / 1e6 x 1.25 = 3.75 vs 12 x 0.50 = 6.00
    output = run(month, tmp_path, "--compare-pricebook", str(book), "--out-diff", str(tmp_path / "diff.csv"))
    # Then only steady's usage line moves, and admission is the same
    assert (tmp_path / "diff.csv").read_text().splitlines()[1:3] == [
        "steady,total,34.85,37.10,2.25,",
        "steady,usage,3.75,6.00,2.25,",
    ]
    assert "changes admission" not in output


def test_plain_progress_lines_say_events_rate_and_eta():
    # Given a progress of 1,000 events on a clock we move by hand, a line every 5 s
    now = [0.0]
    lines: list[str] = []
    progress = PlainProgress(lines.append, interval=5.0, clock=lambda: now[0])
    progress.start(1000)
    # When 100 events are done within 2 s, nothing is printed yet; 300 more by 6 s print a line
    now[0] = 2.0
    progress.advance(100)
    now[0] = 6.0
    progress.advance(300)
    progress.finish()
    # Then the line has done/total, percent, events/s and the ETA
    assert lines[0] == "ingest: 400/1,000 events (40%), 67 events/s, ETA 9 s"
    assert lines[1].startswith("ingest: 400/1,000 events (40%)")


def test_a_terminal_gets_a_progress_bar_and_a_log_gets_plain_lines(month, tmp_path, monkeypatch):
    spec = SimulationSpec(
        month["tenants"], month["events"], Month(2025, 11), Catalog(plans=DATA / "plans.yaml")
    )
    # When run attached to a terminal, the rich bar is drawn (with its rate column)
    screen = io.StringIO()
    run_with_progress(spec, Console(file=screen, force_terminal=True, width=120))
    assert "ingest" in screen.getvalue() and "\x1b[" in screen.getvalue()
    # When not, a final plain line says it all (periodic ones come every 5 s on longer runs)
    log = io.StringIO()
    run_with_progress(spec, Console(file=log, force_terminal=False, width=120))
    assert "ingest: 20/20 events (100%)" in log.getvalue() and "events/s, done in" in log.getvalue()
