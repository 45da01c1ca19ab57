"""Event ids, timestamps and the wire encoding of one event (one JSON line, exactly what the API takes).

Everything here runs on the caller's thread inside ``track()``, so it is written for speed: no
json.dumps of the whole event (identifiers are validated against a charset that needs no escaping),
a template per (tenant, type, model) validated once, the formatted timestamp cached per millisecond,
and the id's random bits made in bulk beforehand (``EventIds.top_up``, on the sender thread).
Validation and encoding stay on the caller's thread: ``track()`` raises ValueError for a bad
argument, and the encoded line must be in the spool before it returns.
"""

from __future__ import annotations

import json
import os
import random
import re
import struct
import threading
import time
import weakref
from datetime import datetime, timezone
from decimal import Decimal, localcontext
from typing import Any, Dict, List, Mapping, Optional, Tuple

# ``type`` is a built-in type or one the server's catalog declares (gpu_job, image ...): the tracker
# cannot know the catalog, so it checks the name's shape only; the server refuses an undeclared one.
BUILT_IN_TYPES = frozenset({"query", "embedding", "storage"})
EVENT_TYPE = re.compile(r"[a-z][a-z0-9_]{0,63}")
# The server's identifier rule (docs/concepts/metering.md, "The wire format"): 1-128 characters of [A-Za-z0-9._:@/+=-].
_IDENTIFIER = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
_MAX_MODEL = 128
builtin_type = type  # encode_event has an argument named type, as the wire format does
# The server's property rules (docs/metering.md, "Event properties"): at most 32, named
# [a-z][a-z0-9_]{0,63}; text of at most 256 characters or a number ClickHouse's Decimal(38, 18)
# holds exactly (below 10^20 in magnitude, nothing past the 18th fractional digit).
MAX_PROPERTIES = 32
_PROPERTY_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_MAX_PROPERTY_TEXT = 256
_NUMBER_LIMIT = Decimal(10) ** 20
_QUANTUM = Decimal(1).scaleb(-18)


# The id's fourth and fifth groups (variant 10, then 62 random bits) are made in bulk, off the
# caller's thread where possible: one 8-byte word of os.urandom is one tail.
_TAIL_CAPACITY = 4096  # tails kept ready; about one second of a busy process's events
_TAIL_CHUNK = 1024  # tails made per top_up() call (holds the GIL for that long: a few hundred us)
# "7xxx-": the version nibble and the 12-bit counter, one string per counter value.
_VERSION_COUNTER = tuple("7%03x-" % counter for counter in range(0x1000))
_live_ids: weakref.WeakSet[EventIds] = weakref.WeakSet()


def make_tails(count: int) -> List[str]:
    """``count`` id tails, ``"%04x-%012x"`` of variant 0b10 and 62 bits of os.urandom each."""
    words = struct.unpack(">%dQ" % count, os.urandom(8 * count))
    return ["%04x-%012x" % (0x8000 | word >> 50, word & 0xFFFFFFFFFFFF) for word in words]


class EventIds:
    """UUIDv7 (RFC 9562) ids: 48-bit Unix milliseconds, then a 12-bit counter, then 62 random bits.

    Invariant: ids made by one instance are strictly increasing as strings, even within one
    millisecond or when the wall clock steps back (the id's clock then stays at the last value).
    Uniqueness across processes rests on the 62 random bits (plus the counter's random start).

    The random bits come from os.urandom, fetched and formatted in bulk by ``top_up()`` (the
    tracker's sender thread calls it), so ``next()`` pops a ready tail and makes no system call (one
    would let go of the GIL on the caller's thread). When none is ready it formats bits of a
    ``random.Random`` seeded from os.urandom instead. A forked child drops the tails and reseeds
    before it runs any Python code (``os.register_at_fork``), so it never repeats the parent's bits.
    """

    def __init__(self) -> None:
        self._rng = random.Random(os.urandom(16))
        self._last_ms = 0
        self._counter = 0
        self._prefix = ""  # "%08x-%04x-" of _last_ms
        self._tails: List[str] = []
        self._lock = threading.Lock()
        _live_ids.add(self)

    def reseed(self) -> None:
        """After fork: the child must not repeat the parent's random stream or its ready tails."""
        self._tails = []
        self._rng = random.Random(os.urandom(16))
        self._lock = threading.Lock()

    def ready(self) -> int:
        """How many tails are made and waiting."""
        return len(self._tails)

    def top_up(self, chunk: int = _TAIL_CHUNK, capacity: int = _TAIL_CAPACITY) -> None:
        """Make up to ``chunk`` tails while fewer than ``capacity`` are ready (not on the caller's
        thread: it reads os.urandom)."""
        tails = self._tails
        missing = min(chunk, capacity - len(tails))
        if missing > 0:
            # list.extend is one atomic step: a concurrent pop() sees the list before or after it;
            # after a fork the child holds a new list, so a top-up begun before it never reaches it
            tails.extend(make_tails(missing))

    def next(self, ms: int) -> str:
        with self._lock:
            if ms > self._last_ms:
                self._last_ms = ms
                self._prefix = "%08x-%04x-" % (ms >> 16, ms & 0xFFFF)
                counter = self._rng.getrandbits(10)  # random start, room left to count up
            else:
                counter = self._counter + 1
                if counter > 0xFFF:  # 4096 ids in one millisecond: borrow the next one
                    ms = self._last_ms = self._last_ms + 1
                    self._prefix = "%08x-%04x-" % (ms >> 16, ms & 0xFFFF)
                    counter = 0
            self._counter = counter
            prefix = self._prefix
            tails = self._tails
            if tails:
                tail = tails.pop()
            else:
                rand = self._rng.getrandbits(62)
                tail = "%04x-%012x" % (0x8000 | rand >> 48, rand & 0xFFFFFFFFFFFF)
        return prefix + _VERSION_COUNTER[counter] + tail


def _reseed_after_fork() -> None:
    for ids in list(_live_ids):
        ids.reseed()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed_after_fork)

# ".000Z" ... ".999Z": the milliseconds of a timestamp, one string per value.
_MILLIS = tuple(".%03dZ" % millis for millis in range(1000))


class Clock:
    """RFC 3339 UTC timestamps with milliseconds, ``2025-11-03T12:00:00.123Z``.

    Its state is two tuples, each read and replaced whole, so a thread never pairs one
    millisecond (or second) with another's text."""

    def __init__(self) -> None:
        self._second: Tuple[int, str] = (-1, "")  # (Unix second, "%Y-%m-%dT%H:%M:%S")
        self._last: Tuple[int, str] = (-1, "")  # (Unix ms, formatted) of the last call

    def now(self) -> Tuple[int, str]:
        """(Unix milliseconds, formatted) for this instant."""
        ms = time.time_ns() // 1_000_000
        last = self._last
        if last[0] == ms:
            return last
        second = ms // 1000
        cached = self._second
        if cached[0] != second:
            cached = self._second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        last = self._last = (ms, cached[1] + _MILLIS[ms % 1000])
        return last


def format_timestamp(value: datetime) -> str:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must be a timezone-aware datetime")
    utc = value.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % (utc.microsecond // 1000)


_model_json: Dict[str, str] = {}


def _encoded_model(model: str) -> str:
    encoded = _model_json.get(model)
    if encoded is None:
        encoded = json.dumps(model)
        if len(_model_json) < 1024:
            _model_json[model] = encoded
    return encoded


def check_identifier(name: str, value: object) -> str:
    if type(value) is not str or _IDENTIFIER.fullmatch(value) is None:
        raise ValueError(f"{name} must be 1-128 characters of [A-Za-z0-9._:@/+=-], got {value!r}")
    return value


def _count(name: str, value: object) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return value


def _number_text(name: str, value: Any) -> str:
    """A number property as the JSON text of its exact value (a float: its shortest repr, the
    digits ``repr()`` shows, which is what reaches the server)."""
    kind = builtin_type(value)
    if kind is int:
        number = Decimal(value)
    elif kind is Decimal:
        number = value
    elif kind is float:
        number = Decimal(repr(value)) if value == value and abs(value) != float("inf") else Decimal("NaN")
    else:
        raise ValueError(f"property {name!r} must be a str, int, Decimal or float, got {value!r}")
    if not number.is_finite():
        raise ValueError(f"property {name!r} must be a finite number, got {value!r}")
    if number.copy_abs() >= _NUMBER_LIMIT:
        raise ValueError(f"property {name!r} must be below 10^20 in magnitude, got {value!r}")
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -18:
        with localcontext() as ctx:
            ctx.prec = 80
            if number.quantize(_QUANTUM) != number:
                raise ValueError(f"property {name!r} has more than 18 digits after the point: {value!r}")
    return str(number)


def encode_properties(properties: Optional[Mapping[str, Any]]) -> str:
    """``,"properties":{...}`` for an event's properties ('' for None or none): validated by the
    server's rules, so a batch is never refused for them. Raises ValueError naming the property."""
    if properties is None:
        return ""
    if not isinstance(properties, Mapping):
        raise ValueError(f"properties must be a mapping of names to values, got {properties!r}")
    if len(properties) > MAX_PROPERTIES:
        raise ValueError(f"an event carries at most {MAX_PROPERTIES} properties, got {len(properties)}")
    parts = []
    for name, value in properties.items():
        if builtin_type(name) is not str or _PROPERTY_NAME.fullmatch(name) is None:
            raise ValueError(
                f"property names are 1-64 characters of a-z, 0-9 and _, starting with a letter; got {name!r}"
            )
        if builtin_type(value) is str:
            if len(value) > _MAX_PROPERTY_TEXT:
                raise ValueError(f"property {name!r} holds at most 256 characters, got {len(value)}")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"property {name!r} is not valid Unicode (a lone surrogate)") from None
            parts.append('"%s":%s' % (name, json.dumps(value)))
        else:
            parts.append('"%s":%s' % (name, _number_text(name, value)))
    return ',"properties":{%s}' % ",".join(parts) if parts else ""


# (tenant_id, type, model) already validated -> (the line's template, its type's rule): most calls
# repeat a few combinations, so their checks run once and their text is formatted once. Bounded:
# past it, checked and built every call.
_SHAPES: Dict[Tuple[Any, Any, Any], Tuple[str, int]] = {}
_MAX_SHAPES = 4096
# The rule of a shape's type on the counts; _NO_MODEL is added when the model is None (tokens must
# then be 0). A shape whose kind is _ANY (a query with a model, the common call) needs no check past
# "non-negative ints".
_ANY, _STORAGE, _EMBEDDING, _DECLARED, _NO_MODEL = 0, 1, 2, 3, 4


def _shape(tenant_id: Any, type: Any, model: Any) -> Tuple[str, int]:
    """The template of a line of this shape: ``%`` placeholders for the event id, the timestamp, the
    three counts and the properties part, in the wire format's fixed field order."""
    check_identifier("tenant_id", tenant_id)
    if builtin_type(type) is not str or (type not in BUILT_IN_TYPES and EVENT_TYPE.fullmatch(type) is None):
        raise ValueError(
            "type must be query, embedding, storage or a usage type the catalog declares "
            f"(1-64 characters of a-z, 0-9 and _, starting with a letter), got {type!r}"
        )
    if model is not None and (builtin_type(model) is not str or not 1 <= len(model) <= _MAX_MODEL):
        raise ValueError(f"model must be a string of 1-128 characters, got {model!r}")
    kind = {"storage": _STORAGE, "embedding": _EMBEDDING}.get(type, _ANY)
    if type not in BUILT_IN_TYPES:
        kind = _DECLARED
    if model is None:
        kind |= _NO_MODEL
    # tenant_id and type hold no "%" (their charsets); the model's JSON text may
    model_part = "" if model is None else ',"model":' + _encoded_model(model).replace("%", "%%")
    template = (
        '{"event_id":"%s","tenant_id":"'
        + tenant_id
        + '","timestamp":"%s","type":"'
        + type
        + '"'
        + model_part
        + ',"input_tokens":%d,"output_tokens":%d,"bytes":%d%s}\n'
    )
    return template, kind


def _check_counts(
    kind: int, type: str, model: Any, input_tokens: Any, output_tokens: Any, nbytes: Any
) -> None:
    """The count rules: non-negative ints, and what the event's type allows (ValueError)."""
    tokens = _count("input_tokens", input_tokens) + _count("output_tokens", output_tokens)
    _count("bytes", nbytes)
    if tokens and model is None:
        raise ValueError("model is required when tokens > 0")
    kind &= ~_NO_MODEL
    if kind == _STORAGE and tokens:
        raise ValueError("storage events carry bytes only, no tokens")
    if kind == _EMBEDDING and nbytes:
        raise ValueError("embedding events carry tokens only, no bytes")
    if kind == _DECLARED and (tokens or nbytes or model is not None):
        raise ValueError(f"{type} events carry their measures in properties: no model, tokens or bytes")


def encode_event(
    event_id: str,
    tenant_id: str,
    timestamp: str,
    type: str,
    model: Optional[str],
    input_tokens: int,
    output_tokens: int,
    nbytes: int,
    properties: Optional[Mapping[str, Any]] = None,
) -> bytes:
    """Validate (the server's rules that can be checked without its price book) and encode one line.

    Raises ValueError naming the argument. The result is one JSON object and a newline, ASCII only.
    """
    key = (tenant_id, type, model)
    try:
        shape = _SHAPES.get(key)
    except TypeError:  # an unhashable argument: _shape names it
        shape = None
    if shape is None or builtin_type(tenant_id) is not str or builtin_type(type) is not str:
        shape = _shape(tenant_id, type, model)
        if len(_SHAPES) < _MAX_SHAPES:
            _SHAPES[key] = shape
    template, kind = shape
    if (
        kind
        or builtin_type(input_tokens) is not int
        or builtin_type(output_tokens) is not int
        or builtin_type(nbytes) is not int
        or input_tokens < 0
        or output_tokens < 0
        or nbytes < 0
    ):
        _check_counts(kind, type, model, input_tokens, output_tokens, nbytes)
    return (
        template
        % (
            event_id,
            timestamp,
            input_tokens,
            output_tokens,
            nbytes,
            "" if properties is None else encode_properties(properties),
        )
    ).encode()
