"""Stripe's own example objects, the base of every object the double returns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES_PATH = Path(__file__).resolve().parent.parent / "stripe_fixtures.json"


def load_fixtures(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """Stripe's example objects: the project's copy, else the shared original beside the clone."""
    from billing_local.template import PROJECT_ROOT

    for candidate in (path, FIXTURES_PATH, PROJECT_ROOT.parent / "shared/stripe/fixtures3.json"):
        if candidate is not None and candidate.exists():
            resources: dict[str, dict[str, Any]] = json.loads(candidate.read_text())["resources"]
            return resources
    raise FileNotFoundError("Stripe fixtures not found (billing_local/stripe_fixtures.json)")
