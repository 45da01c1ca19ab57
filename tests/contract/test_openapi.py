"""The OpenAPI 3.1 document (openapi.yaml) against the real handlers: it names exactly the routes of
template.yaml, the WSGI adapter routes exactly them, and schemathesis' generated requests (valid and
invalid by the schema) are answered as documented: no 5xx, a documented status, JSON, the
documented schema. Size: ``FUZZ_EXAMPLES`` (tests/fuzz/support.py)."""

from __future__ import annotations

import pytest
from hypothesis import settings

from billing.runtime import container
from billing.tenants.tenant import PlanAssignment, Tenant
from billing_local.template import load_template, resources_of_type
from billing_local.wsgi_api import OPENAPI_PATH
from billing_local.yaml_lint import load_unique
from tests.contract.support import CHECKS, PEER_ROUTES, peer_credentials, schema
from tests.dunning.support import create_webhook_secret
from tests.fuzz.support import FUZZ


def _template_routes() -> set[tuple[str, str]]:
    routes = set()
    for function in resources_of_type(load_template(), "AWS::Serverless::Function").values():
        for event in (function.get("Properties", {}).get("Events") or {}).values():
            if event.get("Type") == "Api":
                routes.add((event["Properties"]["Method"].upper(), event["Properties"]["Path"]))
    return routes


def test_the_document_names_exactly_the_routes_api_gateway_serves():
    document = load_unique(OPENAPI_PATH.read_text(), "openapi.yaml")
    assert document["openapi"].startswith("3.1")
    documented = {
        (m.upper(), path) for path, item in document["paths"].items() for m in item if m != "parameters"
    }
    assert documented == _template_routes()


@pytest.fixture
def tenants(env):
    create_webhook_secret()
    container.tenants().create(
        Tenant(
            id="acme",
            name="Acme",
            plans=[PlanAssignment(plan="starter", effective_at="2025-01-01T00:00:00Z")],
            api_key_ids=["acme-key"],
        )
    )
    return env


# Generated requests cannot hold a signed token, and the billing setup/portal routes call Stripe:
# test_documented_answers checks those routes' answers (and the answers generated requests hardly
# reach: a tenant that exists, a batch over its quota) against this document.
@schema.exclude(path_regex="^/v1/portal|/billing/(setup|portal)$").parametrize()
@settings(FUZZ, max_examples=max(5, FUZZ.max_examples // 2))
def test_every_answer_is_as_documented(case, tenants):
    if case.operation.path.startswith(PEER_ROUTES):  # the peer formats' credentials (their authorizer)
        case.headers = {**(case.headers or {}), "Authorization": peer_credentials("platform-key")}
    elif case.operation.path != "/v1/webhooks/stripe":
        case.headers = {**(case.headers or {}), "x-api-key": "platform-key"}
    response = case.call()
    case.validate_response(response, checks=CHECKS)
