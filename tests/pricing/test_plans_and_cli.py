"""The plan format's new keys, and the operator CLI for credits and coupons."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from billing.catalog.plans import PlanCatalog
from billing.kernel.periods import Month
from billing.rating import Rater
from billing.runtime import container
from billing.runtime.settings import PACKAGE_CONFIG
from billing_cli import _load, app
from tests.pricing.conftest import DATA
from tests.rating.helpers import make_tenant


def catalog(*charges: dict, **plan: object) -> PlanCatalog:
    return PlanCatalog.model_validate({"plans": [{"id": "p", "name": "P", "charges": list(charges), **plan}]})


@pytest.mark.parametrize(
    ("charge", "message"),
    [
        ({"id": "c", "metric": "queries", "charge_model": "volume", "tiers": [{"up_to": 5}]}, "up_to: null"),
        ({"id": "c", "metric": "queries", "charge_model": "package", "package_size": 10}, "package_price"),
        (
            {
                "id": "c",
                "metric": "queries",
                "charge_model": "per_unit",
                "unit_price": "1",
                "package_size": 3,
            },
            "unit_price only",
        ),
        ({"id": "c", "metric": "queries", "charge_model": "per_unit", "unit_price": 0.1}, "quoted strings"),
        (
            {"id": "queries", "metric": "queries", "charge_model": "per_unit", "unit_price": "1"},
            "taken by query_tiers",
        ),
        ({"id": "c", "metric": "minutes", "charge_model": "per_unit", "unit_price": "1"}, "metric"),
    ],
)
def test_a_bad_charge_is_refused_with_the_reason(charge, message):
    with pytest.raises(ValidationError, match=message):
        catalog(charge)


def test_a_charge_id_means_one_thing_across_plans():
    with pytest.raises(ValidationError, match="different models"):
        PlanCatalog.model_validate(
            {
                "plans": [
                    {"id": "a", "name": "A", "charges": [{"id": "c", "metric": "queries", "charge_model": "per_unit", "unit_price": "1"}]},
                    {"id": "b", "name": "B", "charges": [{"id": "c", "metric": "bytes", "charge_model": "per_unit", "unit_price": "1"}]},
                ]
            }
        )  # fmt: skip


def test_a_plan_file_without_the_new_keys_digests_as_before():
    # Given the shipped plans (no charges, commitment or currency keys)
    shipped = PlanCatalog.load(PACKAGE_CONFIG / "plans.yaml")
    rater = Rater(shipped)
    # Then the plans digest is the hash of exactly the plan fields that existed before
    old_fields = {"id", "name", "base_fee", "query_quota", "trial_days", "query_tiers", "stripe_product_id"}
    document = [
        {k: v for k, v in p.model_dump(mode="json").items() if k in old_fields} for p in shipped.plans[:2]
    ]
    expected = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]
    assert rater.plans_digest([p.id for p in shipped.plans[:2]]) == expected
    # And a plan with them digests them
    plans = PlanCatalog.model_validate(yaml.safe_load((DATA / "plans.yaml").read_text()))
    assert "charges" in plans.get("grad").digest_document()


def test_credits_and_coupons_from_the_cli(env, monkeypatch):
    monkeypatch.setenv("PLANS_PATH", str(DATA / "plans.yaml"))
    container.reset()
    _load()
    make_tenant("acme", [("flat", "2025-10-01T00:00:00Z")])
    runner = CliRunner()
    # When an operator grants credits and attaches a coupon
    result = runner.invoke(app, ["tenant", "grant-credit", "acme", "--id", "g1", "--amount", "25.00",
                                 "--granted-at", "2025-10-01T00:00:00Z", "--priority", "5", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["created"] is True  # the service's log line is on stderr
    result = runner.invoke(app, ["tenant", "add-coupon", "acme", "--id", "half", "--percent-off", "50",
                                 "--duration", "once", "--starts-at", "2025-11-01T00:00:00Z"])  # fmt: skip
    assert result.exit_code == 0, result.output
    # Then November is 100.00 - 50% = 50.00 - the 25.00 credit
    november = container.billing_cycle().close(Month(2025, 11)).statements[0]
    assert november.total == Decimal("25.00")
    # And the status command shows the balance left
    result = runner.invoke(app, ["tenant", "status", "acme", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["credits"]["balance"] == {"usd": "0.00"}
    result = runner.invoke(app, ["tenant", "credits", "acme"])
    assert result.exit_code == 0 and "g1" in result.output
