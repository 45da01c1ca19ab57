"""``billing demo``: the whole pipeline on embedded defaults."""

from __future__ import annotations

import logging
import os
import warnings

import typer

from billing_cli import app


@app.command("demo")
def demo(
    verbose: bool = typer.Option(False, "--verbose", help="also print the functions' JSON logs and metrics"),
) -> None:
    """Run the main job end to end on embedded ClickHouse and in-process AWS (no setup needed)."""
    if not verbose:
        # The demo narrates what happens; the handlers' structured logs and EMF metrics would drown it.
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        from billing.runtime.observability import logger

        logger.setLevel(logging.ERROR)
    from billing_cli.demo.pipeline import run

    run()
