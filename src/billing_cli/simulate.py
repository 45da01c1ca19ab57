"""``billing simulate``: a month of usage through ingest, rating and the close, offline; and pricing
what-ifs (the same usage under a proposed catalog, compared tenant by tenant and line by line).

The report and the comparison are the output (stdout; one JSON document with ``--json``); progress
goes to stderr. The engine is ``billing_local.simulation`` (production ingest service, quota logic, rater and close
on in-memory stores and a fresh embedded ClickHouse); the comparison is ``billing_local.whatif``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from billing.kernel.periods import Month
from billing.runtime.observability import logger
from billing_cli import PRICING, app
from billing_cli.errors import CliFailure
from billing_cli.output import emit, json_option, progress_console
from billing_local.simulation import (
    Catalog,
    SimulationFailed,
    SimulationInputError,
    SimulationReport,
    SimulationResult,
    SimulationSpec,
)
from billing_local.simulation import (
    simulate as run_simulation,
)
from billing_local.whatif import Comparison, compare, diff_csv

SHOWN_TENANTS = 20  # what-if tenants printed; --out-diff has all of them


class PlainProgress:
    """Progress as periodic plain lines (a log shows the run is alive): events done, events/s, ETA."""

    def __init__(
        self,
        write: Callable[[str], None],
        *,
        label: str = "ingest",
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.write, self.label, self.interval, self.clock = write, label, interval, clock
        self.total: int | None = None
        self.done = 0
        self.started = self.last = clock()

    def start(self, total: int) -> None:
        self.total = total
        self.started = self.last = self.clock()

    def advance(self, count: int) -> None:
        self.done += count
        if self.clock() - self.last >= self.interval:
            self.last = self.clock()
            self.write(self.line())

    def finish(self) -> None:
        self.write(self.line())

    def line(self) -> str:
        elapsed = max(self.clock() - self.started, 1e-9)
        rate = self.done / elapsed
        text = f"{self.label}: {self.done:,}"
        if self.total:
            text += f"/{self.total:,} events ({100 * self.done / self.total:.0f}%)"
        else:
            text += " events"
        text += f", {rate:,.0f} events/s"
        if self.total and self.done < self.total and rate > 0:
            text += f", ETA {(self.total - self.done) / rate:,.0f} s"
        elif self.total and self.done >= self.total:
            text += f", done in {elapsed:,.1f} s"
        return text


class RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.0f} events/s" if task.speed else "", style="progress.data.speed")


def report_renderables(report: SimulationReport, title: str = "") -> list:
    seconds = sum(report.seconds.values())
    out: list = []
    out.append(
        f"[bold]{title or report.month}[/]: {report.tenants} tenants, {report.events_read} events read, "
        f"{report.accepted} accepted, {report.duplicates} duplicates, {report.rejected_total} rejected"
        + (f" ({seconds:.1f} s, {report.workers} worker(s))" if seconds else "")
    )
    for reason, count in sorted(report.rejected.items()):
        out.append(f"  rejected ({reason}): {count}")
    out += [Text(f"  {example}", style="dim") for example in report.examples]
    table = Table("tenant", "queries", "tokens", "total", "invoice date", "final")
    for s in report.statements:
        table.add_row(
            s.tenant_id,
            f"{s.total_queries:,}",
            f"{s.total_tokens:,}",
            f"{s.total:.2f}",
            s.invoice_date,
            "yes" if s.is_final else "",
        )
    out.append(table)
    return out


def report_json(report: SimulationReport) -> dict:
    return {
        "month": report.month,
        "tenants": report.tenants,
        "events_read": report.events_read,
        "accepted": report.accepted,
        "duplicates": report.duplicates,
        "rejected": dict(sorted(report.rejected.items())),
        "rejected_total": report.rejected_total,
        "examples": report.examples,
        "seconds": report.seconds,
        "workers": report.workers,
        "statements": [
            {
                "tenant_id": s.tenant_id,
                "total_queries": s.total_queries,
                "total_tokens": s.total_tokens,
                "total": s.total,
                "currency": s.currency,
                "invoice_date": s.invoice_date,
                "is_final": s.is_final,
            }
            for s in report.statements
        ],
    }


def comparison_json(comparison: Comparison) -> dict:
    return {
        "month": comparison.month,
        "current_total": comparison.current_total,
        "proposed_total": comparison.proposed_total,
        "difference": comparison.difference,
        "tenants": [
            {
                "tenant_id": t.tenant_id,
                "current": t.current,
                "proposed": t.proposed,
                "difference": t.difference,
                "lines": [
                    {
                        "line_id": l.line_id,
                        "current": l.current,
                        "proposed": l.proposed,
                        "difference": l.difference,
                    }
                    for l in t.lines
                ],
                "admission": t.admission.describe() if t.admission else None,
                "note": t.note,
            }
            for t in comparison.changed
        ],
    }


def comparison_renderables(comparison: Comparison) -> list:
    total = comparison.current_total
    share = f", {100 * comparison.difference / total:+.1f}%" if total else ""
    out: list = []
    out.append(
        f"[bold]What-if {comparison.month}[/]: current {comparison.current_total:,.2f} -> proposed "
        f"{comparison.proposed_total:,.2f} ({comparison.difference:+,.2f}{share}); "
        f"{len(comparison.changed)} of {len(comparison.tenants)} tenants change"
    )
    affected = comparison.admission_changed
    if affected:
        out.append(
            f"[yellow]The proposal also changes admission at ingest for {len(affected)} tenant(s)[/] "
            "(simulated: refused events are neither stored nor billed):"
        )
        for t in affected:
            assert t.admission is not None
            out.append(f"  {t.tenant_id}: {t.admission.describe()}")
    table = Table("tenant", "current", "proposed", "difference", "lines moved (largest first)")
    for t in comparison.changed[:SHOWN_TENANTS]:
        moved = ", ".join(f"{l.line_id} {l.difference:+.2f}" for l in t.lines[:4])
        if len(t.lines) > 4:
            moved += f", +{len(t.lines) - 4} more"
        table.add_row(
            t.tenant_id,
            "" if t.current is None else f"{t.current:,.2f}",
            "" if t.proposed is None else f"{t.proposed:,.2f}",
            f"{t.difference:+,.2f}",
            moved + (f" [dim]{t.note}[/]" if t.note else ""),
        )
    table.add_row(
        "[bold]total[/]",
        f"{comparison.current_total:,.2f}",
        f"{comparison.proposed_total:,.2f}",
        f"{comparison.difference:+,.2f}",
        "",
    )
    out.append(table)
    if len(comparison.changed) > SHOWN_TENANTS:
        out.append(f"  [dim]{len(comparison.changed) - SHOWN_TENANTS} more tenants change: see --out-diff[/]")
    return out


def run_with_progress(spec: SimulationSpec, console: Console) -> SimulationResult:
    """The simulation with a progress bar on a terminal, periodic plain lines otherwise."""
    label = "ingest (current + proposed)" if spec.proposed else "ingest"
    if console.is_terminal:
        with Progress(
            TextColumn(label),
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task(label, total=None)
            return run_simulation(
                spec,
                total=lambda n: bar.update(task, total=n),
                progress=lambda n: bar.advance(task, n),
            )
    plain = PlainProgress(lambda text: console.print(text, highlight=False), label=label)
    result = run_simulation(spec, total=plain.start, progress=plain.advance)
    plain.finish()
    return result


@app.command("simulate", rich_help_panel=PRICING)
def simulate(
    tenants: Path = typer.Option(..., "--tenants", exists=True, dir_okay=False, help="tenants YAML or JSON"),
    events: Path = typer.Option(
        ..., "--events", exists=True, dir_okay=False, help="usage events, JSON lines"
    ),
    month: str = typer.Option(
        ...,
        "--month",
        help="YYYY-MM; for tenants with a billing calendar, their periods starting in it (local time)",
    ),
    out: Path = typer.Option(..., "--out", dir_okay=False, help="invoice CSV to write"),
    plans: Path | None = typer.Option(None, "--plans", exists=True, dir_okay=False, help="plans YAML"),
    pricebook: Path | None = typer.Option(
        None, "--pricebook", exists=True, dir_okay=False, help="price book YAML"
    ),
    lines: Path | None = typer.Option(
        None, "--lines", dir_okay=False, help="also write every statement line"
    ),
    compare_plans: Path | None = typer.Option(
        None, "--compare-plans", exists=True, dir_okay=False, help="what-if: proposed plans YAML"
    ),
    compare_pricebook: Path | None = typer.Option(
        None, "--compare-pricebook", exists=True, dir_okay=False, help="what-if: proposed price book YAML"
    ),
    out_diff: Path | None = typer.Option(
        None, "--out-diff", dir_okay=False, help="what-if: write the comparison CSV"
    ),
    workers: int = typer.Option(
        0, "--workers", min=0, help="processes sharing the tenants (0: by input size and CPUs)"
    ),
    as_json: bool = json_option(),
) -> None:
    """Run tenants and events through ingest, rating and the close offline; write the month's CSV.
    Tenants with a billing calendar (``calendars``) get a statement per period starting in the month
    in their own time zone.

    With --compare-plans/--compare-pricebook, also under the proposal, and compare."""
    try:
        target = Month.parse(month)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--month") from None
    if out_diff and not (compare_plans or compare_pricebook):
        raise typer.BadParameter("needs --compare-plans or --compare-pricebook", param_hint="--out-diff")
    current = Catalog(plans=plans, pricebook=pricebook)
    proposed = None
    if compare_plans or compare_pricebook:
        proposed = Catalog(plans=compare_plans or plans, pricebook=compare_pricebook or pricebook)
    spec = SimulationSpec(tenants, events, target, current, proposed, workers=workers)
    console = progress_console()
    # Per-batch logs would drown the report; the level is given back, as the command may run inside
    # a process that keeps logging (a `billing serve` answering `billing --local DIR simulate`).
    level = logger.log_level
    logger.setLevel("WARNING")
    try:
        result = run_with_progress(spec, console)
    except SimulationInputError as exc:
        raise typer.BadParameter(str(exc)) from None
    except SimulationFailed as exc:
        raise CliFailure(f"simulation failed: {exc}") from None
    finally:
        logger.setLevel(level)
    report = result.current
    out.write_bytes(report.csv)
    if lines:
        lines.write_bytes(report.lines_csv)
    human = report_renderables(report, title=f"{report.month} (current)" if result.proposed else "")
    document: dict = {"current": report_json(report), "proposed": None, "comparison": None}
    written = [str(out)] + ([str(lines)] if lines else [])
    if result.proposed:
        human += report_renderables(result.proposed, title=f"{report.month} (proposed)")
        comparison = compare(report, result.proposed)
        human += comparison_renderables(comparison)
        document |= {"proposed": report_json(result.proposed), "comparison": comparison_json(comparison)}
        if out_diff:
            out_diff.write_bytes(diff_csv(comparison))
            written.append(str(out_diff))
    human.append("wrote " + " and ".join(written))
    emit({"month": report.month, **document, "written": written}, human, as_json=as_json)
