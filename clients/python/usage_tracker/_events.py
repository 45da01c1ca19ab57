"""Event ids, timestamps and the wire encoding of one event (one JSON line, exactly what the API takes).

Everything here runs on the caller's thread inside ``track()``, so it is written for speed: no
json.dumps of the whole event (identifiers are validated against a charset that needs no escaping),
a per-second cache of the formatted date, and a non-cryptographic random source for the id bits.
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
from datetime import datetime, timezone
from typing import Dict, Optional, Tuple

EVENT_TYPES = frozenset({"query", "embedding", "storage"})
# The server's identifier rule (docs/concepts/metering.md, "The wire format"): 1-128 characters of [A-Za-z0-9._:@/+=-].
_IDENTIFIER = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
_MAX_MODEL = 128
builtin_type = type  # encode_event has an argument named type, as the wire format does


class EventIds:
    """UUIDv7 (RFC 9562) ids: 48-bit Unix milliseconds, then a 12-bit counter, then 62 random bits.

    Invariant: ids made by one instance are strictly increasing as strings, even within one
    millisecond or when the wall clock steps back (the id's clock then stays at the last value).
    Uniqueness across processes rests on the 62 random bits (plus the counter's random start).
    """

    def __init__(self) -> None:
        self._rng = random.Random(os.urandom(16))
        self._last_ms = 0
        self._counter = 0
        self._lock = threading.Lock()

    def reseed(self) -> None:
        """After fork: the child must not repeat the parent's random stream."""
        self._rng = random.Random(os.urandom(16))
        self._lock = threading.Lock()

    def next(self, ms: int) -> str:
        with self._lock:
            if ms > self._last_ms:
                self._last_ms = ms
                self._counter = self._rng.getrandbits(10)  # random start, room left to count up
            else:
                self._counter += 1
                if self._counter > 0xFFF:  # 4096 ids in one millisecond: borrow the next one
                    self._last_ms += 1
                    self._counter = 0
            ms, counter = self._last_ms, self._counter
            rand = self._rng.getrandbits(62)
        return "%08x-%04x-%04x-%04x-%012x" % (
            ms >> 16,
            ms & 0xFFFF,
            0x7000 | counter,
            0x8000 | (rand >> 48),
            rand & 0xFFFFFFFFFFFF,
        )


class Clock:
    """RFC 3339 UTC timestamps with milliseconds, ``2025-11-03T12:00:00.123Z``."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def now(self) -> Tuple[int, str]:
        """(Unix milliseconds, formatted) for this instant."""
        ms = time.time_ns() // 1_000_000
        second = ms // 1000
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return ms, "%s.%03dZ" % (self._prefix, ms % 1000)


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


def encode_event(
    event_id: str,
    tenant_id: str,
    timestamp: str,
    type: str,
    model: Optional[str],
    input_tokens: int,
    output_tokens: int,
    nbytes: int,
) -> bytes:
    """Validate (the server's rules that can be checked without its price book) and encode one line.

    Raises ValueError naming the argument. The result is one JSON object and a newline.
    """
    check_identifier("tenant_id", tenant_id)
    if type not in EVENT_TYPES:
        raise ValueError(f"type must be one of query, embedding, storage, got {type!r}")
    tokens = _count("input_tokens", input_tokens) + _count("output_tokens", output_tokens)
    _count("bytes", nbytes)
    if model is not None and (builtin_type(model) is not str or not 1 <= len(model) <= _MAX_MODEL):
        raise ValueError(f"model must be a string of 1-128 characters, got {model!r}")
    if tokens and model is None:
        raise ValueError("model is required when tokens > 0")
    if type == "storage" and tokens:
        raise ValueError("storage events carry bytes only, no tokens")
    if type == "embedding" and nbytes:
        raise ValueError("embedding events carry tokens only, no bytes")
    model_part = "" if model is None else ',"model":' + _encoded_model(model)
    return (
        '{"event_id":"%s","tenant_id":"%s","timestamp":"%s","type":"%s"%s,'
        '"input_tokens":%d,"output_tokens":%d,"bytes":%d}\n'
        % (event_id, tenant_id, timestamp, type, model_part, input_tokens, output_tokens, nbytes)
    ).encode()
