"""``billing simulate`` refuses input files it cannot simulate as they are meant: a tenants file in
another shape, an events line that is not an event. Exit 2, the file, the record or line,
and the expected shape named; no CSV written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from billing_cli import _load, app
from tests.conftest import CHDB_PATH

DATA = Path(__file__).resolve().parent / "data"
BOX = {ord(c): " " for c in "│╭╮╰╯─"}
EVENT = {"event_id": "e1", "tenant_id": "steady", "timestamp": "2025-11-02T00:00:00Z", "type": "query"}


@pytest.fixture
def simulate(tmp_path, monkeypatch):
    monkeypatch.setenv("CLICKHOUSE_URL", f"chdb://{CHDB_PATH}")
    _load()

    def run(tenants: str, events: list[str], *extra: str):
        (tmp_path / "tenants.yaml").write_text(tenants)
        (tmp_path / "events.jsonl").write_text("".join(line + "\n" for line in events))
        args = ["simulate", "--tenants", str(tmp_path / "tenants.yaml")]
        args += ["--events", str(tmp_path / "events.jsonl"), "--month", "2025-11"]
        args += ["--out", str(tmp_path / "out.csv"), "--plans", str(DATA / "plans.yaml"), *extra]
        result = CliRunner().invoke(app, args, catch_exceptions=False)
        # the usage error is boxed and wrapped: the words, without the box
        text = " ".join(result.output.translate(BOX).split())
        return result, text, tmp_path / "out.csv"

    return run


def test_a_tenants_file_in_the_post_v1_tenants_shape_is_refused(simulate):
    # Given a tenant written as the POST /v1/tenants body takes it (`plan`, not a `plans` history)
    tenants = "tenants:\n  - {id: steady, name: Steady, email: a@steady.example, plan: basic}\n"
    # When it is simulated
    result, text, out = simulate(tenants, [json.dumps(EVENT)])
    # Then the run is refused, naming the record, the key and the shape expected; nothing is written
    assert result.exit_code == 2  # a usage error: a bad --tenants or --events
    assert "tenant #0 (id steady)" in text and "unknown key(s) plan" in text
    assert "plans: [{plan: starter, effective_at:" in text
    assert "accepted" not in text and not out.exists()


def test_a_tenant_record_that_is_not_a_mapping_is_refused(simulate):
    result, text, out = simulate("tenants:\n  - steady\n", [json.dumps(EVENT)])
    assert result.exit_code == 2  # a usage error: a bad --tenants or --events
    assert "tenant #0: not a mapping" in text and not out.exists()


GOOD_TENANTS = "tenants:\n  - {id: steady, plans: [{plan: basic, effective_at: '2025-10-01T00:00:00Z'}]}\n"


@pytest.mark.parametrize(
    "line,reason",
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({"id": "steady", "plan": "basic"}), "event_id"),  # a tenant record, not an event
        (json.dumps({**EVENT, "event_id": "e2", "input_tokens": -1}), "input_tokens"),
    ],
    ids=["not json", "not an object", "no tenant", "bad field"],
)
@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_events_line_that_is_not_an_event_is_refused(simulate, line, reason, workers):
    # Given an events file whose second line is not a valid event
    events = [json.dumps(EVENT), line, json.dumps({**EVENT, "event_id": "e3"})]
    # When it is simulated (in one process, and shared among workers)
    result, text, out = simulate(GOOD_TENANTS, events, "--workers", workers)
    # Then the run is refused, naming the line, what is wrong with it and the shape expected
    assert result.exit_code == 2  # a usage error: a bad --tenants or --events
    assert "events file line 2" in text and reason in text, text
    assert "one usage event per line" in text and not out.exists()


def test_events_with_properties_simulate_as_the_same_events_without(simulate, tmp_path):
    # Given the same events twice: plain, and carrying properties (fractions, 38 digits, text)
    plain = [
        json.dumps({**EVENT, "event_id": f"e{i}", "timestamp": f"2025-11-0{i + 2}T00:00:00Z"})
        for i in range(3)
    ]
    tagged = [
        line[:-1]
        + ', "properties": {"region": "eu", "seconds": 0.1, "big": 12345678901234567890.123456789012345678}}'
        for line in plain
    ]
    # When each is simulated, Then both are accepted and the statements are identical
    result, _, out = simulate(GOOD_TENANTS, plain)
    assert result.exit_code == 0, result.output
    expected = out.read_text()
    result, _, out = simulate(GOOD_TENANTS, tagged)
    assert result.exit_code == 0, result.output
    assert out.read_text() == expected


def test_an_event_with_a_bad_property_is_refused_naming_it(simulate):
    events = [
        json.dumps(EVENT),
        json.dumps(EVENT)[:-1].replace('"e1"', '"e2"') + ', "properties": {"n": 1e-19}}',
    ]
    result, text, out = simulate(GOOD_TENANTS, events)
    assert result.exit_code == 2
    assert "events file line 2" in text and "properties.n" in text and "18 digits" in text, text
    assert not out.exists()
