"""Least privilege, evaluated: each function's role as aws-sam-translator generates it, judged by the
deploy smoke test's IAM model (tests/smoke/iam.py) on requests described the way the smoke test
records them (tests/smoke/bootstrap.py ``describe``).

For every grant bound to item keys (``dynamodb:LeadingKeys``) or attributes (``dynamodb:Attributes``)
a request outside it is denied and the request the code makes is allowed; the adapters' own requests
are recorded against moto on the paths the smoke traffic does not take (a failed batch giving its
claims back, a claim taken over, a card set up, a quota repaired) and checked against the roles."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest

from billing_local.template import load_template, resources_of_type
from tests.infra.translated import role_statements, translated
from tests.smoke.bootstrap import _record_aws_calls, describe
from tests.smoke.iam import KEYED_ACTIONS, allows, partition_keys, role_of, string_like
from tests.smoke.stack import ACCOUNT, REGION, Stack

TEMPLATE = load_template()
FUNCTIONS = sorted(resources_of_type(TEMPLATE, "AWS::Serverless::Function"))
TABLES = sorted(resources_of_type(TEMPLATE, "AWS::DynamoDB::Table"))


def paper_stack(prefix: str) -> Stack:
    """The stack's tables named as ``billing_local.aws`` names them (nothing is created)."""
    stack = Stack(endpoint="", prefix=prefix)
    for logical_id in TABLES:
        name = f"{prefix}-{logical_id}"
        stack.physical[logical_id] = {"Ref": name, "Arn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"}
    return stack


STACK = paper_stack("iam")
KEYS = partition_keys(STACK)
LEDGER, TENANTS, BILLING = (STACK.ref(t) for t in ("LedgerTable", "TenantsTable", "BillingTable"))


def allowed(function_id: str, operation: str, params: dict[str, Any], stack: Stack = STACK) -> bool:
    """Whether the function's role allows every request the call makes."""
    role = role_of(function_id, stack, {})
    return all(allows(role, call, stack) for call in describe("dynamodb", operation, params, KEYS))


def s(value: str) -> dict[str, str]:
    return {"S": value}


def get(table: str, pk: str) -> tuple[str, dict[str, Any]]:
    return "GetItem", {"TableName": table, "Key": {_hash(table): s(pk)}}


def put(table: str, pk: str, **attributes: str) -> tuple[str, dict[str, Any]]:
    item = {_hash(table): s(pk), **{k: s(v) for k, v in attributes.items()}}
    return "PutItem", {"TableName": table, "Item": item}


def delete(table: str, pk: str) -> tuple[str, dict[str, Any]]:
    return "DeleteItem", {"TableName": table, "Key": {_hash(table): s(pk)}}


def add_one(table: str, pk: str) -> tuple[str, dict[str, Any]]:
    return "UpdateItem", {
        "TableName": table,
        "Key": {_hash(table): s(pk)},
        "UpdateExpression": "ADD used :n",
        "ExpressionAttributeValues": {":n": {"N": "1"}},
    }


def batch_get(table: str, *pks: str) -> tuple[str, dict[str, Any]]:
    return "BatchGetItem", {"RequestItems": {table: {"Keys": [{_hash(table): s(pk)} for pk in pks]}}}


def batch_delete(table: str, *pks: str) -> tuple[str, dict[str, Any]]:
    requests = [{"DeleteRequest": {"Key": {_hash(table): s(pk)}}} for pk in pks]
    return "BatchWriteItem", {"RequestItems": {table: requests}}


def insert(table: str, pk: str) -> tuple[str, dict[str, Any]]:
    statement = {
        "Statement": f"INSERT INTO \"{table}\" VALUE {{'pk': ?, 'batch_id': ?}}",
        "Parameters": [s(pk), s("b1")],
    }
    return "BatchExecuteStatement", {"Statements": [statement]}


def transaction(*items: tuple[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    kinds = {"PutItem": "Put", "UpdateItem": "Update", "DeleteItem": "Delete"}
    return "TransactWriteItems", {"TransactItems": [{kinds[op]: params} for op, params in items]}


def tenant_update(
    set_names: list[str], *, condition: str = "attribute_exists(tenant_id)", returns: str | None = None
) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {
        "TableName": TENANTS,
        "Key": {"tenant_id": s("acme")},
        "UpdateExpression": "SET "
        + ", ".join(f"{n} = :v{i}" for i, n in enumerate(set_names))
        + " ADD version :one",
        "ConditionExpression": condition,
        "ExpressionAttributeValues": {
            **{f":v{i}": s("x") for i in range(len(set_names))},
            ":one": {"N": "1"},
        },
    }
    if returns:
        params["ReturnValues"] = returns
    return "UpdateItem", params


def _hash(table: str) -> str:
    return KEYS[table][""]


MIRROR_STATUS = tenant_update(
    ["payment_status", "payment_version"],
    condition="attribute_exists(tenant_id) AND (attribute_not_exists(payment_version) OR payment_version < :v1)",
)
MIRROR_METHOD = tenant_update(["payment_method_id", "payment_method_at"])


def batch_put(table: str, *pks: str) -> tuple[str, dict[str, Any]]:
    requests = [{"PutRequest": {"Item": {_hash(table): s(pk)}}} for pk in pks]
    return "BatchWriteItem", {"RequestItems": {table: requests}}


def index_query(table: str, index: str, value: str) -> tuple[str, dict[str, Any]]:
    return "Query", {
        "TableName": table,
        "IndexName": index,
        "KeyConditionExpression": "period = :p",
        "ExpressionAttributeValues": {":p": s(value)},
    }


RECEIPT_QUERY = index_query(LEDGER, "receipts", "RCPT#acme#2025-11")
RECEIPT_QUERY_OUTSIDE = index_query(LEDGER, "receipts", "QUOTA#acme#2025-11")

# (function, what the request is, the request): each is outside the function's grants.
DENIED = [
    (
        "IngestFunction",
        "BatchWriteItem deleting a processed Stripe event id",
        batch_delete(LEDGER, "WEBHOOK#evt_1"),
    ),
    (
        "IngestFunction",
        "BatchWriteItem with one key outside EVT#",
        batch_delete(LEDGER, "EVT#acme#e1", "WEBHOOK#evt_1"),
    ),
    ("IngestFunction", "DeleteItem of a processed Stripe event id", delete(LEDGER, "WEBHOOK#evt_1")),
    ("IngestFunction", "DeleteItem of a quota counter", delete(LEDGER, "QUOTA#acme#2025-11")),
    ("IngestFunction", "PutItem of a processed Stripe event id", put(LEDGER, "WEBHOOK#evt_1")),
    ("IngestFunction", "PutItem overwriting a quota counter", put(LEDGER, "QUOTA#acme#2025-11", used="0")),
    ("IngestFunction", "UpdateItem of a claim", add_one(LEDGER, "EVT#acme#e1")),
    ("IngestFunction", "UpdateItem of a processed Stripe event id", add_one(LEDGER, "WEBHOOK#evt_1")),
    ("IngestFunction", "BatchGetItem of a processed Stripe event id", batch_get(LEDGER, "WEBHOOK#evt_1")),
    # it reads the month's query counter (QUOTA#: alerts on queries), nothing else of the ledger
    ("IngestFunction", "GetItem on the ledger", get(LEDGER, "EVT#acme#e1")),
    ("IngestFunction", "PartiQL INSERT outside EVT#", insert(LEDGER, "WEBHOOK#evt_1")),
    (
        "IngestFunction",
        "a transaction deleting a processed Stripe event id",
        transaction(add_one(LEDGER, "QUOTA#acme#2025-11"), delete(LEDGER, "WEBHOOK#evt_1")),
    ),
    ("IngestFunction", "Scan of the ledger", ("Scan", {"TableName": LEDGER})),
    ("IngestFunction", "GetItem of a statement", get(BILLING, "MONTH#2025-11")),
    ("IngestFunction", "GetItem of a tenant (it reads tenants in one BatchGetItem)", get(TENANTS, "acme")),
    ("StripeWebhookFunction", "PutItem of a claim", put(LEDGER, "EVT#acme#e1")),
    ("StripeWebhookFunction", "PutItem of a quota counter", put(LEDGER, "QUOTA#acme#2025-11", used="0")),
    ("StripeWebhookFunction", "PutItem of a batch commit", put(LEDGER, "BATCH#b1")),
    ("StripeWebhookFunction", "UpdateItem linking a Stripe customer", tenant_update(["stripe_customer_id"])),
    ("StripeWebhookFunction", "UpdateItem of the tenant's plans", tenant_update(["plans"])),
    (
        "StripeWebhookFunction",
        "a mirror returning the whole record",
        tenant_update(["payment_status"], returns="ALL_NEW"),
    ),
    (
        "StripeWebhookFunction",
        "one UpdateItem of both payment status and method",
        tenant_update(["payment_status", "payment_method_id"]),
    ),
    ("StripeWebhookFunction", "PutItem of a tenant record", put(TENANTS, "acme")),
    ("StripeWebhookFunction", "PutItem of a statement", put(BILLING, "MONTH#2025-11")),
    ("StripeWebhookFunction", "PutItem of a month's close", put(BILLING, "PERIOD#2025-11")),
    ("DunningFunction", "UpdateItem of the payment method", MIRROR_METHOD),
    ("DunningFunction", "UpdateItem linking a Stripe customer", tenant_update(["stripe_customer_id"])),
    ("DunningFunction", "PutItem of an invoice record", put(BILLING, "MONTH#2025-11")),
    ("TenantStatusFunction", "BatchWriteItem deleting claims", batch_delete(LEDGER, "EVT#acme#e1")),
    ("TenantStatusFunction", "PutItem of a claim", put(LEDGER, "EVT#acme#e1")),
    ("TenantStatusFunction", "Query of the receipt index outside RCPT#", RECEIPT_QUERY_OUTSIDE),
    ("IngestFunction", "BatchWriteItem of receipt items", batch_put(LEDGER, "RCPT#acme#2025-11#b1")),
    ("IngestFunction", "DeleteItem of a receipt item", delete(LEDGER, "RCPT#acme#2025-11#b1")),
    (
        "TenantStatusFunction",
        "BatchGetItem of a processed Stripe event id",
        batch_get(LEDGER, "WEBHOOK#evt_1"),
    ),
    ("TenantPortalFunction", "GetItem of a claim", get(LEDGER, "EVT#acme#e1")),
    ("TenantPortalFunction", "GetItem of a processed Stripe event id", get(LEDGER, "WEBHOOK#evt_1")),
    ("MonthlyCloseFunction", "PutItem of a claim", put(LEDGER, "EVT#acme#e1")),
    ("MonthlyCloseFunction", "PutItem of the dunning standing", put(BILLING, "TENANT#acme")),
    ("TenantsApiFunction", "PutItem of a month's close", put(BILLING, "PERIOD#2025-11")),
    ("TenantsApiFunction", "PutItem of the dunning standing", put(BILLING, "TENANT#acme")),
    ("TenantsApiFunction", "UpdateItem of the payment status", MIRROR_STATUS),
    ("InvoicingFunction", "DeleteItem of an invoice record", delete(BILLING, "MONTH#2025-11")),
    ("InvoicingFunction", "PutItem of the dunning standing", put(BILLING, "TENANT#acme")),
    ("InvoicingFunction", "PutItem of a month's close", put(BILLING, "PERIOD#2025-11")),
    ("WebhookEndpointsFunction", "GetItem of a tenant record", get(TENANTS, "acme")),
    ("WebhookEndpointsFunction", "PutItem of the dunning standing", put(BILLING, "TENANT#acme")),
    ("WebhookEndpointsFunction", "DeleteItem of a statement", delete(BILLING, "MONTH#2025-11")),
    ("WebhookEndpointsFunction", "PutItem of a claim", put(LEDGER, "EVT#acme#e1")),
    ("WebhookDeliveryFunction", "PutItem of a statement", put(BILLING, "MONTH#2025-11")),
    ("AlertEvaluationFunction", "PutItem of a statement", put(BILLING, "MONTH#2025-11")),
    ("AlertEvaluationFunction", "PutItem of a claim", put(LEDGER, "EVT#acme#e1")),
    ("AlertEvaluationFunction", "UpdateItem of a quota counter", add_one(LEDGER, "QUOTA#acme#2025-11")),
    ("AlertEvaluationFunction", "PutItem of the dunning standing", put(BILLING, "TENANT#acme")),
    ("IngestFunction", "PutItem of a statement", put(BILLING, "MONTH#2025-11")),
    ("TenantPortalFunction", "PutItem of an alert state", put(BILLING, "ALERTS#acme")),
    ("TenantPortalFunction", "PutItem of a statement", put(BILLING, "MONTH#2025-11")),
    ("TenantPortalFunction", "PutItem of a credit grant", put(BILLING, "CREDITS#acme")),
    ("TenantPortalFunction", "GetItem of a claim through the preview prefix", get(LEDGER, "PREVIEW#acme")),
    ("PortalWarmFunction", "PutItem of a statement", put(BILLING, "MONTH#2025-11")),
    ("PortalWarmFunction", "PutItem of an alert state", put(BILLING, "ALERTS#acme")),
    ("PortalWarmFunction", "GetItem of the month's counter", get(LEDGER, "QUOTA#acme#2025-11")),
    ("PortalWarmFunction", "PutItem of a tenant record", put(TENANTS, "acme")),
    ("WebhookDeliveryFunction", "GetItem of a tenant record", get(TENANTS, "acme")),
    ("WebhookDeliveryFunction", "GetItem of a statement", get(BILLING, "MONTH#2025-11")),
    ("WebhookDeliveryFunction", "UpdateItem of a tenant's dunning", add_one(BILLING, "TENANT#acme")),
    *[
        (f, "UpdateItem of an endpoint", add_one(BILLING, "WEBHOOKS"))
        for f in ("MonthlyCloseFunction", "TenantsApiFunction", "StripeWebhookFunction", "DunningFunction")
    ],
    ("StripeWebhookFunction", "PutItem of an endpoint", put(BILLING, "WEBHOOKS")),
    ("TenantsApiFunction", "PutItem of a webhook publish record", put(BILLING, "WEBHOOKSEQ#acme")),
]

PUBLISHERS = ("MonthlyCloseFunction", "TenantsApiFunction", "StripeWebhookFunction", "DunningFunction")

# (function, what the request is, the request): what the code sends, inside each narrowed grant.
ALLOWED = [
    ("IngestFunction", "BatchWriteItem deleting claims", batch_delete(LEDGER, "EVT#acme#e1", "EVT#acme#e2")),
    ("IngestFunction", "PartiQL INSERT of a claim", insert(LEDGER, "EVT#acme#e1")),
    (
        "IngestFunction",
        "a query's claim and its counter in one transaction",
        transaction(add_one(LEDGER, "QUOTA#acme#2025-11"), put(LEDGER, "EVT#acme#e1")),
    ),
    (
        "IngestFunction",
        "a counted claim given back in one transaction",
        transaction(add_one(LEDGER, "QUOTA#acme#2025-11"), delete(LEDGER, "EVT#acme#e1")),
    ),
    ("IngestFunction", "PutItem of the batch commit", put(LEDGER, "BATCH#b1", committed="1")),
    ("IngestFunction", "BatchGetItem of batch commits", batch_get(LEDGER, "BATCH#b1", "BATCH#b2")),
    ("IngestFunction", "GetItem of a month's close", get(BILLING, "PERIOD#2025-11")),
    ("StripeWebhookFunction", "PutItem of a processed Stripe event id", put(LEDGER, "WEBHOOK#evt_1")),
    ("StripeWebhookFunction", "UpdateItem mirroring the standing", MIRROR_STATUS),
    ("StripeWebhookFunction", "UpdateItem mirroring the payment method", MIRROR_METHOD),
    ("StripeWebhookFunction", "PutItem of the dunning standing", put(BILLING, "TENANT#acme")),
    ("DunningFunction", "UpdateItem mirroring the standing", MIRROR_STATUS),
    ("DunningFunction", "PutItem of the dunning standing", put(BILLING, "TENANT#acme")),
    ("TenantStatusFunction", "BatchGetItem of the month's counter", batch_get(LEDGER, "QUOTA#acme#2025-11")),
    (
        "TenantStatusFunction",
        "BatchGetItem of claims and their commit records",
        batch_get(LEDGER, "EVT#acme#e1", "BATCH#b1"),
    ),
    ("TenantStatusFunction", "Query of a tenant's month in the receipt index", RECEIPT_QUERY),
    ("IngestFunction", "PutItem of a receipt item", put(LEDGER, "RCPT#acme#2025-11#b1")),
    ("TenantPortalFunction", "GetItem of the month's counter", get(LEDGER, "QUOTA#acme#2025-11")),
    ("TenantPortalFunction", "GetItem of a cached preview", get(BILLING, "PREVIEW#acme")),
    ("TenantPortalFunction", "PutItem of a cached preview", put(BILLING, "PREVIEW#acme")),
    ("PortalWarmFunction", "GetItem of a tenant record", get(TENANTS, "acme")),
    ("PortalWarmFunction", "GetItem of a statement", get(BILLING, "MONTH#2025-11")),
    ("PortalWarmFunction", "GetItem of a cached preview", get(BILLING, "PREVIEW#acme")),
    ("PortalWarmFunction", "PutItem of a cached preview", put(BILLING, "PREVIEW#acme")),
    ("MonthlyCloseFunction", "PutItem of the close", put(BILLING, "PERIOD#2025-11")),
    ("MonthlyCloseFunction", "PutItem of a statement", put(BILLING, "MONTH#2025-11")),
    ("MonthlyCloseFunction", "PutItem of a credit burn", put(BILLING, "CREDITS#acme")),
    ("TenantsApiFunction", "PutItem of a final statement", put(BILLING, "MONTH#2025-11")),
    ("TenantsApiFunction", "PutItem of a credit grant", put(BILLING, "CREDITS#acme")),
    ("InvoicingFunction", "PutItem of an invoice record", put(BILLING, "MONTH#2025-11")),
    ("WebhookEndpointsFunction", "PutItem of an endpoint", put(BILLING, "WEBHOOKS")),
    ("WebhookEndpointsFunction", "GetItem of an endpoint", get(BILLING, "WEBHOOKS")),
    ("WebhookEndpointsFunction", "DeleteItem of an endpoint", delete(BILLING, "WEBHOOKS")),
    ("WebhookDeliveryFunction", "GetItem of an endpoint", get(BILLING, "WEBHOOKS")),
    *[
        (f, "UpdateItem of a webhook sequence", add_one(BILLING, "WEBHOOKSEQ#acme:2025-11"))
        for f in PUBLISHERS
    ],
    *[(f, "GetItem of a webhook publish record", get(BILLING, "WEBHOOKSEQ#in_1")) for f in PUBLISHERS],
    # alerts (billing.alerts.evaluation): on queries at ingest, every alert on the schedule
    ("IngestFunction", "GetItem of the month's counter", get(LEDGER, "QUOTA#acme#2025-11")),
    ("IngestFunction", "PutItem of an alert state", put(BILLING, "ALERTS#acme")),
    ("IngestFunction", "UpdateItem of an alert state", add_one(BILLING, "ALERTS#acme")),
    ("IngestFunction", "UpdateItem of a webhook sequence", add_one(BILLING, "WEBHOOKSEQ#acme")),
    ("AlertEvaluationFunction", "GetItem of the month's counter", get(LEDGER, "QUOTA#acme#2025-11")),
    ("AlertEvaluationFunction", "PutItem of an alert state", put(BILLING, "ALERTS#acme")),
    ("AlertEvaluationFunction", "UpdateItem of an alert state", add_one(BILLING, "ALERTS#acme")),
    ("AlertEvaluationFunction", "UpdateItem of a webhook sequence", add_one(BILLING, "WEBHOOKSEQ#acme")),
    ("AlertEvaluationFunction", "GetItem of a statement", get(BILLING, "MONTH#2025-11")),
    # an endpoint disabled after days of failures (billing.outgoing_webhooks.health)
    ("WebhookDeliveryFunction", "PutItem of an endpoint", put(BILLING, "WEBHOOKS")),
    ("WebhookDeliveryFunction", "UpdateItem of a webhook sequence", add_one(BILLING, "WEBHOOKSEQ#ep_1")),
]


# ---------------------------------------------------------------------------------- the grants
@pytest.mark.parametrize(("function_id", "what", "request_"), DENIED, ids=[f"{f}: {w}" for f, w, _ in DENIED])
def test_a_request_outside_the_functions_grants_is_denied(function_id, what, request_):
    # Given the role SAM generates for the function
    # When it sends a request the code never makes
    operation, params = request_
    # Then the IAM model denies it
    assert not allowed(function_id, operation, params), what


@pytest.mark.parametrize(
    ("function_id", "what", "request_"), ALLOWED, ids=[f"{f}: {w}" for f, w, _ in ALLOWED]
)
def test_the_request_the_code_makes_is_inside_the_grant(function_id, what, request_):
    # Given the role SAM generates for the function
    # When it sends a request of the kind its code makes
    operation, params = request_
    # Then the IAM model allows it
    assert allowed(function_id, operation, params), what


def statements_on(table: str) -> list[tuple[str, dict[str, Any]]]:
    """(function, statement) of every generated statement naming the table itself."""
    return [
        (function_id, statement)
        for function_id in FUNCTIONS
        for statement in role_statements(translated(), function_id)
        if {"Fn::GetAtt": [table, "Arn"]} in _listed(statement["Resource"])
    ]


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def leading_keys(statement: dict[str, Any]) -> list[str] | None:
    return statement.get("Condition", {}).get("ForAllValues:StringLike", {}).get("dynamodb:LeadingKeys")


def test_no_function_reaches_the_whole_ledger():
    # Given every statement of every role that names LedgerTable
    found = statements_on("LedgerTable")
    assert found
    # Then each is bound to the partition key prefixes of its item family
    for function_id, statement in found:
        keys = leading_keys(statement)
        assert keys and all(k.endswith("#*") and "*" not in k[:-1] for k in keys), (function_id, statement)


def test_every_tenant_update_is_bound_to_its_attributes():
    # Given every statement of every role that allows UpdateItem on TenantsTable
    updates = [(f, s) for f, s in statements_on("TenantsTable") if "dynamodb:UpdateItem" in s["Action"]]
    assert {f for f, _ in updates} >= {"StripeWebhookFunction", "DunningFunction", "InvoicingFunction"}
    for function_id, statement in updates:
        # Then it lists the attributes it may name (the key among them) and returns no others
        condition = statement["Condition"]
        attributes = condition["ForAllValues:StringEquals"]["dynamodb:Attributes"]
        assert "tenant_id" in attributes, (function_id, statement)
        assert set(condition["StringEqualsIfExists"]["dynamodb:ReturnValues"]) <= {"NONE", "UPDATED_NEW"}
        # And it allows nothing else (a PutItem would replace the whole record)
        assert statement["Action"] == ["dynamodb:UpdateItem"], (function_id, statement)


@pytest.mark.parametrize("function_id", FUNCTIONS)
def test_a_key_bound_statement_grants_only_requests_that_carry_keys(function_id):
    # Given the function's statements bound to partition keys
    for statement in role_statements(translated(), function_id):
        keys = leading_keys(statement)
        if keys is None:
            continue
        # Then they use ForAllValues (a multivalued key) and grant no action whose request carries
        # no keys (Scan, PartiQLSelect): ForAllValues over no values would allow any of them
        assert set(statement["Condition"]) <= {"ForAllValues:StringLike"}, statement
        assert set(_listed(statement["Action"])) <= KEYED_ACTIONS, statement


def test_the_models_wildcards_are_iams():
    """StringLike as IAM matches it: ``*`` and ``?`` are the only wildcards, case matters."""
    assert string_like("EVT#acme#e-1", ["EVT#*"]) and string_like("EVT#", ["EVT#*"])
    assert not string_like("XEVT#acme", ["EVT#*"]) and not string_like("evt#acme", ["EVT#*"])
    assert string_like("a[b]", ["a[b]"]) and not string_like("ab", ["a[b]"])  # no character classes
    assert string_like("QUOTA#a", ["QUOTA#?"]) and not string_like("QUOTA#ab", ["QUOTA#?"])


# ---------------------------------------------------------------------------------- the code's requests
@contextmanager
def recorded(prefix: str) -> Iterator[tuple[list[dict[str, Any]], Stack]]:
    """moto with the template's tables; every AWS request made inside the block, as the smoke test
    records it."""
    from billing_local.aws import local_aws
    from billing_local.environ import patched_environ

    aws = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN")
    with patched_environ(restore=(*aws, "AWS_DEFAULT_REGION", "AWS_REGION")), local_aws(prefix=prefix):
        stack = paper_stack(prefix)
        calls: list[dict[str, Any]] = []
        boto3.client("dynamodb", region_name=REGION).put_item(
            TableName=stack.ref("TenantsTable"), Item={"tenant_id": s("acme"), "version": {"N": "1"}}
        )
        uninstall = _record_aws_calls(calls, partition_keys(stack))
        try:
            yield calls, stack
        finally:
            uninstall()


def refused(function_id: str, calls: list[dict[str, Any]], stack: Stack) -> list[dict[str, Any]]:
    role = role_of(function_id, stack, {})
    return [call for call in calls if not allows(role, call, stack)]


def test_every_ledger_request_of_ingest_is_allowed_on_every_path():
    from billing.adapters.dynamodb.usage_ledger import DynamoUsageLedger
    from billing.metering.exactly_once import Claim

    with recorded("iamingest") as (calls, stack):
        ledger = DynamoUsageLedger(stack.ref("LedgerTable"))
        plain, query, later = Claim("acme", "e1"), Claim("acme", "e2"), Claim("acme", "e3")
        expiry = {plain: 2_000_000_000, query: 2_000_000_000, later: 2_000_000_000}
        # Given a batch that claims an event and a query (the query with its counter)
        assert ledger.claim([plain], "b1", expiry, lease_until=0).written
        assert ledger.claim_counted(
            "acme",
            "2025-11",
            [query],
            "b1",
            expiry,
            lease_until=0,
            max_used=10,
            counter_expires_at=2_000_000_000,
            previous={},
        ).written
        # When a retry looks them up and takes one over, and the first batch gives its claims back
        assert set(ledger.lookup([plain, query])) == {plain, query}
        assert ledger.claim([plain], "b2", expiry, lease_until=0, previous={plain: "b1"}).written
        ledger.release([query], "b1", {query: "2025-11"})
        ledger.release([plain], "b2")
        # And another batch claims and commits
        assert ledger.claim([later], "b3", expiry, lease_until=0).written
        ledger.commit_batch("b3", 2_000_000_000, events=1, queued=0)
        assert ledger.stored([later]) == {later}
    # Then ingest's role allows every request those paths made, each kind of them seen
    assert refused("IngestFunction", calls, stack) == []
    seen = {c["operation"] for c in calls}
    assert seen >= {"PartiQLInsert", "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "BatchGetItem"}
    # And no request of ingest named an item outside its three families
    prefixes = {
        key.split("#", 1)[0] for c in calls for keys in c.get("LeadingKeys", {}).values() for key in keys
    }
    assert prefixes == {"EVT", "QUOTA", "BATCH"}


def test_webhook_and_dunning_writes_are_allowed_and_each_role_keeps_to_its_own():
    from datetime import UTC, datetime

    from billing.adapters.dynamodb.dunning import DynamoDunningStore, DynamoEventLog
    from billing.adapters.dynamodb.tenants import DynamoTenantStore
    from billing.dunning.service import TenantStanding

    now = datetime(2025, 12, 3, tzinfo=UTC)
    with recorded("iamwebhook") as (calls, stack):
        tenants, billing, ledger = (stack.ref(t) for t in ("TenantsTable", "BillingTable", "LedgerTable"))
        dunning = DynamoDunningStore(billing, tenants)
        # Given a payment failure that changes the tenant's standing (mirrored on its record)
        assert dunning.commit(TenantStanding("acme"), TenantStanding("acme", "past_due", version=1))
        standing_calls = list(calls)
        # When the webhook records the event id and a card set up
        assert DynamoEventLog(ledger).record("evt_1", now, "processed")
        assert DynamoTenantStore(tenants).record_payment_method("acme", "pm_1", now)
    # Then the webhook's role allows all of it
    assert refused("StripeWebhookFunction", calls, stack) == []
    # And dunning's role allows the standing and its mirror, not the event log or the card
    assert refused("DunningFunction", standing_calls, stack) == []
    assert len(refused("DunningFunction", calls, stack)) == len(calls) - len(standing_calls) == 2
    assert {c["operation"] for c in standing_calls} == {"PutItem", "UpdateItem"}


def test_every_request_of_a_publish_is_allowed_to_each_producer():
    from datetime import UTC, datetime

    from billing.adapters.dynamodb.webhook_endpoints import (
        DynamoPublishLog,
        DynamoSequenceCounter,
        DynamoWebhookEndpoints,
    )
    from billing.outgoing_webhooks.delivery import Published
    from billing.outgoing_webhooks.endpoints import Endpoint

    with recorded("iampublish") as (calls, stack):
        billing = stack.ref("BillingTable")
        endpoints = DynamoWebhookEndpoints(billing)
        endpoints.add(
            Endpoint(
                id="ep_1",
                url="https://x.test",
                event_types=["statement.issued"],
                created_at=datetime.now(UTC),
            )
        )
        del calls[:]
        # Given a publish: the subscribers listed, the object's next number, the fact claimed, then
        # marked queued, and a repeat reading the record
        assert [e.id for e in endpoints.all()] == ["ep_1"]
        assert DynamoSequenceCounter(billing).next("acme:2025-11") == 1
        log = DynamoPublishLog(billing)
        assert log.claim("acme:2025-11", "msg_1", Published(1, b"{}"))
        assert not log.claim("acme:2025-11", "msg_1", Published(2, b"{}"))
        log.mark_queued("acme:2025-11", "msg_1")
        assert log.get("acme:2025-11", "msg_1") == Published(1, b"{}", queued=True)
    # Then every producer's role allows each of those requests
    assert {c["operation"] for c in calls} == {"Query", "UpdateItem", "GetItem"}
    for function_id in PUBLISHERS:
        assert refused(function_id, calls, stack) == [], function_id


def test_quota_counter_reads_and_repairs_are_allowed():
    from billing.adapters.dynamodb.quota_reads import DynamoQuotaReads
    from billing.adapters.dynamodb.usage_ledger import DynamoUsageLedger

    with recorded("iamquota") as (calls, stack):
        ledger = DynamoUsageLedger(stack.ref("LedgerTable"))
        # Given the close repairs a counter, the status route and the usage page read it
        assert ledger.quota_set("acme", "2025-11", 3, None, 2_000_000_000)
        repair = list(calls)
        assert (
            DynamoQuotaReads(stack.ref("TenantsTable"), stack.ref("LedgerTable")).read("acme", "2025-11")[1]
            == 3
        )
        status = calls[len(repair) :]
        assert ledger.quota_used("acme", "2025-11") == (3, 1)
        page = calls[len(repair) + len(status) :]
    # Then each role allows its own requests
    assert refused("MonthlyCloseFunction", repair, stack) == []
    assert refused("TenantStatusFunction", status, stack) == []
    assert refused("TenantPortalFunction", page, stack) == []
    assert [c["operation"] for c in status] == ["BatchGetItem"] and [c["operation"] for c in page] == [
        "GetItem"
    ]
