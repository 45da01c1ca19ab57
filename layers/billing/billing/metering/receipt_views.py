"""What receipts and the reconcile answer, and the requests they take (billing.metering.receipts
computes them): value types only.

Invariants: a receipt's ``status`` is one of ``STATUSES``; a reconciliation ``agree``s exactly when
the accepted and stored ids are the same (unless the ledger's claims of the month expired:
``accepted`` None), the statement's event count equals the stored events its cutoff covers, and the
fallback queue is empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from billing.kernel.periods import iso
from billing.kernel.validation import Identifier

MAX_RECEIPT_IDS = 100  # ids per receipts request: one BatchGetItem of claims, one ClickHouse query
MAX_LISTED_IDS = 1000  # ids named per difference in a reconcile answer (the counts are exact)

STATUSES = ("unknown", "pending", "missing", "queued", "stored", "billed")
CORRECTED = ("voided", "amended")  # a receipt's ``corrected``, beside its status


@dataclass(frozen=True)
class CorrectionRow:
    """A correction's row in ClickHouse: ``<correction_id>#void`` (sign -1) or ``#amend`` (sign 1)."""

    correction_id: str
    kind: str  # "void" or "amend": the row's own suffix (an amend writes one of each)
    sign: int
    stored_at: datetime


@dataclass(frozen=True)
class StoredRow:
    timestamp: datetime
    stored_at: datetime  # of the first stored copy: it decides the statement that bills it


@dataclass(frozen=True)
class Correction:
    """A correction of an accepted event, as a corrections store reports it: ``difference`` is what
    it changed (``events``, the quantities, ``cost_usd`` as exact text); ``applied`` False while it
    is begun and not yet recorded (the retry of its request finishes it). ``billed`` and ``message``
    (where the correction itself is billed) are filled by the receipt from its rows' ``stored_at``."""

    correction_id: str
    kind: str  # "void" or "amend"
    at: datetime
    reason: str = ""
    requested_by: str = ""
    difference: dict[str, Any] = field(default_factory=dict)
    applied: bool = True
    billed: dict[str, Any] | None = None
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "correction_id": self.correction_id,
            "kind": self.kind,
            "at": iso(self.at),
            "reason": self.reason,
            "requested_by": self.requested_by,
            "applied": self.applied,
            "difference": self.difference,
            "billed": self.billed,
            "message": self.message,
        }


@dataclass
class Receipt:
    tenant_id: str
    event_id: str
    status: str
    message: str
    accepted: bool = False
    batch_id: str | None = None
    stored: StoredRow | None = None
    queued: bool = False
    billed: dict[str, Any] | None = None
    corrections: list[Correction] = field(default_factory=list)

    @property
    def corrected(self) -> str | None:
        """``voided`` or ``amended`` once a correction of the event is applied, else None."""
        applied = [c for c in self.corrections if c.applied]
        if not applied:
            return None
        return "voided" if applied[-1].kind == "void" else "amended"

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "event_id": self.event_id,
            "status": self.status,
            "message": self.message,
            "accepted": self.accepted,
            "batch_id": self.batch_id,
            "stored": (
                {"timestamp": iso(self.stored.timestamp), "stored_at": iso(self.stored.stored_at)}
                if self.stored
                else None
            ),
            "queued": self.queued,
            "billed": self.billed,
            "corrected": self.corrected,
            "corrections": [c.to_json() for c in self.corrections],
        }


@dataclass
class Reconciliation:
    tenant_id: str
    month: str
    accepted: int | None  # None: the ledger no longer holds the month (its claims expired)
    stored: int
    billed: (
        int | None
    )  # the statement's event count; None: no statement (yet), or one stored before it was counted
    billed_on_time: int  # stored events the statement's cutoff covers (what ``billed`` must equal)
    late: int  # stored after that cutoff: adjustment lines of later statements, or billed later
    fallback_queue_depth: int
    accepted_not_stored: list[dict[str, Any]]
    stored_not_accepted: list[str]
    accepted_not_stored_count: int = 0
    stored_not_accepted_count: int = 0
    statement_id: str | None = None
    notes: list[str] = field(default_factory=list)
    voided: int = 0  # stored events voided (each still accepted and stored; billed as nothing)
    amended: int = 0  # amends applied (they change quantities, not the count of events)
    corrections_late: int = 0  # corrections stored after the cutoff: adjustments on a later statement

    @property
    def agree(self) -> bool:
        counts = self.accepted is None or (
            not self.accepted_not_stored_count and not self.stored_not_accepted_count
        )
        billed = self.billed is None or self.billed == self.billed_on_time
        return counts and billed and not self.fallback_queue_depth

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "month": self.month,
            "agree": self.agree,
            "accepted": self.accepted,
            "stored": self.stored,
            "billed": self.billed,
            "billed_on_time": self.billed_on_time,
            "late": self.late,
            "voided": self.voided,
            "amended": self.amended,
            "corrections_late": self.corrections_late,
            "statement_id": self.statement_id,
            "fallback_queue_depth": self.fallback_queue_depth,
            "accepted_not_stored": self.accepted_not_stored,
            "accepted_not_stored_count": self.accepted_not_stored_count,
            "stored_not_accepted": self.stored_not_accepted,
            "stored_not_accepted_count": self.stored_not_accepted_count,
            "notes": self.notes,
        }


class ReceiptsRequest(BaseModel):
    """``POST /v1/receipts``: a tenant and 1 to ``MAX_RECEIPT_IDS`` of its event ids."""

    model_config = ConfigDict(extra="forbid", strict=True)
    tenant_id: Identifier
    event_ids: Annotated[list[Identifier], Field(min_length=1, max_length=MAX_RECEIPT_IDS)]


class ReceiptQuery(BaseModel):
    """``GET /v1/events/{event_id}/receipt?tenant_id=``: one event id of a tenant."""

    model_config = ConfigDict(extra="forbid", strict=True)
    tenant_id: Identifier
    event_id: Identifier
