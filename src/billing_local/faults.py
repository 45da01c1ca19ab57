"""Injected failures for tests and the demo: the real ClickHouse store with outages switched on."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from billing.kernel.errors import StoreUnavailable

Mode = Literal["ok", "fail", "lost_ack"]


class OutageStore:
    """Wraps the real store. Per insert call, ``plan(n)`` decides: "ok" inserts; "fail" refuses the
    insert (connection refused); "lost_ack" applies the insert and then reports a timeout, the case
    where a retry or replay must not count the block twice."""

    def __init__(self, store: Any, plan: Callable[[int], Mode]):
        self.store, self.plan, self.calls = store, plan, 0

    def insert_events(self, events: Sequence[Any]) -> None:
        mode = self.plan(self.calls)
        self.calls += 1
        if mode == "fail":
            raise StoreUnavailable("injected outage: connection refused")
        self.store.insert_events(events)
        if mode == "lost_ack":
            raise StoreUnavailable("injected outage: timed out after the insert was applied")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)
