"""Deterministic synthetic usage for demos and benches: a month of events for one tenant."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from billing.kernel.periods import Month, iso

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


# ------------------------------------------------------------------------------------------ a month
# Tenant archetypes of a simulated month, cycled through: (name, weight of its share of the events).
ARCHETYPES = [
    ("idle", 0),  # subscribed, no usage: base fee only
    ("payg", 6),  # pay as you go: no base fee, every query priced
    ("tiers", 24),  # starter across every tier, and over its quota late in the month
    ("capped", 3),  # free plan, quota 100: most queries refused
    ("upgrade", 10),  # starter -> pro mid-month (tiers carry over)
    ("downgrade", 10),  # pro -> starter mid-month
    ("trial", 8),  # signs up this month with a 14-day trial
    ("cancel", 8),  # cancels mid-month; later events are refused
    ("late", 6),  # first plan mid-month; earlier events are refused
    ("enterprise", 15),  # large, one plan
    ("steady", 10),  # pro, one plan
]
UNKNOWN_MODEL = "gpt-unreleased"  # not in any price book: such an event is refused as invalid


def price_book_with_change(month: Month) -> dict[str, Any]:
    """The shipped price book plus a version effective mid-month (new model prices, higher markup)."""
    change = month.start + timedelta(days=15)
    return {
        "versions": [
            {
                "effective_from": "2025-01-01T00:00:00Z",
                "markup": "0.25",
                "storage_per_gb": "0.10",
                "models": {
                    "gpt-4o-mini": {"input_per_1m": "0.15", "output_per_1m": "0.60"},
                    "gpt-4o": {"input_per_1m": "2.50", "output_per_1m": "10.00"},
                    "claude-3-5-haiku": {"input_per_1m": "0.80", "output_per_1m": "4.00"},
                    "text-embedding-3-small": {"input_per_1m": "0.02", "output_per_1m": "0"},
                },
            },
            {
                "effective_from": iso(change),
                "id": f"{month}-mid",
                "markup": "0.30",
                "storage_per_gb": "0.08",
                "models": {
                    "gpt-4o-mini": {"input_per_1m": "0.12", "output_per_1m": "0.48"},
                    "gpt-4o": {"input_per_1m": "2.50", "output_per_1m": "10.00"},
                    "claude-3-5-haiku": {"input_per_1m": "1.00", "output_per_1m": "5.00"},
                    "text-embedding-3-small": {"input_per_1m": "0.02", "output_per_1m": "0"},
                },
            },
        ]
    }


def _tenant(index: int, archetype: str, month: Month) -> dict[str, Any]:
    """A tenant record (the ``billing simulate --tenants`` form) of one archetype, plans from config/plans.yaml."""
    tid = f"{archetype}-{index:04d}"
    before = iso(month.start - timedelta(days=40))
    mid = month.start + timedelta(days=10 + index % 9, hours=index % 24)
    record: dict[str, Any] = {"id": tid, "name": tid.title(), "email": f"billing@{tid}.example"}
    plan = {
        "idle": "starter",
        "payg": "payg",
        "tiers": "starter",
        "capped": "free",
        "enterprise": "enterprise",
    }
    if archetype in plan:
        record["plans"] = [{"plan": plan[archetype], "effective_at": before}]
    elif archetype == "upgrade":
        record["plans"] = [
            {"plan": "starter", "effective_at": before},
            {"plan": "pro", "effective_at": iso(mid)},
        ]
    elif archetype == "downgrade":
        record["plans"] = [
            {"plan": "pro", "effective_at": before},
            {"plan": "starter", "effective_at": iso(mid)},
        ]
    elif archetype == "trial":
        start = month.start + timedelta(days=index % 5, hours=3)
        record["plans"] = [{"plan": "starter", "effective_at": iso(start)}]
        record["trial_ends_at"] = iso(start + timedelta(days=14))
    elif archetype == "cancel":
        record["plans"] = [{"plan": "pro", "effective_at": before}]
        record["canceled_at"] = iso(mid + timedelta(days=5, milliseconds=index % 1000))
    elif archetype == "late":
        record["plans"] = [{"plan": "starter", "effective_at": iso(mid)}]
    else:  # steady
        record["plans"] = [{"plan": "pro", "effective_at": before}]
    return record


def simulated_month(
    month: Month,
    *,
    tenants: int = 11,
    events: int = 58_430,
    seed: int = 0,
    duplicates: float = 0.004,
    unknown_models: int = 3,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(tenant records, wire-format events) of a month exercising every rule: zero usage, pay as you
    go, graduated tiers, quota exceeded, upgrade, downgrade, trial, cancellation, late signup, events
    exactly at a plan change, exact duplicate copies (a client retry, right after the original) and
    ``unknown_models`` events of a model no price book knows (usage exported from production has
    none: the API refuses them). Pair it with ``price_book_with_change(month)``.
    Deterministic for a given seed; events come in (timestamp, event_id) order."""
    rng = random.Random(f"month:{month}:{seed}")
    records = [_tenant(i, ARCHETYPES[i % len(ARCHETYPES)][0], month) for i in range(tenants)]
    weights = [ARCHETYPES[i % len(ARCHETYPES)][1] for i in range(tenants)]
    total_weight = sum(weights) or 1
    counts = [events * w // total_weight for w in weights]
    for i in range(events - sum(counts)):  # the rounding remainder, to tenants with usage
        counts[[j for j, w in enumerate(weights) if w][i % max(1, sum(1 for w in weights if w))]] += 1
    out: list[dict[str, Any]] = []
    for record, count in zip(records, counts):
        if not count:
            continue
        tid = record["id"]
        usage = month_of_usage(tid, month, count, seed=seed, query_share=0.85)
        changes = [p["effective_at"] for p in record["plans"][1:]]
        for n, event in enumerate(usage):
            if n < len(changes):  # a query exactly at each plan change: it belongs to the new plan
                event.update(timestamp=changes[n], type="query", model="gpt-4o-mini", bytes=0)
                event.update(input_tokens=100, output_tokens=10)
            else:  # milliseconds, so ties at one second are rare but ordering is exercised
                event["timestamp"] = event["timestamp"][:-1] + f".{rng.randrange(1000):03d}Z"
        out.extend(usage)
    with_model = [e for e in out if e.get("model")]
    for event in rng.sample(with_model, min(unknown_models, len(with_model))):
        event["model"] = UNKNOWN_MODEL
    out.sort(key=lambda e: (e["timestamp"], e["event_id"]))
    with_copies: list[dict[str, Any]] = []
    for event in out:
        with_copies.append(event)
        if rng.random() < duplicates:
            with_copies.append(dict(event))
    return records, with_copies
