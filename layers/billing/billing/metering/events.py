"""The usage event wire format and whole-batch validation (every bad field is reported at once)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Generic, Literal, NamedTuple, TypeVar, overload

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from billing.kernel.errors import InvalidRequest, PayloadTooLarge
from billing.kernel.periods import rfc3339_field
from billing.kernel.validation import Identifier, parse_json, require_json, validation_details

EventType = Literal["query", "embedding", "storage"]
# Upper bounds: far beyond any real event, small enough that no sum overflows:
# sums are UInt128 in ClickHouse (migration 0004), so fewer than 10^23 events of the largest size
# fit in any total, and costs stay within Decimal(38, 9).
MAX_TOKENS = 10**12
MAX_BYTES = 10**15
Tokens = Annotated[int, Field(ge=0, le=MAX_TOKENS, strict=True)]
Bytes = Annotated[int, Field(ge=0, le=MAX_BYTES, strict=True)]


T = TypeVar("T")


class _once(Generic[T]):
    """A value derived from an immutable instance, computed on first read and kept in the instance's
    ``__dict__``; later reads find it there without calling this (it is not a data descriptor).
    ``functools.cached_property`` without its per-read lock (Python 3.11), which costs more than
    the value. Not a field: dumps, equality and hashing see the fields only."""

    def __init__(self, compute: Callable[[Any], T]) -> None:
        self.compute = compute
        self.__doc__ = compute.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> _once[T]: ...

    @overload
    def __get__(self, instance: object, owner: type | None = None) -> T: ...

    def __get__(self, instance: object | None, owner: type | None = None) -> T | _once[T]:
        if instance is None:
            return self
        value: T = self.compute(instance)
        instance.__dict__[self.name] = value
        return value


class UsageEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, ignored_types=(_once,))

    event_id: Identifier
    tenant_id: Identifier
    timestamp: datetime
    type: EventType
    model: str | None = Field(default=None, min_length=1, max_length=128, strict=True)
    input_tokens: Tokens = 0
    output_tokens: Tokens = 0
    bytes: Bytes = 0

    _rfc3339 = field_validator("timestamp", mode="before")(rfc3339_field)

    @model_validator(mode="after")
    def _type_rules(self) -> UsageEvent:
        tokens = self.input_tokens + self.output_tokens
        if self.type == "storage" and tokens:
            raise ValueError("storage events carry bytes only, no tokens")
        if self.type == "embedding" and self.bytes:
            raise ValueError("embedding events carry tokens only, no bytes")
        if tokens and not self.model:
            raise ValueError("model is required when tokens > 0")
        # the derived values ingest reads for every event, set now rather than by a first read
        self.__dict__["queries"] = 1 if self.type == "query" else 0
        self.__dict__["key"] = (self.tenant_id, self.event_id)
        return self

    @_once
    def queries(self) -> int:
        """1 for a query, else 0 (what the quota and the query tiers count)."""
        return 1 if self.type == "query" else 0

    @_once
    def key(self) -> tuple[str, str]:
        """``(tenant_id, event_id)`` (ingest looks events up by it many times)."""
        return (self.tenant_id, self.event_id)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> UsageEvent:
        copied = super().model_copy(update=update, deep=deep)
        for derived in ("key", "queries"):  # a copy with other fields must not keep this one's
            copied.__dict__.pop(derived, None)
        return copied

    def stored(self, cost_usd: Decimal, price_version: str, accepted_at: datetime) -> StoredEvent:
        """This event as it is written to usage_events, priced at event time."""
        return StoredEvent(
            self.tenant_id,
            self.event_id,
            self.timestamp,
            self.type,
            self.model or "",
            self.queries,
            self.input_tokens,
            self.output_tokens,
            self.bytes,
            cost_usd,
            price_version,
            accepted_at,
        )


def _problem(index: int | None, field: str, reason: str) -> dict[str, Any]:
    return {"index": index, "field": field, "reason": reason}


def parse_event(raw: Any, index: int | None = None) -> tuple[UsageEvent | None, list[dict[str, Any]]]:
    if not isinstance(raw, dict):
        return None, [_problem(index, "event", "must be a JSON object")]
    try:
        return UsageEvent.model_validate(raw), []
    except ValidationError as exc:
        return None, validation_details(exc, index=index, root="event", with_index=True)


def parse_batch(raw_events: list[Any], max_events: int) -> list[UsageEvent]:
    """Validate a whole batch; raise InvalidRequest listing every bad event if any is wrong."""
    if not isinstance(raw_events, list) or not raw_events:
        raise InvalidRequest(
            "'events' must be a non-empty array", details=[_problem(None, "events", "required")]
        )
    if len(raw_events) > max_events:
        raise PayloadTooLarge(
            f"a batch holds at most {max_events} events, got {len(raw_events)}",
            details=[_problem(None, "events", f"too many events ({len(raw_events)} > {max_events})")],
        )
    events: list[UsageEvent] = []
    problems: list[dict[str, Any]] = []
    seen: dict[tuple[str, str], int] = {}
    for index, raw in enumerate(raw_events):
        event, errs = parse_event(raw, index)
        problems.extend(errs)
        if event is not None:
            if event.key in seen:
                problems.append(_problem(index, "event_id", f"repeats event {seen[event.key]} of this batch"))
            seen.setdefault(event.key, index)
            events.append(event)
    if problems:
        raise InvalidRequest(
            f"{len({p['index'] for p in problems})} invalid event(s); nothing was stored", details=problems
        )
    return events


def parse_body(
    body: str | bytes | None, content_type: str | None, *, max_bytes: int, max_events: int
) -> list[UsageEvent]:
    """An HTTP request body ``{"events": [...]}`` to validated events, or a typed 4xx."""
    require_json(content_type)
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else (body or b"")
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"request body is {len(raw)} bytes; the limit is {max_bytes}")
    document = parse_json(raw, index_key=True)
    if not isinstance(document, dict) or "events" not in document:
        raise InvalidRequest(
            'body must be an object {"events": [...]}', details=[_problem(None, "events", "required")]
        )
    extra = sorted(set(document) - {"events"})
    if extra:
        raise InvalidRequest(
            "unknown top-level fields", details=[_problem(None, f, "unknown field") for f in extra]
        )
    return parse_batch(document["events"], max_events)


class StoredEvent(NamedTuple):
    """A priced, accepted event as it is written to usage_events (and carried by the fallback queue).
    A NamedTuple: immutable, and built and read column by column in C (ingest makes one per accepted
    event; a frozen dataclass's ``__init__`` is a Python call per field)."""

    tenant_id: str
    event_id: str
    timestamp: datetime
    type: str
    model: str
    queries: int
    input_tokens: int
    output_tokens: int
    bytes: int
    cost_usd: Decimal
    price_version: str
    accepted_at: datetime


# usage_events' columns and the fallback row's keys, in this order (one list: the tuple's fields)
STORED_FIELDS: tuple[str, ...] = StoredEvent._fields
