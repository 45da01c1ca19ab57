"""``billing demo``: the whole pipeline on embedded defaults."""

from __future__ import annotations

import logging
import os
import warnings

import typer

from billing_cli import TRY, app
from billing_cli.output import json_option


@app.command("demo", rich_help_panel=TRY)
def demo(
    verbose: bool = typer.Option(False, "--verbose", help="also print the functions' JSON logs and metrics"),
    as_json: bool = json_option(),
) -> None:
    """Run the main job end to end on embedded ClickHouse and in-process AWS (no setup needed).

    Its narration is the output; with --json it goes to stderr and stdout gets one JSON document naming
    the files it wrote."""
    if as_json:  # Powertools prints EMF metrics on stdout, which holds the one document
        os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
    if not verbose:
        # The demo narrates what happens; the handlers' structured logs and EMF metrics would drown it.
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        from billing.runtime.observability import logger

        logger.setLevel(logging.ERROR)
    from rich.console import Console

    from billing_cli.demo.pipeline import MONTH, run
    from billing_cli.demo.rating import OUT_DIR
    from billing_cli.output import emit

    if not as_json:
        run()
        return
    run(Console(stderr=True, width=max(Console(stderr=True).width, 140)))
    out_dir = OUT_DIR.resolve()
    emit(
        {"month": MONTH, "invoices_csv": str(out_dir / f"invoices-{MONTH}.csv"), "out_dir": str(out_dir)},
        as_json=True,
    )
