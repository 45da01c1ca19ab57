"""One batch's exactly-once claims, from the first conditional write to the answer (``ClaimedBatch``).

``billing.metering.ingest`` admits a batch (every event priced, every tenant allowed) and hands it
here; nothing is written before that. Then, without a lock:

1. claim (tenant_id, event_id) in the DynamoDB ledger with conditional writes: committed claims are
   duplicates, acknowledged and never re-stored; an id another live batch holds (its lease runs) is
   waited for; a dead batch's uncommitted claims are taken over with their quota already counted,
   and those found in ClickHouse already are not inserted again;
2. admit queries in (timestamp, event_id) order against an atomic conditional counter, in the same
   DynamoDB transaction as their claims (``claim_counted``), so quota is counted exactly once per
   claim whatever crashes, in arrival order across batches; refused queries are never claimed;
3. insert into ClickHouse in blocks carrying a dedup token; a block ClickHouse did not take goes to
   the SQS fallback queue with the same token; a block refused as invalid (``StoreRejected``) is
   never queued; then the batch's commit record is written (202).

When a block finds no durable home, the answer is 503 naming ``kept`` (stored or queued, committed)
and ``unsettled`` events (maybe stored or queued: a send that raised without SQS refusing it may
have queued the block); everything else is given back, claim and quota in one transaction
(``ClaimedBatch._partial_failure``). Any other failure after claiming lets every claim go before
answering (``ClaimedBatch._fail``: given back, or given up with lease 0 and named ``unsettled``), so
the client's immediate retry proceeds; only when DynamoDB fails too do the claims wait for their
lease, and ``Retry-After`` says how long.

Admission: the queries of each (tenant, month) are taken in (timestamp, event_id) order, 99 per
transaction; a transaction adds its queries to the counter only if the counter still leaves room
for each of them (``used <= max_used``), or, when some of the chunk are refused, only if it still
has exactly the value the refusal was decided on. So across batches queries are admitted in the
order their transactions reach the counter.

Storing the claimed rows (blocks, the fallback queue, what ClickHouse holds) is
``billing.metering.storing``.

Length: one class whose state (the claims it holds, took over, has in doubt) every step and every
failure exit reads; split up, that state would travel between modules again as parameters.
"""

from __future__ import annotations

import bisect
import math
import random
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache, partial
from operator import attrgetter
from typing import Any, NoReturn

from billing.catalog.plans import PlanCatalog
from billing.kernel.errors import (
    BillingError,
    InvalidRequest,
    QuotaExceeded,
    ServiceUnavailable,
    is_backing_service_failure,
)
from billing.kernel.periods import Month, iso, parse_instant
from billing.metering.events import StoredEvent, UsageEvent
from billing.metering.exactly_once import (
    MAX_COUNTED_PER_TRANSACTION,
    Claim,
    ClaimsInterrupted,
    ClaimState,
    PeriodReceipt,
    UsageLedger,
)
from billing.metering.hard_limits import (
    ONE_QUERY,
    QUERIES,
    Refusal,
    admit_ordered,
    amounts_of,
    counted_marker,
    limits_schedule,
    metric_definitions,
)
from billing.metering.quota_windows import QuotaWindow, quota_window
from billing.metering.quotas import quota_schedule
from billing.metering.storing import FallbackQueue, StoreOutcome, UsageStore, store_rows, stored_keys
from billing.runtime.observability import logger
from billing.tenants.closed_periods import has_own_periods
from billing.tenants.tenant import Tenant

__all__ = [
    "CLAIM_LEASE_SECONDS",
    "ClaimedBatch",
    "IngestResult",
    "claim_expiry",
]

_ARRIVAL = attrgetter("timestamp", "event_id")  # the (timestamp, event_id) order of admission
QUOTA_ATTEMPTS = 50  # counter transactions per chunk; each failed one means the counter moved
# Longer than the ingest Lambda timeout (30 s): a live batch's claims are never taken over.
CLAIM_LEASE_SECONDS = 90


@dataclass
class IngestResult:
    accepted: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    rejected_for_quota: list[dict[str, Any]] = field(default_factory=list)
    queued: bool = False
    quota: dict[str, Any] | None = None
    # The batch's tenants as ingest read them (not part of the answer): what runs after the ingest
    # in the same request (alerts on queries) reuses them instead of reading them again.
    tenants: dict[str, Tenant] = field(default_factory=dict, repr=False, compare=False)

    def body(self) -> dict[str, Any]:
        return {
            "status": "queued" if self.queued else "stored",
            "accepted": len(self.accepted),
            "duplicates": self.duplicates,
            "rejected_for_quota": self.rejected_for_quota,
            "queued": self.queued,
            **(
                {
                    "message": "ClickHouse was unavailable; accepted events are durably queued and will be "
                    "stored by the replay job"
                }
                if self.queued
                else {}
            ),
            **({"quota": self.quota} if self.quota else {}),
        }


class _Busy(Exception):
    """Another live batch holds one of this batch's event ids for longer than we may wait; its
    lease (epoch seconds) runs until ``lease_until``."""

    def __init__(self, event_id: str, lease_until: float):
        super().__init__(event_id)
        self.event_id, self.lease_until = event_id, lease_until


class ClaimedBatch:
    """One admitted batch's way through the ledger: claim every new event id with conditional writes
    (queries in the same transaction as their month's counter), store, commit. It remembers what it
    holds so that any failure gives each claim back (never stored) or gives it up (may be stored:
    lease 0, still counted, the retry settles it). ``run`` is its only entry, once per batch.

    Its collaborators come in explicitly: the ``ledger``, the ClickHouse ``store`` and the
    ``fallback`` queue; the ``catalog`` (each tenant's quota schedule); ``retention_days`` (claims
    and counters expire that long after their month ends); ``claim_wait_seconds`` (how long to wait
    for another live batch's claim); ``lease_seconds`` and the ``lease_clock`` (epoch seconds:
    leases measure Lambda lifetimes, not billing time); the billing ``clock`` (the 429's
    ``Retry-After``)."""

    def __init__(
        self,
        events: Sequence[UsageEvent],
        months: Sequence[tuple[int, int]],  # each event's (year, month), in order
        priced: dict[tuple[str, str], StoredEvent],
        tenants: dict[str, Tenant],
        batch_id: str,
        *,
        ledger: UsageLedger,
        store: UsageStore,
        fallback: FallbackQueue,
        catalog: PlanCatalog,
        retention_days: int,
        claim_wait_seconds: float,
        lease_seconds: float,
        lease_clock: Callable[[], float],
        clock: Callable[[], datetime],
    ):
        self.ledger, self.store, self.fallback, self.catalog = ledger, store, fallback, catalog
        self.retention_days, self.claim_wait_seconds = retention_days, claim_wait_seconds
        self.now_s, self.clock = lease_clock, clock
        self.events, self.priced, self.tenants, self.batch_id = events, priced, tenants, batch_id
        keys = [e.key for e in events]
        self.claims = dict(zip(keys, map(_claim_of, keys), strict=True))
        self.months = months
        # Tenants whose quota counts per their own calendar period (billing.metering.quota_windows).
        self.own_periods = {t for t, tenant in tenants.items() if has_own_periods(tenant)}
        self.window_ends: dict[tuple[str, str], datetime] = {}
        expiry = {m: claim_expiry(*m, retention_days) for m in set(self.months)}
        if len(expiry) == 1:  # one month (the usual batch): every claim expires with it
            self.expiry = dict.fromkeys(self.claims.values(), *expiry.values())
        else:
            self.expiry = {self.claims[e.key]: expiry[m] for e, m in zip(events, self.months, strict=True)}
        self.lease_until = lease_clock() + lease_seconds
        self.result = IngestResult()
        self.known: dict[Claim, ClaimState] = {}  # claims found held by another batch (after a conflict)
        self.held: dict[Claim, str | None] = {}  # claims this batch wrote -> the month counting it
        self.taken_over: set[Claim] = set()  # held claims written over a dead batch's claim
        self.duplicates: set[Claim] = set()
        self.moved: list[UsageEvent] = []  # events a dead batch counted: claimed without counting
        self.amounts: dict[tuple[str, str], Mapping[str, Decimal]] = {}  # event key -> its amounts
        self.metric_limits: dict[str, Callable[[datetime], dict[str, Decimal]]] = {}
        self.definition = metric_definitions(catalog)
        # the claims of the write in progress -> month counting them: if it raises, it may still
        # have been applied (DynamoDB timed out after committing it), so a failure gives them up too
        self.in_doubt: dict[Claim, str | None] = {}

    # ------------------------------------------------------------------------------------------
    def run(self) -> IngestResult:
        try:
            rejected = self._claim_all()
        except _Busy as busy:
            raise self._busy(busy) from None
        except Exception as exc:
            self._fail(exc, inserted=False)
        claims, held, duplicates = self.claims, self.held, self.duplicates
        if duplicates:
            self.result.duplicates = [e.event_id for e in self.events if claims[e.key] in duplicates]
        rejected_keys = {e.key for e in rejected}
        accepted = [e for e in self.events if claims[e.key] in held and e.key not in rejected_keys]
        if not accepted:  # nothing claimed: nothing to commit (a refused request writes nothing)
            if rejected:
                raise self._quota_error()
            return self.result
        try:
            # Taken-over events their dead batch inserted before it died are not inserted again. When
            # ClickHouse cannot say, none are: inserting again is safe, as ClickHouse drops a block
            # carrying the same dedup token and FINAL collapses any other copy.
            landed = stored_keys(
                self.store, [e.key for e in accepted if self.claims[e.key] in self.taken_over]
            )
            landed = landed if landed is not None else set()
            outcome = store_rows(
                [self.priced[e.key] for e in accepted if e.key not in landed],
                self.batch_id,
                self.store,
                self.fallback,
            )
            if outcome.failed is None:
                self.result.queued = outcome.queued
                self.ledger.commit_batch(
                    self.batch_id,
                    max(self.expiry.values()),
                    receipts=self._receipts(accepted),
                    events=len(accepted),
                    queued=outcome.queued,
                )
                self.result.accepted = [e.event_id for e in accepted]
                return self.result
            error = self._partial_failure(accepted, landed, outcome)
        except Exception as exc:
            self._fail(exc, inserted=True)
        raise error

    # ----------------------------------------------------------------------------------- claiming
    def _claim_all(self) -> list[UsageEvent]:
        """Claim every new event id; returns the events refused for a hard limit (never claimed)."""
        groups: dict[tuple[str, str], list[UsageEvent]] = defaultdict(list)
        text = {m: str(Month(*m)) for m in set(self.months)}
        plain: list[UsageEvent] = []
        amounts, schedules = self.amounts, self.metric_limits
        for event, of in zip(self.events, self.months, strict=True):
            # what it adds to its tenant's month counters (``billing.metering.hard_limits``): one
            # query, and its amount of each metric the plan in force at its time limits hard
            schedule = schedules.get(event.tenant_id)
            if schedule is None:
                schedule = schedules[event.tenant_id] = limits_schedule(
                    self.tenants[event.tenant_id], self.catalog
                )
            limits = schedule(event.timestamp)
            found: Mapping[str, Decimal]
            if limits:
                found = amounts_of(event, limits, self.definition)
            else:  # the usual plan: queries only
                found = ONE_QUERY if event.queries else {}
            amounts[event.key] = found
            if found:
                key = self._window(event).key if event.tenant_id in self.own_periods else text[of]
                groups[(event.tenant_id, key)].append(event)
            else:
                plain.append(event)
        rejected: list[UsageEvent] = []
        for (tenant_id, month), group in sorted(groups.items()):
            rejected += self._claim_counted(tenant_id, month, sorted(group, key=_ARRIVAL))
        self._claim_plain(plain + self.moved)
        return rejected

    def _window(self, event: UsageEvent) -> QuotaWindow:
        """The quota window of ``event``'s query (its UTC month, or its tenant's own period)."""
        own = event.tenant_id in self.own_periods
        window = quota_window(self.tenants[event.tenant_id] if own else None, event.timestamp)
        self.window_ends[(event.tenant_id, window.key)] = window.end
        return window

    def _settled(self, events: Sequence[UsageEvent], *, counting: bool) -> list[UsageEvent]:
        """Those of ``events`` still to be claimed: duplicates (their batch committed) drop out, and
        when ``counting``, so do queries a dead batch already counted (claimed later, not counted)."""
        if not self.known:  # no claim found held by anyone (the usual batch): all are still to claim
            return list(events)
        keep = []
        for event in events:
            state = self.known.get(self.claims[event.key])
            if state is not None and state.batch_id == self.batch_id:
                # our own write landed although its answer was lost (an SDK retry then conflicted
                # with it): each write is all or nothing, so the claim is ours, counted as it says
                self.held[self.claims[event.key]] = state.counted_month
            elif state is not None and state.committed:
                self.duplicates.add(self.claims[event.key])
            elif counting and state is not None and state.counted_month:
                self.moved.append(event)
            else:
                keep.append(event)
        return keep

    def _claim_counted(self, tenant_id: str, month: str, ordered: list[UsageEvent]) -> list[UsageEvent]:
        """Claim the events that add to the month's counters, 99 per transaction with the counters,
        in arrival order; returns those refused for a hard limit (recorded in the result)."""
        query_limit = quota_schedule(self.tenants[tenant_id], self.catalog)
        metric_limits = self.metric_limits[tenant_id]
        # both schedules bisect the same plan history: one merged dict per plan segment, made when
        # the first event falls in it (so a plan the catalog lacks raises where it did)
        starts = [p.effective_at for p in self.tenants[tenant_id].sorted_plans()]
        merged: dict[int, dict[str, Decimal]] = {}

        def limits_at(event: UsageEvent) -> dict[str, Decimal]:
            found = merged.get(bisect.bisect_right(starts, event.timestamp))
            if found is None:
                limits = metric_limits(event.timestamp)
                queries = query_limit(event.timestamp)
                found = limits if queries is None else {**limits, QUERIES: Decimal(queries)}
                merged[bisect.bisect_right(starts, event.timestamp)] = found
            return found

        found_amounts = self.amounts  # every event of ``ordered`` was given its amounts by _claim_all

        ends = self.window_ends.get((tenant_id, month)) or Month.parse(month).end
        # kept as long as the claims of the window's last month
        counter_expires = int((ends + timedelta(days=self.retention_days)).timestamp())
        used: dict[str, Decimal] = {}  # the counters as last seen (a guess until a refusal tells)
        refused: list[Refusal] = []
        for start in range(0, len(ordered), MAX_COUNTED_PER_TRANSACTION):
            chunk = ordered[start : start + MAX_COUNTED_PER_TRANSACTION]
            for _attempt in range(QUOTA_ATTEMPTS):
                chunk = self._settled(chunk, counting=True)
                # ``chunk`` is in arrival order already (a slice of ``ordered``)
                decision = admit_ordered(chunk, used, limits_at, lambda e: found_amounts[e.key])
                if not decision.admitted:
                    break
                admitted = [self.claims[e.key] for e in decision.admitted]
                amounts = {self.claims[e.key]: dict(found_amounts[e.key]) for e in decision.admitted}
                markers = {c: counted_marker(month, amounts[c]) for c in admitted}
                exact = bool(decision.refused)
                # refusals were decided on the counters as seen: write only if they still hold them
                # exactly; else only while each still leaves room for every admitted event
                seen = {m: used.get(m, Decimal(0)) for m in decision.touched}
                bounds = {
                    m: (seen[m], seen[m]) if exact else (None, decision.bounds.get(m))
                    for m in sorted(decision.touched - {QUERIES})
                }
                queries_max = decision.bounds.get(QUERIES)
                queries_seen = int(used.get(QUERIES, 0))
                self.in_doubt = dict[Claim, str | None](markers)
                outcome = self.ledger.claim_counted(
                    tenant_id,
                    month,
                    admitted,
                    self.batch_id,
                    self.expiry,
                    lease_until=self.lease_until,
                    max_used=queries_seen if exact else None if queries_max is None else int(queries_max),
                    min_used=queries_seen if exact else None,
                    counter_expires_at=counter_expires,
                    previous={c: self.known[c].batch_id for c in admitted if c in self.known},
                    amounts=amounts,
                    metric_bounds={m: b for m, b in bounds.items() if b != (None, None)},
                )
                self.in_doubt = {}
                if outcome.written:
                    self.held.update(markers)
                    self.taken_over.update(c for c in admitted if c in self.known)
                    break
                if outcome.conflicts:
                    self._resolve(outcome.conflicts)
                if outcome.used is not None:
                    used = {QUERIES: Decimal(outcome.used), **(outcome.counters or {})}
            else:
                raise ServiceUnavailable(
                    "quota counter is too contended; retry the request", headers={"Retry-After": "1"}
                )
            used = decision.used_after
            refused.extend(decision.refused)
        if refused:
            first = refused[0]
            whole = first.metric == QUERIES
            self.result.quota = {  # a query quota's refusal keeps the fields it always had
                "tenant_id": tenant_id,
                "month": month,
                **({} if whole else {"metric": first.metric}),
                "limit": int(first.limit) if whole else first.limit,
                "used": int(used.get(QUERIES, 0)) if whole else used.get(first.metric, Decimal(0)),
                "resets_at": iso(ends),
            }
            index = self._index()
            self.result.rejected_for_quota.extend(
                {
                    "event_id": r.event.event_id,
                    "tenant_id": r.event.tenant_id,
                    "timestamp": iso(r.event.timestamp),
                    "index": index[r.event.key],
                    "metric": r.metric,
                    "limit": int(r.limit) if r.metric == QUERIES else r.limit,
                }
                for r in refused
            )
        return [r.event for r in refused]

    def _index(self) -> dict[tuple[str, str], int]:
        """Each event's index in the request."""
        return {e.key: i for i, e in enumerate(self.events)}

    def _claim_plain(self, events: list[UsageEvent]) -> None:
        """Claims that change no counter, each on its own condition: those written are held at once,
        the conflicting ones are looked up and tried again (or settled: duplicates, our own)."""
        pending = events
        for _attempt in range(QUOTA_ATTEMPTS):
            pending = self._settled(pending, counting=False)
            if not pending:
                return
            claims = [self.claims[e.key] for e in pending]
            counted = {c: m for c in claims if c in self.known and (m := self.known[c].counted_month)}
            previous = {c: self.known[c].batch_id for c in claims if c in self.known}
            self.in_doubt = {c: counted.get(c) for c in claims}
            try:
                outcome = self.ledger.claim(
                    claims,
                    self.batch_id,
                    self.expiry,
                    lease_until=self.lease_until,
                    counted=counted,
                    previous=previous,
                )
            except ClaimsInterrupted as interrupted:  # what it wrote is ours: the failure path gives it up
                self._hold(interrupted.written, counted, previous)
                raise interrupted.error from None
            self.in_doubt = {}
            self._hold(frozenset(claims) - outcome.conflicts, counted, previous)
            if outcome.written:
                return
            pending = [e for e in pending if self.claims[e.key] in outcome.conflicts]
            self._resolve(outcome.conflicts)
        raise ServiceUnavailable(
            "event claims are too contended; retry the request", headers={"Retry-After": "1"}
        )

    def _hold(self, written: frozenset[Claim], counted: dict[Claim, str], previous: dict[Claim, str]) -> None:
        self.held.update({c: counted.get(c) for c in written})
        self.taken_over.update(c for c in written if c in previous)

    def _resolve(self, conflicts: frozenset[Claim]) -> None:
        """Learn who holds the conflicting claims; while a live batch holds one (it may still commit
        it), wait for its outcome, up to ``claim_wait_seconds``."""
        deadline = time.monotonic() + self.claim_wait_seconds
        pending, delay = set(conflicts), 0.02
        while True:
            states = self.ledger.lookup(sorted(pending, key=lambda c: c.pk))
            for claim in pending:
                if claim in states:
                    self.known[claim] = states[claim]
                else:  # given back meanwhile: claim it as new
                    self.known.pop(claim, None)
            now = self.now_s()
            live = {
                c
                for c in pending
                if c in states and states[c].in_flight(now) and states[c].batch_id != self.batch_id
            }
            if not live:
                return
            if time.monotonic() >= deadline:
                raise _Busy(min(live, key=lambda c: c.pk).event_id, max(states[c].lease_until for c in live))
            time.sleep(random.uniform(delay / 2, delay))
            delay, pending = min(0.5, delay * 2), live

    # ------------------------------------------------------------------------------------ storing
    def _receipts(self, committed: Sequence[UsageEvent]) -> list[PeriodReceipt]:
        """The ids this batch commits, per tenant and month (the receipt index items, which expire
        with the claims)."""
        month_of = dict(zip(map(attrgetter("key"), self.events), self.months, strict=True))
        groups: dict[tuple[str, tuple[int, int]], list[str]] = defaultdict(list)
        for event in committed:
            groups[(event.tenant_id, month_of[event.key])].append(event.event_id)
        return [
            PeriodReceipt(
                tenant_id, str(Month(*month)), tuple(ids), claim_expiry(*month, self.retention_days)
            )
            for (tenant_id, month), ids in sorted(groups.items())
        ]

    # ------------------------------------------------------------------------------ failure exits
    def _quota_error(self) -> QuotaExceeded:
        """The 429 of a batch whose every new query was refused and that claimed nothing else."""
        quota = self.result.quota or {}
        resets_at = parse_instant(quota["resets_at"]) if quota.get("resets_at") else self.clock()
        retry_after = max(1, int((resets_at - self.clock()).total_seconds()))
        metric = quota.get("metric", QUERIES)
        what = "query quota" if metric == QUERIES else f"limit on {metric}"
        return QuotaExceeded(
            f"monthly {what} of {quota.get('limit')} reached for tenant {quota.get('tenant_id')}; "
            f"it resets at {quota.get('resets_at')}",
            details={
                **quota,
                "rejected_for_quota": self.result.rejected_for_quota,
                "duplicates": self.result.duplicates,
            },
            headers={"Retry-After": str(retry_after)},
            extra={
                "limit": quota.get("limit"),
                "used": quota.get("used"),
                "resets_at": quota.get("resets_at"),
            },
        )

    def _partial_failure(
        self, accepted: list[UsageEvent], landed: set[tuple[str, str]], outcome: StoreOutcome
    ) -> BillingError:
        """A block found no durable home (``outcome``; ``landed``: taken-over events found stored).
        What has one (stored or queued) stays claimed, counted and committed, and is named ``kept``;
        what surely was not stored is given back (claim and quota); a block whose insert may have
        been applied (it timed out) and that ClickHouse cannot confirm either way, or whose send to
        the queue raised without SQS refusing it (it may be queued and replayed), and any event
        taken over from a dead batch (which may have stored or queued it), stays claimed and counted
        under a batch that never commits, is named ``unsettled``, and the client's retry settles it.
        So a retry of the same request stores every event exactly once, and every quota counter
        equals the month's counted claims."""
        claims, batch_id = self.claims, self.batch_id
        counted = {c: m for c, m in self.held.items() if m and c in self.taken_over}
        counted |= {claims[e.key]: m for e in accepted if (m := self.held.get(claims[e.key]))}
        kept_keys = landed | {(r.tenant_id, r.event_id) for r in outcome.kept}
        unsettled_keys = {(r.tenant_id, r.event_id) for r in outcome.unsettled}
        unsettled_keys |= {
            e.key for e in accepted if claims[e.key] in self.taken_over and e.key not in kept_keys
        }
        released = [claims[e.key] for e in accepted if e.key not in kept_keys and e.key not in unsettled_keys]
        self.ledger.release(released, batch_id, {c: counted[c] for c in released if c in counted})
        if unsettled_keys:
            unsettled = [claims[k] for k in unsettled_keys]
            try:
                self.ledger.claim(
                    unsettled,
                    f"{batch_id}-unsettled",
                    self.expiry,
                    lease_until=0,  # given up: the retry takes them over at once
                    counted={c: counted[c] for c in unsettled if c in counted},
                    previous={c: batch_id for c in unsettled},
                )
            except ClaimsInterrupted as interrupted:
                raise interrupted.error from None
        kept = [e.event_id for e in accepted if e.key in kept_keys]
        if kept:
            self.ledger.commit_batch(
                batch_id,
                max(self.expiry.values()),
                receipts=self._receipts([e for e in accepted if e.key in kept_keys]),
                events=len(kept),
                queued=outcome.queued,
            )
        extra = {
            "kept": kept,
            "unsettled": [e.event_id for e in accepted if e.key in unsettled_keys],
            "duplicates": self.result.duplicates,
            "rejected_for_quota": self.result.rejected_for_quota,
        }
        if outcome.failure == "rejected":
            index = {e.key: i for i, e in enumerate(self.events)}
            return InvalidRequest(
                f"ClickHouse refused {len(outcome.failed or [])} event(s) as invalid; nothing else was stored"
                + (f" but the {len(kept)} event(s) named in 'kept'" if kept else ""),
                details=[
                    {"index": index[(r.tenant_id, r.event_id)], "field": "event", "reason": outcome.reason}
                    for r in outcome.failed or []
                ],
                extra=extra,
            )
        return ServiceUnavailable(
            "usage store and fallback queue are both unavailable; retry the request: events named in "
            "'kept' are stored or queued (the retry reports them as duplicates), those named in "
            "'unsettled' may be stored or queued and stay counted until the retry settles them (each "
            "stored once, counted once), the rest were not accepted",
            headers={"Retry-After": "5"},
            extra=extra,
        )

    def _busy(self, busy: _Busy) -> ServiceUnavailable:
        """Another live batch kept one of our ids past the wait. Nothing was inserted: let our claims
        go (``_let_go``) and tell the client to come back when that batch's lease has run out (it
        committed or gave the ids up before then, or it died and they can be taken over)."""
        unsettled, let_go = self._let_go(inserted=False)
        wait = max(busy.lease_until, self.lease_until if not let_go else 0) - self.now_s()
        return ServiceUnavailable(
            f"event {busy.event_id} is being stored by another request right now; retry the request "
            "after Retry-After (nothing was stored; events named 'unsettled' are settled by the retry)",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
            extra=self._failure_extra(unsettled),
        )

    def _fail(self, error: Exception, *, inserted: bool) -> NoReturn:
        """The batch failed after claiming (a backing service failed, or a bug): let every claim go
        before answering, so that the client's retry proceeds at once. A backing-service failure or a
        ServiceUnavailable becomes the 503 naming what is ``unsettled``; when even letting go failed
        (DynamoDB down), its ``Retry-After`` is the end of our claims' lease, after which the retry
        takes them over. Anything else is re-raised (a 500) after letting go."""
        logger.warning(
            "ingest batch failed; letting its claims go", extra={"batch_id": self.batch_id}, exc_info=error
        )
        unsettled, let_go = self._let_go(inserted=inserted)
        if not (isinstance(error, ServiceUnavailable) or is_backing_service_failure(error)):
            raise error
        cause = error.message if isinstance(error, ServiceUnavailable) else "a backing service failed"
        held = "" if let_go else f"; their claims are held until {iso(self._lease_end())}"
        raise ServiceUnavailable(
            f"{cause}. Retry the request after Retry-After: nothing was stored but maybe the events "
            f"named 'unsettled', which the retry settles (each stored once, counted once){held}",
            headers={"Retry-After": str(1 if let_go else max(1, math.ceil(self.lease_until - self.now_s())))},
            extra=self._failure_extra(unsettled),
        ) from error

    def _let_go(self, *, inserted: bool) -> tuple[list[str], bool]:
        """Before answering a failure: give back (claim and quota, one transaction) each claim that
        surely was not stored - claimed anew and, when ``inserted`` is False, no insert was tried -
        and give up the rest (lease 0, still counted: they may be stored; the retry takes them over
        at once and settles them), with the claims of a write that raised (it may have been
        applied). Returns the event ids given up or still held (``unsettled``) and whether every
        claim was let go (else they wait for their lease)."""
        fresh = [] if inserted else [c for c in self.held if c not in self.taken_over]
        if fresh:
            try:
                self.ledger.release(fresh, self.batch_id, {c: m for c in fresh if (m := self.held[c])})
                for c in fresh:
                    del self.held[c]
            except Exception:
                logger.warning("could not give back the claims of a failed batch", exc_info=True)
        rest = {**self.in_doubt, **self.held}
        ours, let_go = self._give_up(rest)
        return [c.event_id for c in rest if c in ours], let_go

    def _give_up(self, claims: dict[Claim, str | None]) -> tuple[set[Claim], bool]:
        """Lease 0 on those of ``claims`` (-> the month counting each) still ours; a claim given back
        meanwhile (e.g. by a release whose answer was lost), or never written, is a conflict and
        left alone. Returns the claims given up (all of them, as far as we know, when DynamoDB
        failed) and whether it worked."""
        if not claims:
            return set(), True
        try:
            outcome = self.ledger.claim(
                list(claims),
                self.batch_id,
                self.expiry,
                lease_until=0,
                counted={c: m for c, m in claims.items() if m},
                previous=dict.fromkeys(claims, self.batch_id),
            )
        except Exception as exc:
            logger.warning(
                "could not give up the claims of a failed batch", extra={"batch_id": self.batch_id}
            )
            # a claim we know we hold that was not given up keeps its lease; one of a write that
            # raised may never have existed (if it does, the retry is told how long it is held)
            written = exc.written if isinstance(exc, ClaimsInterrupted) else frozenset()
            return set(claims), all(c in written for c in claims if c in self.held)
        return set(claims) - outcome.conflicts, True

    def _lease_end(self) -> datetime:
        return datetime.fromtimestamp(self.lease_until, UTC)

    def _failure_extra(self, unsettled: list[str]) -> dict[str, Any]:
        return {
            "kept": [],
            "unsettled": unsettled,
            "duplicates": [e.event_id for e in self.events if self.claims[e.key] in self.duplicates],
            "rejected_for_quota": [],
        }


@lru_cache(maxsize=1024)
def claim_expiry(year: int, month: int, retention_days: int) -> int:
    """When the claims of a month's events expire, and its quota counter: ``retention_days`` after
    the month ends (epoch seconds)."""
    return int((Month(year, month).end + timedelta(days=retention_days)).timestamp())


_claim_of: Callable[[tuple[str, str]], Claim] = partial(tuple.__new__, Claim)  # Claim(*key), in C
