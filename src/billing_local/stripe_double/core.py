"""The double's engine: lifecycle, fault injection, Stripe's idempotency semantics, the request log."""

from __future__ import annotations

import copy
import itertools
import json
import os
import re
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

from billing.adapters.stripe.minimum_charge import STRIPE_MINIMUM_CHARGE
from billing_local.stripe_double.faults import (
    Decline,
    Fault,
    FaultKind,
    RecordedRequest,
    StripeApiError,
    max_in_window,
)
from billing_local.stripe_double.fixtures import load_fixtures
from billing_local.stripe_double.server import listen

# What ``save_state`` keeps besides the id sequence, the overdue notices sent and the idempotency
# keys: the objects and events. Test controls (faults, declines, rate windows) and the request log
# are the test's, not the account's.
_PERSISTED = (
    "customers",
    "invoice_items",
    "invoices",
    "payment_methods",
    "products",
    "balance_transactions",
    "checkout_sessions",
    "portal_sessions",
    "portal_configurations",
    "webhook_endpoints",
    "setup_intents",
    "events",
    "_cards_at_signup",
)

# The account's default API version: events are rendered at the webhook endpoint's version, or at
# this one when the endpoint has none, never at the version of the request that caused them.
ACCOUNT_API_VERSION = "2026-10-28.endive"


@dataclass(frozen=True)
class RateLimits:
    """Stripe's limits as the double enforces them when asked (requests per rolling second)."""

    global_per_s: int = 100  # live mode (test mode: 25)
    endpoint_per_s: int = 25  # per endpoint (method + path with ids as {id}), by default
    search_per_s: int = 20  # the search endpoints


# Stripe's id prefixes (the double's own ids and the ones a client may send): only these segments are
# ids. Path words with an underscore (``setup_intents``, ``billing_portal``, ``balance_transactions``)
# name endpoints, each limited on its own.
_ID = re.compile(
    r"(?:acct|ba|bpc|bps|card|cbtxn|ch|clock|cn|cs|cus|evt|ii|il|in|pi|pm|price|prod|re|seti|si|src|sub"
    r"|tok|txn)_[A-Za-z0-9_]+"
)


def endpoint_of(method: str, path: str) -> str:
    """``POST /v1/invoices/in_123/pay`` -> ``POST /v1/invoices/{id}/pay`` (the unit Stripe limits)."""
    parts = ["{id}" if _ID.fullmatch(p) else p for p in path.split("/")]
    return f"{method} {'/'.join(parts)}"


DEFAULT_SEARCH_DELAY_S = 1.0


def search_delay_from_env() -> float:
    """``STRIPE_DOUBLE_SEARCH_DELAY_S`` (seconds), so a whole run can face a slower search index."""
    raw = os.environ.get("STRIPE_DOUBLE_SEARCH_DELAY_S", "").strip()
    if not raw:
        return DEFAULT_SEARCH_DELAY_S
    value = float(raw)
    if value < 0:
        raise ValueError("STRIPE_DOUBLE_SEARCH_DELAY_S must be >= 0")
    return value


class DoubleCore:
    """Lifecycle, injected faults, Stripe's idempotency and the request log; endpoints come from a
    ``Resources`` subclass through ``routes``."""

    routes: list[tuple[str, str, Any]] = []

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        timeout_hang_s: float = 2.0,
        fixtures: Path | None = None,
        search_delay_s: float | None = None,
        rate_limits: RateLimits | None = None,
        webhook_api_version: str | None = None,
        minimum_charges: Mapping[str, int] | None = None,
        overdue_after_days: int | None = 0,
        state_path: Path | None = None,
    ):
        """Customers start with no payment method (``attach_card`` or a completed setup session
        gives them one); search sees an object ``search_delay_s`` after it was written (default
        ``STRIPE_DOUBLE_SEARCH_DELAY_S``, else 1 s; Stripe documents under a minute, up to an hour
        in outages; the attribute may be changed at any time and applies to later writes); with
        ``rate_limits`` requests over Stripe's limits get 429 ``rate_limit``; an invoice below
        Stripe's published minimum charge for its currency (``minimum_charges`` adds or replaces
        some) is carried to the customer's balance at finalization; ``invoice.overdue`` is sent
        ``overdue_after_days`` after a sent invoice's due date, or never with None (the account's
        invoice automation, which Stripe's API does not expose); with ``state_path`` the objects,
        events and idempotency keys are loaded from that file if it exists and saved to it after
        every request that may write (``save_state``)."""
        self.latency_s = latency_s
        self.timeout_hang_s = timeout_hang_s
        self.search_delay_s = search_delay_from_env() if search_delay_s is None else search_delay_s
        self.rate_limits = rate_limits
        self.webhook_api_version = webhook_api_version or ACCOUNT_API_VERSION
        self.minimum_charges = {**STRIPE_MINIMUM_CHARGE, **(minimum_charges or {})}
        self.overdue_after_days = overdue_after_days
        self._indexed_at: dict[str, float] = {}
        self._cards_at_signup: dict[str, str] = {}
        self._windows: dict[str, deque[float]] = {}
        self.fixtures = load_fixtures(fixtures)
        self._lock = threading.RLock()
        self._seq = itertools.count(1)
        self.customers: dict[str, dict[str, Any]] = {}
        self.invoice_items: dict[str, dict[str, Any]] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        self.payment_methods: dict[str, dict[str, Any]] = {}
        self.products: dict[str, dict[str, Any]] = {}
        self.balance_transactions: dict[str, dict[str, Any]] = {}  # customer_balance_transaction
        self.checkout_sessions: dict[str, dict[str, Any]] = {}
        self.portal_sessions: dict[str, dict[str, Any]] = {}
        self.portal_configurations: dict[str, dict[str, Any]] = {}
        self.webhook_endpoints: dict[str, dict[str, Any]] = {}
        self.setup_intents: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self._requests: list[RecordedRequest] = []
        self._idempotency: dict[str, tuple[str, int, dict[str, Any]]] = {}
        self._in_flight: set[str] = set()
        self._faults: list[Fault] = []
        self._declines: dict[str, Decline] = {}
        self._overdue_sent: set[str] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.state_path = state_path
        if state_path is not None and state_path.exists():
            self._load_state(state_path)

    # -- durable state --------------------------------------------------------------------------
    def save_state(self) -> None:
        """Write the state to ``state_path`` atomically: a temporary file, fsynced, renamed over the
        old one, so a crash leaves either the old state or the new, never half of one. Test
        controls that change objects outside a request (``attach_card``...) call it themselves."""
        if self.state_path is None:
            return
        with self._lock:
            following = next(self._seq)
            self._seq = itertools.count(following)
            state = {
                "seq": following,
                **{name: getattr(self, name) for name in _PERSISTED},
                "_overdue_sent": sorted(self._overdue_sent),
                "_idempotency": {k: list(v) for k, v in self._idempotency.items()},
            }
            tmp = self.state_path.with_name(self.state_path.name + ".tmp")
            with tmp.open("w") as file:
                json.dump(state, file, separators=(",", ":"))
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, self.state_path)
            directory = os.open(self.state_path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)

    def _load_state(self, path: Path) -> None:
        """Objects loaded are searchable at once (their indexing delay passed while it was down)."""
        state = json.loads(path.read_text())
        self._seq = itertools.count(int(state["seq"]))
        for name in _PERSISTED:
            setattr(self, name, state[name])
        self._overdue_sent = set(state["_overdue_sent"])
        self._idempotency = {k: (v[0], int(v[1]), v[2]) for k, v in state["_idempotency"].items()}

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> Self:
        self._server = listen(self)
        self._thread = threading.Thread(target=self._server.serve_forever, name="stripe-double", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def api_base(self) -> str:
        assert self._server is not None, "start() the double first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- test controls --------------------------------------------------------------------------
    def add_fault(
        self,
        kind: FaultKind,
        *,
        method: str | None = None,
        path: str | None = None,
        times: int = 1,
        after: int = 0,
        took_effect: bool = False,
    ) -> Fault:
        """Kinds: ``rate_limit`` / ``lock_timeout`` (429 with that code), ``server_error`` (500 before
        the endpoint runs, nothing saved), ``saved_server_error`` (500 saved under the idempotency
        key and replayed with ``Stripe-Should-Retry: false``; with ``took_effect`` the work was
        done first), ``timeout`` (no answer), ``lost_response`` (done, then the answer is lost)."""
        fault = Fault(kind, method, path, times, after, took_effect)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def decline(
        self,
        *,
        customer_id: str | None = None,
        tenant_id: str | None = None,
        payment_method: str | None = None,
        code: str = "card_declined",
        decline_code: str | None = "insufficient_funds",
        message: str = "Your card has insufficient funds.",
    ) -> None:
        """Make charges fail for a customer, a tenant (metadata tenant_id) or a payment method."""
        target = (
            f"cus:{customer_id}"
            if customer_id
            else f"tenant:{tenant_id}"
            if tenant_id
            else f"pm:{payment_method}"
        )
        with self._lock:
            self._declines[target] = Decline(code, decline_code, message)

    def clear_declines(self) -> None:
        with self._lock:
            self._declines.clear()

    def forget_idempotency_keys(self) -> None:
        """Keys expire at Stripe after 24 hours; this is that day passing."""
        with self._lock:
            self._idempotency.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def stats(self) -> dict[str, Any]:
        requests = self.requests
        times = [r.at for r in requests]
        return {
            "requests": len(requests),
            "invoices": len(self.invoices),
            "customers": len(self.customers),
            "max_in_1s": max_in_window(times, 1.0) if times else 0,
            "max_in_5s": max_in_window(times, 5.0) if times else 0,
            "span_s": (max(times) - min(times)) if times else 0.0,
            "statuses": {
                str(code): sum(1 for r in requests if r.status == code)
                for code in sorted({r.status for r in requests})
            },
        }

    def reset_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def invoices_for(
        self, tenant_id: str | None = None, *, include_void: bool = True
    ) -> list[dict[str, Any]]:
        with self._lock:
            found = [
                copy.deepcopy(i)
                for i in self.invoices.values()
                if (tenant_id is None or i["metadata"].get("tenant_id") == tenant_id)
                and (include_void or i["status"] != "void")
            ]
        return sorted(found, key=lambda i: (i["created"], i["id"]))

    def customer_for(self, tenant_id: str) -> dict[str, Any] | None:
        with self._lock:
            for customer in self.customers.values():
                if customer["metadata"].get("tenant_id") == tenant_id:
                    return copy.deepcopy(customer)
        return None

    def events_of(self, *types: str) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(e) for e in self.events if not types or e["type"] in types]

    # -- request handling (called from the HTTP handler threads) --------------------------------
    def handle(
        self, method: str, path: str, params: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        """(status, body, headers), or None to drop the connection without answering."""
        key = headers.get("idempotency-key") if method == "POST" else None
        version = headers.get("stripe-version")
        received = time.monotonic()
        fault = self._take_fault(method, path)

        def record(status: int, *, replayed: bool = False) -> None:
            with self._lock:
                self._requests.append(
                    RecordedRequest(
                        received,
                        method,
                        path,
                        params,
                        key,
                        version,
                        status,
                        replayed,
                        fault.kind if fault else None,
                    )
                )

        if self.latency_s:
            time.sleep(self.latency_s)
        if fault is not None and fault.kind == "timeout":
            record(0)
            time.sleep(self.timeout_hang_s)
            return None
        if fault is not None and fault.kind in ("rate_limit", "lock_timeout"):
            record(429)
            return self._too_many(fault.kind)
        if fault is None and self._over_rate_limit(method, path, received):
            record(429)
            return self._too_many("rate_limit")
        if fault is not None and fault.kind == "server_error":
            record(500)
            err = StripeApiError(500, "api_error", "An unknown error occurred (injected).")
            return err.status, err.body, {}

        fingerprint = json.dumps([method, path, params], sort_keys=True)
        if key:
            with self._lock:
                saved = self._idempotency.get(key)
                if saved is None and key in self._in_flight:
                    record(409)
                    err = StripeApiError(
                        409,
                        "idempotency_error",
                        "There is currently another in-progress request using this Idempotent Key.",
                        code="idempotency_key_in_use",
                    )
                    return err.status, err.body, {}
                if saved is None:
                    self._in_flight.add(key)
            if saved is not None:
                if saved[0] != fingerprint:
                    record(400)
                    err = StripeApiError(
                        400,
                        "idempotency_error",
                        "Keys for idempotent requests can only be "
                        "used with the same parameters they were first used with.",
                    )
                    return err.status, err.body, {}
                if fault is not None and fault.kind == "lost_response":
                    record(500, replayed=True)
                    err = StripeApiError(
                        500, "api_error", "An unknown error occurred (injected after processing)."
                    )
                    return err.status, err.body, {}
                record(saved[1], replayed=True)
                replay = {"Idempotent-Replayed": "true", "Idempotency-Key": key}
                if saved[1] >= 500:  # Stripe replays a saved 500 and says retrying cannot help
                    replay["Stripe-Should-Retry"] = "false"
                return saved[1], copy.deepcopy(saved[2]), replay
        try:
            save = True
            if fault is not None and fault.kind == "saved_server_error":
                # The endpoint began and failed: Stripe keeps this 500 as the key's result.
                if fault.took_effect:
                    try:
                        self._dispatch(method, path, params, key, version)
                    except StripeApiError:
                        pass
                status, body = 500, StripeApiError(500, "api_error", "An unknown error occurred.").body
            else:
                try:
                    status, body = 200, self._dispatch(method, path, params, key, version)
                except StripeApiError as exc:
                    status, body, save = exc.status, exc.body, exc.saved
            if key and save:
                with self._lock:
                    self._idempotency[key] = (fingerprint, status, copy.deepcopy(body))
        finally:
            if key:
                with self._lock:
                    self._in_flight.discard(key)
        if method != "GET":
            self.save_state()
        if fault is not None and fault.kind == "lost_response":
            record(500)
            err = StripeApiError(500, "api_error", "An unknown error occurred (injected after processing).")
            return err.status, err.body, {}
        record(status)
        return status, body, ({"Idempotency-Key": key} if key else {})

    @staticmethod
    def _too_many(kind: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        message = (
            "This object cannot be accessed right now because another API request or Stripe "
            "process is currently accessing it."
            if kind == "lock_timeout"
            else "Too many requests hit the API too quickly."
        )
        err = StripeApiError(429, "invalid_request_error", message, code=kind)
        return err.status, err.body, {}

    def _over_rate_limit(self, method: str, path: str, now: float) -> bool:
        """Rolling one-second windows: the account's, and the endpoint's (search has its own)."""
        limits = self.rate_limits
        if limits is None:
            return False
        endpoint = endpoint_of(method, path)
        per_endpoint = limits.search_per_s if path.endswith("/search") else limits.endpoint_per_s
        with self._lock:
            windows = [
                (self._windows.setdefault("*", deque()), limits.global_per_s),
                (self._windows.setdefault(endpoint, deque()), per_endpoint),
            ]
            for window, _ in windows:
                while window and now - window[0] >= 1.0:
                    window.popleft()
            if any(len(window) >= cap for window, cap in windows):
                return True
            for window, _ in windows:
                window.append(now)
        return False

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    if fault.after > 0:
                        fault.after -= 1
                        continue
                    if fault.times > 0:
                        fault.times -= 1
                    return fault
        return None

    def _dispatch(
        self, method: str, path: str, params: dict[str, Any], key: str | None, version: str | None
    ) -> dict[str, Any]:
        for route_method, pattern, action in self.routes:
            if route_method == method:
                match = re.fullmatch(pattern, path)
                if match:
                    with self._lock:
                        answer: dict[str, Any] = action(
                            self, params, *match.groups(), request={"key": key, "version": version}
                        )
                        return answer
        raise StripeApiError(404, "invalid_request_error", f"Unrecognized request URL ({method}: {path}).")
