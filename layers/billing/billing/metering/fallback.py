"""The usage fallback path: how a block that ClickHouse did not take travels through SQS and is replayed.

Invariants: a batch is cut into blocks that each fit one SQS message; the same blocks are inserted and
queued, so a replay carries the same insert dedup token (billing.metering.exactly_once.block_token) as the
original attempt; a replay skips events already stored, so it never counts anything twice.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from itertools import repeat
from operator import attrgetter
from typing import Any, Protocol

from billing.kernel.periods import iso
from billing.metering.events import StoredEvent
from billing.metering.row_json import ROW_FIELDS, decode_row, encode_row, encoded_properties

MAX_MESSAGE_BYTES = 200_000  # SQS allows 256 KiB; leave room for attributes and JSON escaping
# What json.dumps(encode_row(row)) writes besides the values: braces, quoted keys, separators.
_ROW_OVERHEAD = len(json.dumps(dict.fromkeys(ROW_FIELDS, 0))) - len(ROW_FIELDS)
_PLAIN = re.compile(r"[ !#-\[\]-~]*")  # what json.dumps writes as itself (no quote, backslash, escape)


class ReplayStore(Protocol):
    def existing_event_ids(self, tenant_id: str, event_ids: list[str]) -> set[str]: ...

    def insert_events(self, events: list[StoredEvent]) -> None: ...


def blocks(rows: list[StoredEvent]) -> list[list[StoredEvent]]:
    """Split rows into blocks that each fit in one SQS message (the same blocks are inserted and
    queued, so a replay carries the same insert dedup token as the original attempt): a block ends
    before the row that would take the sum of ``encoded_size`` (plus 2 a row) past the limit."""
    out: list[list[StoredEvent]] = []
    start, size = 0, 0
    for i, row_size in enumerate(encoded_sizes(rows)):
        if i > start and size + row_size > MAX_MESSAGE_BYTES:
            out.append(rows[start:i])
            start, size = i, 0
        size += row_size + 2
    if start < len(rows):
        out.append(rows[start:])
    return out


def encoded_sizes(rows: Sequence[StoredEvent]) -> list[int]:
    """``encoded_size`` of each row, column by column: a column of plain text, of ints or of UTC
    instants is sized without a Python call per value; any other column value by value."""
    if not rows:
        return []
    columns = {name: list(map(attrgetter(name), rows)) for name in ROW_FIELDS}
    sizes: list[Any] = [
        _text_sizes(columns[name]) for name in ("tenant_id", "event_id", "type", "model", "price_version")
    ]
    sizes.append(_text_sizes(tuple(map(str, columns["cost_usd"]))))
    for name in ("queries", "input_tokens", "output_tokens", "bytes"):
        column = columns[name]
        exact = set(map(type, column)) == _INT
        sizes.append(map(len, map(int.__repr__, column)) if exact else map(_json_size, column))
    sizes += [_instant_sizes(columns[name]) for name in ("timestamp", "accepted_at")]
    if any(map(_PROPERTIES, rows)):
        sizes.append(map(_properties_size, rows))
    return list(map(sum, zip(repeat(_ROW_OVERHEAD), *sizes)))


_PROPERTIES = attrgetter("properties")


def _properties_size(row: StoredEvent) -> int:
    """What a row's properties add to its JSON: ``, "key": {...}`` per non-empty map."""
    if not row.properties:
        return 0
    return sum(len(key) + 6 + len(json.dumps(value)) for key, value in encoded_properties(row).items())


_INT, _STR, _DATETIME, _UTC = {int}, {str}, {datetime}, {UTC}


def _instant_sizes(values: Sequence[Any]) -> Iterable[int]:
    if (
        set(map(type, values)) == _DATETIME
        and set(map(_TZINFO, values)) == _UTC
        and min(map(_YEAR, values)) >= 1000
    ):
        return [26 if v.microsecond else 22 for v in values]  # as _instant_size says
    return map(_instant_size, values)


def _text_sizes(values: Sequence[Any]) -> Iterable[int]:
    if set(map(type, values)) == _STR and _PLAIN.fullmatch("".join(values)):
        return map(_QUOTED, map(len, values))  # every character written as itself, in quotes
    return map(_json_size, values)


_TZINFO, _YEAR = attrgetter("tzinfo"), attrgetter("year")
_QUOTED = (2).__add__


def encoded_size(row: StoredEvent) -> int:
    """``len(json.dumps(encode_row(row)))``, the size ``blocks`` cuts by, without building the JSON:
    the fixed part plus each value's JSON length, computed from the value itself."""
    values = (row.tenant_id, row.event_id, row.type, row.model, str(row.cost_usd), row.price_version)
    numbers = (row.queries, row.input_tokens, row.output_tokens, row.bytes)
    return (
        _ROW_OVERHEAD
        + sum(map(_json_size, values + numbers))
        + _instant_size(row.timestamp)
        + _instant_size(row.accepted_at)
        + _properties_size(row)
    )


def _json_size(value: object) -> int:
    """``len(json.dumps(value))``."""
    if type(value) is str:
        return len(value) + 2 if _PLAIN.fullmatch(value) else len(json.dumps(value))
    if type(value) is int:
        return len(int.__repr__(value))
    return len(json.dumps(value))


def _instant_size(value: datetime) -> int:
    """``len(json.dumps(iso(value)))``: a UTC instant of a four-digit year is 2025-11-03T12:00:00Z,
    with .mmm before the Z when it has a fraction of a second."""
    if type(value) is datetime and value.tzinfo is UTC and value.year >= 1000:
        return 26 if value.microsecond else 22
    return len(iso(value)) + 2


def encode_block(batch_id: str, block: list[StoredEvent]) -> str:
    return json.dumps({"batch_id": batch_id, "events": [encode_row(r) for r in block]}, separators=(",", ":"))


def decode_block(body: str) -> list[StoredEvent]:
    return [decode_row(r) for r in json.loads(body)["events"]]


def replay_block(body: str, store: ReplayStore) -> int:
    """Store a queued block. Events already in ClickHouse (the original insert did land) are skipped,
    and the block keeps its original dedup token, so a replay never counts anything twice."""
    rows = decode_block(body)
    by_tenant: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        by_tenant[row.tenant_id].append(row.event_id)
    present = {(t, e) for t, ids in by_tenant.items() for e in store.existing_event_ids(t, ids)}
    missing = [r for r in rows if (r.tenant_id, r.event_id) not in present]
    if len(missing) == len(rows):
        store.insert_events(rows)
    elif missing:
        store.insert_events(missing)
    return len(missing)
