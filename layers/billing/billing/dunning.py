"""Dunning: per-invoice payment state, the tenant's standing derived from it, and the audit trail.

Pure domain: no AWS, no Stripe. Storage and the payment gateway come in through Protocols.

Model (order-independent by construction)
-----------------------------------------
Everything we learn about an invoice is a dated *fact* (a ``Mark``: the Stripe event's ``created``
time and its id, or our retry's time and ``retry:{invoice}:{n}``). A per-invoice record keeps only
commutative, idempotent aggregates of those facts:

- ``first_failure``: the earliest failed payment that happened *before* the invoice was closed;
- ``closed``: the earliest resolution of any kind (paid, void, uncollectible) - it ends dunning;
- ``resolution``: the strongest resolution (paid/void beat uncollectible; earliest wins a tie);
- ``attempts``: our own retries, by number.

Applying the same facts in any order, any number of times, gives the same record. Hence the
invoice state never moves backwards (a ``payment_failed`` dated after ``paid`` changes nothing)
and a shuffled, duplicated stream ends where the ordered one does.

The tenant's standing and its audit trail are a pure function of its invoice records (plus the
date its Stripe customer was deleted, if it was): ``timeline()`` walks the facts in time order and
emits every change of state, so the stored trail is the same whatever order events arrived in.

- tenant ``past_due`` while any invoice has failed and is not closed;
- tenant ``suspended`` while any such invoice also had its last retry fail (or the customer was
  deleted in Stripe, so it cannot be collected);
- otherwise ``active``.

Retries run at ``first_failure + retry_days[k]`` (default 3, 7, 14 days) for k = attempts made.
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from billing.payments import PaymentCollector
from billing.periods import iso, parse_instant, utc

Resolution = Literal["paid", "void", "uncollectible"]
InvoiceState = Literal["open", "past_due", "exhausted", "paid", "void", "uncollectible"]
Standing = Literal["active", "past_due", "suspended"]

RESOLUTION_RANK: dict[str, int] = {"uncollectible": 1, "paid": 2, "void": 2}
SEVERITY: dict[str, int] = {"active": 0, "past_due": 1, "suspended": 2}


# --------------------------------------------------------------------------------------- facts
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
        return {"n": self.n, "at": iso(self.at), "succeeded": self.succeeded, "failure_code": self.failure_code,
                "failure_message": self.failure_message, "invoice_status": self.invoice_status}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Attempt:
        return cls(int(data["n"]), parse_instant(data["at"]), bool(data["succeeded"]), data.get("failure_code"),
                   data.get("failure_message"), data.get("invoice_status"))


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
    closed: ResolutionMark | None = None       # earliest resolution: ends dunning
    resolution: ResolutionMark | None = None   # strongest resolution: the final state
    attempts: tuple[Attempt, ...] = ()
    version: int = 0

    @property
    def last_event_created(self) -> datetime | None:
        """The latest Stripe event time that shaped this record (ignored events do not count)."""
        marks = [m for m in (self.finalized, self.first_failure, self.closed and self.closed.mark,
                             self.resolution and self.resolution.mark) if m and not m.event_id.startswith("retry:")]
        return max(m.at for m in marks) if marks else None

    # -- derived ------------------------------------------------------------------------------------
    def failed_attempts(self) -> list[Attempt]:
        """Our failed retries that happened while the invoice was still open, in order."""
        end = self.closed.mark.at if self.closed else None
        return [a for a in sorted(self.attempts, key=lambda a: a.n)
                if not a.succeeded and (end is None or a.at < end)]

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

    def next_retry_at(self, retry_days: Sequence[int]) -> datetime | None:
        """When the next retry is due; None when none is (not failing, closed, or retries used up)."""
        if self.first_failure is None or self.closed is not None:
            return None
        made = len({a.n for a in self.attempts})
        if made >= len(retry_days):
            return None
        return self.first_failure.at + timedelta(days=retry_days[made])

    def fingerprint(self) -> tuple[Any, ...]:
        """Everything but the storage version: equal fingerprints mean equal records."""
        return (self.tenant_id, self.invoice_id, self.month, self.finalized, self.first_failure,
                self.failure_reason, self.closed, self.resolution,
                tuple(sorted(self.attempts, key=lambda a: a.n)))


def _earliest(a: Mark | None, b: Mark | None) -> Mark | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def apply(record: InvoiceDunning, fact: Fact) -> InvoiceDunning:
    """Merge one fact into an invoice record. Commutative and idempotent (see module docstring)."""
    if isinstance(fact, Finalized):
        return replace(record, finalized=_earliest(record.finalized, fact.mark))
    if isinstance(fact, Failed):
        if record.closed is not None and fact.mark.at >= record.closed.mark.at:
            return record                            # a failure reported after the invoice closed
        first = _earliest(record.first_failure, fact.mark)
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
            first, reason = None, None               # that failure came after the invoice closed
        return replace(record, closed=closed, resolution=resolution, first_failure=first, failure_reason=reason)
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


# --------------------------------------------------------------------------------------- timeline
@dataclass(frozen=True)
class AuditEntry:
    """One recorded transition. ``subject`` is "tenant" or an invoice id."""
    at: datetime
    subject: str
    from_state: str
    to_state: str
    why: str
    event_id: str
    order: int = 0   # tie-break at the same instant: invoice entries (0) before tenant entries (1)

    @property
    def seq(self) -> str:
        return f"{self.order}#{self.subject}#{self.event_id}"

    @property
    def key(self) -> str:
        return f"AUDIT#{iso(self.at)}#{self.seq}"

    def to_json(self) -> dict[str, Any]:
        return {"when": iso(self.at), "subject": self.subject, "from": self.from_state, "to": self.to_state,
                "why": self.why, "stripe_event_id": self.event_id}


@dataclass(frozen=True)
class _Point:
    mark: Mark
    why: str


def timeline(invoices: Sequence[InvoiceDunning], customer_deleted: Mark | None,
             retry_count: int) -> tuple[Standing, list[AuditEntry]]:
    """The tenant's current standing and every transition (invoice and tenant), in time order."""
    entries: list[AuditEntry] = []
    points: list[_Point] = []
    for inv in sorted(invoices, key=lambda i: i.invoice_id):
        entries.extend(_invoice_entries(inv, retry_count))
        if inv.first_failure:
            points.append(_Point(inv.first_failure, f"invoice {inv.invoice_id}: {inv.failure_reason or 'payment failed'}"))
        exhausted = inv.exhausted_at(retry_count)
        if exhausted:
            points.append(_Point(exhausted, f"invoice {inv.invoice_id}: last retry ({retry_count} of "
                                            f"{retry_count}) failed"))
        if inv.closed and inv.first_failure:
            points.append(_Point(inv.closed.mark, f"invoice {inv.invoice_id} {_verb(inv.closed.kind)}"))
    if customer_deleted:
        points.append(_Point(customer_deleted, "customer deleted in Stripe"))

    def standing_at(t: datetime) -> Standing:
        worst: Standing = "active"
        for inv in invoices:
            if inv.first_failure is None or inv.first_failure.at > t:
                continue
            if inv.closed is not None and inv.closed.mark.at <= t:
                continue
            exhausted = inv.exhausted_at(retry_count)
            suspended = (exhausted is not None and exhausted.at <= t) or (
                customer_deleted is not None and customer_deleted.at <= t)
            state: Standing = "suspended" if suspended else "past_due"
            if SEVERITY[state] > SEVERITY[worst]:
                worst = state
        return worst

    current: Standing = "active"
    for at in sorted({p.mark.at for p in points}):
        new = standing_at(at)
        if new != current:
            cause = min((p for p in points if p.mark.at == at), key=lambda p: p.mark.event_id)
            entries.append(AuditEntry(at, "tenant", current, new, cause.why, cause.mark.event_id, order=1))
            current = new
    entries.sort(key=lambda e: (e.at, e.order, e.subject, e.event_id))
    return current, entries


def _verb(kind: str) -> str:
    return {"paid": "paid", "void": "voided", "uncollectible": "marked uncollectible"}[kind]


def _invoice_entries(inv: InvoiceDunning, retry_count: int) -> list[AuditEntry]:
    out: list[AuditEntry] = []
    state = "draft"
    if inv.finalized and (inv.closed is None or inv.finalized.at <= inv.closed.mark.at):
        out.append(AuditEntry(inv.finalized.at, inv.invoice_id, "draft", "open", "invoice finalized",
                              inv.finalized.event_id))
        state = "open"
    else:
        state = "open"
    if inv.first_failure:
        out.append(AuditEntry(inv.first_failure.at, inv.invoice_id, state, "past_due",
                              inv.failure_reason or "payment failed", inv.first_failure.event_id))
        state = "past_due"
        for attempt in inv.failed_attempts():
            last = attempt.n == retry_count
            code = attempt.failure_code or "declined"
            why = (f"retry {attempt.n} of {retry_count} failed ({code})"
                   + ("; retries exhausted" if last else ""))
            to = "exhausted" if last else "past_due"
            out.append(AuditEntry(attempt.at, inv.invoice_id, state, to, why,
                                  f"retry:{inv.invoice_id}:{attempt.n}"))
            state = to
    if inv.closed:
        why = f"invoice {_verb(inv.closed.kind)}"
        won = [a for a in inv.attempts if a.succeeded and a.at == inv.closed.mark.at]
        if won and inv.closed.kind == "paid":
            why = f"retry {won[0].n} of {retry_count} succeeded; invoice paid"
        out.append(AuditEntry(inv.closed.mark.at, inv.invoice_id, state, inv.closed.kind, why,
                              inv.closed.mark.event_id))
        if inv.resolution and inv.resolution != inv.closed:
            out.append(AuditEntry(inv.resolution.mark.at, inv.invoice_id, inv.closed.kind, inv.resolution.kind,
                                  f"invoice {_verb(inv.resolution.kind)}", inv.resolution.mark.event_id))
    return out


# --------------------------------------------------------------------------------------- ports
@dataclass(frozen=True)
class TenantStanding:
    """The serialisation point of a tenant's dunning: its standing, the audit trail that explains
    it, and a version every recomputation bumps (one conditional write, no transaction)."""
    tenant_id: str
    status: Standing = "active"
    customer_deleted: Mark | None = None
    audit: tuple[AuditEntry, ...] = ()
    version: int = 0
    mirrored: bool = True     # the tenant record's payment_status already shows ``status``


@dataclass(frozen=True)
class DueRetry:
    tenant_id: str
    invoice_id: str
    due_at: datetime


class DunningRepository(Protocol):
    def get_invoice(self, tenant_id: str, invoice_id: str) -> InvoiceDunning | None: ...
    def put_invoice(self, record: InvoiceDunning, next_retry_at: datetime | None) -> bool: ...
    def snapshot(self, tenant_id: str) -> tuple[TenantStanding, list[InvoiceDunning]]: ...
    def standing(self, tenant_id: str) -> TenantStanding: ...
    def commit(self, before: TenantStanding, after: TenantStanding) -> bool: ...
    def due(self, now: datetime, limit: int) -> list[DueRetry]: ...


class ConcurrentUpdate(Exception):
    """Gave up after too many conflicting writers (never expected in practice)."""


Clock = Callable[[], datetime]


@dataclass
class Outcome:
    tenant_id: str
    invoice_id: str | None
    changed: bool
    invoice_state: str | None
    standing: Standing

    def to_json(self) -> dict[str, Any]:
        return {"tenant_id": self.tenant_id, "invoice_id": self.invoice_id, "changed": self.changed,
                "invoice_state": self.invoice_state, "standing": self.standing}


@dataclass
class RunReport:
    due: int = 0
    attempted: int = 0
    succeeded: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    details: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"due": self.due, "attempted": self.attempted, "succeeded": self.succeeded,
                "failed": self.failed, "errors": self.errors, "skipped": self.skipped, "details": self.details}


@dataclass
class StatusView:
    tenant_id: str
    standing: Standing
    invoices: list[tuple[InvoiceDunning, InvoiceState, datetime | None]]
    audit: list[AuditEntry]

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id, "payment_status": self.standing,
            "invoices": [{"invoice_id": inv.invoice_id, "month": inv.month, "state": state,
                          "first_failed_at": iso(inv.first_failure.at) if inv.first_failure else None,
                          "attempts": len(inv.attempts),
                          "next_retry_at": iso(nxt) if nxt else None} for inv, state, nxt in self.invoices],
            "audit": [e.to_json() for e in self.audit],
        }


# --------------------------------------------------------------------------------------- service
class DunningService:
    """Applies facts with versioned conditional writes (retrying on conflict) and keeps the tenant's
    standing and audit trail equal to ``timeline()`` of its invoice records."""

    MAX_CONFLICT_RETRIES = 50

    def __init__(self, repo: DunningRepository, *, retry_days: Sequence[int], clock: Clock,
                 gateway: PaymentCollector | None = None, sleep: Callable[[float], None] = time.sleep):
        self.repo = repo
        self.retry_days = list(retry_days)
        self.clock = clock
        self.gateway = gateway
        self._sleep = sleep

    @property
    def retry_count(self) -> int:
        return len(self.retry_days)

    # -- webhook side -----------------------------------------------------------------------------
    def record(self, tenant_id: str, invoice_id: str, month: str | None, facts: Sequence[Fact]) -> Outcome:
        """Merge facts into the invoice record (compare-and-set on its version); when it changed,
        bring the tenant's standing and audit trail up to date. Three requests on the usual path:
        read the tenant's dunning partition, write the invoice, write the standing."""
        for attempt in range(self.MAX_CONFLICT_RETRIES):
            standing, invoices = self.repo.snapshot(tenant_id)
            current = next((i for i in invoices if i.invoice_id == invoice_id), None)
            base = current or InvoiceDunning(tenant_id=tenant_id, invoice_id=invoice_id, month=month)
            updated = base
            for fact in facts:
                updated = apply(updated, fact)
            if updated.month is None and month:
                updated = replace(updated, month=month)
            if current is not None and updated.fingerprint() == current.fingerprint():
                status = standing.status
                if not self._up_to_date(standing, invoices):   # an earlier run stopped half way
                    status = self.refresh(tenant_id, snapshot=(standing, invoices))
                return Outcome(tenant_id, invoice_id, False, current.state(self.retry_count), status)
            if not self.repo.put_invoice(updated, updated.next_retry_at(self.retry_days)):
                self._backoff(attempt)
                continue
            updated = replace(updated, version=base.version + 1)
            others = [i for i in invoices if i.invoice_id != invoice_id]
            status = self.refresh(tenant_id, snapshot=(standing, [*others, updated]))
            return Outcome(tenant_id, invoice_id, True, updated.state(self.retry_count), status)
        raise ConcurrentUpdate(f"invoice {invoice_id}: too many concurrent writers")

    def _up_to_date(self, standing: TenantStanding, invoices: Sequence[InvoiceDunning]) -> bool:
        status, entries = timeline(invoices, standing.customer_deleted, self.retry_count)
        return standing.mirrored and status == standing.status and tuple(entries) == standing.audit

    def customer_deleted(self, tenant_id: str, mark: Mark) -> Outcome:
        snapshot = self.repo.snapshot(tenant_id)
        known = snapshot[0].customer_deleted
        if known is not None and known <= mark and self._up_to_date(*snapshot):
            return Outcome(tenant_id, None, False, None, snapshot[0].status)
        standing = self.refresh(tenant_id, customer_deleted=mark, snapshot=snapshot)
        return Outcome(tenant_id, None, True, None, standing)

    def refresh(self, tenant_id: str, *, customer_deleted: Mark | None = None,
                snapshot: tuple[TenantStanding, list[InvoiceDunning]] | None = None) -> Standing:
        """Recompute standing and audit trail from the invoice records; one versioned write.

        The standing (with its version) is read no later than the invoice records (it sorts first
        in the same query), so a writer that saw stale records always loses the version race to one
        that saw them all; the loser re-reads and recomputes."""
        for attempt in range(self.MAX_CONFLICT_RETRIES):
            before, invoices = snapshot if snapshot is not None else self.repo.snapshot(tenant_id)
            snapshot = None
            deleted = _earliest(before.customer_deleted, customer_deleted)
            status, entries = timeline(invoices, deleted, self.retry_count)
            after = TenantStanding(tenant_id, status, deleted, tuple(entries), before.version + 1)
            if self.repo.commit(before, after):
                return status
            self._backoff(attempt)
        raise ConcurrentUpdate(f"tenant {tenant_id}: too many concurrent writers")

    def _backoff(self, attempt: int) -> None:
        self._sleep(min(0.2, 0.002 * (2 ** min(attempt, 7))) * random.random())

    # -- scheduled side ---------------------------------------------------------------------------
    def run_due(self, *, limit: int = 500, should_stop: Callable[[], bool] = lambda: False) -> RunReport:
        """Pay every retry that is due now, once per attempt number (idempotency key per attempt).
        ``should_stop`` (e.g. the Lambda is about to time out) ends the run early; the rest stays due."""
        if self.gateway is None:
            raise RuntimeError("dunning run needs a payment gateway")
        now = utc(self.clock())
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # stored with millisecond precision
        report = RunReport()
        for due in self.repo.due(now, limit):
            report.due += 1
            if should_stop():
                report.skipped += 1
                continue
            record = self.repo.get_invoice(due.tenant_id, due.invoice_id)
            standing = self.repo.standing(due.tenant_id)
            next_at = record.next_retry_at(self.retry_days) if record else None
            if record is None or next_at is None or next_at > now or standing.customer_deleted is not None:
                if record is not None and standing.customer_deleted is not None:
                    self.repo.put_invoice(record, None)   # no one left to charge: drop the schedule
                report.skipped += 1
                continue
            n = len({a.n for a in record.attempts}) + 1
            key = f"{record.invoice_id}:retry:{n}"
            try:
                result = self.gateway.pay_invoice(record.invoice_id, idempotency_key=key)
            except Exception as exc:
                report.errors += 1
                report.details.append({"invoice_id": record.invoice_id, "attempt": n, "error": str(exc)})
                continue
            attempt = Attempt(n, now, bool(result.succeeded), getattr(result, "failure_code", None),
                              getattr(result, "failure_message", None), getattr(result, "invoice_status", None))
            facts: list[Fact] = [Attempted(attempt)]
            mark = Mark(now, f"retry:{record.invoice_id}:{n}")
            status = attempt.invoice_status
            if attempt.succeeded or status == "paid":
                facts.append(Resolved("paid", mark))
            elif status in ("void", "uncollectible"):
                facts.append(Resolved(status, mark))  # type: ignore[arg-type]
            outcome = self.record(record.tenant_id, record.invoice_id, record.month, facts)
            report.attempted += 1
            if attempt.succeeded:
                report.succeeded += 1
            else:
                report.failed += 1
            report.details.append({"tenant_id": record.tenant_id, "invoice_id": record.invoice_id, "attempt": n,
                                   "succeeded": attempt.succeeded, "failure_code": attempt.failure_code,
                                   "invoice_state": outcome.invoice_state, "standing": outcome.standing})
        return report

    # -- read side --------------------------------------------------------------------------------
    def status(self, tenant_id: str) -> StatusView:
        standing, invoices = self.repo.snapshot(tenant_id)
        invoices = sorted(invoices, key=lambda i: (i.month or "", i.invoice_id))
        rows = [(inv, inv.state(self.retry_count), inv.next_retry_at(self.retry_days)) for inv in invoices]
        return StatusView(tenant_id, standing.status, rows, list(standing.audit))
