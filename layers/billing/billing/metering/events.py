"""The usage event wire format and whole-batch validation (every bad field is reported at once)."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from decimal import Context, Decimal
from typing import Annotated, Any, Generic, NamedTuple, TypeVar, overload

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from billing.kernel.errors import InvalidRequest, PayloadTooLarge
from billing.kernel.periods import rfc3339_field
from billing.kernel.validation import (
    Identifier,
    UnreadableNumber,
    parse_json,
    require_json,
    validation_details,
)

# An event's ``type``: a built-in type (query, embedding, storage) or one the catalog declares
# (billing.catalog.usage_types). Here only its shape is checked; ingest checks that the catalog knows it.
EVENT_TYPE = re.compile(r"[a-z][a-z0-9_]{0,63}")
BUILT_IN_TYPES: tuple[str, ...] = ("query", "embedding", "storage")
_BUILT_IN_TYPES = frozenset(BUILT_IN_TYPES)
# Upper bounds: far beyond any real event, small enough that no sum overflows:
# sums are UInt128 in ClickHouse (migration 0004), so fewer than 10^23 events of the largest size
# fit in any total, and costs stay within Decimal(38, 9).
MAX_TOKENS = 10**12
MAX_BYTES = 10**15
Tokens = Annotated[int, Field(ge=0, le=MAX_TOKENS, strict=True)]
Bytes = Annotated[int, Field(ge=0, le=MAX_BYTES, strict=True)]

# Event properties: a flat object of named strings and numbers, stored as two ClickHouse maps
# (migration 0005): text in Map(LowCardinality(String), String), numbers in
# Map(LowCardinality(String), Decimal(38, 18)). A number is accepted only when that column holds it
# exactly: |value| < 10^20 (at most 20 integer digits) and no non-zero digit past the 18th
# fractional place, whatever its JSON spelling (1e3, 1.50, -0).
MAX_PROPERTIES = 32
PROPERTY_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
MAX_PROPERTY_TEXT = 256
PROPERTY_SCALE = 18
PROPERTY_INTEGER_DIGITS = 20
_PROPERTY_LIMIT = Decimal(10) ** PROPERTY_INTEGER_DIGITS
_PROPERTY_QUANTUM = Decimal(1).scaleb(-PROPERTY_SCALE)
_WIDE = Context(prec=80)  # quantizing a value below 10^20 to 18 places needs 38 digits: never rounds
PropertyValue = str | Decimal
NO_PROPERTIES: dict[str, PropertyValue] = {}  # the default of every event without any: never mutated


def _property_name(value: Any) -> str:
    if type(value) is not str or PROPERTY_NAME.fullmatch(value) is None:
        raise PydanticCustomError(
            "property_name",
            "a property name is 1-64 characters of a-z, 0-9 and _, starting with a letter",
        )
    return value


def exact_property_number(value: Decimal) -> Decimal:
    """``value`` if Decimal(38, 18) holds it exactly, else ``ValueError`` saying why. The check is on
    the value, not its spelling: 1.500000000000000000000 and 15E-1 are both 1.5."""
    if not value.is_finite():
        raise ValueError("must be a finite number")
    if value.copy_abs() >= _PROPERTY_LIMIT:
        raise ValueError(
            f"a number must be below 10^{PROPERTY_INTEGER_DIGITS} in magnitude "
            f"(at most {PROPERTY_INTEGER_DIGITS} integer digits)"
        )
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -PROPERTY_SCALE:
        if value.quantize(_PROPERTY_QUANTUM, context=_WIDE) != value:
            raise ValueError(f"a number has at most {PROPERTY_SCALE} digits after the decimal point")
    return value


def _property_value(value: Any) -> PropertyValue:
    """A property's value: text of at most 256 characters, or an exact number (``exact_property_number``).
    JSON numbers must arrive as ``int`` or ``Decimal`` (the body is parsed with ``parse_float=Decimal``):
    a ``float`` has already lost the number's digits, so it is refused, never rounded."""
    kind = type(value)
    if kind is str:
        if len(value) > MAX_PROPERTY_TEXT:
            raise PydanticCustomError(
                "property_text",
                "a text value holds at most {limit} characters, got {length}",
                {"limit": MAX_PROPERTY_TEXT, "length": len(value)},
            )
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise PydanticCustomError(
                    "property_text", "a text value must be valid Unicode (no lone surrogate)"
                ) from None
        return value  # type: ignore[no-any-return]
    if kind is int:
        number = Decimal(value)
    elif kind is Decimal:
        number = value
    elif kind is float:
        if value != value or value in (float("inf"), float("-inf")):
            raise PydanticCustomError("property_number", "must be a finite number")
        raise PydanticCustomError(
            "property_number",
            "a float has already lost the number's digits: an exact number is an int or a Decimal",
        )
    elif kind is UnreadableNumber:
        raise PydanticCustomError("property_number", "a number's exponent is out of range")
    else:
        raise PydanticCustomError("property_value", "a property value must be a string or a number")
    try:
        return exact_property_number(number)
    except ValueError as exc:
        raise PydanticCustomError("property_number", str(exc)) from None


def _event_type(value: Any) -> str:
    if type(value) is not str or EVENT_TYPE.fullmatch(value) is None:
        raise PydanticCustomError(
            "event_type",
            "a type is query, embedding, storage or a usage type the catalog declares "
            "(1-64 characters of a-z, 0-9 and _, starting with a letter)",
        )
    return value


EventType = Annotated[str, PlainValidator(_event_type, json_schema_input_type=str)]


def _at_most_32(value: Any) -> Any:
    if isinstance(value, dict) and len(value) > MAX_PROPERTIES:
        raise PydanticCustomError(
            "too_many_properties",
            "an event carries at most {limit} properties, got {count}",
            {"limit": MAX_PROPERTIES, "count": len(value)},
        )
    return value


Properties = Annotated[
    dict[
        Annotated[str, PlainValidator(_property_name, json_schema_input_type=str)],
        Annotated[PropertyValue, PlainValidator(_property_value, json_schema_input_type=str | Decimal)],
    ],
    BeforeValidator(_at_most_32),
]


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
    properties: Properties = Field(default_factory=dict)

    _rfc3339 = field_validator("timestamp", mode="before")(rfc3339_field)

    @model_validator(mode="after")
    def _type_rules(self) -> UsageEvent:
        fields = self.__dict__  # the validated fields, read as a dict (once per event parsed)
        kind = fields["type"]
        tokens = fields["input_tokens"] + fields["output_tokens"]
        if kind == "query":  # the usual event: only the model rule applies to it
            if tokens and not fields["model"]:
                raise ValueError("model is required when tokens > 0")
            fields["queries"] = 1
            fields["key"] = (fields["tenant_id"], fields["event_id"])
            return self
        if kind == "storage" and tokens:
            raise ValueError("storage events carry bytes only, no tokens")
        if kind == "embedding" and fields["bytes"]:
            raise ValueError("embedding events carry tokens only, no bytes")
        if tokens and not fields["model"]:
            raise ValueError("model is required when tokens > 0")
        if kind not in _BUILT_IN_TYPES and (tokens or fields["bytes"] or fields["model"] is not None):
            # a declared type measures itself in properties, so it adds nothing to the built-in sums
            raise ValueError(f"{kind} events carry their measures in properties: no model, tokens or bytes")
        # the derived values ingest reads for every event, set now rather than by a first read
        fields["queries"] = 0
        fields["key"] = (fields["tenant_id"], fields["event_id"])
        return self

    @_once
    def queries(self) -> int:
        """1 for a query, else 0 (what the quota and the query tiers count)."""
        return 1 if self.type == "query" else 0

    @_once
    def key(self) -> tuple[str, str]:
        """``(tenant_id, event_id)`` (ingest looks events up by it many times)."""
        return (self.tenant_id, self.event_id)

    def __hash__(self) -> int:
        # pydantic's frozen hash covers every field, and ``properties`` is a dict; equal events have
        # equal identities, so hashing these alone is consistent with equality
        return hash((self.tenant_id, self.event_id, self.timestamp, self.type))

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> UsageEvent:
        copied = super().model_copy(update=update, deep=deep)
        for derived in ("key", "queries"):  # a copy with other fields must not keep this one's
            copied.__dict__.pop(derived, None)
        return copied

    def stored(self, cost_usd: Decimal, price_version: str, accepted_at: datetime) -> StoredEvent:
        """This event as it is written to usage_events, priced at event time."""
        return _new_stored(
            StoredEvent,
            (
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
                self.properties or NO_PROPERTIES,
            ),
        )


def _problem(index: int | None, field: str, reason: str) -> dict[str, Any]:
    return {"index": index, "field": field, "reason": reason}


def parse_event(raw: Any, index: int | None = None) -> tuple[UsageEvent | None, list[dict[str, Any]]]:
    if not isinstance(raw, dict):
        return None, [_problem(index, "event", "must be a JSON object")]
    try:
        return UsageEvent.model_validate(raw), []
    except ValidationError as exc:
        problems = validation_details(exc, index=index, root="event", with_index=True)
        for problem in problems:  # a bad property name is located at the name, not "<name>.[key]"
            problem["field"] = problem["field"].removesuffix(".[key]")
        return None, problems


def unknown_type(index: int | None, event_type: str, known: Collection[str]) -> dict[str, Any]:
    """The problem of an event whose ``type`` the catalog does not define, listing the ones it does."""
    return _problem(
        index, "type", f"unknown usage type {event_type!r}; the catalog defines {', '.join(sorted(known))}"
    )


def parse_batch(
    raw_events: list[Any], max_events: int, event_types: Collection[str] | None = None
) -> list[UsageEvent]:
    """Validate a whole batch; raise InvalidRequest listing every bad event if any is wrong. With
    ``event_types`` (the catalog's), an event of any other type is one of them."""
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
            if event_types is not None and event.type not in event_types:
                problems.append(unknown_type(index, event.type, event_types))
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
    body: str | bytes | None,
    content_type: str | None,
    *,
    max_bytes: int,
    max_events: int,
    event_types: Collection[str] | None = None,
) -> list[UsageEvent]:
    """An HTTP request body ``{"events": [...]}`` to validated events, or a typed 4xx (``event_types``:
    as for ``parse_batch``)."""
    require_json(content_type)
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else (body or b"")
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"request body is {len(raw)} bytes; the limit is {max_bytes}")
    document = parse_json(raw, index_key=True, exact_numbers=True)
    if not isinstance(document, dict) or "events" not in document:
        raise InvalidRequest(
            'body must be an object {"events": [...]}', details=[_problem(None, "events", "required")]
        )
    extra = sorted(set(document) - {"events"})
    if extra:
        raise InvalidRequest(
            "unknown top-level fields", details=[_problem(None, f, "unknown field") for f in extra]
        )
    return parse_batch(document["events"], max_events, event_types)


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
    properties: dict[str, PropertyValue] = NO_PROPERTIES
    """Text values (``str``) and exact numbers (``Decimal``) by name, as validated; never mutated
    (shared with the event it was made from, and empty rows share one empty dict)."""

    def split_properties(self) -> tuple[dict[str, str], dict[str, Decimal]]:
        """(text, numbers): the two maps ``usage_events`` and the fallback queue store them in."""
        text: dict[str, str] = {}
        numbers: dict[str, Decimal] = {}
        for name, value in self.properties.items():
            if type(value) is str:
                text[name] = value
            else:
                numbers[name] = value  # type: ignore[assignment]
        return text, numbers


# StoredEvent(*values) in C: a NamedTuple's own __new__ is a Python function taking each field
_new_stored: Callable[[type[StoredEvent], tuple[Any, ...]], StoredEvent] = tuple.__new__

# usage_events' columns and the fallback row's keys, in this order (one list: the tuple's fields)
STORED_FIELDS: tuple[str, ...] = StoredEvent._fields
