"""Stored rows as JSON: one format for the fallback queue and the corrections, and the formats
written before it (literal examples of each) still read."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

from billing.metering.correction_rows import public_version
from billing.metering.events import StoredEvent
from billing.metering.fallback import decode_block, encode_block
from billing.metering.row_json import decode_row, encode_row

ROW = StoredEvent(
    tenant_id="acme-corp",
    event_id="e1",
    timestamp=datetime(2025, 11, 20, tzinfo=UTC),
    type="query",
    model="gpt-4o",
    queries=1,
    input_tokens=100,
    output_tokens=20,
    bytes=0,
    cost_usd=Decimal("0.001250"),
    price_version="2025-10-01",
    accepted_at=datetime(2025, 11, 20, 0, 0, 1, 250000, tzinfo=UTC),
    properties={"region": "eu", "seconds": Decimal("1.50")},
)

# A fallback queue message as it was written before the formats were merged (and still is).
OLD_FALLBACK_MESSAGE = (
    '{"batch_id":"b-1","events":[{"tenant_id":"acme-corp","event_id":"e1",'
    '"timestamp":"2025-11-20T00:00:00Z","type":"query","model":"gpt-4o","queries":1,'
    '"input_tokens":100,"output_tokens":20,"bytes":0,"cost_usd":"0.001250",'
    '"price_version":"2025-10-01","accepted_at":"2025-11-20T00:00:01.250Z",'
    '"string_properties":{"region":"eu"},"number_properties":{"seconds":"1.50"}}]}'
)
# A correction's row as plans and event states in DynamoDB held it before the formats were merged:
# no tenant nor acceptance time, one properties map with each number as {"number": text}.
OLD_CORRECTION_ROW = {
    "event_id": "e1",
    "timestamp": "2025-11-20T00:00:00Z",
    "type": "query",
    "model": "gpt-4o",
    "queries": 1,
    "input_tokens": 100,
    "output_tokens": 20,
    "bytes": 0,
    "cost_usd": "0.001250",
    "price_version": "2025-10-01",
    "properties": {"region": "eu", "seconds": {"number": "1.50"}},
}


def test_a_row_round_trips_digit_for_digit() -> None:
    # Given a row with a text and a number property
    # When it is encoded (through JSON text, as both stores keep it) and decoded
    decoded = decode_row(json.loads(json.dumps(encode_row(ROW))))
    # Then it is the row, each number with its digits
    assert decoded == ROW
    assert str(decoded.cost_usd) == "0.001250" and str(decoded.properties["seconds"]) == "1.50"


def test_a_fallback_message_of_the_old_format_is_replayed_as_written() -> None:
    # Given a message queued before the formats were merged
    # When it is decoded
    rows = decode_block(OLD_FALLBACK_MESSAGE)
    # Then it is the row it carried, and a block of that row is queued in the very same format
    assert rows == [ROW]
    assert encode_block("b-1", rows) == OLD_FALLBACK_MESSAGE


def test_a_correction_row_of_the_old_format_still_decodes_with_its_reader_tenant_and_time() -> None:
    # Given a correction's row stored before the formats were merged, and the correction's time
    accepted = datetime(2025, 11, 21, 9, tzinfo=UTC)
    # When it is decoded for its tenant at that time
    row = decode_row(OLD_CORRECTION_ROW, tenant_id="acme-corp", accepted_at=accepted)
    # Then it is the row, accepted at the correction, numbers digit for digit
    assert row == ROW._replace(accepted_at=accepted)
    assert str(row.properties["seconds"]) == "1.50"
    # And a row of the new format decoded the same way gives the same row
    assert decode_row(encode_row(ROW), tenant_id="acme-corp", accepted_at=accepted) == row


def test_the_audit_trail_shows_a_version_the_same_in_either_format() -> None:
    # Given the same version stored in the old corrections format and in the current one
    # When the audit trail shows each
    old, new = public_version(OLD_CORRECTION_ROW), public_version(encode_row(ROW))
    # Then both read alike, numbers as text
    assert old == new
    assert new == {
        "model": "gpt-4o",
        "input_tokens": 100,
        "output_tokens": 20,
        "bytes": 0,
        "cost_usd": "0.001250",
        "price_version": "2025-10-01",
        "properties": {"region": "eu", "seconds": "1.50"},
    }
