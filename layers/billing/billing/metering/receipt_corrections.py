"""The corrections receipts show (billing.metering.receipts.CorrectionsSource), read from the
corrections' audit trail (billing.metering.corrections: one record per event, its trail of applied
corrections and the plan pending, if any).

Invariant: a correction is listed once, in the order applied, the pending one (begun, not yet
recorded) last with ``applied`` False; its ``difference`` is the new version minus the one it
corrected (a void: the negated version, one event fewer), exactly (cost as decimal text)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Protocol

from billing.kernel.periods import parse_instant
from billing.metering.corrections import EventState
from billing.metering.receipt_views import Correction

QUANTITIES = ("input_tokens", "output_tokens", "bytes")


class CorrectionStates(Protocol):
    """The events' correction records (billing.adapters.dynamodb.corrections)."""

    def states(self, tenant_id: str, event_ids: Sequence[str]) -> dict[str, EventState]: ...


class TrailCorrections:
    """Receipts' corrections from the audit trail: one batched read for the ids asked."""

    def __init__(self, ledger: CorrectionStates):
        self.ledger = ledger

    def corrections_of(self, tenant_id: str, event_ids: Sequence[str]) -> dict[str, list[Correction]]:
        found: dict[str, list[Correction]] = {}
        for event_id, state in self.ledger.states(tenant_id, event_ids).items():
            listed = [correction(entry) for entry in state.trail]
            if state.pending is not None:
                listed.append(correction(state.pending.entry(), applied=False))
            if listed:
                found[event_id] = listed
        return found


def correction(entry: dict[str, Any], *, applied: bool = True) -> Correction:
    """An audit trail entry as a receipt's correction."""
    return Correction(
        correction_id=entry["correction_id"],
        kind=entry["action"],
        at=parse_instant(entry["at"]),
        reason=entry["reason"],
        requested_by=entry["requested_by"],
        difference=difference(entry["before"], entry["after"]),
        applied=applied,
    )


def difference(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    """``after`` minus ``before`` (public versions; ``after`` None for a void): events, each
    quantity that changed, the cost as exact text, and the model when it changed."""
    old, new = before or {}, after or {}
    changed: dict[str, Any] = {"events": -1 if after is None else 0}
    for field in QUANTITIES:
        delta = int(new.get(field, 0)) - int(old.get(field, 0))
        if delta:
            changed[field] = delta
    changed["cost_usd"] = str(Decimal(str(new.get("cost_usd", "0"))) - Decimal(str(old.get("cost_usd", "0"))))
    if after is not None and new.get("model") != old.get("model"):
        changed["model"] = {"before": old.get("model"), "after": new.get("model")}
    return changed
