"""Deterministic synthetic usage for demos and benches: a month of events for one tenant."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from billing.periods import Month, iso

MODELS = ["gpt-4o-mini", "gpt-4o", "claude-3-5-haiku"]


def month_of_usage(
    tenant_id: str, month: Month, events: int, *, seed: int = 0, query_share: float = 0.8, prefix: str = ""
) -> list[dict[str, Any]]:
    """``events`` wire-format events spread over the month: queries, embeddings and storage."""
    rng = random.Random(f"{tenant_id}:{month}:{seed}")
    seconds = month.seconds
    out = []
    for n in range(events):
        at = month.start + timedelta(seconds=rng.randrange(seconds))
        kind = rng.random()
        base = {"event_id": f"{prefix}{tenant_id}-{n:07d}", "tenant_id": tenant_id, "timestamp": iso(at)}
        if kind < query_share:
            out.append(
                {
                    **base,
                    "type": "query",
                    "model": rng.choice(MODELS),
                    "input_tokens": rng.randint(50, 4000),
                    "output_tokens": rng.randint(10, 1200),
                    "bytes": rng.choice([0, 0, rng.randint(1, 200_000)]),
                }
            )
        elif kind < query_share + (1 - query_share) * 0.75:
            out.append(
                {
                    **base,
                    "type": "embedding",
                    "model": "text-embedding-3-small",
                    "input_tokens": rng.randint(100, 8000),
                }
            )
        else:
            out.append({**base, "type": "storage", "bytes": rng.randint(1_000_000, 2_000_000_000)})
    return sorted(out, key=lambda e: (e["timestamp"], e["event_id"]))
