"""Sending a message to an endpoint: one attempt at a time, and when to try again.

Invariants:
- ``Dispatcher.publish`` gives the event the object's next sequence number (``SequenceCounter``:
  increasing per object, never reused), then one message per endpoint subscribed to its type, all
  with the same id and body; the body is fixed when published and never rebuilt, so every attempt
  (and a resend) carries exactly the bytes of the first;
- each attempt is signed when it is made (its own timestamp) with the secrets in force then, so a
  retry hours later is neither refused as old nor signed with a secret rotated away;
- an attempt succeeds on a 2xx answer only; anything else (no answer within ``timeout_s``, a
  refused connection, any other status) is retried after ``RETRY_SCHEDULE``, about three days in
  all, then given up; a message to an endpoint deleted meanwhile is dropped, never sent; one to a
  disabled endpoint is dropped too, and logged ("endpoint disabled") so that it can be resent;
- at least once, never exactly once: a receiver deduplicates on ``webhook-id`` and orders by
  ``sequence`` (the body says which object);
- a publish with a ``source_id`` (the fact it reports: ``statement.issued:{statement_id}``, a Stripe
  event id...) is one message however often it is repeated: its id is derived from the source
  (``source_message_id``), and the ``PublishLog`` keeps the sequence and body it got the first time.
  A repeat after the messages were queued queues nothing; a repeat after a publish cut off before
  its queueing finished queues the very same id and bytes (a receiver may then see it twice, and
  drops the repeat by its id).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

from billing.outgoing_webhooks.endpoints import EndpointService
from billing.outgoing_webhooks.signing import (
    encode,
    new_message_id,
    payload,
    sign_delivery,
    source_message_id,
)
from billing.runtime.observability import logger

# Delay before attempt n+1 (n = attempts made): immediately, then backing off to 20 hours; the last
# attempt is about 71 hours after the first.
RETRY_SCHEDULE: tuple[timedelta, ...] = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=14),
    timedelta(hours=20),
    timedelta(hours=20),
)
MAX_ATTEMPTS = len(RETRY_SCHEDULE) + 1
DEFAULT_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Message:
    """One message to one endpoint, as queued between attempts."""

    message_id: str
    endpoint_id: str
    event_type: str
    body: bytes
    attempts: int = 0
    # Not to be attempted before this instant: a queue that can only delay for a while (SQS: 15
    # minutes) hands the message back early, and it goes back to wait out the rest.
    not_before: datetime | None = None


@dataclass(frozen=True)
class Answer:
    """What an attempt got: an HTTP status, or none (``error`` says why: timeout, refused...)."""

    status: int | None
    error: str | None = None


@dataclass(frozen=True)
class Outcome:
    """An attempt's result: ``delivered``; else ``retry_in`` (None: given up or dropped)."""

    message: Message
    delivered: bool
    answer: Answer | None
    retry_in: timedelta | None
    dropped: bool = False
    duration_ms: int = 0


class Poster(Protocol):
    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> Answer: ...


class SequenceCounter(Protocol):
    def next(self, object_id: str) -> int:
        """The object's next sequence number (1 first), atomically."""
        ...


@dataclass(frozen=True)
class Published:
    """What a source fact's publish was given the first time: its sequence number and body, and
    whether its messages are all queued."""

    sequence: int
    body: bytes
    queued: bool = False


class PublishLog(Protocol):
    def get(self, object_id: str, message_id: str) -> Published | None: ...

    def claim(self, object_id: str, message_id: str, published: Published) -> bool:
        """Record the message's sequence and body if none is recorded yet; False if one is."""
        ...

    def mark_queued(self, object_id: str, message_id: str) -> None: ...


class DeliveryQueue(Protocol):
    def send(self, message: Message, delay: timedelta) -> None:
        """Queue ``message`` to be attempted ``delay`` from now (it sets ``not_before`` if it
        cannot hold it that long)."""
        ...


class DeadLetters(Protocol):
    def send(self, message: Message, reason: str) -> None:
        """Keep a message whose attempts are all spent, for an operator to inspect and resend."""
        ...


def retry_delay(attempts_made: int) -> timedelta | None:
    """How long to wait after ``attempts_made`` failed attempts; None once they are all spent."""
    if 1 <= attempts_made <= len(RETRY_SCHEDULE):
        return RETRY_SCHEDULE[attempts_made - 1]
    return None


class Dispatcher:
    def __init__(
        self,
        endpoints: EndpointService,
        sequences: SequenceCounter,
        queue: DeliveryQueue,
        log: PublishLog | None = None,
    ):
        self.endpoints = endpoints
        self.sequences = sequences
        self.queue = queue
        self.log = log

    def publish(
        self,
        event_type: str,
        object_id: str,
        data: Mapping[str, Any],
        *,
        source_id: str | None = None,
    ) -> list[Message]:
        """Queue the event for every endpoint that wants it (none: nothing is queued, and no
        sequence number is used); with ``source_id``, at most once per source (see the module's
        invariants): the messages this call queued."""
        subscribers = self.endpoints.subscribers(event_type)
        if not subscribers:
            return []
        if source_id is None or self.log is None:
            sequence = self.sequences.next(object_id)
            body = encode(payload(event_type, object_id=object_id, sequence=sequence, data=data))
            return self._queue(new_message_id(), event_type, body, subscribers)
        message_id = source_message_id(source_id)
        known = self.log.get(object_id, message_id)
        if known is None:
            sequence = self.sequences.next(object_id)
            body = encode(payload(event_type, object_id=object_id, sequence=sequence, data=data))
            if not self.log.claim(object_id, message_id, Published(sequence, body)):
                return []  # a concurrent publish of the same source claimed it and queues it
            known = Published(sequence, body)
        elif known.queued:
            return []
        messages = self._queue(message_id, event_type, known.body, subscribers)
        self.log.mark_queued(object_id, message_id)
        return messages

    def _queue(self, message_id: str, event_type: str, body: bytes, subscribers: list[Any]) -> list[Message]:
        messages = [Message(message_id, e.id, event_type, body) for e in subscribers]
        for message in messages:
            self.queue.send(message, timedelta(0))
        return messages


class HostGuard(Protocol):
    def refusal(self, host: str) -> str | None:
        """Why a send to ``host`` is refused now (None: allowed)."""
        ...


class Sender:
    def __init__(
        self,
        endpoints: EndpointService,
        poster: Poster,
        clock: Callable[[], datetime],
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        guard: HostGuard | None = None,
    ):
        self.endpoints = endpoints
        self.poster = poster
        self.clock = clock
        self.timeout_s = timeout_s
        self.guard = guard

    def attempt(self, message: Message) -> Outcome:
        """Make the message's next attempt now (see the module's invariants)."""
        target = self.endpoints.target(message.endpoint_id)
        if target is None:
            # a disabled endpoint's message is dropped with a reason, so the log keeps it for a resend
            endpoint = self.endpoints.store.get(message.endpoint_id)
            why = Answer(None, "endpoint disabled: not sent") if endpoint is not None else None
            return Outcome(message, delivered=False, answer=why, retry_in=None, dropped=True)
        endpoint, secrets = target
        refusal = self.guard.refusal(urlsplit(endpoint.url).hostname or "") if self.guard else None
        started = time.perf_counter()
        if refusal is not None:  # never sent: an attempt that failed, logged and retried like any other
            answer = Answer(status=None, error=refusal)
        else:
            delivery = sign_delivery(message.message_id, message.body, secrets, self.clock())
            answer = self.poster.post(endpoint.url, delivery.body, delivery.headers, self.timeout_s)
        duration_ms = int((time.perf_counter() - started) * 1000)
        made = Message(
            message.message_id, message.endpoint_id, message.event_type, message.body, message.attempts + 1
        )
        if answer.status is not None and 200 <= answer.status < 300:
            return Outcome(made, delivered=True, answer=answer, retry_in=None, duration_ms=duration_ms)
        return Outcome(
            made, delivered=False, answer=answer, retry_in=retry_delay(made.attempts), duration_ms=duration_ms
        )


class AttemptLog(Protocol):
    def attempted(self, outcome: Outcome, at: datetime) -> None:
        """Keep what an attempt made at ``at`` got (``delivery_log``)."""
        ...


class HealthWatch(Protocol):
    def observed(self, outcome: Outcome) -> object:
        """Take note of an attempt's outcome (``billing.outgoing_webhooks.health``)."""
        ...


class Relay:
    """What the queue's consumer does with each message it receives: wait out ``not_before``, make
    the attempt, log it, queue the next one after its delay, or hand a message whose attempts are spent to
    the dead letters (its alarm says so). A failure of the queue or of the log raises: the queue then
    hands the same message back, so nothing is lost (an attempt may repeat: at least once). The
    endpoint's ``health`` hears of every attempt last; its failure is logged, never raised (the
    next attempt's outcome is heard again)."""

    def __init__(
        self,
        sender: Sender,
        queue: DeliveryQueue,
        dead_letters: DeadLetters,
        clock: Callable[[], datetime],
        log: AttemptLog | None = None,
        health: HealthWatch | None = None,
    ):
        self.sender = sender
        self.queue = queue
        self.dead_letters = dead_letters
        self.clock = clock
        self.log = log
        self.health = health

    def handle(self, message: Message) -> Outcome | None:
        """The attempt's outcome, or None when the message went back to wait."""
        now = self.clock()
        if message.not_before is not None and now < message.not_before:
            self.queue.send(
                Message(
                    message.message_id,
                    message.endpoint_id,
                    message.event_type,
                    message.body,
                    message.attempts,
                ),
                message.not_before - now,
            )
            return None
        outcome = self.sender.attempt(message)
        if self.log is not None and (not outcome.dropped or outcome.answer is not None):
            self.log.attempted(outcome, now)
        if outcome.retry_in is not None:
            self.queue.send(outcome.message, outcome.retry_in)
        elif not outcome.delivered and not outcome.dropped:
            reason = outcome.answer.error if outcome.answer and outcome.answer.error else "not delivered"
            self.dead_letters.send(outcome.message, reason)
        if self.health is not None:
            try:
                self.health.observed(outcome)
            except Exception:  # noqa: BLE001 - the attempt is done and its next one queued
                logger.exception("endpoint health not updated", extra={"endpoint_id": message.endpoint_id})
        return outcome
