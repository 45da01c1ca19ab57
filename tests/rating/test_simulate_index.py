"""The events file's line index (made once by the parent for its workers) reads as the file does."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from billing_local.simulation import (
    LineIndex,
    SimulationInputError,
    SimulationReport,
    read_lines,
    tenant_of_line,
)


def test_the_index_names_each_lines_tenant_and_reads_the_same_lines(tmp_path):
    # Given an events file with blank lines, lines naming no tenant, escapes and two tenants
    lines = [
        json.dumps({"tenant_id": "acme", "event_id": "e-1"}),
        "",
        "   ",
        json.dumps({"tenant_id": "beta", "event_id": "e-2"}),
        "not json",
        json.dumps({"event_id": "e-3"}),
        json.dumps({"tenant_id": "acme", "event_id": "e-\\u0034"}),
        json.dumps({"tenant_id": 7, "event_id": "e-5"}),
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    # When it is indexed, Then the counts are the non-empty lines per tenant
    index = LineIndex.of(path)
    expected = Counter(tenant_of_line(line.encode()) for line in lines if line.strip())
    assert index.counts() == expected == Counter({"acme": 2, "beta": 1, None: 3})
    # And reading with the index keeps exactly the lines (and reports) reading without it does
    for owns in (lambda t: True, lambda t: t == "acme", lambda t: t == "beta", lambda t: t in ("beta", None)):
        plain, indexed = SimulationReport(month="2025-11"), SimulationReport(month="2025-11")
        if owns(None):
            # a line naming no tenant is not an event: both refuse the run at the same first line
            with pytest.raises(SimulationInputError) as without_index:
                read_lines(path, plain, owns)
            with pytest.raises(SimulationInputError) as indexed_error:
                read_lines(path, indexed, owns, index)
            assert str(indexed_error.value) == str(without_index.value)
            assert str(without_index.value).startswith("events file line 5: not JSON")
            continue
        without = read_lines(path, plain, owns)
        with_index = read_lines(path, indexed, owns, index)
        assert {t: (list(g.numbers), g.raw) for t, g in with_index.items()} == {
            t: (list(g.numbers), g.raw) for t, g in without.items()
        }
        assert (indexed.events_read, indexed.rejected, indexed.examples) == (
            plain.events_read,
            plain.rejected,
            plain.examples,
        )
