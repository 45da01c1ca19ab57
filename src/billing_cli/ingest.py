"""``billing ingest FILE.jsonl``: the ingest Lambda's code path, from a JSON-lines file."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from billing.kernel.errors import BillingError
from billing.kernel.validation import exact_number
from billing.metering.events import UsageEvent, parse_event
from billing.runtime import container
from billing_cli import USAGE, app
from billing_cli.errors import ExitCode
from billing_cli.output import emit, json_option, progress_console


@app.command("ingest", rich_help_panel=USAGE)
def ingest(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="JSON lines"),
    batch_size: int = typer.Option(500, min=1, max=1000, help="events per request"),
    as_json: bool = json_option(),
) -> None:
    """Ingest usage events, one JSON object per line, through the same service as POST /v1/events.

    Lines that are not valid events are reported with their line number and skipped. Exit 5 when
    some events were refused or invalid and others accepted, 6 when none was accepted."""
    events: list[UsageEvent] = []
    problems: list[dict] = []  # {"line", "field", "reason"}: lines skipped
    for number, line in enumerate(file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line, parse_float=exact_number)  # property numbers exactly, as the API
        except ValueError as exc:
            problems.append({"line": number, "field": "", "reason": f"not JSON ({exc})"})
            continue
        event, found = parse_event(raw)
        if event is None:
            problems += [{"line": number, "field": p["field"], "reason": p["reason"]} for p in found]
        else:
            events.append(event)
    invalid = len({p["line"] for p in problems})
    service = container.ingest_service()
    totals: Counter = Counter()
    refused: list[dict] = []  # batches the service refused as a whole
    with Progress(
        TextColumn("ingesting"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=progress_console(),
        transient=True,
    ) as progress:
        task = progress.add_task("ingest", total=len(events))
        for start in range(0, len(events), batch_size):
            batch = events[start : start + batch_size]
            try:
                result = service.ingest(batch)
                totals["accepted"] += len(result.accepted)
                totals["duplicates"] += len(result.duplicates)
                totals["rejected_for_quota"] += len(result.rejected_for_quota)
                totals["queued"] += len(result.accepted) if result.queued else 0
            except BillingError as error:
                totals["refused"] += len(batch)
                refused.append(
                    {"first_event": start, "events": len(batch), "status": error.status, "error": error.code}
                    | {"message": error.message}
                )
            progress.advance(task, len(batch))
    counts = {k: totals[k] for k in ("accepted", "duplicates", "rejected_for_quota", "queued", "refused")} | {
        "invalid_lines": invalid
    }
    failed = bool(invalid or refused)
    document = {"file": str(file), **counts, "problems": problems, "refused_batches": refused}

    def human() -> list:
        out: list = [
            f"[red]line {p['line']}[/] {escape(p['field'] + ': ' if p['field'] else '')}{escape(p['reason'])}"
            for p in problems
        ]
        out += [
            f"[yellow]batch at event {r['first_event']}[/]: {r['status']} {escape(r['message'])}"
            for r in refused
        ]
        labels = {
            "rejected_for_quota": "rejected for quota",
            "queued": "queued (ClickHouse down)",
            "invalid_lines": "invalid lines",
        }
        out += [f"{labels.get(k, k)}: [bold]{v:,}[/]" for k, v in counts.items() if v or k == "accepted"]
        return out

    emit(document, human, as_json=as_json)
    if failed:
        raise typer.Exit(ExitCode.PARTIAL if totals["accepted"] or totals["duplicates"] else ExitCode.FAILED)
