"""A declared usage type through ``billing simulate``: its events are priced at event time by the
price book (the usage line), counted by a charge that names the type, and ignored by charges that do
not (they read the built-in types only), so every other line is what it was without them."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import yaml

from tests.pricing.conftest import DATA, DAY, series
from tests.support import run_simulate


def _config(directory: Path) -> tuple[Path, Path]:
    plans = yaml.safe_load((DATA / "plans.yaml").read_text())
    plans["usage_types"] = [{"id": "gpu_job", "name": "GPU jobs", "unit": "job"}]
    [unit] = [p for p in plans["plans"] if p["id"] == "unit"]
    unit["charges"] += [
        {"id": "all-events", "metric": "events", "charge_model": "per_unit", "unit_price": "0.01"},
        {"id": "gpu-jobs", "name": "GPU jobs", "metric": "events", "event_type": "gpu_job",
         "charge_model": "per_unit", "unit_price": "0.10"},
    ]  # fmt: skip
    book = yaml.safe_load((DATA / "pricebook.yaml").read_text())
    book["versions"][0]["usage_types"] = {
        "gpu_job": {"property": "gpu_seconds", "per_unit": "0.001", "by": {"gpu": {"h100": "0.002"}}}
    }
    (directory / "plans.yaml").write_text(yaml.safe_dump(plans))
    (directory / "pricebook.yaml").write_text(yaml.safe_dump(book))
    return directory / "plans.yaml", directory / "pricebook.yaml"


def _built_in() -> list[dict]:
    return series(
        "unit-t", "e", "2025-11-03T00:00:00Z", 3, DAY, type="embedding", model="text-embedding-3-small",
        input_tokens=100,
    ) + series("unit-t", "q", "2025-11-03T00:00:00Z", 2, DAY, model="gpt-4o", input_tokens=1000)  # fmt: skip


def _gpu_jobs() -> list[str]:
    """Four GPU jobs as JSON lines (numbers written as text, read exactly): H100s at their price,
    one without a GPU named and one on an A100 at the default price."""
    jobs = [("100", ', "gpu": "h100"'), ("250", ""), ("50.5", ', "gpu": "a100"'), ("1000", ', "gpu": "h100"')]
    return [
        f'{{"event_id": "g{i}", "tenant_id": "unit-t", "timestamp": "2025-11-05T0{i}:00:00Z", '
        f'"type": "gpu_job", "properties": {{"gpu_seconds": {seconds}{gpu}}}}}'
        for i, (seconds, gpu) in enumerate(jobs)
    ]


def _lines(run) -> dict[str, Decimal]:
    import csv

    rows = csv.DictReader(run.lines.read_text().splitlines())
    return {r["line_id"]: Decimal(r["amount"]) for r in rows if r["tenant_id"] == "unit-t"}


def test_a_declared_type_is_priced_at_event_time_and_counted_only_where_named(tmp_path, monkeypatch):
    from billing_cli import _load
    from tests.conftest import CHDB_PATH

    monkeypatch.setenv("CLICKHOUSE_URL", f"chdb://{CHDB_PATH}")
    _load()
    plans, book = _config(tmp_path)
    tenants = DATA / "tenants.yaml"
    # Given November's built-in events alone, and the same with four GPU jobs
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    alone = _lines(run_simulate(tmp_path / "a", _built_in(), tenants=tenants, plans=plans, pricebook=book))
    jobs = _lines(
        run_simulate(
            tmp_path / "b", _built_in(), tenants=tenants, plans=plans, pricebook=book, raw_lines=_gpu_jobs()
        )
    )
    # Then the GPU jobs add their own charge (4 x 0.10) and their event-time cost to the usage line:
    # 100 x 0.002 + 250 x 0.001 + 50.5 x 0.001 (a100: the default price) + 1000 x 0.002 = 2.5005,
    # 2.50 on the statement (markup 0 in this price book)
    changed = {k for k in jobs if jobs[k] != alone.get(k)}
    assert changed == {"charge:gpu-jobs:unit", "usage"}, (alone, jobs)
    assert (jobs["charge:gpu-jobs:unit"], alone["usage"], jobs["usage"]) == (
        Decimal("0.40"),
        0,
        Decimal("2.50"),
    )
    # And every other line is unchanged: a charge without event_type reads the built-in types only
    assert jobs["charge:all-events:unit"] == Decimal("0.05")  # 5 built-in events x 0.01
    assert (jobs["charge:embeds:unit"], jobs["charge:embed-tokens:unit"]) == (
        Decimal("0.06"),
        Decimal("0.03"),
    )


def test_late_events_of_a_declared_type_adjust_only_their_charge_and_the_usage(env, monkeypatch, tmp_path):
    import time

    from billing.kernel.periods import Month
    from billing.runtime import container
    from tests.rating.helpers import event, make_tenant

    plans, _ = _config(tmp_path)
    monkeypatch.setenv("PLANS_PATH", str(plans))
    container.reset()
    # Given a Per unit tenant with 2 queries and 3 GPU jobs (event-time cost 0.25 each) in November, closed
    make_tenant("acme", [("unit", "2025-10-01T00:00:00Z")])
    env.store.insert_events(
        [event("acme", f"q{i}", f"2025-11-0{i + 2}T00:00:00Z") for i in range(2)]
        + [
            event("acme", f"g{i}", f"2025-11-0{i + 2}T01:00:00Z", type="gpu_job", cost="0.25")
            for i in range(3)
        ]
    )
    cycle = container.billing_cycle()
    november = cycle.close(Month(2025, 11)).statements[0]
    lines = {l.line_id: l.amount for l in november.lines}
    assert (lines["charge:gpu-jobs:unit"], lines["charge:all-events:unit"], lines["usage"]) == (
        Decimal("0.30"),
        Decimal("0.02"),  # the 2 queries: GPU jobs are not built-in events
        Decimal("0.75"),
    )
    time.sleep(0.01)
    # When 2 more November GPU jobs are stored after the close
    env.store.insert_events(
        [event("acme", f"late{i}", "2025-11-20T00:00:00Z", type="gpu_job", cost="0.25") for i in range(2)]
    )
    december = cycle.close(Month(2025, 12)).statements[0]
    # Then December adjusts their charge (2 x 0.10) and the usage (2 x 0.25), nothing else
    assert {(l.line_id, l.quantity, l.amount) for l in december.lines if l.kind == "adjustment"} == {
        ("adj:2025-11:charge:gpu-jobs:unit", Decimal(2), Decimal("0.20")),
        ("adj:2025-11:usage", Decimal(2), Decimal("0.50")),
    }


def test_a_simulated_close_publishes_no_webhook_and_asks_no_aws_store(tmp_path, monkeypatch):
    from billing.adapters.dynamodb.webhook_endpoints import DynamoWebhookEndpoints
    from billing_cli import _load
    from tests.conftest import CHDB_PATH

    # Given the real endpoint store would record any question asked of it
    asked: list[str] = []
    monkeypatch.setattr(DynamoWebhookEndpoints, "all", lambda self: asked.append("all") or [])
    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
    }.items():
        monkeypatch.setenv(name, value)  # an AWS the process could reach, were the simulation to ask
    monkeypatch.setenv("CLICKHOUSE_URL", f"chdb://{CHDB_PATH}")
    _load()

    # When a month with statements is simulated
    run = run_simulate(tmp_path, _built_in(), tenants=DATA / "tenants.yaml", plans=DATA / "plans.yaml")

    # Then statements were made, and no endpoint store outside the simulation was asked for subscribers
    assert _lines(run)
    assert asked == []
