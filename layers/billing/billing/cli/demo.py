"""``billing demo``: the whole pipeline on embedded defaults."""
from __future__ import annotations

from billing.cli import app


@app.command("demo")
def demo() -> None:
    """Run the main job end to end on embedded ClickHouse and in-process AWS (no setup needed)."""
    from billing.local.demo import run

    run()
