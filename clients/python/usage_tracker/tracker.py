"""The Tracker: ``track()`` on the caller's thread, a sender thread, a disk spool, a quota gate."""

from __future__ import annotations

import atexit
import builtins
import hashlib
import json
import logging
import os
import threading
import time
import weakref
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from decimal import Decimal
from types import TracebackType
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Type

from ._events import Clock, EventIds, check_identifier, encode_event, format_timestamp
from ._sender import Sender
from ._spool import Spool, SpoolFull
from ._transport import Transport
from .errors import (
    Correction,
    CorrectionFailed,
    LimitReached,
    MetricLimit,
    Problem,
    Quota,
    QuotaExceeded,
    QuotaUnavailable,
    TenantSuspended,
    TransportError,
)

log = logging.getLogger("usage_tracker")

DURABILITY_MODES = ("batch", "event", "buffered")
MAX_BATCH_EVENTS = 1000  # the API's limit per request
MAX_BATCH_BYTES = 1_000_000  # the API takes at most 1 MB (10^6 bytes) per request body


@dataclass(frozen=True)
class Stats:
    """Counts since this Tracker started.

    queued: events tracked here, or replayed and already read back, that are not resolved yet.
    sent: events the server acknowledged (accepted, or a listed duplicate).
    duplicates: of those, the ones it already had (retries and replays).
    spooled: events track() wrote to the spool.
    replayed: events read back from spools left by earlier processes.
    retried: requests sent again after a network error, 429 throttling, 408/5xx/503 or 401/403.
    rejected: events the server refused as final (invalid, over quota, a tenant still unknown
        after ``unknown_tenant_retention``...): never delivered, never billed.
    dropped: events track() could not keep (spool full, tracker closed, disk error) and torn
        spool lines left by a killed process.
    """

    queued: int
    sent: int
    duplicates: int
    spooled: int
    replayed: int
    retried: int
    rejected: int
    dropped: int
    spool_bytes: int
    batches: int
    last_error: Optional[str]
    held: int = 0
    """held: events of a tenant the server does not know (404) that are kept and retried until
    ``unknown_tenant_retention`` has passed."""

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FlushResult:
    """What ``flush()`` saw: true only when everything was delivered.

    complete: every event tracked before the call (and every replayed one) was answered for, or
        is held for an unknown tenant, within the timeout.
    delivered: events the server acknowledged since the previous ``flush()`` (or the start).
    refused: events the server refused as final since then: answered for, but not delivered.
    held: events of an unknown tenant still kept for a retry when the call returned.

    ``bool(result)`` is ``complete and not refused and not held``, so ``if tracker.flush():``
    never reads as success for events the server refused.
    """

    complete: bool
    delivered: int
    refused: int
    held: int

    def __bool__(self) -> bool:
        return self.complete and self.refused == 0 and self.held == 0


def _positive(name: str, value: Any, *, integer: bool = False) -> Any:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
        raise ValueError(f"{name} must be a positive {'int' if integer else 'number'}, got {value!r}")
    return value


class Tracker:
    """Sends usage events to ``POST {endpoint}/v1/events``; see docs/guides/tracker.md
    ("The durability promise") for what a returned ``track()`` guarantees.

    Invariants: ``track()`` never waits for the network and raises only ValueError (a bad
    argument); a line is in the spool before track() returns (durability "batch" and "event");
    a spool segment is deleted only once the server resolved every line in it.
    """

    def __init__(
        self,
        endpoint: str,
        api_key: str,
        spool_dir: str,
        *,
        flush_interval: float = 1.0,
        max_batch_events: int = MAX_BATCH_EVENTS,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        durability: str = "batch",
        max_spool_bytes: int = 256 * 1024 * 1024,
        segment_bytes: int = 4 * 1024 * 1024,
        timeout: float = 30.0,
        quota_timeout: float = 2.0,
        fail_open: bool = True,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        max_retry_after: float = 300.0,
        adopt_interval: float = 30.0,
        exit_timeout: float = 5.0,
        unknown_tenant_retention: float = 300.0,
        on_error: Optional[Callable[[Problem], None]] = None,
    ) -> None:
        if not isinstance(api_key, str) or not api_key:
            raise ValueError("api_key must be a non-empty string")
        if durability not in DURABILITY_MODES:
            raise ValueError(f"durability must be one of {', '.join(DURABILITY_MODES)}, got {durability!r}")
        _positive("max_batch_events", max_batch_events, integer=True)
        if max_batch_events > MAX_BATCH_EVENTS:
            raise ValueError(f"max_batch_events is at most {MAX_BATCH_EVENTS} (the API's limit)")
        _positive("max_batch_bytes", max_batch_bytes, integer=True)
        if not 4096 <= max_batch_bytes <= MAX_BATCH_BYTES:
            raise ValueError(f"max_batch_bytes must be 4096..{MAX_BATCH_BYTES} (the API takes at most 1 MB)")
        for name, value in (
            ("flush_interval", flush_interval),
            ("timeout", timeout),
            ("quota_timeout", quota_timeout),
            ("backoff_base", backoff_base),
            ("backoff_max", backoff_max),
            ("max_retry_after", max_retry_after),
            ("adopt_interval", adopt_interval),
            ("exit_timeout", exit_timeout),
            ("unknown_tenant_retention", unknown_tenant_retention),
        ):
            _positive(name, value)
        _positive("max_spool_bytes", max_spool_bytes, integer=True)
        _positive("segment_bytes", segment_bytes, integer=True)
        self.endpoint = endpoint
        self._api_key = api_key
        self.spool_dir = os.fspath(spool_dir)
        self.durability = durability
        self.fail_open = fail_open
        self.exit_timeout = exit_timeout
        self._on_error = on_error
        self._options = dict(
            flush_interval=flush_interval,
            max_batch_events=max_batch_events,
            max_batch_bytes=max_batch_bytes,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            max_retry_after=max_retry_after,
            adopt_interval=adopt_interval,
            unknown_tenant_retention=unknown_tenant_retention,
        )
        self._spool_options = dict(
            durability=durability, segment_bytes=segment_bytes, max_bytes=max_spool_bytes
        )
        self._timeout = timeout
        self._quota_timeout = quota_timeout
        self._max_events = max_batch_events
        self._ids = EventIds()
        self._clock = Clock()
        self._dropped = 0
        self._last_drop_log = -1e9
        self._drop_lock = threading.Lock()
        self._lifecycle = threading.Lock()
        self._gate_lock = threading.Lock()
        self._reserved: Dict[str, int] = {}  # tenant -> gated queries not yet resolved by the server
        self._awaiting: Dict[str, str] = {}  # event_id of a tracked gated query -> tenant
        self._closed = False
        self._forked = False
        self._flush_mark = (0, 0)  # (sent, rejected) when the previous flush() returned
        self._quota_failures = 0  # failed quota checks of the current outage
        self._quota_log_lock = threading.Lock()
        self._transport = Transport(endpoint, api_key, timeout)
        self._quota_transport = Transport(endpoint, api_key, quota_timeout)
        self._start()
        ref = weakref.ref(self)
        atexit.register(_close_at_exit, ref)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=lambda: _mark_forked(ref))

    def _start(self) -> None:
        self._spool = Spool(self.spool_dir, **self._spool_options)  # type: ignore[arg-type]
        self._spool.adopt_orphans()
        self._sender = Sender(
            self._spool,
            self._transport,
            self._report,
            self._resolved,
            ids=self._ids,
            **self._options,  # type: ignore[arg-type]
        )
        self._sender.start()

    # -- the hot path ------------------------------------------------------------------------
    def track(
        self,
        tenant_id: str,
        type: str = "query",
        model: Optional[str] = None,
        input_tokens: int = 0,
        output_tokens: int = 0,
        bytes: int = 0,
        *,
        event_id: Optional[str] = None,
        timestamp: Optional[datetime] = None,
        properties: Optional[Mapping[str, Any]] = None,
    ) -> str:
        """Record one usage event; returns its event_id at once (generated: UUIDv7, time-ordered).

        The timestamp is taken now unless given (an aware datetime). ``properties``: at most 32
        names (``[a-z][a-z0-9_]{0,63}``) to a str (at most 256 characters) or a number (int,
        Decimal, or float, sent as its repr) below 10^20 with at most 18 fractional digits; they
        are spooled and sent as given. Raises ValueError for a bad argument; anything else (spool full, disk error, closed tracker) is reported through
        logging and ``on_error`` and counted as dropped.
        """
        if self._forked:
            try:
                self._after_fork()
            except Exception as exc:  # e.g. the spool directory cannot be created in the child
                self._report(Problem("internal", f"setting up the tracker after fork: {exc!r}"))
        ms, stamp = self._clock.now()
        if timestamp is not None:
            stamp = format_timestamp(timestamp)
        if event_id is None:
            event_id = self._ids.next(ms)
        else:
            check_identifier("event_id", event_id)
        line = encode_event(
            event_id, tenant_id, stamp, type, model, input_tokens, output_tokens, bytes, properties
        )
        self._keep(line)
        return event_id

    def _keep(self, line: bytes) -> bool:
        """Spool one encoded line; False (reported, counted as dropped) if it could not be kept."""
        if self._closed:
            self._drop(line, "closed", "track() after close()")
            return False
        try:
            unread = self._spool.append(line)
        except SpoolFull:
            self._drop(
                line, "spool_full", f"the spool is full ({self._spool.max_bytes} bytes); event not kept"
            )
            return False
        except Exception as exc:  # a disk error must not reach the caller
            self._drop(line, "disk", f"could not write the spool: {exc!r}")
            return False
        if unread == 1 or unread == self._max_events:
            self._sender.wake()
        return True

    # -- the quota gate ----------------------------------------------------------------------
    def quota(self, tenant_id: str) -> Quota:
        """``GET /v1/tenants/{tenant_id}/quota``, or QuotaUnavailable."""
        check_identifier("tenant_id", tenant_id)
        try:
            response = self._quota_transport.get_quota(tenant_id)
        except TransportError as exc:
            raise QuotaUnavailable(str(exc)) from exc
        data = response.json()
        if response.status != 200 or not isinstance(data, dict):
            message = data.get("message") if isinstance(data, dict) else None
            raise QuotaUnavailable(
                f"GET quota for {tenant_id} answered {response.status}: {message or 'no body'}"
            )
        try:
            limit = data.get("limit")
            remaining = data.get("remaining")
            if remaining is None and limit is not None:  # tolerate an answer without it
                remaining = max(0, int(limit) - int(data.get("used") or 0))
            limits = tuple(
                MetricLimit(
                    metric=str(m["metric"]),
                    limit=Decimal(str(m["limit"])),
                    used=Decimal(str(m["used"])),
                    remaining=Decimal(str(m["remaining"])),
                )
                for m in data.get("limits") or []
            )
            return Quota(
                tenant_id=tenant_id,
                limit=None if limit is None else int(limit),
                used=int(data.get("used") or 0),
                remaining=None if remaining is None else int(remaining),
                resets_at=data.get("resets_at"),
                plan=data.get("plan"),
                payment_status=data.get("payment_status"),
                raw=data,
                limits=limits,
            )
        except (TypeError, ValueError, KeyError, ArithmeticError) as exc:
            raise QuotaUnavailable(f"unexpected quota answer for {tenant_id}: {data!r}") from exc

    def check_quota(
        self, tenant_id: str, *, queries: bool = True, metrics: Iterable[str] = ()
    ) -> Optional[Quota]:
        """The gate: raises QuotaExceeded (only when ``queries``: the quota counts queries),
        LimitReached when a hard limit on one of ``metrics`` (those the work adds to, e.g.
        ``["gpu_seconds"]``) is used up, or TenantSuspended before the work. When the quota cannot be read, returns None with
        ``fail_open`` (reported; ingest still enforces the quota exactly), else raises
        QuotaUnavailable."""
        try:
            quota = self.quota(tenant_id)
        except QuotaUnavailable as exc:
            self._report(Problem("quota_check", str(exc)))
            if self.fail_open:
                self._quota_failed(exc)
                return None
            raise
        self._quota_works()
        if quota.payment_status == "suspended":
            raise TenantSuspended(f"tenant {tenant_id} is suspended for non-payment", quota)
        if queries and quota.exhausted:
            raise QuotaExceeded(
                f"tenant {tenant_id} has used its {quota.limit} queries this period; "
                f"it resets at {quota.resets_at}",
                quota,
            )
        for metric in metrics:
            limit = quota.limit_on(metric)
            if limit is not None and limit.exhausted:
                raise LimitReached(
                    f"tenant {tenant_id} has used its limit of {limit.limit} {metric} this period; "
                    f"it resets at {quota.resets_at}",
                    quota,
                    metric,
                )
        return quota

    def _quota_failed(self, exc: QuotaUnavailable) -> None:
        """Log the first failure of an outage only: every gated request of a busy app would
        otherwise log one line while the API is down."""
        with self._quota_log_lock:
            self._quota_failures += 1
            first = self._quota_failures == 1
        if first:
            log.warning(
                "usage tracker: quota check failed, letting the work through: %s "
                "(further failures are counted and summed up when the check works again)",
                exc,
            )

    def _quota_works(self) -> None:
        if not self._quota_failures:
            return
        with self._quota_log_lock:
            failed, self._quota_failures = self._quota_failures, 0
        if failed:
            log.warning(
                "usage tracker: the quota check works again; %d quota check(s) failed during the "
                "outage and let the work through",
                failed,
            )

    def _reserve(self, tenant_id: str, quota: Optional[Quota]) -> None:
        """Count a gated query against the quota locally until the server has counted it.

        The server's ``used`` does not include this process's gated queries that are still running
        or waiting in the spool; subtracting them makes concurrent gates in one process exact.
        Between the server counting a batch and the sender reading its answer, a query is counted
        twice (conservative, for one round trip)."""
        with self._gate_lock:
            held = self._reserved.get(tenant_id, 0)
            if quota is not None and quota.remaining is not None and quota.remaining - held <= 0:
                raise QuotaExceeded(
                    f"tenant {tenant_id} has used its {quota.limit} queries this period "
                    f"({held} of them still being sent from here); it resets at {quota.resets_at}",
                    quota,
                )
            self._reserved[tenant_id] = held + 1

    def _release(self, tenant_id: str) -> None:
        with self._gate_lock:
            held = self._reserved.get(tenant_id, 0) - 1
            if held > 0:
                self._reserved[tenant_id] = held
            else:
                self._reserved.pop(tenant_id, None)

    def _track_reserved(self, scope: QueryScope, holds: bool) -> None:
        """Track a gated query; its reservation (if ``holds``) ends when the server resolves it."""
        assert scope.event_id is not None
        line = encode_event(
            scope.event_id,
            scope.tenant_id,
            format_timestamp(scope.started_at),  # type: ignore[arg-type]
            scope.type,
            scope.model,
            scope.input_tokens,
            scope.output_tokens,
            scope.bytes,
            scope.properties,
        )
        if holds:
            with self._gate_lock:
                self._awaiting[scope.event_id] = scope.tenant_id
        if not self._keep(line) and holds:
            with self._gate_lock:
                self._awaiting.pop(scope.event_id, None)
            self._release(scope.tenant_id)

    def _resolved(self, lines: List[bytes]) -> None:
        """Sender callback: these lines are resolved; end the reservations among them."""
        if not self._awaiting:
            return
        ended = []
        with self._gate_lock:
            for line in lines:
                # Own lines start with {"event_id":"<id>" (encode_event's fixed field order).
                tenant = self._awaiting.pop(line[13 : line.find(b'"', 13)].decode("ascii", "replace"), None)
                if tenant is not None:
                    ended.append(tenant)
        for tenant in ended:
            self._release(tenant)

    def query(
        self,
        tenant_id: str,
        model: Optional[str] = None,
        *,
        type: str = "query",
        properties: Optional[Mapping[str, Any]] = None,
    ) -> QueryScope:
        """``with tracker.query(tenant, model=...) as q:`` checks the quota first, tracks on exit
        (with ``properties``, as ``track()`` takes them; ``record()`` may add more)."""
        check_identifier("tenant_id", tenant_id)
        encode_event("x", tenant_id, "x", type, model, 0, 0, 0, properties)  # track()'s ValueErrors, now
        return QueryScope(self, tenant_id, model, type, properties)

    # -- lifecycle ---------------------------------------------------------------------------
    def void(
        self, tenant_id: str, event_id: str, reason: str, *, correction_id: Optional[str] = None
    ) -> Correction:
        """Void an event sent before (``POST /v1/corrections``): its usage and exact stored cost come
        off the tenant's month, a query goes back to the quota. Synchronous, not spooled: the answer
        says whether it was applied. The correction's id defaults to one derived from the arguments,
        so calling again after a lost answer applies it once. Raises CorrectionFailed."""
        return self._correct(tenant_id, event_id, "void", reason, None, correction_id)

    def amend(
        self,
        tenant_id: str,
        event_id: str,
        reason: str,
        *,
        correction_id: Optional[str] = None,
        **values: Any,
    ) -> Correction:
        """Amend an event sent before: ``values`` of model, input_tokens, output_tokens, bytes and
        properties replace the stored ones, priced at the price in force at the event's timestamp.
        As ``void`` otherwise."""
        if not values:
            raise ValueError("give the new values: model, input_tokens, output_tokens, bytes or properties")
        return self._correct(tenant_id, event_id, "amend", reason, values, correction_id)

    def _correct(
        self,
        tenant_id: str,
        event_id: str,
        action: str,
        reason: str,
        values: Optional[Dict[str, Any]],
        correction_id: Optional[str],
    ) -> Correction:
        check_identifier("tenant_id", tenant_id)
        check_identifier("event_id", event_id)
        if not isinstance(reason, str) or not reason:
            raise ValueError("reason must be a non-empty string")
        item: Dict[str, Any] = {
            "tenant_id": tenant_id,
            "event_id": event_id,
            "action": action,
            "reason": reason,
        }
        if values is not None:
            item["values"] = values
        if correction_id is None:
            text = json.dumps(item, sort_keys=True, default=str).encode()
            correction_id = "trk-" + hashlib.sha256(text).hexdigest()[:40]
        check_identifier("correction_id", correction_id)
        body = json.dumps({"corrections": [{"correction_id": correction_id, **item}]}, default=str).encode()
        response = None
        for attempt in range(3):  # the same correction again is applied once: retrying is safe
            try:
                response = self._quota_transport.post_corrections(body, timeout=self._transport.timeout)
            except TransportError as exc:
                if attempt == 2:
                    raise CorrectionFailed(f"{action} {event_id}: no answer ({exc})") from exc
            else:
                if response.status < 500:
                    break
            if attempt < 2:
                time.sleep(0.2 * (attempt + 1))
        assert response is not None
        data = response.json()
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list) or not results or not isinstance(results[0], dict):
            message = data.get("message") if isinstance(data, dict) else None
            raise CorrectionFailed(
                f"{action} {event_id} answered {response.status}: {message or 'no body'}", response.status
            )
        result = results[0]
        error = result.get("error")
        if result.get("status") not in ("applied", "already_applied") or isinstance(error, dict):
            error = error if isinstance(error, dict) else {}
            raise CorrectionFailed(
                f"{action} {event_id}: {error.get('message') or 'refused'}",
                error.get("status", response.status),
            )
        return Correction(
            correction_id, tenant_id, event_id, str(result["status"]), result.get("correction") or {}
        )

    def flush(self, timeout: float = 10.0) -> FlushResult:
        """Wait until every event tracked before this call (and every replayed one) is answered
        for, sending partial batches at once, at most ``timeout`` seconds. The result is true only
        if all of them were delivered: false when the time ran out, when the server refused events
        since the previous flush (``refused``), or when events of an unknown tenant are still held
        (``held``). Events held are not waited for: they are retried in the background."""
        if self._forked:
            self._after_fork()
        sender, spool = self._sender, self._spool
        if self._spool.durability == "buffered":
            sender.wake()
        target = spool.lines_written
        deadline = time.monotonic() + timeout
        complete = True
        sender.request_flush()
        try:
            with sender.progress:
                while sender.counters.own_resolved < target or len(spool.dirs) > 1:
                    left = deadline - time.monotonic()
                    if left <= 0 or sender.exited.is_set():
                        complete = False
                        break
                    sender.progress.wait(min(left, 0.5))
        finally:
            sender.end_flush()
        counters = sender.counters
        sent, rejected = counters.sent, counters.rejected
        mark, self._flush_mark = self._flush_mark, (sent, rejected)
        return FlushResult(complete, sent - mark[0], rejected - mark[1], len(sender.held))

    def close(self, timeout: Optional[float] = None) -> bool:
        """Send what can be sent within ``timeout`` (default ``exit_timeout``), stop the sender and
        release the spool. Unsent events stay on disk for the next Tracker on this spool_dir.
        True if nothing was left behind. Idempotent."""
        with self._lifecycle:
            if self._closed:
                return True
            self._closed = True
            self._sender.stop(self.exit_timeout if timeout is None else timeout)
            try:
                clean = self._spool.close()
            except OSError as exc:
                self._report(Problem("internal", f"closing the spool: {exc!r}"))
                clean = False
            self._transport.close()
            return clean

    def stats(self) -> Stats:
        c = self._sender.counters
        spool = self._spool
        return Stats(
            queued=max(0, spool.lines_written - c.requeued + c.replayed - c.sent - c.rejected),
            sent=c.sent,
            duplicates=c.duplicates,
            spooled=spool.lines_written - c.requeued,
            replayed=c.replayed,
            retried=c.retried,
            rejected=c.rejected,
            dropped=self._dropped + c.unreadable,
            spool_bytes=spool.bytes,
            batches=c.batches,
            last_error=c.last_error,
            held=len(self._sender.held),
        )

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------
    def _drop(self, line: bytes, reason: str, message: str) -> None:
        with self._drop_lock:
            self._dropped += 1
            dropped = self._dropped
            now = time.monotonic()
            quiet = now - self._last_drop_log < 1.0  # a full spool must not flood the app's logs
            if not quiet:
                self._last_drop_log = now
        if not quiet:
            log.error("usage tracker: event dropped: %s (%d dropped so far)", message, dropped)
        self._report(Problem("dropped", message, reason=reason, events=[{"raw": line.decode()}]))

    def _report(self, problem: Problem) -> None:
        if self._on_error is None:
            return
        try:
            self._on_error(problem)
        except Exception:
            log.exception("usage tracker: on_error callback raised")

    def _after_fork(self) -> None:
        """First use in a forked child: a spool directory and a sender of its own."""
        with self._lifecycle:
            if not self._forked:
                return
            self._spool.forget_after_fork()
            self._ids.reseed()
            self._transport = Transport(self.endpoint, self._api_key, self._timeout)
            self._quota_transport = Transport(self.endpoint, self._api_key, self._quota_timeout)
            self._drop_lock = threading.Lock()
            self._start()
            self._forked = False


class QueryScope:
    """One gated query: ``__enter__`` checks the quota (raising before the work), ``record()``
    adds the tokens and bytes used, ``__exit__`` tracks the event. A block that raises before
    anything was recorded tracks nothing (no work was done to bill); ``cancel()`` tracks nothing."""

    def __init__(
        self,
        tracker: Tracker,
        tenant_id: str,
        model: Optional[str],
        type: str,
        properties: Optional[Mapping[str, Any]] = None,
    ) -> None:
        self._tracker = tracker
        self.properties: Optional[Dict[str, Any]] = None if properties is None else dict(properties)
        self.tenant_id = tenant_id
        self.model = model
        self.type = type
        self.input_tokens = 0
        self.output_tokens = 0
        self.bytes = 0
        self.quota: Optional[Quota] = None
        self.event_id: Optional[str] = None
        self.started_at: Optional[datetime] = None
        self._recorded = False
        self._cancelled = False
        self._holds = False  # a reservation against the quota is held (see Tracker._reserve)

    def __enter__(self) -> QueryScope:
        self.quota = self._tracker.check_quota(self.tenant_id, queries=self.type == "query")
        if self.type == "query":  # only queries count against the quota
            self._tracker._reserve(self.tenant_id, self.quota)
            self._holds = True
        self.started_at = datetime.now(timezone.utc)
        self.event_id = self._tracker._ids.next(time.time_ns() // 1_000_000)
        return self

    def record(
        self,
        input_tokens: int = 0,
        output_tokens: int = 0,
        bytes: int = 0,
        model: Optional[str] = None,
        properties: Optional[Mapping[str, Any]] = None,
    ) -> None:
        """Add usage to this query (call it once, or once per chunk of a streamed answer);
        ``properties`` are merged into the query's (a name given again takes the new value)."""
        for name, value in (
            ("input_tokens", input_tokens),
            ("output_tokens", output_tokens),
            ("bytes", bytes),
        ):
            if builtins.type(value) is not int or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        new_model = self.model if model is None else model
        total = (self.input_tokens + input_tokens, self.output_tokens + output_tokens, self.bytes + bytes)
        merged = self.properties if properties is None else {**(self.properties or {}), **properties}
        encode_event(
            "x", self.tenant_id, "x", self.type, new_model, *total, merged
        )  # ValueError now, not at exit
        self.model = new_model
        self.properties = merged
        self.input_tokens, self.output_tokens, self.bytes = total
        self._recorded = True

    def cancel(self) -> None:
        self._cancelled = True

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if self._cancelled or (exc_type is not None and not self._recorded):
            if self._holds:
                self._tracker._release(self.tenant_id)
            return
        self._tracker._track_reserved(self, self._holds)


def _close_at_exit(ref: weakref.ReferenceType[Tracker]) -> None:
    tracker = ref()
    if tracker is not None and not tracker._forked:
        tracker.close()


def _mark_forked(ref: weakref.ReferenceType[Tracker]) -> None:
    tracker = ref()
    if tracker is not None:
        tracker._lifecycle = threading.Lock()  # another thread of the parent may have held it
        tracker._forked = True
