"""The engine of ``billing simulate``: a month of usage through the production ingest service, quota
logic, rater and close, on in-memory stores and a fresh embedded ClickHouse database (dev only).

Invariants:
- Events are ingested per tenant in ``(timestamp, event_id)`` order. Every ingest rule is per
  tenant (claims, the quota counter, cancellation, the first plan) and so is rating, so that order
  is all the rules need: tenants are independent. They go one after another, and with several
  workers each process simulates a share of the tenants (its own stores and ClickHouse database,
  the production ingest and close on its tenants); the month's CSV is ``invoices_csv`` over every
  share's stored statements, as the close builds it.
- A batch holds events of one tenant, one month and one subscription state (subscribed, cancelled,
  before the first plan), up to ``batch_events``: a batch-level refusal (403 outside the
  subscription, 404 unknown tenant, 409 closed month) then concerns exactly its events. A second
  copy of an event id goes into a later batch, as a client's retry would, and the ledger answers it.
- Refusals naming events (400 invalid, 403) drop exactly those events and send the rest again, as
  the usage client does with the same answers; a refusal naming none drops the batch.
- Accepted rows reach ClickHouse through the production adapter in large blocks (``BlockStore``),
  all of them before the month is closed.
- A comparison (``proposed``) runs the same events through ingest and the close again under the
  other plans and price book, so admission (a lower quota) and event-time costs are the proposal's.
"""

from __future__ import annotations

import gc
import json
import mmap
import multiprocessing
import os
import re
import tempfile
import time
import traceback
import zlib
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import compress
from operator import attrgetter
from pathlib import Path
from typing import Any, NoReturn

import yaml
from pydantic import ValidationError

from billing.adapters.clickhouse import usage_store as clickhouse
from billing.catalog.plans import PlanCatalog
from billing.kernel.errors import BillingError, QuotaExceeded
from billing.kernel.periods import Month
from billing.kernel.validation import exact_number
from billing.metering.events import UsageEvent, parse_event
from billing.metering.ingest import IngestService
from billing.rating import invoices_csv, lines_csv, statement_period
from billing.runtime import container
from billing.runtime.settings import get_settings
from billing.statements.statement import Statement
from billing.tenants.closed_periods import has_own_periods
from billing.tenants.requests import CouponRequest, CreditGrantRequest, parse_request
from billing.tenants.tenant import Tenant
from billing_local import memory
from billing_local.sandbox import clickhouse_sandbox, migrated_database

BATCH_EVENTS = 50_000
BLOCK_ROWS = 100_000
EVENTS_PER_WORKER = 150_000  # below this a worker process costs more (start, imports) than it saves
# ``code`` of the ingest errors -> the reason a simulation reports
REASONS = {"invalid_request": "invalid"}


class SimulationInputError(ValueError):
    """The tenants or events file cannot be simulated (the message says which entry and why)."""


class SimulationFailed(RuntimeError):
    """A worker process failed; the message carries its traceback."""


@dataclass(frozen=True)
class Catalog:
    """The plans and price book one side of a simulation rates with (None: the configured ones)."""

    plans: Path | None = None
    pricebook: Path | None = None


@dataclass(frozen=True)
class SimulationSpec:
    tenants: Path
    events: Path
    month: Month
    current: Catalog = Catalog()
    proposed: Catalog | None = None  # a what-if: the same events under another catalog
    workers: int = 0  # processes; 0 = as many as the input and the CPUs make worth it
    batch_events: int = BATCH_EVENTS


@dataclass
class TenantCounts:
    """What ingest did with one tenant's events."""

    accepted: int = 0
    accepted_queries: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # reason -> events


@dataclass
class SimulationReport:
    month: str
    tenants: int = 0
    events_read: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # reason -> events
    examples: list[str] = field(default_factory=list)  # a few rejection messages
    per_tenant: defaultdict[str, TenantCounts] = field(default_factory=lambda: defaultdict(TenantCounts))
    statements: list[Statement] = field(default_factory=list)
    csv: bytes = b""
    seconds: dict[str, float] = field(default_factory=dict)  # phase -> wall seconds
    workers: int = 1

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    @property
    def lines_csv(self) -> bytes:
        return lines_csv(self.statements)

    def reject(self, tenant_id: str, reason: str, message: str, count: int = 1) -> None:
        reason = REASONS.get(reason, reason)
        self.rejected[reason] += count
        if tenant_id:
            self.per_tenant[tenant_id].rejected[reason] += count
        if len(self.examples) < 8:
            self.examples.append(message)

    def __getstate__(self) -> dict[str, Any]:  # per_tenant's factory is a lambda: send a plain dict
        return {**self.__dict__, "per_tenant": dict(self.per_tenant)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.per_tenant = defaultdict(TenantCounts, state["per_tenant"])


@dataclass
class SimulationResult:
    current: SimulationReport
    proposed: SimulationReport | None = None


# ---------------------------------------------------------------------------------------------- input
GRANTED = ("coupons", "credits")  # tenant entry keys granted through the tenant service, not stored
TENANT_SHAPE = (
    "expected a stored tenant record: {id, name?, email?, plans: [{plan, effective_at}, ...], "
    "trial_ends_at?, canceled_at?, query_quota?, coupons?, credits?}"
)
EVENT_SHAPE = (
    "expected one usage event per line, a JSON object as POST /v1/events takes it: "
    '{"event_id", "tenant_id", "timestamp", "type", "model"?, "input_tokens"?, "output_tokens"?, "bytes"?}'
)


@dataclass(frozen=True)
class TenantGrants:
    """What a tenant entry attaches once the tenant exists: the bodies of POST
    /v1/tenants/{id}/coupons and POST /v1/tenants/{id}/credits, in file order."""

    coupons: tuple[CouponRequest, ...] = ()
    credits: tuple[CreditGrantRequest, ...] = ()


def _entries(path: Path) -> list[Any]:
    # YAML is a superset of JSON; libyaml's safe loader when PyYAML has it (a 1,000-tenant file: 0.1 s, not 0.5 s)
    document = yaml.load(Path(path).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    entries = document.get("tenants") if isinstance(document, dict) else document
    if not isinstance(entries, list):
        raise SimulationInputError(f"{path}: expected a 'tenants' list")
    return entries


def load_tenants(path: Path) -> list[Tenant]:
    """The tenant records (an entry's coupons and credits are ``load_grants``'s)."""
    tenants = []
    known = set(Tenant.model_fields) | set(GRANTED)
    for index, entry in enumerate(_entries(path)):
        where = f"{path}: tenant #{index}"
        if not isinstance(entry, dict):
            raise SimulationInputError(f"{where}: not a mapping; {TENANT_SHAPE}")
        where += f" (id {entry['id']})" if "id" in entry else ""
        # The stored record ignores unknown keys; here one is a mistake (a POST /v1/tenants body's
        # `plan` would otherwise simulate a tenant without any plan), so it is refused
        unknown = sorted(str(k) for k in entry if k not in known)
        if unknown:
            hint = (
                " (`plan` is the POST /v1/tenants body's; here a tenant's plan history is "
                "`plans: [{plan: starter, effective_at: 2025-10-01T00:00:00Z}]`)"
                if "plan" in unknown or "effective_at" in unknown
                else ""
            )
            raise SimulationInputError(f"{where}: unknown key(s) {', '.join(unknown)}{hint}; {TENANT_SHAPE}")
        try:
            tenants.append(Tenant.model_validate({k: v for k, v in entry.items() if k not in GRANTED}))
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            raise SimulationInputError(f"{where}: {first['msg']} at {first['loc']}; {TENANT_SHAPE}") from None
    seen: set[str] = set()
    for tenant in tenants:
        if tenant.id in seen:
            raise SimulationInputError(f"tenant {tenant.id} appears twice in {path}")
        seen.add(tenant.id)
    return tenants


def load_grants(path: Path) -> dict[str, TenantGrants]:
    """Tenant id -> its entry's coupons and credits, each checked as the tenants API checks its body
    (what depends on the tenant, such as its currency, is checked when granted)."""
    found: dict[str, TenantGrants] = {}
    for entry in _entries(path):
        if not isinstance(entry, dict) or not any(entry.get(k) for k in GRANTED):
            continue
        tenant_id = str(entry.get("id"))
        parsed: dict[str, list[Any]] = {}
        for key, model in (("coupons", CouponRequest), ("credits", CreditGrantRequest)):
            bodies = entry.get(key) or []
            if not isinstance(bodies, list):
                raise SimulationInputError(f"{path}: tenant {tenant_id}: {key} must be a list")
            parsed[key] = []
            for index, body in enumerate(bodies):
                try:
                    parsed[key].append(parse_request(model, body))
                except BillingError as exc:
                    raise SimulationInputError(
                        f"{path}: tenant {tenant_id}: {key[:-1]} #{index}: {_reason(exc)}"
                    ) from None
        found[tenant_id] = TenantGrants(tuple(parsed["coupons"]), tuple(parsed["credits"]))
    return found


def grant(tenant_id: str, grants: TenantGrants) -> None:
    """Attach the coupons and grant the credits through the production tenant service (the tenant
    exists): what the API would do with the same bodies, in file order."""
    service = container.tenant_service()
    for key, requests, apply in (
        ("coupon", grants.coupons, service.attach_coupon),
        ("credit", grants.credits, service.grant_credit),
    ):
        for index, request in enumerate(requests):
            try:
                apply(tenant_id, request)
            except BillingError as exc:
                raise SimulationInputError(f"tenant {tenant_id}: {key} #{index}: {_reason(exc)}") from None


def check_plans(tenants: Sequence[Tenant], catalog: Catalog) -> None:
    """Every plan a tenant's history names exists in the catalog's plans file."""
    plans = PlanCatalog.load(catalog.plans or get_settings().plans_path)
    for tenant in tenants:
        unknown = [p.plan for p in tenant.plans if p.plan not in plans]
        if unknown:
            where = f" in {catalog.plans}" if catalog.plans else ""
            raise SimulationInputError(f"tenant {tenant.id}: unknown plan(s) {', '.join(unknown)}{where}")


_TENANT = re.compile(rb'"tenant_id"\s*:\s*"([A-Za-z0-9._:@/+=-]{1,128})"')


def tenant_of_line(raw: bytes) -> str | None:
    """The top-level ``tenant_id`` string of a JSON line as the JSON parser reads it; None when there
    is none. Without a backslash, a line whose text names one tenant_id key holds exactly that one
    (a string cannot contain a quote), so a regex suffices; other lines are parsed."""
    if b"\\" not in raw:
        found = _TENANT.findall(raw)
        if len(found) == 1:
            return str(found[0].decode())
    try:
        document = json.loads(raw)
    except ValueError:
        return None
    tenant_id = document.get("tenant_id") if isinstance(document, dict) else None
    return tenant_id if isinstance(tenant_id, str) else None


@dataclass
class TenantLines:
    """One tenant's lines of the events file, unparsed (parsed when the tenant's turn comes, so a
    million events never sit in memory as objects at once)."""

    numbers: array[int] = field(default_factory=lambda: array("L"))
    raw: list[bytes] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.raw)


def count_events(path: Path) -> int:
    """Non-empty lines (each one event, valid or not)."""
    with Path(path).open("rb") as handle:
        return sum(1 for raw in handle if raw.strip())


@dataclass
class LineIndex:
    """The tenant each line of the events file names, found once (by the parent, for its workers):
    line ``n`` (1-based) names ``names[ids[n - 1]]`` (None: no tenant); id 0 marks a blank line."""

    names: list[str | None] = field(default_factory=lambda: [None])
    ids: array[int] = field(default_factory=lambda: array("I"))
    # line n starts at byte offsets[n - 1] and ends before offsets[n]: a worker reads its own lines
    # by slicing the mapped file, without going through the others
    offsets: array[int] = field(default_factory=lambda: array("Q", [0]))

    @classmethod
    def of(cls, path: Path) -> LineIndex:
        index = cls()
        known: dict[str | None, int] = {}
        append, ends, end = index.ids.append, index.offsets.append, 0
        with Path(path).open("rb") as handle:
            for raw in handle:
                end += len(raw)
                ends(end)
                if not raw.strip():
                    append(0)
                    continue
                tenant_id = tenant_of_line(raw)
                found = known.get(tenant_id)
                if found is None:
                    found = known[tenant_id] = len(index.names)
                    index.names.append(tenant_id)
                append(found)
        return index

    def counts(self) -> Counter[str | None]:
        """Non-empty lines per tenant id (None: lines naming no tenant)."""
        return Counter({self.names[i]: n for i, n in Counter(self.ids).items() if i != 0})


def read_lines(
    path: Path,
    report: SimulationReport,
    owns: Callable[[str | None], bool] = lambda _t: True,
    index: LineIndex | None = None,
) -> dict[str, TenantLines]:
    """The lines of the tenants this process ``owns``, grouped by tenant; lines naming no tenant
    (owned as None) are reported invalid here. With the file's ``index`` no line is searched for
    its tenant."""
    groups: dict[str, TenantLines] = defaultdict(TenantLines)
    if index is not None:
        _read_indexed(path, report, owns, index, groups)
        return dict(sorted(groups.items()))
    with Path(path).open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            tenant_id = tenant_of_line(raw)
            if not owns(tenant_id):
                continue
            report.events_read += 1
            if tenant_id is None:
                _refuse_line(raw, number)
            group = groups[tenant_id]
            group.numbers.append(number)
            group.raw.append(raw)
    return dict(sorted(groups.items()))


def _read_indexed(
    path: Path,
    report: SimulationReport,
    owns: Callable[[str | None], bool],
    index: LineIndex,
    groups: dict[str, TenantLines],
) -> None:
    """``read_lines`` with the file's index: only this process's lines are visited (picked in C by
    ``compress``), each sliced out of the mapped file."""
    names, ids, offsets = index.names, index.ids, index.offsets
    owned = b"\0" + bytes(owns(name) for name in names[1:])  # id 0: a blank line, never read
    if not ids or not any(owned):
        return
    with Path(path).open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        for line in compress(range(len(ids)), map(owned.__getitem__, ids)):
            raw = data[offsets[line] : offsets[line + 1]]
            tenant_id = names[ids[line]]
            report.events_read += 1
            if tenant_id is None:
                _refuse_line(raw, line + 1)
            group = groups[tenant_id]
            group.numbers.append(line + 1)
            group.raw.append(raw)


def parse_lines(tenant_id: str, lines: TenantLines, report: SimulationReport) -> list[UsageEvent]:
    """A tenant's events; a line that is not one refuses the run (``_refuse_line``)."""
    events = []
    validate_json = UsageEvent.__pydantic_validator__.validate_json  # model_validate_json, minus a call
    for number, raw in zip(lines.numbers, lines.raw):
        try:
            event = validate_json(raw)
        except ValidationError:
            # pydantic's JSON mode reads a fractional number through a float, which a property
            # refuses: such a line is read again exactly, as ingest reads its body
            try:
                event = UsageEvent.model_validate(json.loads(raw, parse_float=exact_number))
            except ValueError:
                _refuse_line(raw, number)
        if event.tenant_id != tenant_id:
            raise SimulationFailed(f"line {number}: read as tenant {tenant_id}, parsed as {event.tenant_id}")
        events.append(event)
    return events


def _refuse_line(raw: bytes, number: int) -> NoReturn:
    """A line that is not an event is refused, the whole run with it: a wrong file (a tenants file,
    an export) would otherwise simulate as a month of refusals. Events that ingest refuses (an
    unknown model, over quota, after a cancellation) are counted in ``report``, as ingest answers them."""
    try:
        document: Any = json.loads(raw, parse_float=exact_number)
    except ValueError:
        raise SimulationInputError(f"events file line {number}: not JSON; {EVENT_SHAPE}") from None
    if not isinstance(document, dict):
        raise SimulationInputError(f"events file line {number}: not a JSON object; {EVENT_SHAPE}")
    _event, problems = parse_event(document, number)
    problem = problems[0] if problems else {"field": "event", "reason": "invalid"}
    raise SimulationInputError(
        f"events file line {number}: {problem['field']}: {problem['reason']}; {EVENT_SHAPE}"
    )


# ---------------------------------------------------------------------------------------------- batches
def _states(tenant: Tenant | None) -> Callable[[UsageEvent], str]:
    """An event's subscription state for its tenant: unknown, canceled, no-plan (before the first
    plan, or none) or ok, as ingest's tenant checks decide it."""
    if tenant is None:
        return lambda _event: "unknown"
    canceled_at, first = tenant.canceled_at, tenant.first_plan_at()

    def state(event: UsageEvent) -> str:
        if canceled_at is not None and event.timestamp >= canceled_at:
            return "canceled"
        if first is None or event.timestamp < first:
            return "no-plan"
        return "ok"

    return state


def tenant_batches(
    events: Sequence[UsageEvent], tenant: Tenant | None, *, batch_events: int = BATCH_EVENTS
) -> Iterator[list[UsageEvent]]:
    """One tenant's events (in any order) as ingest batches: ``(timestamp, event_id)`` order, cut at
    every change of month or subscription state and at ``batch_events``; repeated ids follow later.
    The (month, state) key can only change at a month start, the cancellation or the first plan,
    so it is looked at only when an event reaches the next such instant (events are UTC)."""
    pending = sorted(events, key=attrgetter("timestamp", "event_id"))
    state = _states(tenant)
    while pending:
        repeats: list[UsageEvent] = []
        current: list[UsageEvent] = []
        seen: set[str] = set()
        key: tuple[int, int, str] | None = None
        changes = iter(_key_changes(tenant, pending[0].timestamp, pending[-1].timestamp))
        change = next(changes, None)
        for event in pending:
            if event.event_id in seen:
                repeats.append(event)
                continue
            ts = event.timestamp
            if key is None or (change is not None and ts >= change):
                while change is not None and ts >= change:
                    change = next(changes, None)
                k = (ts.year, ts.month, state(event))
                if current and k != key:
                    yield current
                    current = []
                key = k
            if len(current) >= batch_events:
                yield current
                current = []
            seen.add(event.event_id)
            current.append(event)
        if current:
            yield current
        pending = repeats


def _key_changes(tenant: Tenant | None, first: datetime, last: datetime) -> list[datetime]:
    """The instants in (first, last] at which an event's (month, state) key may differ from the
    previous event's: every month start, the cancellation and the first plan."""
    found: set[datetime] = set()
    month = Month.of(first).next()
    while month.start <= last:
        found.add(month.start)
        month = month.next()
    if tenant is not None:
        found.update(
            t for t in (tenant.canceled_at, tenant.first_plan_at()) if t is not None and first < t <= last
        )
    return sorted(found)


# ---------------------------------------------------------------------------------------------- ingest
def ingest_batch(service: IngestService, batch: list[UsageEvent], report: SimulationReport) -> None:
    """One batch through the production ingest service, answered as the usage client would: events
    the refusal names (by index) are dropped and the rest is sent again; a refusal naming no event
    drops the batch. Every event ends up accepted, duplicate or rejected with a reason."""
    tenant_id = batch[0].tenant_id
    counts = report.per_tenant[tenant_id]
    while batch:
        try:
            result = service.ingest(batch)
        except QuotaExceeded as exc:
            details = exc.details if isinstance(exc.details, dict) else {}
            refused = len(details.get("rejected_for_quota", [])) or len(batch)
            duplicates = len(details.get("duplicates", []))
            report.duplicates += duplicates
            counts.duplicates += duplicates
            report.reject(tenant_id, "quota", f"{tenant_id}: {exc.message}", refused)
            return
        except BillingError as exc:
            named = _named_indexes(exc, len(batch))
            if not named:
                report.reject(
                    tenant_id, exc.code, f"{tenant_id} {batch[0].event_id}..: {exc.message}", len(batch)
                )
                return
            first = batch[min(named)]
            report.reject(tenant_id, exc.code, f"{tenant_id} {first.event_id}: {_reason(exc)}", len(named))
            batch = [e for i, e in enumerate(batch) if i not in named]
            continue
        report.accepted += len(result.accepted)
        report.duplicates += len(result.duplicates)
        counts.accepted += len(result.accepted)
        counts.duplicates += len(result.duplicates)
        accepted = set(result.accepted)
        counts.accepted_queries += sum(e.queries for e in batch if e.event_id in accepted)
        if result.rejected_for_quota:
            report.reject(
                tenant_id,
                "quota",
                f"{tenant_id}: {len(result.rejected_for_quota)} queries over the quota",
                len(result.rejected_for_quota),
            )
        return


def _named_indexes(exc: BillingError, size: int) -> set[int]:
    details = exc.details if isinstance(exc.details, list) else []
    named = {d.get("index") for d in details if isinstance(d, dict)}
    if None in named or not named:
        return set()
    return {i for i in named if isinstance(i, int) and 0 <= i < size}


def _reason(exc: BillingError) -> str:
    details = exc.details if isinstance(exc.details, list) else []
    first = details[0] if details and isinstance(details[0], dict) else {}
    return f"{first.get('field', '')}: {first.get('reason', exc.message)}"


# ---------------------------------------------------------------------------------------------- one run
Progress = Callable[[int], None]  # called with the number of events just handled


@contextmanager
def memory_stores(block_rows: int = BLOCK_ROWS) -> Iterator[dict[str, Any]]:
    """In-memory stores served by the container (see billing_local.memory) for the duration."""
    fallback = memory.MemoryQueue()
    stores: dict[str, Any] = {
        "tenants": memory.MemoryTenants(),
        "ledger": memory.MemoryLedger(),
        "periods": memory.MemoryPeriods(),
        "statements": memory.MemoryStatements(),
        "fallback_queue": fallback,
        "fallback_depth": fallback,
        "ingest_store": memory.BlockStore(container.usage_store(), block_rows=block_rows),
        "invoicing_jobs": memory.MemoryJobs(),
        "invoice_archive": memory.MemoryArchive(),
        "credit_ledger": memory.MemoryCredits(),
        # a simulated month is offline: it has no endpoints to tell (and no AWS to ask)
        "webhook_endpoints": memory.MemoryWebhookEndpoints(),
        "webhook_publisher": memory.NoWebhooks(),
    }
    container.override(**stores)
    try:
        yield stores
    finally:
        container.override(**dict.fromkeys(stores))


@contextmanager
def young_collections() -> Iterator[None]:
    """No automatic garbage collection for the duration (the caller collects the young generations
    at its own pace), then one full collection. A month's claims and rows are hundreds of thousands
    of live objects that automatic collections would traverse again and again (a third of the
    ingest time); what ingest leaves behind is freed by reference counting."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
        gc.collect()


def run_month(
    tenants: Sequence[Tenant],
    lines: Mapping[str, TenantLines],
    month: Month,
    report: SimulationReport,
    *,
    catalog: Catalog = Catalog(),
    progress: Progress | None = None,
    batch_events: int = BATCH_EVENTS,
    clickhouse_url: str | None = None,
    grants: Mapping[str, TenantGrants] | None = None,
    clickhouse_database: str | None = None,
) -> SimulationReport:
    """Create the tenants (then attach their coupons and grant their credits), ingest every tenant's
    lines, close ``month``: the report gets the counts, the stored statements and the month's CSV.
    Nothing outlives the call (the database is dropped)."""
    with (
        clickhouse_sandbox(
            plans_path=catalog.plans,
            pricebook_path=catalog.pricebook,
            url=clickhouse_url,
            database=clickhouse_database,
        ),
        memory_stores() as stores,
    ):
        started = time.perf_counter()
        store = container.tenants()
        for tenant in tenants:
            if not store.create(tenant):
                raise SimulationInputError(f"tenant {tenant.id} appears twice")
        for tenant in tenants:
            if grants and tenant.id in grants:
                grant(tenant.id, grants[tenant.id])
        report.tenants = len(tenants)
        known = {t.id: t for t in tenants}
        service = container.ingest_service()
        with young_collections():
            for tenant_id, own in lines.items():
                report.per_tenant[tenant_id]  # listed even when every event is refused
                events = parse_lines(tenant_id, own, report)
                if progress and len(own) > len(events):
                    progress(len(own) - len(events))
                for batch in tenant_batches(events, known.get(tenant_id), batch_events=batch_events):
                    ingest_batch(service, batch, report)
                    if progress:
                        progress(len(batch))
                del events
                stores["ledger"].forget_claims()  # this tenant's ids never come again
                gc.collect(1)
            stores["ingest_store"].flush()
        report.seconds["ingest"] = time.perf_counter() - started

        started = time.perf_counter()
        cycle = container.billing_cycle()
        now = datetime.now(UTC)
        cycle.clock = lambda: max(now, month.end)  # a simulation may close a month that is not over
        result = cycle.close(month)
        report.statements = sorted(
            [*result.statements, *close_own_periods(tenants, month, now)],
            key=lambda s: (s.tenant_id, s.month),
        )
        report.csv = invoices_csv(report.statements)
        report.seconds["close"] = time.perf_counter() - started
    return report


def close_own_periods(tenants: Sequence[Tenant], month: Month, now: datetime) -> list[Statement]:
    """The statements of every period of a tenant with a billing calendar that starts in ``month``
    in the tenant's own time zone (its local start's year and month), each closed as the hourly
    close does once it has ended; periods that are UTC months are the month close's."""
    closer = container.tenant_period_close()
    statements = []
    for tenant in tenants:
        if not has_own_periods(tenant):
            continue
        # a day either side covers every UTC offset (-12:00 to +14:00)
        around = tenant.calendar_history().periods(
            month.start - timedelta(days=1), month.end + timedelta(days=1)
        )
        for period in around:
            if (period.year, period.month) != (month.year, month.month) or period.as_month() is not None:
                continue
            if statement_period(tenant, period) is None:
                continue
            closed = closer.close(tenant, period, now=max(now, period.end))
            if closed.statement is not None:
                statements.append(closed.statement)
    return statements


# ---------------------------------------------------------------------------------------------- shards
def shard_plan(counts: Mapping[str | None, int], workers: int) -> dict[str | None, int]:
    """Tenant -> worker, balancing lines (largest first onto the least loaded); None goes to 0."""
    load = [0] * workers
    plan: dict[str | None, int] = {None: 0}
    for tenant_id, n in sorted(
        ((t, n) for t, n in counts.items() if t is not None), key=lambda kv: (-kv[1], kv[0])
    ):
        worker = min(range(workers), key=lambda w: (load[w], w))
        plan[tenant_id] = worker
        load[worker] += n
    return plan


def _owner(plan: Mapping[str | None, int], workers: int) -> Callable[[str | None], int]:
    def owner(tenant_id: str | None) -> int:
        found = plan.get(tenant_id)
        return found if found is not None else zlib.crc32((tenant_id or "").encode()) % workers

    return owner


def run_shard(
    spec: SimulationSpec,
    shard: int = 0,
    plan: Mapping[str | None, int] | None = None,
    workers: int = 1,
    *,
    progress: Progress | None = None,
    clickhouse_url: str | None = None,
    index: LineIndex | None = None,
    loaded: tuple[list[Tenant], dict[str, TenantGrants]] | None = None,
    prepared: str | None = None,
) -> SimulationResult:
    """The current (and proposed) month of the tenants ``plan`` gives this shard (all when no plan);
    ``index``: the events file's line index, when the parent made one; ``loaded``: the tenants
    file's tenants and grants, when already read; ``prepared``: a migrated database for the first
    run (``sandbox.migrated_database``)."""
    owner = _owner(plan or {}, workers)
    read = SimulationReport(month=str(spec.month))
    every, grants = loaded or (load_tenants(spec.tenants), load_grants(spec.tenants))
    tenants = [t for t in every if owner(t.id) == shard]
    started = time.perf_counter()
    # a single shard owns every line: no per-line owner lookup
    owns = (lambda _t: True) if workers == 1 else (lambda t: owner(t) == shard)
    lines = read_lines(spec.events, read, owns, index)
    read.seconds["read"] = time.perf_counter() - started
    runs: list[SimulationReport] = []
    for catalog in [spec.current] + ([spec.proposed] if spec.proposed else []):
        report = SimulationReport(
            month=read.month,
            events_read=read.events_read,
            rejected=Counter(read.rejected),
            examples=list(read.examples),
            seconds=dict(read.seconds),
        )
        runs.append(
            run_month(
                tenants,
                lines,
                spec.month,
                report,
                catalog=catalog,
                progress=progress,
                batch_events=spec.batch_events,
                clickhouse_url=clickhouse_url,
                grants=grants,
                clickhouse_database=prepared if not runs else None,
            )
        )
    return SimulationResult(runs[0], runs[1] if len(runs) > 1 else None)


def merge(reports: Sequence[SimulationReport]) -> SimulationReport:
    """One report of the shards' reports: counts added, statements of every shard, their CSV."""
    merged = SimulationReport(month=reports[0].month, workers=len(reports))
    for r in reports:
        merged.tenants += r.tenants
        merged.events_read += r.events_read
        merged.accepted += r.accepted
        merged.duplicates += r.duplicates
        merged.rejected.update(r.rejected)
        merged.examples += r.examples[: max(0, 8 - len(merged.examples))]
        merged.per_tenant.update(r.per_tenant)
        merged.statements += r.statements
        for phase, seconds in r.seconds.items():
            merged.seconds[phase] = max(merged.seconds.get(phase, 0.0), seconds)
    merged.statements.sort(key=lambda s: s.tenant_id)
    merged.csv = invoices_csv(merged.statements)
    return merged


def _worker(
    messages: Any,
    plans: Any,
    spec: SimulationSpec,
    shard: int,
    workers: int,
    clickhouse_url: str,
) -> None:
    """A worker process: it opens ClickHouse while the parent indexes the events file, receives the
    plan and the index from ``plans``, runs its shard, sends progress every 0.2 s and the result (or
    the error) at the end."""
    from billing.runtime.observability import logger

    logger.setLevel("WARNING")
    pending = [0, time.monotonic()]

    def progress(n: int) -> None:
        pending[0] += n
        if time.monotonic() - pending[1] >= 0.2:
            messages.put(("progress", shard, pending[0]))
            pending[0], pending[1] = 0, time.monotonic()

    try:
        # meanwhile: the embedded engine starts and the tenants file is read
        clickhouse.connect(clickhouse_url, "default")
        loaded = (load_tenants(spec.tenants), load_grants(spec.tenants))
        prepared = migrated_database(clickhouse_url)
        plan, index = plans.recv()
        result = run_shard(
            spec,
            shard,
            plan,
            workers,
            progress=progress,
            clickhouse_url=clickhouse_url,
            index=index,
            loaded=loaded,
            prepared=prepared,
        )
        messages.put(("progress", shard, pending[0]))
        messages.put(("done", shard, result))
    except SimulationInputError as exc:
        messages.put(("input_error", shard, str(exc)))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        messages.put(("error", shard, traceback.format_exc()))


def worker_count(spec: SimulationSpec, lines: int) -> int:
    if spec.workers > 0:
        return spec.workers
    return max(1, min(os.cpu_count() or 1, lines // EVENTS_PER_WORKER))


def simulate(
    spec: SimulationSpec, *, progress: Progress | None = None, total: Callable[[int], None] | None = None
) -> SimulationResult:
    """Simulate the month (and the proposal, if any). ``total`` is told how many events the runs
    will handle before they start; ``progress`` how many were just handled."""
    events = count_events(spec.events)
    runs = 2 if spec.proposed else 1

    def checked() -> tuple[list[Tenant], dict[str, TenantGrants]]:
        """The tenants file read and checked (a bad entry, coupon, credit or plan is refused before
        any event is ingested); then ``total`` is told."""
        tenants = load_tenants(spec.tenants)
        grants = load_grants(spec.tenants)
        for catalog in [spec.current] + ([spec.proposed] if spec.proposed else []):
            check_plans(tenants, catalog)
        if total:
            total(events * runs)
        return tenants, grants

    workers = worker_count(spec, events)
    if workers == 1:
        return run_shard(spec, progress=progress, loaded=checked())
    results = _run_workers(spec, workers, progress, checked)
    current = merge([r.current for r in results])
    proposed = merge([r.proposed for r in results if r.proposed]) if spec.proposed else None
    return SimulationResult(current, proposed)


def _run_workers(
    spec: SimulationSpec, workers: int, progress: Progress | None, check: Callable[[], object]
) -> list[SimulationResult]:
    """Start the workers, then, while they start, ``check`` the input and index the events file;
    balance the tenants over them (``shard_plan``) and hand each the plan and the index."""
    context = multiprocessing.get_context("spawn")  # chdb and threads do not survive a fork
    messages = context.Queue()
    configured = os.environ.get("CLICKHOUSE_URL", "")
    with tempfile.TemporaryDirectory(prefix="billing-sim-workers-") as tmp:
        processes, plans = [], []
        results: dict[int, SimulationResult] = {}
        try:
            for shard in range(workers):
                # chdb opens one data path per process: each worker gets its own, a server is shared.
                url = (
                    configured
                    if configured.startswith(("http", "clickhouse"))
                    else f"chdb://{tmp}/shard{shard}"
                )
                receive, send = context.Pipe(duplex=False)
                process = context.Process(
                    target=_worker, args=(messages, receive, spec, shard, workers, url), daemon=True
                )
                process.start()
                processes.append(process)
                plans.append(send)
            check()
            index = LineIndex.of(spec.events)
            plan = shard_plan(index.counts(), workers)
            for send in plans:
                try:
                    send.send((plan, index))
                except OSError:  # that worker has died: the loop below reports it
                    pass
            while len(results) < workers:
                try:
                    kind, shard, payload = messages.get(timeout=1.0)
                except Exception:  # queue.Empty: check nobody died without a word
                    dead = [p for i, p in enumerate(processes) if i not in results and not p.is_alive()]
                    if dead and messages.empty():
                        raise SimulationFailed(
                            f"a worker process exited with code {dead[0].exitcode}"
                        ) from None
                    continue
                if kind == "progress":
                    if progress and payload:
                        progress(payload)
                elif kind == "done":
                    results[shard] = payload
                elif kind == "input_error":
                    raise SimulationInputError(payload)
                else:
                    raise SimulationFailed(f"worker {shard} failed:\n{payload}")
        finally:
            for process in processes:
                if process.is_alive() and len(results) < workers:
                    process.terminate()
                process.join(timeout=30)
    return [results[shard] for shard in range(workers)]
