"""Deploy smoke test: every function, as built for Lambda, works on its first invocation with the
environment the template gives it.

Built with ``sam build`` (or, without the SAM CLI or the template's Python, the layer the way SAM
builds it); each function runs in a fresh interpreter whose import path is only its built code, the
built layer and the embedded ClickHouse engine; AWS is moto's server on 127.0.0.1 with the
template's tables, queues, bucket and secrets; the environment is the template's, intrinsics
resolved against those resources (``PlatformApiKeyIds`` over its default and over two ids).

The tests run in order, one deployment for the module: each step's given is the previous steps'
outcome, the way a fresh stack sees its first traffic. Prints one line per function (built how,
cold import ms, invoke status), also written to .aws-sam/smoke/report.txt.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from pathlib import Path

import pytest

from billing_local.template import PROJECT_ROOT
from tests.smoke.build import build
from tests.smoke.smoke import Deployment, engine_dir, migrate_clickhouse, new_prefix
from tests.smoke.stack import create_stack, moto_server

EVENTS = PROJECT_ROOT / "events"
OUT = PROJECT_ROOT / ".aws-sam" / "smoke"
REPORT = OUT / "report.txt"
TWO_PLATFORM_KEYS = ["platform-key", "smoke-backend-2"]  # the samples' apiKeyId is platform-key
WEBHOOK_SECRET = "whsec_smoke_0123456789abcdef"  # what an operator stores after deploy
DEV_ONLY = ("chdb", "moto", "typer", "rich", "hypothesis", "pytest")


def sample(name: str) -> dict:
    return json.loads((EVENTS / f"{name}.json").read_text())


def signed_webhook_sample(secret: str) -> dict:
    """events/stripe_webhook.json signed now (a signature is accepted for 300 s), as Stripe sends it."""
    import hashlib
    import hmac

    event = sample("stripe_webhook")
    body = base64.b64decode(event["body"]).decode() if event.get("isBase64Encoded") else event["body"]
    timestamp = int(time.time())
    digest = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    headers = {k: v for k, v in event["headers"].items() if k.lower() != "stripe-signature"}
    event["headers"] = {**headers, "Stripe-Signature": f"t={timestamp},v1={digest}"}
    return event


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    artifacts = build(OUT)
    work = tmp_path_factory.mktemp("smoke")
    with moto_server() as endpoint:
        clickhouse_url = f"chdb://{work / 'clickhouse'}"
        stack = create_stack(
            endpoint,
            new_prefix(),
            {"ClickHouseUrlSecret": clickhouse_url, "StripeWebhookSecret": WEBHOOK_SECRET},
        )
        deployed = Deployment(
            artifacts=artifacts,
            stack=stack,
            engines=engine_dir(work / "engines"),
            work=work,
            parameters={"PlatformApiKeyIds": TWO_PLATFORM_KEYS},
        )
        migrate_clickhouse(clickhouse_url, deployed.environment("IngestFunction")["CLICKHOUSE_DATABASE"])
        yield deployed
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.write_text("\n".join(deployed.report()) + "\n")
        print("\n" + REPORT.read_text(), end="")


def ok(invocation) -> dict:
    assert invocation.error is None, (
        f"{invocation.function} failed:\n{invocation.error.get('trace')}\n{invocation.log[-3000:]}"
    )
    return invocation.response


def body(response: dict) -> dict:
    return json.loads(response["body"])


# ---------------------------------------------------------------------------------- the artifacts
def test_the_layer_holds_the_package_and_its_requirements_and_no_dev_code(deployment):
    layer = deployment.artifacts.layer_dir
    assert (layer / "billing" / "runtime" / "container.py").exists()
    assert (layer / "billing" / "adapters" / "clickhouse" / "migrations").is_dir()
    assert (layer / "billing" / "config" / "plans.yaml").is_file()  # the symlinked config is copied
    assert (layer / "boto3").is_dir() and (
        layer / "botocore"
    ).is_dir()  # one matching pair (requirements.txt)
    for dev_only in (*DEV_ONLY, "billing_local", "billing_cli", "billing/local", "billing/cli"):
        assert not (layer / dev_only).exists(), dev_only
        assert not list(layer.glob(f"{dev_only}-*.dist-info")), dev_only


def test_every_module_of_the_layer_ships_its_bytecode_unchecked(deployment):
    """Lambda mounts the layer read-only and zip timestamps defeat the mtime check: each module
    needs a hash-based .pyc that is not checked against the source (PEP 552 flags == 0b01)."""
    import importlib.util

    layer = deployment.artifacts.layer_dir
    tag = deployment.artifacts.python_tag
    missing, checked = [], []
    for source in layer.rglob("*.py"):
        pyc = Path(importlib.util.cache_from_source(str(source)).replace(sys.implementation.cache_tag, tag))
        if not pyc.exists():
            missing.append(str(source.relative_to(layer)))
        elif int.from_bytes(pyc.read_bytes()[4:8], "little") != 0b01:
            checked.append(str(source.relative_to(layer)))
    assert not missing, f"{len(missing)} modules without bytecode, e.g. {missing[:5]}"
    assert not checked, f"{len(checked)} modules with checked bytecode, e.g. {checked[:5]}"


def test_the_layer_ships_the_catalog_parsed_once_equal_to_its_yaml(deployment):
    """The build writes each config YAML's parse as JSON next to it, and the layer reads that."""
    import yaml

    from billing.catalog.documents import compact_path, load_document

    config = deployment.artifacts.layer_dir / "billing" / "config"
    for source in sorted(config.glob("*.yaml")):
        assert compact_path(source).is_file(), source.name
        stored = json.loads(compact_path(source).read_text())
        assert stored["document"] == yaml.safe_load(source.read_text()), source.name
        assert load_document(source) == yaml.safe_load(source.read_text()), source.name


# ---------------------------------------------------------------------------------- in traffic order
def test_signup_creates_the_tenant(deployment):
    # Given a fresh stack whose Stripe secret still holds the value generated at deploy
    # When the tenants API receives its sample (signup of acme-corp by the platform key)
    response = ok(deployment.invoke("TenantsApiFunction", sample("tenants_api")))
    # Then the tenant is created and stored
    assert response["statusCode"] == 201, response
    item = deployment.stack.client("dynamodb").get_item(
        TableName=deployment.stack.ref("TenantsTable"), Key={"tenant_id": {"S": "acme-corp"}}
    )["Item"]
    assert item["name"]["S"] == "Acme Corp"


def test_ingest_with_the_parameter_default_refuses_the_key_with_a_4xx(deployment):
    # Given acme-corp has been on the free plan since October 2025 (the sample signed up today, the
    # usage samples are from November 2025: the history is written directly)
    deployment.stack.client("dynamodb").update_item(
        TableName=deployment.stack.ref("TenantsTable"),
        Key={"tenant_id": {"S": "acme-corp"}},
        UpdateExpression="SET plans = :p REMOVE trial_ends_at",
        ExpressionAttributeValues={
            ":p": {"L": [{"M": {"plan": {"S": "free"}, "effective_at": {"S": "2025-10-01T00:00:00Z"}}}]}
        },
    )
    # When ingest runs with PlatformApiKeyIds at its default (no platform key)
    invocation = deployment.invoke(
        "IngestFunction",
        sample("ingest"),
        parameters={"PlatformApiKeyIds": ""},
        label="IngestFunction (default)",
    )
    # Then the sample's key is refused as a client error naming the field, not a server error
    response = ok(invocation)
    assert response["statusCode"] == 403, response
    assert "details" in body(response), body(response)


def test_ingest_stores_the_sample_events(deployment):
    # When ingest runs with two platform key ids (Join over a two-id value)
    env = deployment.environment("IngestFunction")
    assert env["PLATFORM_API_KEY_IDS"] == "platform-key,smoke-backend-2"
    response = ok(deployment.invoke("IngestFunction", sample("ingest")))
    # Then both events are accepted and claimed in the ledger (the close below reads them back)
    assert response["statusCode"] == 202, response
    assert body(response)["accepted"] == 2 and body(response)["status"] == "stored", body(response)
    ledger = deployment.stack.client("dynamodb").get_item(
        TableName=deployment.stack.ref("LedgerTable"), Key={"pk": {"S": "EVT#acme-corp#e-7f3a"}}
    )
    assert "Item" in ledger
    # And the embedding's claim went in as a PartiQL INSERT (the role check below covers its action)
    calls = deployment.invocations[-1].aws_calls
    inserted = [
        key for c in calls if c["operation"] == "PartiQLInsert" for key in c["LeadingKeys"][c["TableName"]]
    ]
    assert any(key.startswith("EVT#acme-corp#") for key in inserted), calls


def test_the_corrections_trail_of_a_stored_event_reads_back(deployment):
    # Given the sample event ingest stored above, and the corrections sample's request turned into a read
    event = {
        **sample("corrections"),
        "httpMethod": "GET",
        "body": None,
        "isBase64Encoded": False,
        "queryStringParameters": {"tenant_id": "acme-corp", "event_id": "e-7f3a"},
    }
    # When its audit trail is asked for with the platform key
    response = ok(deployment.invoke("CorrectionsFunction", event))
    # Then it is answered: the event, never corrected
    assert response["statusCode"] == 200, response
    assert body(response)["event_id"] == "e-7f3a", body(response)


def test_the_peer_authorizer_names_the_key_of_a_usage_plan_of_the_stage(deployment):
    # Given an enabled API key in a usage plan of the sample's stage (abc123/dev)
    apigateway = deployment.stack.client("apigateway")
    key = apigateway.create_api_key(name="smoke-peer", value="REPLACE-WITH-YOUR-KEY", enabled=True)
    plan = apigateway.create_usage_plan(name="smoke", apiStages=[{"apiId": "abc123", "stage": "dev"}])
    apigateway.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
    # When the authorizer runs its sample (that key as a Bearer token)
    policy = ok(deployment.invoke("PeerAuthorizerFunction", sample("peer_authorizer")))
    # Then it allows the peer routes and names the key's id for ingest
    assert policy["principalId"] == key["id"] and policy["context"] == {"apiKeyId": key["id"]}, policy
    assert {s["Effect"] for s in policy["policyDocument"]["Statement"]} == {"Allow"}, policy


def test_ingest_stores_an_openmeter_event_for_the_authorizers_caller(deployment):
    # Given a CloudEvent for acme-corp (an embedding), the caller named by the authorizer (a platform key id)
    event = sample("ingest")
    cloud_event = {
        "id": "om-1",
        "source": "smoke",
        "specversion": "1.0",
        "type": "embedding",  # not a query: the close below counts the sample's one query
        "subject": "acme-corp",
        "time": "2025-11-03T12:01:00Z",
        "data": {"model": "text-embedding-3-small", "input_tokens": 100},
    }
    event.update(
        resource="/openmeter/api/v1/events", path="/openmeter/api/v1/events", body=json.dumps(cloud_event)
    )
    event["headers"] = {
        "Content-Type": "application/cloudevents+json",
        "Authorization": "Bearer REPLACE-WITH-YOUR-KEY",
    }
    event["requestContext"] = {
        **event["requestContext"],
        "resourcePath": "/openmeter/api/v1/events",
        "identity": {"sourceIp": "203.0.113.10"},
        "authorizer": {"apiKeyId": "platform-key", "principalId": "platform-key"},
    }
    # When ingest runs it, Then OpenMeter's 204 answers it
    response = ok(deployment.invoke("IngestFunction", event, label="IngestFunction (openmeter)"))
    assert response["statusCode"] == 204, response


def test_fallback_replay_of_a_block_already_stored_stores_nothing_twice(deployment):
    response = ok(deployment.invoke("FallbackReplayFunction", sample("fallback_replay")))
    assert response == {"batchItemFailures": []}


def test_dunning_finds_nothing_due_on_a_fresh_stack(deployment):
    response = ok(deployment.invoke("DunningFunction", sample("dunning")))
    assert response["due"] == 0, response


def test_alert_evaluation_fires_nothing_on_the_shipped_plans(deployment):
    # the shipped plans declare no alerts or soft limits: every tenant is evaluated, none fires
    response = ok(deployment.invoke("AlertEvaluationFunction", sample("alert_evaluation")))
    assert (response["triggered"], response["resolved"]) == (0, 0), response
    # and every tenant's quota and time zone went to the dashboards (the export's safety net)
    assert response["quotas_exported"] >= 1, response


def test_monthly_close_writes_statements_and_the_csv(deployment):
    # When the scheduled close runs for December 1st (closes November 2025)
    response = ok(deployment.invoke("MonthlyCloseFunction", sample("monthly_close")))
    # Then November is closed with acme-corp's statement, and the CSV is in the bucket
    assert response["month"] == "2025-11" and response["statements_created"] == 1, response
    assert response["csv_written"], response
    csv = (
        deployment.stack.client("s3")
        .get_object(Bucket=deployment.stack.ref("InvoicesBucket"), Key=response["csv_key"])["Body"]
        .read()
        .decode()
    )
    assert "acme-corp,2025-11,1," in csv, csv  # one query event of the two ingested, read from ClickHouse


def test_invoicing_a_zero_statement_sends_nothing_to_stripe(deployment):
    response = ok(deployment.invoke("InvoicingFunction", sample("invoicing")))
    assert response == {"batchItemFailures": []}, response


def test_the_signed_webhook_sample_drives_dunning(deployment):
    # When Stripe delivers the sample payment failure, signed with the stored endpoint secret
    response = ok(deployment.invoke("StripeWebhookFunction", signed_webhook_sample(WEBHOOK_SECRET)))
    # Then it is processed and the tenant's standing changes
    assert response["statusCode"] == 200, response
    assert body(response)["status"] == "processed", body(response)


def test_tenant_status_shows_the_invoice_in_dunning(deployment):
    response = ok(deployment.invoke("TenantStatusFunction", sample("tenant_status")))
    assert response["statusCode"] == 200, response
    status = body(response)
    assert status["payment_status"] != "active", status


def test_the_portal_link_opens_the_tenants_page(deployment):
    # When the platform asks for acme-corp's usage page link (the sample)
    response = ok(deployment.invoke("TenantPortalFunction", sample("tenant_portal")))
    assert response["statusCode"] == 201, response
    url = body(response)["url"]
    assert url.startswith("https://abc123.execute-api.us-east-1.amazonaws.com/dev/v1/portal?token="), url
    # Then the page opens with that token (signed with the stack's generated secret), with no API key
    page = sample("tenant_status")
    page.update(
        resource="/v1/portal",
        path="/v1/portal",
        pathParameters=None,
        queryStringParameters={"token": url.split("token=", 1)[1]},
    )
    page["requestContext"]["identity"]["apiKeyId"] = None
    shown = ok(deployment.invoke("TenantPortalFunction", page))
    assert shown["statusCode"] == 200, shown
    assert "Acme Corp" in shown["body"] and "<svg" in shown["body"]


def test_the_warmer_rates_the_preview_of_a_tenant_with_usage_minutes_ago(deployment):
    # Given acme-corp sent a query a minute ago (the sample event, re-dated and re-identified)
    from datetime import UTC, datetime, timedelta

    event = sample("ingest")
    now = datetime.now(UTC)
    sent = dict(
        json.loads(event["body"])["events"][0],
        event_id="e-warm",
        timestamp=(now - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    event["body"] = json.dumps({"events": [sent]})
    stored = ok(deployment.invoke("IngestFunction", event, label="IngestFunction (this minute)"))
    assert stored["statusCode"] == 202, stored
    # And no preview of its month cached (the page opened above may have cached one seconds ago,
    # which the warmer rightly keeps)
    dynamodb, table = deployment.stack.client("dynamodb"), deployment.stack.ref("BillingTable")
    key = {"pk": {"S": "PREVIEW#acme-corp"}, "sk": {"S": f"MONTH#{now:%Y-%m}"}}
    dynamodb.delete_item(TableName=table, Key=key)
    # When the scheduled warm runs
    response = ok(deployment.invoke("PortalWarmFunction", sample("portal_warm")))
    # Then acme-corp's month-to-date preview is rated into the page's cache
    assert response["warmed"] == 1 and response["skipped"] == 0, response
    assert response["month"] == f"{now:%Y-%m}", response
    cached = dynamodb.get_item(TableName=table, Key=key)
    assert "Item" in cached, cached


def test_the_saas_registers_a_webhook_endpoint_and_its_secret_is_kept(deployment):
    # When the webhook endpoints API receives its sample (the platform key registers an endpoint)
    response = ok(deployment.invoke("WebhookEndpointsFunction", sample("webhook_endpoints")))
    # Then the endpoint is stored and its signing secret is in Secrets Manager under the stack's prefix
    assert response["statusCode"] == 201, response
    created = body(response)
    stored = deployment.stack.client("secretsmanager").get_secret_value(
        SecretId=f"{deployment.stack.prefix}/webhook-endpoints/{created['id']}"
    )
    assert created["secret"] in stored["SecretString"]


def test_a_webhook_to_an_endpoint_deleted_meanwhile_is_dropped(deployment):
    # When the delivery function receives its sample (a message to an endpoint that is not there)
    response = ok(deployment.invoke("WebhookDeliveryFunction", sample("webhook_delivery")))
    # Then it is dropped, not failed: nothing for SQS to hand back
    assert response == {"batchItemFailures": []}, response


def test_a_correction_of_an_event_never_stored_is_refused_and_writes_nothing(deployment):
    # Given the sample's void of evt-0001, an id this stack never stored
    # When the corrections function runs it
    response = ok(deployment.invoke("CorrectionsFunction", sample("corrections")))
    # Then the item is refused as not found, and no correction is recorded for it
    assert response["statusCode"] == 404, response
    assert "evt-0001" in response["body"], response
    trail = deployment.stack.client("dynamodb").scan(TableName=deployment.stack.ref("LedgerTable"))["Items"]
    assert not [i for i in trail if "fix-2025-11-03-1" in json.dumps(i)], trail


def test_every_aws_call_is_allowed_by_the_functions_role(deployment):
    """moto does not enforce IAM: each call the functions made above is checked against the role
    aws-sam-translator generates for that function (least privilege that still works), with its
    conditions on item keys and attributes (tests/smoke/iam.py)."""
    from tests.smoke.iam import action_of, allowing, allows, resources_of, role_of

    refused, bound = [], set()
    for invocation in deployment.invocations:
        statements = role_of(invocation.logical_id, deployment.stack, deployment.parameters)
        for call in invocation.aws_calls:
            if not allows(statements, call, deployment.stack):
                refused.append(
                    f"{invocation.function}: {action_of(call)} on {resources_of(call, deployment.stack)}"
                )
            for arn in resources_of(call, deployment.stack):
                grants = allowing(statements, call, arn)
                bound |= {(invocation.logical_id, s["Sid"]) for s in grants if "Condition" in s}
    assert sum(len(i.aws_calls) for i in deployment.invocations) > 20  # the recorder saw the traffic
    assert refused == []
    # And the key- and attribute-bound grants were the ones that allowed the traffic they cover
    assert bound >= {
        ("IngestFunction", "EventClaims"),
        ("IngestFunction", "QuotaCounters"),
        ("IngestFunction", "BatchCommits"),
        ("IngestFunction", "ClosedPeriods"),
        ("MonthlyCloseFunction", "CloseWrites"),
        ("MonthlyCloseFunction", "QuotaCounters"),
        ("StripeWebhookFunction", "ProcessedEventIds"),
        ("StripeWebhookFunction", "DunningState"),
        ("StripeWebhookFunction", "MirrorPaymentStatus"),
        ("TenantPortalFunction", "ReadQuotaCounter"),
        ("PortalWarmFunction", "CachedPreviews"),
        ("WebhookEndpointsFunction", "Endpoints"),
    }, sorted(bound)


def test_no_function_imported_dev_code(deployment):
    for invocation in deployment.invocations:
        assert not set(invocation.modules) & {*DEV_ONLY, "billing_local", "billing_cli"} - {"chdb"}, (
            invocation.function
        )


def test_every_function_ran(deployment):
    from billing_local.template import load_template, resources_of_type

    functions = set(resources_of_type(load_template(), "AWS::Serverless::Function"))
    assert functions <= {i.function.split(" ")[0] for i in deployment.invocations}
