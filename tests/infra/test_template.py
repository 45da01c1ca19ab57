"""The SAM template: translates to CloudFormation, passes cfn-lint, and every function resolves to a
real handler that runs its events/ sample (what `sam local invoke Fn -e events/x.json` would do)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from billing.runtime import container
from billing.tenants.tenant import PlanAssignment, Tenant
from billing_local.runner import LocalContext, load_function
from billing_local.template import PROJECT_ROOT, TEMPLATE_PATH, load_template, resources_of_type
from tests.infra.translated import cfn_lint, write_translated

FUNCTIONS = resources_of_type(load_template(), "AWS::Serverless::Function")


def a_closed_zero_statement() -> None:
    """The invoicing sample names acme-corp's 2025-11 statement: store one (zero total, so no Stripe
    call is due; the invoicing tests cover Stripe itself)."""
    from datetime import UTC, datetime

    from billing.statements.statement import Statement

    container.statements().put_if_absent(
        Statement(
            statement_id="acme-corp:2025-11",
            tenant_id="acme-corp",
            month="2025-11",
            period_start=datetime(2025, 11, 1, tzinfo=UTC),
            period_end=datetime(2025, 12, 1, tzinfo=UTC),
            invoice_date="2025-11-30",
            total=Decimal("0.00"),
        )
    )


def a_usage_plan_key() -> None:
    """The authorizer sample presents REPLACE-WITH-YOUR-KEY on stage dev of API abc123: an enabled
    key of a usage plan of that stage (in moto's API Gateway)."""
    import boto3

    apigateway = boto3.client("apigateway")
    key = apigateway.create_api_key(name="sample", value="REPLACE-WITH-YOUR-KEY", enabled=True)
    plan = apigateway.create_usage_plan(name="sample", apiStages=[{"apiId": "abc123", "stage": "dev"}])
    apigateway.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")


# What a sample needs to exist first, by function folder.
GIVENS = {"invoicing": a_closed_zero_statement, "peer_authorizer": a_usage_plan_key}


def code_dir(resource: dict) -> Path:
    return PROJECT_ROOT / resource["Properties"]["CodeUri"]


def test_the_template_translates_with_the_sam_translator_and_passes_cfn_lint(tmp_path):
    # Given the template packaged and translated to plain CloudFormation (cfn-lint alone misses bad
    # references inside SAM resources)
    out = write_translated(tmp_path / "translated.json")
    # Then no SAM resource is left and cfn-lint finds no error, in either form
    assert '"AWS::Serverless::' not in out.read_text()
    assert [f for f in cfn_lint(out) if f["Level"] == "Error"] == []
    assert [f for f in cfn_lint(TEMPLATE_PATH) if f["Level"] == "Error"] == []


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_every_function_has_a_handler_and_a_sample_event(logical_id):
    resource = FUNCTIONS[logical_id]
    module_name, function_name = resource["Properties"]["Handler"].rsplit(".", 1)
    path = code_dir(resource) / f"{module_name}.py"
    assert path.exists(), f"{logical_id}: {path} is missing"
    assert (PROJECT_ROOT / "events" / f"{code_dir(resource).name}.json").exists(), (
        f"{logical_id}: events/{code_dir(resource).name}.json is missing"
    )


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_every_function_runs_its_sample_event(env, logical_id):
    # Given the tenant the samples talk about
    container.tenants().create(
        Tenant(
            id="acme-corp",
            name="Acme Corp",
            email="billing@acme.example",
            plans=[PlanAssignment(plan="starter", effective_at="2025-10-01T00:00:00Z")],
        )
    )
    resource = FUNCTIONS[logical_id]
    name = code_dir(resource).name
    GIVENS.get(name, lambda: None)()
    module = load_function(name)
    handler = getattr(module, resource["Properties"]["Handler"].rsplit(".", 1)[1])
    event = json.loads((PROJECT_ROOT / "events" / f"{name}.json").read_text())
    # When the handler runs its sample, Then it answers without a server error
    response = handler(event, LocalContext(function_name=logical_id))
    if isinstance(response, dict) and "statusCode" in response:
        assert response["statusCode"] < 500, response
    if isinstance(response, dict) and "batchItemFailures" in response:
        assert response["batchItemFailures"] == [], response


def test_the_layer_ships_no_dev_dependencies():
    lines = (PROJECT_ROOT / "layers" / "billing" / "requirements.txt").read_text().lower().splitlines()
    requirements = "\n".join(line for line in lines if not line.startswith("#"))
    for dev_only in ("chdb", "moto", "typer", "rich", "hypothesis", "pytest"):
        assert dev_only not in requirements
