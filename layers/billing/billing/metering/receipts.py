"""Receipts: what became of an event id, and the reconcile of a tenant's period.

Sources, each read as it is the authority for one fact:

- **accepted**: the ledger. An id is accepted when its claim's batch has a commit record (the
  exactly-once protocol, billing.metering.exactly_once). At commit, a batch also writes one
  receipt index item per (tenant, month) it committed, naming those event ids (``PeriodReceipt``),
  *before* its commit record: so every committed id is in the index, and an index item of a batch
  that never committed is ignored (the reconcile keeps the items whose batch committed).
- **stored**: ClickHouse ``usage_events`` (the first stored copy's ``stored_at``).
- **queued**: committed, not in ClickHouse, and its batch sent blocks to the fallback queue: the
  replay will store it. Committed, not stored and nothing queued is ``missing``: the reconcile names it.
- **billed**: the statement of the event's month when the event was stored by that statement's
  usage cutoff, else (a late event) the first later statement, within ``LATE_LOOKBACK_MONTHS``,
  whose cutoff is at or after the event's ``stored_at``: there it is an adjustment line naming the
  event's month. This is the rule the close applies (billing.statements.close), read back from the
  stored statements.
- **refused**: never recorded. A refused event (a 400 batch, a 409 closed month, a query refused for
  quota) writes nothing: no claim, no counter, no row, so the same id sent again later is accepted as
  new, and a flood of invalid events costs no writes. Its receipt is ``unknown``; the answer to the
  request that carried it said why it was refused.
- **corrected**: the corrections store's audit trail (``CorrectionsSource``:
  billing.metering.receipt_corrections). A correction does not change the event's status (the
  furthest its row got: a voided event stays accepted and stored, and a statement closed before the
  void still billed it); the receipt's ``corrected`` says ``voided`` or ``amended``, and each
  correction says where it is billed, by the rule of billed above applied to its rows' ``stored_at``
  (before the close: the month's statement rates the corrected usage; after: an adjustment).

Statuses, furthest first: ``billed``, ``stored``, ``queued``, ``missing``, ``pending``, ``unknown``.

The reconcile counts events as ingest wrote them, so a voided event stays accepted and stored, and
``billed`` (the statement's event count, a sum of row signs) counts it as nothing once its void is
stored by the cutoff: ``billed_on_time`` is the stored events the cutoff covers minus the voids it
covers (an amend writes a void and a new version: zero). Invariant: after a void or an amend,
accepted, stored and billed agree exactly when they agreed before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from billing.kernel.periods import Month, parse_instant
from billing.metering.exactly_once import Claim, ClaimState
from billing.metering.receipt_views import (
    MAX_LISTED_IDS,
    MAX_RECEIPT_IDS,
    Correction,
    CorrectionRow,
    Receipt,
    Reconciliation,
    StoredRow,
)
from billing.statements.close import LATE_LOOKBACK_MONTHS
from billing.statements.statement import Statement


@dataclass(frozen=True)
class BatchCommit:
    batch_id: str
    queued: bool  # some of its blocks went to the fallback queue


class ReceiptLedger(Protocol):
    """The ledger reads receipts need (billing.adapters.dynamodb.receipt_index)."""

    def lookup(self, claims: Sequence[Claim]) -> dict[Claim, ClaimState]: ...

    def batch_commits(self, batch_ids: Iterable[str]) -> dict[str, BatchCommit]:
        """The commit records of those batches that committed."""
        ...

    def committed_ids(self, tenant_id: str, month: str) -> dict[str, str]:
        """event id -> batch id of every id committed for the tenant's month (the receipt index,
        kept to the batches that committed)."""
        ...


class StoredEvents(Protocol):
    """The ClickHouse reads receipts need (billing.adapters.clickhouse.receipt_queries)."""

    def rows(self, tenant_id: str, event_ids: Sequence[str]) -> dict[str, StoredRow]: ...

    def month_rows(self, tenant_id: str, month: Month) -> dict[str, StoredRow]: ...

    def correction_rows(self, tenant_id: str, correction_ids: Sequence[str]) -> list[CorrectionRow]: ...

    def month_corrections(self, tenant_id: str, month: Month) -> list[CorrectionRow]: ...


class StatementReads(Protocol):
    def get(self, tenant_id: str, month: Month | str) -> Statement | None: ...


class PeriodReads(Protocol):
    def closed_at(self, month: Month | str) -> datetime | None: ...


class CorrectionsSource(Protocol):
    """Where corrections of accepted events are read from. Receipts show what it returns and never
    decide billing from it (the corrections store and the close do that)."""

    def corrections_of(self, tenant_id: str, event_ids: Sequence[str]) -> dict[str, list[Correction]]: ...


class NoCorrections:
    """No corrections store: no event has a correction."""

    def corrections_of(self, tenant_id: str, event_ids: Sequence[str]) -> dict[str, list[Correction]]:
        return {}


class ReceiptService:
    """Receipts of event ids and the reconcile of a tenant's period, from the ledger, ClickHouse,
    the period closes and the stored statements (see the module docstring for the rules)."""

    def __init__(
        self,
        *,
        ledger: ReceiptLedger,
        events: StoredEvents,
        periods: PeriodReads,
        statements: StatementReads,
        fallback_depth: Callable[[], int],
        retention_days: int,
        clock: Callable[[], datetime],
        corrections: CorrectionsSource | None = None,
    ):
        self.ledger, self.events, self.periods, self.statements = ledger, events, periods, statements
        self.fallback_depth, self.retention_days, self.clock = fallback_depth, retention_days, clock
        self.corrections = corrections or NoCorrections()

    # ----------------------------------------------------------------------------------- receipts
    def receipts(self, tenant_id: str, event_ids: Sequence[str]) -> list[Receipt]:
        """One receipt per id, in the order asked: one ledger lookup, one ClickHouse query, and a
        read of each month's close and statements involved."""
        claims = [Claim(tenant_id, e) for e in event_ids]
        states = self.ledger.lookup(claims)
        rows = self.events.rows(tenant_id, list(event_ids))
        # whether a batch queued blocks matters only for committed ids the store does not hold
        commits = self.ledger.batch_commits(
            {s.batch_id for c, s in states.items() if s.committed and c.event_id not in rows}
        )
        corrections = self.corrections.corrections_of(tenant_id, list(event_ids))
        billing = _BillingReads(self.periods, self.statements, tenant_id)
        out = []
        for claim in claims:
            state, row = states.get(claim), rows.get(claim.event_id)
            receipt = Receipt(
                tenant_id, claim.event_id, "unknown", "", corrections=corrections.get(claim.event_id, [])
            )
            if state is not None:
                receipt.batch_id = state.batch_id
                receipt.accepted = state.committed
            commit = commits.get(state.batch_id) if state is not None and state.committed else None
            if row is not None:
                receipt.stored = row
                self._bill(receipt, row, billing)
            elif commit is not None and commit.queued:
                receipt.status, receipt.queued = "queued", True
                receipt.message = (
                    "accepted and queued in the fallback queue while the usage store was unavailable; "
                    "the replay stores it"
                )
            elif state is not None and state.committed:
                receipt.status = "missing"
                receipt.message = (
                    "accepted, but the usage store does not hold it and its batch queued nothing: "
                    "run the reconcile of its month"
                )
            elif state is not None:
                receipt.status = "pending"
                receipt.message = (
                    "claimed by a request that has not finished, or that failed and named it 'unsettled'; "
                    "the client's retry of that request settles it"
                )
            else:
                receipt.message = (
                    "no record of this event: it was never accepted (a refused event is not recorded: the "
                    "answer to the request that sent it said why), or its record has expired"
                )
            if receipt.corrections and row is not None:
                self._bill_corrections(receipt, row, billing)
            out.append(receipt)
        return out

    def _bill_corrections(self, receipt: Receipt, row: StoredRow, billing: _BillingReads) -> None:
        """Where each correction is billed: the billed rule applied to its rows' ``stored_at``."""
        ids = [c.correction_id for c in receipt.corrections]
        stored = {r.correction_id: r.stored_at for r in self.events.correction_rows(receipt.tenant_id, ids)}
        billed = []
        for correction in receipt.corrections:
            if correction.correction_id not in stored:
                message = "begun, its rows not yet stored: the retry of its request applies it"
                billed.append(replace(correction, billed=None, message=message))
                continue
            where = Receipt(receipt.tenant_id, receipt.event_id, "stored", "")
            self._bill(where, StoredRow(row.timestamp, stored[correction.correction_id]), billing)
            billed.append(replace(correction, billed=where.billed, message=where.message))
        receipt.corrections = billed
        last = billed[-1]
        if receipt.corrected == "voided":
            receipt.message += f"; voided by correction {last.correction_id!r} ({last.message})"
        elif receipt.corrected == "amended":
            receipt.message += f"; amended by correction {last.correction_id!r} ({last.message})"

    def _bill(self, receipt: Receipt, row: StoredRow, billing: _BillingReads) -> None:
        """Status and message of a stored event: billed on which statement, or when it will be."""
        month = Month.of(row.timestamp)
        receipt.status = "stored"
        if not receipt.accepted and receipt.batch_id is None:
            receipt.accepted = True  # stored events were accepted; the ledger forgets them after retention
        statement = billing.statement(month)
        cutoff = billing.cutoff(month, statement)
        if cutoff is None:
            receipt.message = f"stored; billed on the statement of {month} when that month closes"
            return
        if row.stored_at <= cutoff:
            if statement is None:
                receipt.message = f"stored, but {month} closed without a statement for this tenant (no plan in force): not billed"
                return
            receipt.status = "billed"
            receipt.billed = _billed(statement, month, adjustment=False)
            receipt.message = f"billed on statement {statement.statement_id}"
            return
        later = month
        for _ in range(LATE_LOOKBACK_MONTHS):
            later = later.next()
            statement_later = billing.statement(later)
            cutoff_later = billing.cutoff(later, statement_later)
            if cutoff_later is None:
                receipt.message = (
                    f"stored after {month} was billed; billed as an adjustment on the statement of {later} "
                    "when that month closes"
                )
                return
            if row.stored_at <= cutoff_later:
                if statement_later is None:
                    receipt.message = (
                        f"stored after {month} was billed, and {later} closed without a statement: not billed"
                    )
                    return
                receipt.status = "billed"
                receipt.billed = _billed(statement_later, month, adjustment=True)
                receipt.message = f"stored after {month} was billed; billed as an adjustment on statement {statement_later.statement_id}"
                return
        receipt.message = f"stored more than {LATE_LOOKBACK_MONTHS} months after {month} was billed: outside the late-data window, not billed"

    # ---------------------------------------------------------------------------------- reconcile
    def reconcile(self, tenant_id: str, month: Month) -> Reconciliation:
        """Counts of the tenant's events of ``month`` accepted (ledger commits), stored (ClickHouse)
        and billed (the statement's event count), and the ids that differ: one receipt-index query
        (and a read of the commit records it names), one ClickHouse query. Ids stored but missing
        from the index are looked up claim by claim before being named (an index item is read
        eventually consistently, and batches committed before the index existed wrote none)."""
        rows = self.events.month_rows(tenant_id, month)
        depth = self.fallback_depth()
        notes: list[str] = []
        expired = self.clock() > month.end + timedelta(days=self.retention_days)
        accepted_ids: dict[str, str] | None = None
        if expired:
            notes.append(
                f"the ledger keeps claims {self.retention_days} days after their month ends: {month}'s have expired, "
                "so only stored and billed are compared"
            )
        else:
            accepted_ids = self.ledger.committed_ids(tenant_id, str(month))
            unindexed = [e for e in rows if e not in accepted_ids]
            if unindexed:
                found = self._committed(tenant_id, unindexed)
                accepted_ids.update(found)
        statement = self.statements.get(tenant_id, month)
        cutoff = _BillingReads(self.periods, self.statements, tenant_id).cutoff(month, statement)
        on_time = sum(1 for r in rows.values() if cutoff is not None and r.stored_at <= cutoff)
        corrections = self.events.month_corrections(tenant_id, month)
        # a void row is -1 and an amend's new version +1: the statement's count is this sum of signs
        on_time += sum(c.sign for c in corrections if cutoff is not None and c.stored_at <= cutoff)
        amends = {c.correction_id for c in corrections if c.kind == "amend"}
        voids = {c.correction_id for c in corrections if c.kind == "void"} - amends
        late_corrections = {
            c.correction_id for c in corrections if cutoff is not None and c.stored_at > cutoff
        }
        billed = statement.total_events if statement is not None else None
        if statement is not None and billed is None:
            notes.append(f"statement {statement.statement_id} was stored before statements counted events")
        if depth:
            notes.append(
                f"the fallback queue holds {depth} message(s): accepted events may still be on their way to the store"
            )
        accepted = accepted_ids or {}
        missing_ids = sorted(set(accepted) - set(rows))
        queued = self.ledger.batch_commits({accepted[e] for e in missing_ids}) if missing_ids else {}
        extra_ids = sorted(set(rows) - set(accepted)) if accepted_ids is not None else []
        return Reconciliation(
            tenant_id=tenant_id,
            month=str(month),
            accepted=None if accepted_ids is None else len(accepted_ids),
            stored=len(rows),
            billed=billed,
            billed_on_time=on_time,
            late=len(rows) - on_time if cutoff is not None else 0,
            fallback_queue_depth=depth,
            accepted_not_stored=[
                {
                    "event_id": e,
                    "batch_id": accepted[e],
                    "queued": accepted[e] in queued and queued[accepted[e]].queued,
                }
                for e in missing_ids[:MAX_LISTED_IDS]
            ],
            accepted_not_stored_count=len(missing_ids),
            stored_not_accepted=extra_ids[:MAX_LISTED_IDS],
            stored_not_accepted_count=len(extra_ids),
            statement_id=statement.statement_id if statement is not None else None,
            notes=notes,
            voided=len(voids),
            amended=len(amends),
            corrections_late=len(late_corrections),
        )

    def _committed(self, tenant_id: str, event_ids: Sequence[str]) -> dict[str, str]:
        """event id -> batch id of those of ``event_ids`` whose claim's batch committed."""
        found: dict[str, str] = {}
        for start in range(0, len(event_ids), MAX_RECEIPT_IDS):
            chunk = [Claim(tenant_id, e) for e in event_ids[start : start + MAX_RECEIPT_IDS]]
            for claim, state in self.ledger.lookup(chunk).items():
                if state.committed:
                    found[claim.event_id] = state.batch_id
        return found


class _BillingReads:
    """Each month's close and the tenant's statement, read once per request."""

    def __init__(self, periods: PeriodReads, statements: StatementReads, tenant_id: str):
        self.periods, self.statements, self.tenant_id = periods, statements, tenant_id
        self._closes: dict[Month, datetime | None] = {}
        self._statements: dict[Month, Statement | None] = {}

    def statement(self, month: Month) -> Statement | None:
        if month not in self._statements:
            self._statements[month] = self.statements.get(self.tenant_id, month)
        return self._statements[month]

    def cutoff(self, month: Month, statement: Statement | None) -> datetime | None:
        """Up to when the month's own events were billed: the statement's usage cutoff (a final
        statement's is the cancellation), else the month's close; None while neither exists."""
        if statement is not None and statement.inputs.get("usage_cutoff"):
            return parse_instant(statement.inputs["usage_cutoff"])
        if month not in self._closes:
            self._closes[month] = self.periods.closed_at(month)
        return self._closes[month]


def _billed(statement: Statement, month: Month, *, adjustment: bool) -> dict[str, Any]:
    """Where on ``statement`` an event of ``month`` is billed: its usage lines, or the adjustment
    lines naming ``month`` (none when it is free, e.g. trial-time usage)."""
    if adjustment:
        lines = [
            l.line_id for l in statement.lines if l.kind == "adjustment" and l.adjustment_month == str(month)
        ]
    else:
        lines = [l.line_id for l in statement.lines if l.kind in _USAGE_LINES]
    return {
        "statement_id": statement.statement_id,
        "month": statement.month,
        "as": "adjustment" if adjustment else "usage",
        "event_month": str(month),
        "lines": lines,
        "plans_digest": statement.inputs.get("plans_digest"),
    }


_USAGE_LINES = frozenset({"queries", "usage_cost", "charge", "commitment"})
