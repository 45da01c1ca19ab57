"""Fallback blocks: the size they are cut by is json.dumps of each row, computed without the JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from billing.metering.events import StoredEvent
from billing.metering.fallback import (
    MAX_MESSAGE_BYTES,
    blocks,
    decode_block,
    encode_block,
    encoded_size,
    encoded_sizes,
)
from billing.metering.row_json import PROPERTY_KEYS, ROW_FIELDS, encode_row

_instants = st.one_of(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)),
    st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2099, 12, 31),
        timezones=st.sampled_from([timezone(timedelta(hours=-5)), timezone(timedelta(0))]),
    ),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)),  # naive
)
_text = st.one_of(st.text(max_size=40), st.from_regex(r"[A-Za-z0-9._:@/+=-]{1,40}", fullmatch=True))
_properties = st.one_of(
    st.just({}),
    st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9_]{0,63}", fullmatch=True),
        st.one_of(
            st.text(max_size=256).filter(lambda t: not any(0xD800 <= ord(c) < 0xE000 for c in t)),
            st.decimals(min_value=-(10**20) + 1, max_value=10**20 - 1, places=18, allow_nan=False),
            st.integers(-(10**19), 10**19).map(Decimal),
        ),
        max_size=32,
    ),
)
_rows = st.builds(
    StoredEvent,
    tenant_id=_text,
    event_id=_text,
    timestamp=_instants,
    type=st.sampled_from(["query", "embedding", "storage"]),
    model=st.one_of(st.just(""), _text),
    queries=st.integers(0, 1),
    input_tokens=st.integers(0, 10**12),
    output_tokens=st.integers(0, 10**12),
    bytes=st.integers(0, 10**15),
    cost_usd=st.decimals(min_value=0, max_value=10**9, places=9, allow_nan=False),
    price_version=_text,
    accepted_at=_instants,
    properties=_properties,
)


def _blocks_by_json(rows: list[StoredEvent]) -> list[list[StoredEvent]]:
    """The cut as first written: each row's size is the length of its JSON."""
    out: list[list[StoredEvent]] = []
    current: list[StoredEvent] = []
    size = 0
    for row in rows:
        row_size = len(json.dumps(encode_row(row)))
        if current and size + row_size > MAX_MESSAGE_BYTES:
            out.append(current)
            current, size = [], 0
        current.append(row)
        size += row_size + 2
    if current:
        out.append(current)
    return out


@settings(deadline=None)  # a shared machine: timings vary, the property does not
@given(_rows)
def test_a_rows_size_is_the_length_of_its_json(row):
    # Given any row (any text, escapes and non-ASCII included, any time zone)
    # When its size is computed, Then it is the length of json.dumps of its encoding
    text, numbers = row.split_properties()
    present = tuple(k for k, v in zip(PROPERTY_KEYS, (text, numbers)) if v)
    assert tuple(encode_row(row)) == ROW_FIELDS + present
    assert encoded_size(row) == len(json.dumps(encode_row(row)))


@settings(deadline=None)  # a shared machine: timings vary, the property does not
@given(st.lists(_rows, min_size=1, max_size=5))
def test_a_queued_block_decodes_to_its_rows_properties_and_all(rows):
    # Given rows with any properties (exact numbers of up to 38 digits, any text)
    # When they are queued and read back, Then every property comes back with its type and exact value
    decoded = decode_block(encode_block("b-1", rows))

    def typed(row: StoredEvent) -> dict:
        return {name: (type(value), value) for name, value in row.properties.items()}

    assert [typed(r) for r in decoded] == [typed(r) for r in rows]
    # And a row without properties is queued without any property key, as before
    assert all(set(PROPERTY_KEYS).isdisjoint(encode_row(r)) for r in rows if not r.properties)


@settings(deadline=None)  # a shared machine: timings vary, the property does not
@given(st.lists(_rows, max_size=8), st.lists(_rows, max_size=3))
def test_rows_sized_by_column_are_sized_as_one_by_one(plain, rows):
    # Given rows, some of them sharing values (column passes) and some not
    batch = plain + rows + plain
    # When they are sized column by column, Then each size is the row's own
    assert encoded_sizes(batch) == [encoded_size(r) for r in batch]


@settings(deadline=None)  # a shared machine: timings vary, the property does not
@given(st.lists(_rows, max_size=5), st.integers(300, 3_000))
def test_blocks_are_cut_where_the_json_sizes_cut_them(sample, copies):
    # Given a batch of rows, large enough to need several blocks
    rows = [
        StoredEvent(**{**{f: getattr(r, f) for f in ROW_FIELDS}, "event_id": f"e-{i}"})
        for i in range(copies)
        for r in sample[:1]
    ] + sample
    # When it is cut into blocks, Then the blocks are those the rows' JSON lengths give
    assert blocks(rows) == _blocks_by_json(rows)


def test_a_block_of_plain_rows_fits_one_message():
    # Given 5,000 typical rows
    now = datetime(2025, 11, 3, 12, tzinfo=UTC)
    rows = [
        StoredEvent("acme", f"e-{i}", now, "query", "gpt-4o", 1, 1200, 300, 0, Decimal("0.0123"), "v1", now)
        for i in range(5_000)
    ]
    # When they are cut, Then every block's JSON (as queued) fits the message limit, and none is lost
    cut = blocks(rows)
    assert len(cut) > 1 and sum(map(len, cut)) == len(rows)
    assert all(len(json.dumps([encode_row(r) for r in b])) <= MAX_MESSAGE_BYTES for b in cut)
