"""The background sender: reads the spool in order, posts batches, and resolves every line.

One batch is in flight at a time and it is resolved completely (acknowledged, or refused as final)
before the next is read, so "resolved" is a prefix of the spool and the ack cursor is one offset.

How answers are treated (docs/guides/tracker.md):
- 202: accepted and listed ``duplicates`` are acknowledged; ``rejected_for_quota`` are refused
  (final: the server will never store them).
- network error, 408, 425, 5xx, 503, a 429 that names no event (throttling): retried, the same
  batch, with exponential backoff and jitter, or ``Retry-After`` when given; forever, because the
  spool keeps the events meanwhile.
- a 429 quota answer: the events it names (rejected for quota, duplicates) are resolved; any other
  event of the batch is sent again.
- 400/402/403/404/409 naming events (``index``), tenants (``tenant_id``) or months (``month``):
  those events are refused (final, reported), the rest is sent again at once. Except a 404 naming
  an unknown tenant: a tenant is often created just after its first usage, so its events are held
  (appended to the spool again, sent again with backoff) for ``unknown_tenant_retention`` seconds
  from the first such answer, and refused only after that.
- 401, or 403 naming nothing: the key is wrong for everything; the batch is kept and retried with
  backoff, and each failure is reported (kind ``auth``).
- 404, 405 or 415 naming nothing: not an answer about the events (a wrong endpoint path, a proxy):
  kept and retried with backoff, reported (kind ``config``).
- 413, or another 4xx naming nothing: the batch is split in halves until the offending single event
  is found, which is refused.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from ._events import EventIds
from ._spool import Batch, Spool
from ._transport import Transport
from .errors import Problem, TransportError

log = logging.getLogger("usage_tracker")

_RETRY_STATUSES = {408, 425, 500, 502, 503, 504}
_CONFIG_STATUSES = {404, 405, 415}
_BODY_OVERHEAD = len(b'{"events":[]}')


def _body(lines: Sequence[bytes]) -> bytes:
    return b'{"events":[' + b",".join(lines) + b"]}"


def _event_id(line: bytes) -> str:
    """The event id of a spool line (its own key for a line that has none)."""
    event_id = _event(line).get("event_id")
    return event_id if isinstance(event_id, str) else line.decode("utf-8", "replace")


def _event(line: bytes) -> Dict[str, Any]:
    try:
        value = json.loads(line)
    except ValueError:
        return {"raw": line.decode("utf-8", "replace")}
    return value if isinstance(value, dict) else {"raw": line.decode("utf-8", "replace")}


class Counters:
    """Written by the sender thread only (so plain ints are safe); read by stats()."""

    def __init__(self) -> None:
        self.sent = 0
        self.duplicates = 0
        self.rejected = 0
        self.retried = 0
        self.replayed = 0
        self.unreadable = 0
        self.own_resolved = 0
        self.requeued = 0  # lines appended to the spool again (held for an unknown tenant)
        self.batches = 0
        self.last_error: Optional[str] = None


class Sender:
    def __init__(
        self,
        spool: Spool,
        transport: Transport,
        report: Callable[[Problem], None],
        on_resolved: Callable[[List[bytes]], None],
        *,
        flush_interval: float,
        max_batch_events: int,
        max_batch_bytes: int,
        backoff_base: float,
        backoff_max: float,
        max_retry_after: float,
        adopt_interval: float,
        unknown_tenant_retention: float = 300.0,
        ids: Optional[EventIds] = None,
    ) -> None:
        self.spool = spool
        self.ids = ids  # its id tails are made here, off the callers' threads
        self.transport = transport
        self.report = report
        self.on_resolved = on_resolved
        self.flush_interval = flush_interval
        self.max_events = max_batch_events
        self.max_line_bytes = max_batch_bytes - _BODY_OVERHEAD
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self.adopt_interval = adopt_interval
        self.unknown_tenant_retention = unknown_tenant_retention
        # event_id -> [first 404 (monotonic), next retry (monotonic), attempts]. In memory only: a
        # restarted tracker holds them for a full retention again, which errs on keeping.
        self.held: Dict[str, List[float]] = {}
        self._requeue: List[bytes] = []  # lines of the current batch appended again, not resolved
        self.counters = Counters()
        self.progress = threading.Condition()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._deadline: Optional[float] = None
        self._flushes = 0
        self._current: Optional[Batch] = None
        self._rng = random.Random()
        self._thread = threading.Thread(target=self._run, name="usage-tracker-sender", daemon=True)
        self.exited = threading.Event()

    # -- called from other threads -----------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def request_flush(self) -> None:
        with self.progress:
            self._flushes += 1
        self._wake.set()

    def end_flush(self) -> None:
        with self.progress:
            self._flushes -= 1

    def stop(self, timeout: float) -> bool:
        """Send what can be sent within ``timeout``, then exit. True if the thread ended."""
        self._deadline = time.monotonic() + timeout
        self._closing.set()
        self._wake.set()
        self._thread.join(timeout + 0.5)
        if self._thread.is_alive():  # stuck in a request to a hanging server: cut it off
            self.transport.abort()
            self._thread.join(2.0)
        return not self._thread.is_alive()

    # -- the thread --------------------------------------------------------------------------
    def _run(self) -> None:
        failures = 0
        try:
            while True:
                try:
                    self._loop()
                    return
                except Exception as exc:  # a disk error, a bug: report, keep the spool, carry on
                    failures += 1
                    log.exception("usage tracker: sender error (the spool keeps the events)")
                    self.report(Problem("internal", f"sender error: {exc!r}"))
                    self._rewind()
                    if self._closing.is_set() or not self._sleep(self._backoff(failures, None)):
                        return
        finally:
            self.exited.set()
            with self.progress:
                self.progress.notify_all()

    def _rewind(self) -> None:
        """The batch being sent is unresolved after an error: read it again from the spool."""
        batch, self._current = self._current, None
        if batch is None:
            return
        for directory in self.spool.dirs:
            for segment in directory.segments:
                segment.read_offset = segment.acked
        self.spool.own_read -= batch.own
        self.counters.replayed -= batch.replayed

    def _loop(self) -> None:
        spool = self.spool
        first_seen: Optional[float] = None
        next_adopt = time.monotonic() + self.adopt_interval
        while True:
            self._housekeeping()
            now = time.monotonic()
            if now >= next_adopt:
                next_adopt = now + self.adopt_interval
                spool.adopt_orphans()
            if not spool.readable():
                first_seen = None
                if self._closing.is_set():
                    return
                self._wake.wait(self.flush_interval)
                self._wake.clear()
                continue
            if first_seen is None:
                first_seen = now
            adopted_waiting = len(spool.dirs) > 1
            full = spool.lines_written - spool.own_read >= self.max_events
            due = now - first_seen >= self.flush_interval
            if not (full or due or adopted_waiting or self._flushes or self._closing.is_set()):
                self._wake.wait(first_seen + self.flush_interval - now)
                self._wake.clear()
                continue
            batch = self._current = spool.read(self.max_events, self.max_line_bytes)
            if not batch.lines and not batch.parts:  # bytes without a complete line: never spin on them
                self._current = None
                if self._closing.is_set():
                    return
                self._wake.wait(self.flush_interval)
                self._wake.clear()
                continue
            first_seen = now if spool.readable() else None
            self.counters.replayed += batch.replayed
            self._requeue = []
            send = self._not_held(batch.lines) if self.held else batch.lines
            if send:
                if spool.durability != "event":
                    spool.sync()  # the batch is durable before it can be acknowledged
                if not self._deliver(send):
                    return  # closing, deadline passed: the spool keeps the rest for the next start
            self.counters.own_resolved += batch.own
            if batch.skipped:
                self.counters.unreadable += batch.skipped
                self.report(
                    Problem(
                        "dropped",
                        f"{batch.skipped} torn line(s) at the end of a spool segment left by "
                        "a killed process (never acknowledged to its caller)",
                        reason="torn",
                    )
                )
            self._current = None
            spool.resolved(batch.parts)
            requeued = set(map(id, self._requeue))
            if self.held:  # delivered or refused for good: no longer held
                for line in send:
                    if id(line) not in requeued:
                        self.held.pop(_event_id(line), None)
            self.on_resolved([line for line in batch.lines if id(line) not in requeued])
            self._requeue = []
            self.counters.batches += 1
            with self.progress:
                self.progress.notify_all()
            if batch.lines and not send:  # only held events: wait for their retry, do not spin
                if self._closing.is_set():
                    return
                self._wake.wait(min(self.flush_interval, self._next_held_retry() - time.monotonic()))
                self._wake.clear()

    def _housekeeping(self) -> None:
        spool = self.spool
        if spool.durability == "buffered":
            spool.write_buffer()
        spool.rotate_if_full()
        if self.ids is not None:
            self.ids.top_up()

    def _sleep(self, seconds: float) -> bool:
        """Back off for ``seconds`` while keeping the spool synced; False once closing is past its deadline."""
        end = time.monotonic() + seconds
        while True:
            now = time.monotonic()
            if self._closing.is_set() and self._deadline is not None:
                end = min(end, self._deadline)
                if now >= self._deadline:
                    return False
            if now >= end:
                return True
            if self._closing.is_set():  # set for good: waiting on it would return at once
                time.sleep(min(end - now, self.flush_interval))
            else:
                self._closing.wait(min(end - now, self.flush_interval))
            self._housekeeping()
            if self.spool.durability != "event":
                self.spool.sync()

    def _backoff(self, failures: int, retry_after: Optional[float]) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after) * self._rng.uniform(1.0, 1.2)
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** min(failures - 1, 30)))
        return self._rng.uniform(ceiling / 2, ceiling)

    # -- events held for an unknown tenant ---------------------------------------------------
    def _not_held(self, lines: List[bytes]) -> List[bytes]:
        """The lines to send now; held ones whose retry is not due go back to the spool."""
        now = time.monotonic()
        send = []
        for line in lines:
            entry = self.held.get(_event_id(line))
            if entry is not None and now < entry[1]:
                self._hold_again(line)
            else:
                send.append(line)
        return send

    def _next_held_retry(self) -> float:
        return min((entry[1] for entry in self.held.values()), default=time.monotonic())

    def _hold_again(self, line: bytes) -> bool:
        """Append ``line`` to the spool again (it stays durable while held); False if it cannot be."""
        try:
            self.spool.append(line + b"\n")  # batch lines come without their newline
        except Exception:  # spool full, disk error: the event cannot be kept any longer
            return False
        self._requeue.append(line)
        self.counters.requeued += 1
        return True

    def _hold_unknown_tenant(self, events: List[Tuple[bytes, Dict[str, Any]]], message: str) -> None:
        """404 unknown tenant: hold the events while their retention lasts, refuse the rest."""
        now = time.monotonic()
        refused = []
        newly_held = []
        for line, event in events:
            key = _event_id(line)
            entry = self.held.setdefault(key, [now, now, 0.0])
            entry[2] += 1
            if now - entry[0] < self.unknown_tenant_retention and self._hold_again(line):
                ceiling = min(self.backoff_max, self.backoff_base * (2 ** min(int(entry[2]) - 1, 30)))
                entry[1] = now + self._rng.uniform(ceiling / 2, ceiling)
                if entry[2] == 1:  # reported when first held, not on every retry
                    newly_held.append(event)
            else:
                del self.held[key]
                refused.append(event)
        if newly_held:
            text = (
                f"{len(newly_held)} event(s) of an unknown tenant held and retried for up to "
                f"{self.unknown_tenant_retention:g} s from the first refusal: {message}"
            )
            self.counters.last_error = text
            log.warning("usage tracker: %s", text)
            self.report(Problem("held", text, status=404, events=newly_held))
        if refused:
            self._final(
                refused, 404, "unknown_tenant", f"{message} (held {self.unknown_tenant_retention:g} s)"
            )

    # -- one batch ---------------------------------------------------------------------------
    def _deliver(self, lines: List[bytes]) -> bool:
        """Resolve every line; False if closing ran out of time first (nothing is lost then)."""
        pending: List[List[bytes]] = [lines]
        failures = 0
        counters = self.counters
        while pending:
            part = pending.pop()
            retry_after: Optional[float] = None
            try:
                response = self.transport.post_events(_body(part))
            except TransportError as exc:
                problem = Problem("retry", str(exc))
            else:
                status = response.status
                data = response.json()
                if 200 <= status < 300:
                    self._acknowledge(part, data)
                    failures = 0
                    continue
                retry_after = response.retry_after()
                if status == 429 and self._quota_answer(part, data, pending):
                    failures = 0
                    continue
                if status in _RETRY_STATUSES or status >= 500 or status == 429 or status < 400:
                    problem = Problem("retry", f"POST /v1/events answered {status}", status=status)
                elif status in _CONFIG_STATUSES and not self._attributed(part, data):
                    # Not this API's per-event answer: a wrong endpoint path (or a proxy). Dropping
                    # the events would lose them for a configuration mistake, so they wait.
                    problem = Problem(
                        "config",
                        f"POST /v1/events answered {status}: {self._message(data)}; check the endpoint, "
                        "the events are kept and retried",
                        status=status,
                    )
                elif status == 401 or (status == 403 and not self._attributed(part, data)):
                    problem = Problem(
                        "auth",
                        f"POST /v1/events answered {status}: {self._message(data)}; "
                        "the events are kept and retried",
                        status=status,
                    )
                else:
                    self._refuse(part, status, data, pending)
                    failures = 0
                    continue
            failures += 1
            counters.retried += 1
            counters.last_error = problem.message
            log.warning(
                "usage tracker: %s (attempt %d, %d events kept)", problem.message, failures, len(part)
            )
            self.report(problem)
            pending.append(part)
            if not self._sleep(self._backoff(failures, retry_after)):
                return False
        return True

    def _acknowledge(self, part: List[bytes], data: Any) -> None:
        rejected = data.get("rejected_for_quota") if isinstance(data, dict) else None
        duplicates = data.get("duplicates") if isinstance(data, dict) else None
        refused_ids = {r.get("event_id") for r in rejected or [] if isinstance(r, dict)}
        refused = [e for e in map(_event, part) if e.get("event_id") in refused_ids] if refused_ids else []
        self.counters.sent += len(part) - len(refused)
        self.counters.duplicates += len(duplicates or [])
        if refused:
            self._final(
                refused, 202, "quota", "over the tenant's monthly query quota; not stored, not billed"
            )

    def _quota_answer(self, part: List[bytes], data: Any, pending: List[List[bytes]]) -> bool:
        """A 429 for quota names its events (rejected_for_quota, duplicates): resolve them."""
        details = data.get("details") if isinstance(data, dict) else None
        if not isinstance(details, dict):
            return False
        refused_ids = {
            r.get("event_id") for r in details.get("rejected_for_quota") or [] if isinstance(r, dict)
        }
        duplicate_ids = set(details.get("duplicates") or [])
        if not refused_ids and not duplicate_ids:
            return False
        events = [_event(line) for line in part]
        refused = [e for e in events if e.get("event_id") in refused_ids]
        acknowledged = [
            e for e in events if e.get("event_id") in duplicate_ids and e.get("event_id") not in refused_ids
        ]
        rest = [
            line
            for line, e in zip(part, events)
            if e.get("event_id") not in refused_ids and e.get("event_id") not in duplicate_ids
        ]
        self.counters.sent += len(acknowledged)
        self.counters.duplicates += len(acknowledged)
        if refused:
            self._final(
                refused, 429, "quota", "over the tenant's monthly query quota; not stored, not billed"
            )
        if rest:
            pending.append(rest)
        return True

    @staticmethod
    def _message(data: Any) -> str:
        if isinstance(data, dict):
            return str(data.get("message") or data.get("error") or data)
        return "no JSON body"

    def _attributed(self, part: List[bytes], data: Any) -> Set[int]:
        """Indexes of ``part`` the error's details name (by index, tenant_id or month)."""
        details = data.get("details") if isinstance(data, dict) else None
        if isinstance(details, dict):
            details = [details]
        if not isinstance(details, list):
            return set()
        indexes: Set[int] = set()
        tenants: Set[str] = set()
        months: Set[str] = set()
        for item in details:
            if not isinstance(item, dict):
                continue
            index = item.get("index")
            if type(index) is int and 0 <= index < len(part):
                indexes.add(index)
            elif isinstance(item.get("tenant_id"), str):
                tenants.add(item["tenant_id"])
            elif isinstance(item.get("month"), str):
                months.add(item["month"])
        if tenants or months:
            for i, event in enumerate(map(_event, part)):
                timestamp = event.get("timestamp")
                if event.get("tenant_id") in tenants or (
                    isinstance(timestamp, str) and timestamp[:7] in months
                ):
                    indexes.add(i)
        return indexes

    @staticmethod
    def _unknown_tenants(data: Any) -> Set[str]:
        details = data.get("details") if isinstance(data, dict) else None
        if isinstance(details, dict):
            details = [details]
        items = details if isinstance(details, list) else []
        return {
            item["tenant_id"]
            for item in items
            if isinstance(item, dict) and isinstance(item.get("tenant_id"), str)
        }

    def _refuse(self, part: List[bytes], status: int, data: Any, pending: List[List[bytes]]) -> None:
        named = self._attributed(part, data) if status != 413 else set()
        if named:
            reasons: Dict[int, str] = {}
            details = data.get("details") if isinstance(data, dict) else None
            for item in details if isinstance(details, list) else []:
                if isinstance(item, dict) and type(item.get("index")) is int:
                    reasons.setdefault(item["index"], f"{item.get('field')}: {item.get('reason')}")
            rest = [line for i, line in enumerate(part) if i not in named]
            if status == 404:
                unknown = self._unknown_tenants(data)
                held = [i for i in sorted(named) if _event(part[i]).get("tenant_id") in unknown]
                if held:
                    self._hold_unknown_tenant(
                        [(part[i], dict(_event(part[i]), _reason="unknown tenant")) for i in held],
                        self._message(data),
                    )
                    named = named - set(held)
            refused = [
                dict(_event(part[i]), _reason=reasons.get(i, self._message(data))) for i in sorted(named)
            ]
            if refused:
                self._final(refused, status, "refused", self._message(data))
            if rest:
                pending.append(rest)
        elif len(part) > 1:
            middle = len(part) // 2
            pending.append(part[middle:])
            pending.append(part[:middle])
        else:
            self._final([_event(part[0])], status, "refused", self._message(data))

    def _final(self, events: List[Dict[str, Any]], status: int, reason: str, message: str) -> None:
        self.counters.rejected += len(events)
        text = f"{len(events)} event(s) refused by the server ({status}): {message}"
        self.counters.last_error = text
        log.error("usage tracker: %s", text)
        self.report(Problem("rejected", text, status=status, events=events, reason=reason))
