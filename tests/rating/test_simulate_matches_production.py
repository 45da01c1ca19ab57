"""``billing simulate`` gives production's answers: the same generated month through the ingest
Lambda handler (API Gateway events, DynamoDB in moto, mixed-tenant requests in arrival order, retried
the way the usage client retries) and the monthly close handler, and through ``billing simulate``
(in-memory stores, per-tenant batches, one process and two), gives byte-identical CSVs and lines."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import boto3
import pytest
import yaml

from billing.kernel.periods import Month
from billing.rating import lines_csv
from billing.runtime import container
from billing.statements.statement import Statement
from billing.tenants.tenant import Tenant
from billing_cli import _load
from billing_local.runner import LocalContext, api_gateway_event, load_module
from billing_local.simulation import Catalog, SimulationSpec
from billing_local.simulation import simulate as run_simulation
from billing_local.usage_generator import UNKNOWN_MODEL, price_book_with_change, simulated_month
from tests.conftest import CHDB_PATH
from tests.support import run_simulate

NOV = Month(2025, 11)
PLANS = Path(__file__).resolve().parent / "data" / "plans_small.yaml"
REQUEST_EVENTS = 200


@pytest.fixture(scope="module")
def month_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A generated November: 11 tenants, every rule, about 3,000 events, and a price-book change."""
    folder = tmp_path_factory.mktemp("month")
    tenants, events = simulated_month(NOV, events=3000, seed=3, duplicates=0.01)
    files = {
        "tenants": folder / "tenants.yaml",
        "events": folder / "events.jsonl",
        "pricebook": folder / "pricebook.yaml",
    }
    files["tenants"].write_text(yaml.safe_dump({"tenants": tenants}))
    files["events"].write_text("".join(json.dumps(e) + "\n" for e in events))
    files["pricebook"].write_text(yaml.safe_dump(price_book_with_change(NOV)))
    return files


def _requests(events: list[dict]) -> list[list[dict]]:
    """Arrival order, mixed tenants, at most REQUEST_EVENTS a request; a second copy of an id goes in a
    later request (a client's retry)."""
    requests: list[list[dict]] = [[]]
    for event in events:
        ids = {(e["tenant_id"], e["event_id"]) for e in requests[-1]}
        if len(requests[-1]) >= REQUEST_EVENTS or (event["tenant_id"], event["event_id"]) in ids:
            requests.append([])
        requests[-1].append(event)
    return requests


def post_like_the_usage_client(handler, events: list[dict]) -> Counter:
    """POST each request; on a refusal naming events (by index) drop those and send the rest again,
    as usage_tracker does. Returns the answers by kind."""
    answers: Counter = Counter()
    for batch in _requests(events):
        while batch:
            response = handler(
                api_gateway_event({"events": batch}, api_key_id="platform-key"), LocalContext()
            )
            body = json.loads(response["body"])
            status = response["statusCode"]
            if status == 202:
                answers["accepted"] += body["accepted"]
                answers["duplicates"] += len(body["duplicates"])
                answers["quota"] += len(body["rejected_for_quota"])
                break
            if status == 429:
                answers["quota"] += len(body["details"]["rejected_for_quota"])
                answers["duplicates"] += len(body["details"]["duplicates"])
                break
            named = {d["index"] for d in body.get("details", []) if d.get("index") is not None}
            assert status in (400, 403) and named, (status, body)
            answers[status] += len(named)
            batch = [e for i, e in enumerate(batch) if i not in named]
    return answers


def production_month(env, files: dict[str, Path], monkeypatch) -> tuple[bytes, list[Statement], Counter]:
    monkeypatch.setenv("PLANS_PATH", str(PLANS))
    monkeypatch.setenv("PRICEBOOK_PATH", str(files["pricebook"]))
    container.reset()
    for entry in yaml.safe_load(files["tenants"].read_text())["tenants"]:
        assert container.tenants().create(Tenant.model_validate(entry))
    events = [json.loads(line) for line in files["events"].read_text().splitlines()]
    answers = post_like_the_usage_client(load_module("ingest").handler, events)
    load_module("monthly_close").handler({"month": str(NOV)}, LocalContext())
    csv = boto3.client("s3").get_object(Bucket=env.settings.invoices_bucket, Key=f"invoices/{NOV}.csv")
    return csv["Body"].read(), container.statements().list_month(NOV), answers


def simulate(files: dict[str, Path], tmp_path: Path, monkeypatch, *extra: str) -> tuple[bytes, bytes, str]:
    monkeypatch.setenv("CLICKHOUSE_URL", f"chdb://{CHDB_PATH}")
    _load()
    done = run_simulate(
        tmp_path,
        files["events"],
        *extra,
        tenants=files["tenants"],
        plans=PLANS,
        pricebook=files["pricebook"],
        month=str(NOV),
    )
    return done.invoices.read_bytes(), done.lines.read_bytes(), done.output


def _comparable(statements: list[Statement]) -> list[dict]:
    """Statements as stored, but for the usage cutoff (the instant each close ran)."""
    out = []
    for s in statements:
        document = s.model_dump(mode="json")
        document["inputs"].pop("usage_cutoff")
        out.append(document)
    return out


def test_simulate_matches_the_ingest_and_close_handlers_byte_for_byte(
    env, month_files, tmp_path, monkeypatch
):
    # Given the generated month, which exercises every rule on its way in through the handler
    tenants = yaml.safe_load(month_files["tenants"].read_text())["tenants"]
    assert UNKNOWN_MODEL in month_files["events"].read_text() and any("canceled_at" in t for t in tenants)
    csv, statements, answers = production_month(env, month_files, monkeypatch)
    assert answers["duplicates"] and answers["quota"] and answers[400] and answers[403], answers
    by_tenant = {s.tenant_id: s for s in statements}
    line_ids = {l.line_id for s in statements for l in s.lines}
    assert {"queries:starter:t3", "queries:pro:t2", "queries:trial", "usage:trial"} <= line_ids
    assert by_tenant["cancel-0007"].is_final and len(by_tenant["upgrade-0004"].inputs["plan_history"]) == 2
    versions = container.usage_store().query("SELECT DISTINCT price_version FROM usage_events")
    assert len(versions) == 2  # the price-book change applies mid-month

    # When the same files go through the simulation engine in this process
    monkeypatch.setenv("CLICKHOUSE_URL", f"chdb://{CHDB_PATH}")
    result = run_simulation(
        SimulationSpec(
            month_files["tenants"],
            month_files["events"],
            NOV,
            Catalog(plans=PLANS, pricebook=month_files["pricebook"]),
            workers=1,
        )
    ).current
    # Then the CSV and every statement line are byte for byte production's, and so is every
    # statement field but the usage cutoff (the instant each close ran)
    assert result.csv == csv
    assert result.lines_csv == lines_csv(statements)
    assert _comparable(result.statements) == _comparable(statements)
    # And ingest accepted, acknowledged and refused exactly what the handler did
    assert (result.accepted, result.duplicates) == (answers["accepted"], answers["duplicates"])
    assert dict(result.rejected) == {
        "quota": answers["quota"],
        "forbidden": answers[403],
        "invalid": answers[400],
    }

    # When billing simulate runs it on two worker processes (tenants shared between them)
    sim_csv, sim_lines, output = simulate(month_files, tmp_path, monkeypatch, "--workers", "2")
    # Then the CSV and lines are still byte for byte production's
    assert sim_csv == csv
    assert sim_lines == lines_csv(statements)
    assert f"{answers['accepted']} accepted, {answers['duplicates']} duplicates" in output
    assert "2 worker(s)" in output
