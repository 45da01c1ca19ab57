"""An endpoint that keeps failing is disabled, and what refuses a send to a private address.

Invariants:
- ``failing_since`` is the instant of the first failed attempt after the last delivered one: set by
  the first failure, cleared by any delivery (a write only on those two transitions);
- when an attempt fails and the endpoint has been failing for ``disable_after`` or longer, the
  endpoint is disabled (compare-and-set on its version: once, however many attempts fail at once);
  the disabling is recorded in the endpoint's delivery log (event type
  ``webhook_endpoint.disabled``), published as a notice and as the ``webhook_endpoint.disabled``
  webhook to the other endpoints that want it; nothing more is queued for it or sent to it until
  ``billing webhooks enable`` / ``POST /v1/webhook-endpoints/{id}/enable``;
- a send goes only to a host whose every resolved address is public (``AddressGuard``): a private,
  loopback, link-local or reserved one refuses the attempt (an attempt that failed, in the log,
  retried like any other), except loopback where the runtime allows it (``billing serve``, tests).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from datetime import datetime, timedelta
from ipaddress import ip_address

from billing.kernel.notices import FactNotice, FactNotices
from billing.kernel.periods import iso
from billing.outgoing_webhooks.delivery import Outcome
from billing.outgoing_webhooks.delivery_log import Attempt, DeliveryLog
from billing.outgoing_webhooks.endpoints import Endpoint, EndpointStore
from billing.outgoing_webhooks.publishing import WebhookPublisher
from billing.runtime.observability import logger

DEFAULT_DISABLE_AFTER = timedelta(days=5)
DISABLED = "webhook_endpoint.disabled"

Resolver = Callable[[str], list[str]]


def resolve(host: str) -> list[str]:
    """Every address ``host`` resolves to (an IP literal is itself)."""
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)})


class AddressGuard:
    """Why a send to ``host`` is refused (None: allowed)."""

    def __init__(self, *, allow_loopback: bool = False, resolver: Resolver = resolve):
        self.allow_loopback = allow_loopback
        self.resolver = resolver

    def refusal(self, host: str) -> str | None:
        try:
            addresses = self.resolver(host)
        except OSError as exc:
            return f"no answer: {host} does not resolve ({exc})"
        for text in addresses:
            address = ip_address(text.split("%", 1)[0])
            if address.is_loopback and self.allow_loopback:
                continue
            if address.is_loopback or address.is_link_local or address.is_private or not address.is_global:
                return f"refused: {host} resolves to {text}, not a public address"
        return None


class EndpointHealth:
    """Watches every attempt's outcome (the relay calls ``observed``) and disables an endpoint that
    has failed for ``disable_after`` (see the module's invariants)."""

    def __init__(
        self,
        store: EndpointStore,
        clock: Callable[[], datetime],
        *,
        disable_after: timedelta = DEFAULT_DISABLE_AFTER,
        log: DeliveryLog | None = None,
        notices: FactNotices | None = None,
        webhooks: WebhookPublisher | None = None,
    ):
        self.store, self.clock, self.disable_after = store, clock, disable_after
        self.log, self.notices, self.webhooks = log, notices, webhooks

    def observed(self, outcome: Outcome) -> Endpoint | None:
        """The endpoint if this outcome disabled it."""
        if outcome.dropped:
            return None
        now = self.clock()
        for _attempt in range(5):
            endpoint = self.store.get(outcome.message.endpoint_id)
            if endpoint is None or not endpoint.enabled:
                return None
            if outcome.delivered:
                if endpoint.failing_since is None:
                    return None
                update: dict[str, object] = {"failing_since": None}
            elif endpoint.failing_since is None:
                update = {"failing_since": now}
            elif now - endpoint.failing_since >= self.disable_after:
                update = {
                    "disabled_at": now,
                    "disabled_reason": f"every attempt failed since {iso(endpoint.failing_since)}",
                }
            else:
                return None
            changed = endpoint.model_copy(update={**update, "version": endpoint.version + 1})
            if self.store.replace(changed, expected_version=endpoint.version):
                if changed.enabled:
                    return None
                self._announce(changed)
                return changed
        return None

    def _announce(self, endpoint: Endpoint) -> None:
        at = endpoint.disabled_at or self.clock()
        data = {
            "endpoint_id": endpoint.id,
            "url": endpoint.url,
            "disabled_at": iso(at),
            "failing_since": iso(endpoint.failing_since) if endpoint.failing_since else None,
            "reason": endpoint.disabled_reason,
        }
        source = f"{DISABLED}:{endpoint.id}:{iso(at)}"
        logger.warning("webhook endpoint disabled", extra=data)
        if self.log is not None:
            self.log.record(
                Attempt(
                    message_id=source,
                    endpoint_id=endpoint.id,
                    event_type=DISABLED,
                    attempt=0,
                    at=at,
                    delivered=False,
                    status=None,
                    error=f"endpoint disabled: {endpoint.disabled_reason}",
                    duration_ms=0,
                ),
                json.dumps(data).encode(),
            )
        if self.notices is not None:
            self.notices.publish([FactNotice(DISABLED, source, at, data)])
        if self.webhooks is not None:
            self.webhooks.publish(DISABLED, endpoint.id, data, source_id=source)
