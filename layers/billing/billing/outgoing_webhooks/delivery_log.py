"""What happened to each message sent to an endpoint, and sending one again.

Invariants:
- every attempt the relay makes is one ``Attempt`` in the log (a message dropped because its
  endpoint is gone, or one handed back to wait, is no attempt; one dropped because its endpoint is
  disabled is logged, not sent, with that error, and so is the disabling itself); the log keeps an
  attempt and the message it carried (id, event type, exact body) for ``RETENTION_DAYS``, then
  forgets them;
- an endpoint's log is read newest first, at most ``MAX_PAGE`` a page, a cursor naming where the
  next page starts; only a platform key reads it;
- a resend queues the logged message again under the same id with the same bytes (a receiver that
  already has it drops it by its id), attempts counted afresh; it is signed when each attempt is
  made, with the secrets in force then; an unknown endpoint or message is a 404.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from billing.kernel.errors import InvalidRequest, NotFound
from billing.outgoing_webhooks.delivery import DeliveryQueue, Message, Outcome
from billing.outgoing_webhooks.endpoints import EndpointService
from billing.tenants.access import Principal

RETENTION_DAYS = 30
DEFAULT_PAGE = 50
MAX_PAGE = 200


@dataclass(frozen=True)
class Attempt:
    """One attempt: ``status`` is the HTTP status answered, or None with ``error`` saying why."""

    message_id: str
    endpoint_id: str
    event_type: str
    attempt: int
    at: datetime
    delivered: bool
    status: int | None
    error: str | None
    duration_ms: int

    def as_json(self) -> dict[str, object]:
        return {
            "message_id": self.message_id,
            "endpoint_id": self.endpoint_id,
            "event_type": self.event_type,
            "attempt": self.attempt,
            "at": self.at.isoformat(),
            "delivered": self.delivered,
            "status": self.status,
            "error": self.error,
            "duration_ms": self.duration_ms,
        }


class DeliveryLog(Protocol):
    def record(self, attempt: Attempt, body: bytes) -> None:
        """Keep the attempt, and the message body it carried."""
        ...

    def page(self, endpoint_id: str, limit: int, cursor: str | None) -> tuple[list[Attempt], str | None]:
        """Up to ``limit`` attempts newest first from ``cursor`` (None: the newest), and the cursor
        of the next page (None: no more). A cursor this log did not give is ValueError."""
        ...

    def message(self, endpoint_id: str, message_id: str) -> Message | None:
        """The logged message (attempts 0), or None if never logged or forgotten."""
        ...


def attempt_of(outcome: Outcome, at: datetime) -> Attempt:
    message, answer = outcome.message, outcome.answer
    return Attempt(
        message_id=message.message_id,
        endpoint_id=message.endpoint_id,
        event_type=message.event_type,
        attempt=message.attempts,
        at=at,
        delivered=outcome.delivered,
        status=answer.status if answer else None,
        error=answer.error if answer else None,
        duration_ms=outcome.duration_ms,
    )


class Deliveries:
    """Reading an endpoint's log and resending a logged message."""

    def __init__(
        self,
        endpoints: EndpointService,
        log: DeliveryLog,
        queue: DeliveryQueue,
        clock: Callable[[], datetime],
    ):
        self.endpoints = endpoints
        self.log = log
        self.queue = queue
        self.clock = clock

    def page(
        self, endpoint_id: str, principal: Principal, *, limit: int = DEFAULT_PAGE, cursor: str | None = None
    ) -> tuple[list[Attempt], str | None]:
        self.endpoints.get(endpoint_id, principal)
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest(
                f"limit must be 1 to {MAX_PAGE}",
                details=[{"field": "limit", "reason": f"1 to {MAX_PAGE}"}],
            )
        try:
            return self.log.page(endpoint_id, limit, cursor)
        except ValueError:
            raise InvalidRequest(
                "unknown cursor", details=[{"field": "cursor", "reason": "not a cursor this log gave"}]
            ) from None

    def resend(self, endpoint_id: str, message_id: str, principal: Principal) -> Message:
        """The message queued again (see the module's invariants)."""
        self.endpoints.get(endpoint_id, principal)
        message = self.log.message(endpoint_id, message_id)
        if message is None:
            raise NotFound(
                f"no logged message {message_id} to endpoint {endpoint_id}",
                details=[{"field": "message_id", "reason": f"not in the last {RETENTION_DAYS} days' log"}],
            )
        self.queue.send(message, timedelta(0))
        return message


class AttemptRecorder:
    """The relay's ``AttemptLog``: each attempt into the ``DeliveryLog``."""

    def __init__(self, log: DeliveryLog):
        self.log = log

    def attempted(self, outcome: Outcome, at: datetime) -> None:
        self.log.record(attempt_of(outcome, at), outcome.message.body)
