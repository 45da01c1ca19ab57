"""``billing ingest FILE.jsonl``: the ingest Lambda's code path, from a JSON-lines file."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from billing.kernel.errors import BillingError
from billing.kernel.validation import exact_number
from billing.metering.events import UsageEvent, parse_event
from billing.runtime import container
from billing_cli import app


@app.command("ingest")
def ingest(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="JSON lines"),
    batch_size: int = typer.Option(500, min=1, max=1000, help="events per request"),
) -> None:
    """Ingest usage events, one JSON object per line, through the same service as POST /v1/events.
    Lines that are not valid events are reported with their line number and skipped."""
    console = Console()
    events: list[UsageEvent] = []
    invalid = 0
    for number, line in enumerate(file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line, parse_float=exact_number)  # property numbers exactly, as the API
        except ValueError as exc:
            console.print(f"[red]line {number}[/]: not JSON ({exc})")
            invalid += 1
            continue
        event, problems = parse_event(raw)
        if event is None:
            for p in problems:
                console.print(f"[red]line {number}[/] {p['field']}: {p['reason']}")
            invalid += 1
        else:
            events.append(event)
    service = container.ingest_service()
    totals: Counter = Counter()
    with Progress(
        TextColumn("ingesting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console
    ) as progress:
        task = progress.add_task("ingest", total=len(events))
        for start in range(0, len(events), batch_size):
            batch = events[start : start + batch_size]
            try:
                result = service.ingest(batch)
                totals["accepted"] += len(result.accepted)
                totals["duplicates"] += len(result.duplicates)
                totals["rejected for quota"] += len(result.rejected_for_quota)
                totals["queued (ClickHouse down)"] += len(result.accepted) if result.queued else 0
            except BillingError as error:
                totals[f"refused: {error.code}"] += len(batch)
                console.print(f"[yellow]batch at event {start}[/]: {error.status} {error.message}")
            progress.advance(task, len(batch))
    totals["invalid lines"] = invalid
    for key, value in totals.items():
        if value:
            console.print(f"{key}: [bold]{value:,}[/]")
    if invalid or any(k.startswith("refused") for k in totals):
        raise typer.Exit(code=1)
