"""Corrections of accepted usage: void or amend a stored event, at its original price.

A correction never rewrites a stored row. It adds rows to ``usage_events`` (migration 0007):

- a **void** is one row (event_id ``"<correction_id>#void"``, ``sign`` -1, ``corrects`` naming the
  row it negates) with the tenant, timestamp, type, model and price version of the event's current
  version and every quantity, the cost and each number property negated: sums and rollups over the
  month are the corrected sums, and the cost taken off is exactly the cost stored;
- an **amend** is a void of the current version plus the new version (event_id
  ``"<correction_id>#amend"``, ``sign`` 1, ``corrects`` naming the customer's event id), priced at
  the price version in force at the event's timestamp, never today's. Its tenant, timestamp and type
  stay; model, tokens, bytes and properties may change.

Reads that are not sums (max, latest, unique counts) take the live rows only
(``billing.adapters.clickhouse.metric_queries.live_rows``). A correction row is dated like the event
it corrects, so before its month closes the statement and the preview see the corrected usage; one
stored after the close is late data and becomes adjustment lines on the next statement, as any late
event (a void inside graduated tiers takes its units off the end of the month's walk:
``billing.rating.tiers.walk_tiers``).

Invariants:

- each correction has its own id (``correction_id``, per tenant) and is applied at most once however
  often it is sent: a conditional write claims the id; the same id sent again answers what it did;
  the same id for another correction is a 409;
- the corrections of one event are applied one after another: each names the version it corrects
  (a conditional write on the event's correction state); one left half-done (rows written, not yet
  recorded) is finished by the next request that touches the event, from the plan it recorded, and
  its rows are inserted with a dedup token of their own, so finishing it twice stores them once;
- a void gives back what its event's claim counted (a query's unit, its amounts of hard-limited
  metrics: the claim's marker, ``billing.metering.hard_limits``) to the month's counters in the
  transaction that records the correction, so each counter still equals what is stored;
- an amend moves each counter by what the new version adds minus what the claim counted (amounts
  under the hard limits in force at the event's timestamp) and rewrites the claim's marker, in the
  transaction that claims the correction id (before any row is written, as ingest counts before it
  stores); one that would take a counter past its limit is refused (429) with nothing written, and
  sent again it moves nothing again (its id is claimed once);
- an event voided cannot be corrected again (409); an event id never stored is a 404; an event older
  than the correction window (``correction_window_days``) is a 422.

Length: one service whose steps (claim the id, plan the rows, move the counters, store, record,
finish a half-done correction) share the invariants above; the rows and their JSON are in
``correction_rows`` and ``row_json``, the stores behind ports.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from pydantic import ValidationError

from billing.catalog.plans import PlanCatalog
from billing.kernel.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    QuotaExceeded,
    ServiceUnavailable,
    StoreRejected,
    StoreUnavailable,
)
from billing.kernel.periods import Month, iso, parse_instant
from billing.kernel.validation import validation_details
from billing.metering.correction_requests import (
    AMEND,
    VOID,
    CorrectionItem,
    ItemResult,
    UnprocessableCorrection,
)
from billing.metering.correction_rows import negation, public_version
from billing.metering.events import StoredEvent, UsageEvent
from billing.metering.hard_limits import (
    ONE_QUERY,
    QUERIES,
    amounts_of,
    counted_marker,
    limits_schedule,
    metric_definitions,
    read_marker,
)
from billing.metering.price_book import MissingMeasure, NoPriceVersion, PriceBook, UnknownModel
from billing.metering.quota_windows import quota_window
from billing.metering.row_json import decode_row, encode_row
from billing.outgoing_webhooks.publishing import WebhookPublisher
from billing.tenants.access import Principal
from billing.tenants.tenant import TenantStore

COMMIT_ATTEMPTS = 5  # a correction's turn on its event, when other corrections of it go first


# ------------------------------------------------------------------------------------ collaborators
@dataclass(frozen=True)
class Plan:
    """A correction decided and about to be applied: every row it writes and what it records.
    ``rows``: (row JSON, sign, corrects); ``quota_month``: what a void gives back to the month's
    counters: the marker its event's claim counted (``billing.metering.hard_limits.counted_marker``;
    the month alone is one query)."""

    correction_id: str
    tenant_id: str
    event_id: str
    action: str
    reason: str
    requested_by: str
    at: str
    digest: str
    before: dict[str, Any]
    after: dict[str, Any] | None
    rows: list[tuple[dict[str, Any], int, str]]
    quota_month: str | None
    recount: dict[str, Any] | None = None  # an amend's counter moves: see ``Recount``

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "rows": [list(r) for r in self.rows]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        return cls(**{**data, "rows": [(r[0], int(r[1]), r[2]) for r in data["rows"]]})

    def entry(self) -> dict[str, Any]:
        """The audit trail's line: who, when, why, before and after."""
        return {
            "correction_id": self.correction_id,
            "action": self.action,
            "reason": self.reason,
            "requested_by": self.requested_by,
            "at": self.at,
            "before": public_version(self.before),
            "after": public_version(self.after),
        }


class OverHardLimit(QuotaExceeded):
    """An amend that would take a counter past its hard limit: refused, nothing written."""


def recount_body(
    key: str, marker: str | None, moves: dict[str, Decimal], limits: dict[str, Decimal]
) -> dict[str, Any]:
    """A plan's ``recount`` (JSON, numbers as text): the counter window ``key``, the claim's new
    ``marker`` (None: it counts nothing now), ``moves`` (metric -> new minus old amount, never 0) and,
    for each metric that grows, its hard ``limits``."""
    return {
        "key": key,
        "marker": marker,
        "moves": {m: f"{a:f}" for m, a in sorted(moves.items())},
        "limits": {m: f"{limits[m]:f}" for m in sorted(moves) if moves[m] > 0 and m in limits},
    }


@dataclass(frozen=True)
class EventState:
    """An event's corrections so far: ``version`` (corrections applied), ``current`` (the live row as
    JSON; None once voided), ``trail`` (one entry per correction) and ``pending`` (a plan begun but
    not recorded as applied)."""

    version: int = 0
    current: dict[str, Any] | None = None
    trail: list[dict[str, Any]] = field(default_factory=list)
    pending: Plan | None = None
    voided: bool = False


@dataclass(frozen=True)
class CorrectionRecord:
    """A correction id's record: the request it was (``digest``), its event and whether it is applied."""

    event_id: str
    digest: str
    applied: bool
    entry: dict[str, Any]


class CorrectionLedger(Protocol):
    """The corrections' exactly-once records (DynamoDB: billing.adapters.dynamodb.corrections)."""

    def record(self, tenant_id: str, correction_id: str) -> CorrectionRecord | None: ...

    def state(self, tenant_id: str, event_id: str) -> EventState | None: ...

    def begin(self, plan: Plan, expected_version: int, expires_at: int) -> bool:
        """One transaction: the correction id claimed (absent before) and the plan set pending on the
        event, whose state must still be at ``expected_version`` with nothing pending, and (an amend's
        ``plan.recount``) the counters moved, each that grows on condition it stays within its limit,
        and the claim's marker rewritten. False when either of the first conditions fails; raises
        ``OverHardLimit`` when a counter has no room (nothing written either way)."""
        ...

    def commit(self, plan: Plan, expected_version: int, quota_counted: bool) -> bool:
        """One transaction: the correction recorded applied, the event's state moved to the plan's
        ``after`` with its entry appended and nothing pending, and (``quota_counted``) the month's
        counters given back what ``plan.quota_month`` says. False when the plan is no longer pending
        (applied)."""
        ...

    def quota_exists(self, tenant_id: str, month: str) -> bool: ...

    def counted(self, tenant_id: str, event_id: str) -> str | None:
        """The marker of what the event's claim counted (None: nothing, or the claim expired)."""
        ...


class CorrectionRows(Protocol):
    """The rows in ClickHouse (billing.adapters.clickhouse.corrections)."""

    def stored_event(self, tenant_id: str, event_id: str) -> StoredEvent | None: ...

    def insert(self, rows: Sequence[tuple[StoredEvent, int, str]], token: str) -> None: ...


# ------------------------------------------------------------------------------------------ service
class CorrectionService:
    """Applies corrections (``apply``) and reads an event's audit trail (``trail``)."""

    def __init__(
        self,
        *,
        tenants: TenantStore,
        ledger: CorrectionLedger,
        rows: CorrectionRows,
        price_book: PriceBook,
        catalog: PlanCatalog,
        webhooks: WebhookPublisher,
        window_days: int,
        retention_days: int,
        clock: Callable[[], datetime],
    ):
        self.tenants, self.ledger, self.rows = tenants, ledger, rows
        self.price_book, self.catalog, self.webhooks = price_book, catalog, webhooks
        self.window_days, self.retention_days, self.clock = window_days, retention_days, clock

    def apply(self, items: Sequence[CorrectionItem], principal: Principal) -> list[ItemResult]:
        found = self.tenants.get_many(sorted({i.tenant_id for i in items}))
        results = []
        for item in items:
            result = ItemResult(item.correction_id, item.tenant_id, item.event_id, "refused")
            try:
                principal.require(item.tenant_id, found.get(item.tenant_id), "correct usage of")
                result.status, result.entry = self._apply_one(item, principal)
            except (
                Forbidden,
                NotFound,
                Conflict,
                UnprocessableCorrection,
                InvalidRequest,
                OverHardLimit,
            ) as refusal:
                result.error = refusal
            results.append(result)
        return results

    def trail(self, tenant_id: str, event_id: str, principal: Principal) -> dict[str, Any]:
        """The event's audit trail: its original version, each correction (who, when, why, before and
        after) in order, and its status now."""
        principal.require(tenant_id, self.tenants.get_many([tenant_id]).get(tenant_id), "read usage of")
        state = self._settled(tenant_id, event_id)
        original = self.rows.stored_event(tenant_id, event_id)
        if original is None:
            raise NotFound(f"no stored event {event_id!r} for tenant {tenant_id}")
        state = state or EventState()
        status = "voided" if state.voided else ("amended" if state.trail else "as_stored")
        return {
            "tenant_id": tenant_id,
            "event_id": event_id,
            "timestamp": iso(original.timestamp),
            "type": original.type,
            "status": status,
            "original": public_version(encode_row(original)),
            "current": public_version(state.current) if state.trail else public_version(encode_row(original)),
            "corrections": state.trail,
        }

    # -------------------------------------------------------------------------------------------
    def _apply_one(self, item: CorrectionItem, principal: Principal) -> tuple[str, dict[str, Any]]:
        for _attempt in range(COMMIT_ATTEMPTS):
            record = self.ledger.record(item.tenant_id, item.correction_id)
            if record is not None:
                if record.digest != item.digest():
                    raise Conflict(
                        f"correction id {item.correction_id!r} was already used for another correction "
                        f"(of event {record.event_id!r}); give this one a new id"
                    )
                if record.applied:
                    return "already_applied", record.entry
            state = self._settled(item.tenant_id, item.event_id)
            if record is not None:  # ours was pending and is now applied by _settled
                continue
            plan, version = self._plan(item, principal, state)
            if not self.ledger.begin(plan, version, self._expiry(plan)):
                continue  # another correction of this event, or this one sent twice, went first
            self._finish(plan, version)
            return "applied", plan.entry()
        raise ServiceUnavailable(
            f"event {item.event_id!r} is being corrected by other requests; retry",
            headers={"Retry-After": "1"},
        )

    def _settled(self, tenant_id: str, event_id: str) -> EventState | None:
        """The event's state once any correction left pending on it is finished."""
        state = self.ledger.state(tenant_id, event_id)
        if state is not None and state.pending is not None:
            self._finish(state.pending, state.version)
            state = self.ledger.state(tenant_id, event_id)
        return state

    def _finish(self, plan: Plan, version: int) -> None:
        """Insert the plan's rows (their own dedup token: twice is once), record it, publish it."""
        accepted = parse_instant(plan.at)
        rows = [
            (decode_row(r, tenant_id=plan.tenant_id, accepted_at=accepted), sign, corrects)
            for r, sign, corrects in plan.rows
        ]
        try:
            self.rows.insert(rows, token=f"correction\x1f{plan.tenant_id}\x1f{plan.correction_id}")
        except (StoreUnavailable, StoreRejected) as exc:
            raise ServiceUnavailable(
                f"the usage store is unavailable ({exc}); correction {plan.correction_id!r} is kept "
                "pending and applied once by a retry of the request",
                headers={"Retry-After": "5"},
            ) from exc
        counted = plan.quota_month is not None and self.ledger.quota_exists(
            plan.tenant_id, read_marker(plan.quota_month)[0]
        )
        if self.ledger.commit(plan, version, counted):
            self.webhooks.publish(
                "event.corrected",
                plan.event_id,
                {"tenant_id": plan.tenant_id, "event_id": plan.event_id, **plan.entry()},
                source_id=f"correction:{plan.tenant_id}:{plan.correction_id}",
            )

    def _plan(self, item: CorrectionItem, principal: Principal, state: EventState | None) -> tuple[Plan, int]:
        state = state or EventState()
        if state.voided:
            voiding: dict[str, Any] = next((e for e in reversed(state.trail) if e["action"] == VOID), {})
            raise Conflict(
                f"event {item.event_id!r} was already voided (correction "
                f"{voiding.get('correction_id')!r}); nothing is left to correct"
            )
        now = self.clock()
        if state.current is not None:
            current = decode_row(state.current, tenant_id=item.tenant_id, accepted_at=now)
        else:
            stored = self.rows.stored_event(item.tenant_id, item.event_id)
            if stored is None:
                raise NotFound(
                    f"no stored event {item.event_id!r} for tenant {item.tenant_id} (an event still "
                    "queued after a ClickHouse outage can be corrected once it is replayed)"
                )
            current = stored
        oldest = now - timedelta(days=self.window_days)
        if current.timestamp < oldest:
            raise UnprocessableCorrection(
                f"event {item.event_id!r} of {iso(current.timestamp)} is older than the correction window "
                f"of {self.window_days} days (oldest correctable now: {iso(oldest)})"
            )
        before = encode_row(current)
        rows = [(encode_row(negation(current, f"{item.correction_id}#void", now)), -1, current.event_id)]
        after: dict[str, Any] | None = None
        recount = None
        if item.action == AMEND:
            amended, event = self._amended(item, current, now)
            after = encode_row(amended)
            rows.append((after, 1, item.event_id))
            recount = self._recount(item, current, event)
        quota_month = None
        if item.action == VOID:
            quota_month = self.ledger.counted(item.tenant_id, item.event_id)
            if quota_month is None and current.queries == 1:  # its claim expired: one query
                quota_month = str(Month.of(current.timestamp))
        plan = Plan(
            item.correction_id,
            item.tenant_id,
            item.event_id,
            item.action,
            item.reason,
            "platform" if principal.platform and principal.api_key_id is None else str(principal.api_key_id),
            iso(now),
            item.digest(),
            before,
            after,
            rows,
            quota_month,
            recount,
        )
        return plan, state.version

    def _recount(
        self, item: CorrectionItem, current: StoredEvent, event: UsageEvent
    ) -> dict[str, Any] | None:
        """How an amend moves its tenant's counters: the new version's amounts under the hard limits
        in force at the event's timestamp, minus what the claim's marker says it counted (no marker:
        nothing, or one query for a query whose claim expired). None when nothing moves."""
        tenant = self.tenants.get_many([item.tenant_id]).get(item.tenant_id)
        if tenant is None:
            return None
        limits = limits_schedule(tenant, self.catalog)(current.timestamp)
        marker = self.ledger.counted(item.tenant_id, item.event_id)
        if marker is not None:
            key, old = read_marker(marker)
        else:
            key = quota_window(tenant, current.timestamp).key
            old = dict(ONE_QUERY) if current.queries else {}
        new = amounts_of(event, limits, metric_definitions(self.catalog))
        if QUERIES in old:  # the type never changes: the query stays counted as it was
            new[QUERIES] = old[QUERIES]
        else:
            new.pop(QUERIES, None)
        moves = {m: new.get(m, Decimal(0)) - old.get(m, Decimal(0)) for m in {*old, *new}}
        moves = {m: a for m, a in moves.items() if a}
        if not moves:
            return None
        return recount_body(key, counted_marker(key, new) if new else None, moves, limits)

    def _amended(
        self, item: CorrectionItem, current: StoredEvent, now: datetime
    ) -> tuple[StoredEvent, UsageEvent]:
        """The new version (stored, and as an event), validated as ingest validates an event and
        priced at the price version in force at the event's timestamp."""
        fields: dict[str, Any] = {
            "event_id": item.event_id,
            "tenant_id": item.tenant_id,
            "timestamp": current.timestamp,
            "type": current.type,
            "model": current.model or None,
            "input_tokens": current.input_tokens,
            "output_tokens": current.output_tokens,
            "bytes": current.bytes,
            "properties": dict(current.properties),
            **(item.values or {}),
        }
        try:
            event = UsageEvent.model_validate(fields)
        except ValidationError as exc:
            details = validation_details(exc, root="values")
            for problem in details:
                problem["field"] = f"values.{problem['field']}".removesuffix(".[key]")
            raise InvalidRequest("the amended event is not a valid event", details=details) from None
        if event.type not in self.catalog.event_types:
            raise UnprocessableCorrection(f"the catalog no longer defines usage type {event.type!r}")
        try:
            cost = self.price_book.cost(event)
        except (UnknownModel, NoPriceVersion) as exc:
            raise InvalidRequest(str(exc), details=[{"field": "values", "reason": str(exc)}]) from None
        except MissingMeasure as exc:
            raise InvalidRequest(
                str(exc), details=[{"field": f"values.{exc.field}", "reason": str(exc)}]
            ) from None
        stored = event.stored(cost.cost_usd, cost.price_version, now)
        return stored._replace(event_id=f"{item.correction_id}#amend"), event

    def _expiry(self, plan: Plan) -> int:
        """Correction records are kept as long as event claims: ``retention_days`` after the month
        of the event ends (the correction window is shorter)."""
        month = Month.of(parse_instant(plan.before["timestamp"]))
        return int((month.end + timedelta(days=self.retention_days)).timestamp())
