"""Dunning facts and the per-invoice record they fold into: commutative and idempotent by construction.

Applying the same facts in any order, any number of times, gives the same ``InvoiceDunning``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from billing.dunning.schedule import retry_due_at
from billing.kernel.periods import iso, parse_instant

Resolution = Literal["paid", "void", "uncollectible"]
InvoiceState = Literal["open", "past_due", "exhausted", "paid", "void", "uncollectible"]

RESOLUTION_RANK: dict[str, int] = {"uncollectible": 1, "paid": 2, "void": 2}


@dataclass(frozen=True, order=True)
class Mark:
    """When something happened and which event says so (Stripe ``evt_...`` or ``retry:...``)."""

    at: datetime
    event_id: str

    def to_json(self) -> dict[str, str]:
        return {"at": iso(self.at), "event_id": self.event_id}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Mark | None:
        return cls(parse_instant(data["at"]), data["event_id"]) if data else None


@dataclass(frozen=True)
class ResolutionMark:
    kind: Resolution
    mark: Mark

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.mark.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> ResolutionMark | None:
        if not data:
            return None
        return cls(data["kind"], Mark(parse_instant(data["at"]), data["event_id"]))


@dataclass(frozen=True)
class Attempt:
    """One of our own retries (``invoices.pay``), made by the dunning job."""

    n: int
    at: datetime
    succeeded: bool
    failure_code: str | None = None
    failure_message: str | None = None
    invoice_status: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "at": iso(self.at),
            "succeeded": self.succeeded,
            "failure_code": self.failure_code,
            "failure_message": self.failure_message,
            "invoice_status": self.invoice_status,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Attempt:
        return cls(
            int(data["n"]),
            parse_instant(data["at"]),
            bool(data["succeeded"]),
            data.get("failure_code"),
            data.get("failure_message"),
            data.get("invoice_status"),
        )


@dataclass(frozen=True)
class Finalized:
    mark: Mark


@dataclass(frozen=True)
class Failed:
    mark: Mark
    reason: str = "payment failed"


@dataclass(frozen=True)
class Resolved:
    kind: Resolution
    mark: Mark


@dataclass(frozen=True)
class Attempted:
    attempt: Attempt


Fact = Finalized | Failed | Resolved | Attempted


# --------------------------------------------------------------------------------------- invoice record
@dataclass(frozen=True)
class InvoiceDunning:
    tenant_id: str
    invoice_id: str
    month: str | None = None
    finalized: Mark | None = None
    first_failure: Mark | None = None
    failure_reason: str | None = None
    closed: ResolutionMark | None = None  # earliest resolution: ends dunning
    resolution: ResolutionMark | None = None  # strongest resolution: the final state
    attempts: tuple[Attempt, ...] = ()
    version: int = 0

    @property
    def last_event_created(self) -> datetime | None:
        """The latest Stripe event time that shaped this record (ignored events do not count)."""
        marks = [
            m
            for m in (
                self.finalized,
                self.first_failure,
                self.closed and self.closed.mark,
                self.resolution and self.resolution.mark,
            )
            if m and not m.event_id.startswith("retry:")
        ]
        return max(m.at for m in marks) if marks else None

    # -- derived ------------------------------------------------------------------------------------
    def failed_attempts(self) -> list[Attempt]:
        """Our failed retries that happened while the invoice was still open, in order."""
        end = self.closed.mark.at if self.closed else None
        return [
            a
            for a in sorted(self.attempts, key=lambda a: a.n)
            if not a.succeeded and (end is None or a.at < end)
        ]

    def exhausted_at(self, retry_count: int) -> Mark | None:
        failed = [a for a in self.failed_attempts() if a.n == retry_count]
        if self.first_failure is None or not failed or retry_count == 0:
            return None
        return Mark(failed[0].at, f"retry:{self.invoice_id}:{retry_count}")

    def state(self, retry_count: int) -> InvoiceState:
        if self.resolution is not None:
            return self.resolution.kind
        if self.first_failure is None:
            return "open"
        return "exhausted" if self.exhausted_at(retry_count) else "past_due"

    @property
    def retries_made(self) -> int:
        """Our retries made so far, whatever their outcome (each attempt number counts once); the
        next one is number ``retries_made + 1``."""
        return len({a.n for a in self.attempts})

    def next_retry_at(self, retry_days: Sequence[int]) -> datetime | None:
        """When the next retry is due (``schedule.retry_due_at``); None when none is: not failing,
        closed, or the schedule has ended."""
        if self.first_failure is None or self.closed is not None:
            return None
        return retry_due_at(self.first_failure.at, self.retries_made, retry_days)

    def fingerprint(self) -> tuple[Any, ...]:
        """Everything but the storage version: equal fingerprints mean equal records."""
        return (
            self.tenant_id,
            self.invoice_id,
            self.month,
            self.finalized,
            self.first_failure,
            self.failure_reason,
            self.closed,
            self.resolution,
            tuple(sorted(self.attempts, key=lambda a: a.n)),
        )


def earliest(a: Mark | None, b: Mark | None) -> Mark | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def apply(record: InvoiceDunning, fact: Fact) -> InvoiceDunning:
    """Merge one fact into an invoice record. Commutative and idempotent (see module docstring)."""
    if isinstance(fact, Finalized):
        return replace(record, finalized=earliest(record.finalized, fact.mark))
    if isinstance(fact, Failed):
        if record.closed is not None and fact.mark.at >= record.closed.mark.at:
            return record  # a failure reported after the invoice closed
        first = earliest(record.first_failure, fact.mark)
        reason = fact.reason if first == fact.mark else record.failure_reason
        return replace(record, first_failure=first, failure_reason=reason)
    if isinstance(fact, Resolved):
        candidate = ResolutionMark(fact.kind, fact.mark)
        closed = record.closed
        if closed is None or (fact.mark, fact.kind) < (closed.mark, closed.kind):
            closed = candidate
        resolution = record.resolution
        if resolution is None or _stronger(candidate, resolution):
            resolution = candidate
        first, reason = record.first_failure, record.failure_reason
        if first is not None and first.at >= closed.mark.at:
            first, reason = None, None  # that failure came after the invoice closed
        return replace(
            record, closed=closed, resolution=resolution, first_failure=first, failure_reason=reason
        )
    if isinstance(fact, Attempted):
        if any(a.n == fact.attempt.n for a in record.attempts):
            return record
        return replace(record, attempts=tuple(sorted((*record.attempts, fact.attempt), key=lambda a: a.n)))
    raise TypeError(f"unknown fact {fact!r}")


def _stronger(a: ResolutionMark, b: ResolutionMark) -> bool:
    ra, rb = RESOLUTION_RANK[a.kind], RESOLUTION_RANK[b.kind]
    if ra != rb:
        return ra > rb
    return (a.mark, a.kind) < (b.mark, b.kind)
