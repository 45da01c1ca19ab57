"""In-process AWS (moto) with the tables, queues, bucket and secrets declared in template.yaml."""

from __future__ import annotations

import functools
import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3

from billing_local.journal import AwsJournal
from billing_local.template import load_template, resources_of_type

REGION = "us-east-1"
TABLE_SETTINGS = {
    "TenantsTable": "tenants_table",
    "LedgerTable": "ledger_table",
    "BillingTable": "billing_table",
}
QUEUE_SETTINGS = {
    "FallbackQueue": "fallback_queue_url",
    "InvoicingQueue": "invoicing_queue_url",
    "WebhookDeliveryQueue": "webhook_delivery_queue_url",
    "WebhookDeadLetterQueue": "webhook_dead_letter_queue_url",
}


def fake_credentials() -> None:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }.items():
        os.environ[key] = value


def create_resources(prefix: str = "billing") -> dict[str, Any]:
    """Create every DynamoDB table, SQS queue (with its DLQ wiring) and the invoices bucket of the
    template, named after their logical ids, each one that does not exist yet (a replayed journal
    made the others). Returns settings overrides (names and URLs)."""
    template = load_template()
    ddb = boto3.client("dynamodb", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    s3 = boto3.client("s3", region_name=REGION)
    overrides: dict[str, Any] = {}
    existing_tables = set(ddb.list_tables()["TableNames"])
    existing_queues = {url.rsplit("/", 1)[-1]: url for url in sqs.list_queues().get("QueueUrls", [])}

    for logical_id, resource in resources_of_type(template, "AWS::DynamoDB::Table").items():
        props = resource["Properties"]
        name = f"{prefix}-{logical_id}"
        kwargs: dict[str, Any] = {
            "TableName": name,
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
        }
        if props.get("GlobalSecondaryIndexes"):
            kwargs["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        if name not in existing_tables:
            ddb.create_table(**kwargs)
            ttl = props.get("TimeToLiveSpecification")
            if ttl:
                ddb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
        if logical_id in TABLE_SETTINGS:
            overrides[TABLE_SETTINGS[logical_id]] = name

    queues = resources_of_type(template, "AWS::SQS::Queue")
    urls: dict[str, str] = {}
    # Dead-letter queues first, so redrive policies can point at them.
    for logical_id in sorted(queues, key=lambda q: "RedrivePolicy" in queues[q].get("Properties", {})):
        props = dict(queues[logical_id].get("Properties", {}))
        attributes = {"VisibilityTimeout": str(props.get("VisibilityTimeout", 30))}
        redrive = props.get("RedrivePolicy")
        if redrive:
            dlq_id = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
            dlq_arn = sqs.get_queue_attributes(QueueUrl=urls[dlq_id], AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
            attributes["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(redrive["maxReceiveCount"])}
            )
        name = f"{prefix}-{logical_id}"
        urls[logical_id] = (
            existing_queues.get(name) or sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        )
        if logical_id in QUEUE_SETTINGS:
            overrides[QUEUE_SETTINGS[logical_id]] = urls[logical_id]
    overrides["queue_urls"] = urls

    bucket = f"{prefix}-invoices".lower()
    if bucket not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
        s3.create_bucket(Bucket=bucket)
    overrides["invoices_bucket"] = bucket
    return overrides


def create_portal_secret(prefix: str) -> str:
    """The portal link signing key (template: PortalTokenSecret), generated as GenerateSecretString
    does on deploy, unless it exists (a replayed journal keeps the links already signed valid).
    Returns its name (PORTAL_SECRET_NAME)."""
    import secrets

    name = f"{prefix}-PortalTokenSecret"
    client = boto3.client("secretsmanager", region_name=REGION)
    try:
        client.create_secret(Name=name, SecretString=secrets.token_urlsafe(48))
    except client.exceptions.ResourceExistsException:
        pass
    return name


_atomic_installed = False


def make_moto_dynamodb_atomic() -> None:
    """DynamoDB applies each conditional write atomically; moto's in-memory backend does not lock,
    so concurrent requests could both pass one condition. Serialize moto's writes like the service."""
    global _atomic_installed
    if _atomic_installed:
        return
    import threading

    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    DynamoDBBackend.transact_write_items = _transact_write_items  # type: ignore[method-assign]
    moto_partiql = DynamoDBBackend.batch_execute_statement

    def batch_execute_statement(self: Any, statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return _batch_execute_statement(self, statements, moto_partiql)

    DynamoDBBackend.batch_execute_statement = batch_execute_statement  # type: ignore[method-assign]
    for name in (
        "put_item",
        "batch_execute_statement",
        "update_item",
        "delete_item",
        "transact_write_items",
        "batch_write_item",
        "batch_get_item",
        "get_item",
        "query",
        "scan",
    ):
        original = getattr(DynamoDBBackend, name, None)
        if original is None:
            continue

        def locked(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return __original(self, *args, **kwargs)

        setattr(DynamoDBBackend, name, functools.wraps(original)(locked))
    _cache_condition_parsing()
    _atomic_installed = True


def _cache_condition_parsing() -> None:
    """moto lexes and parses a write's ``ConditionExpression`` twice per item (the request handler to
    validate it, the backend to evaluate it): two fifths of its CPU on a claim transaction. Both
    now take the parse from ``_parsed_condition``."""
    import moto.dynamodb.models
    import moto.dynamodb.models.table
    import moto.dynamodb.responses

    moto.dynamodb.models.get_filter_expression = _filter_expression
    moto.dynamodb.models.table.get_filter_expression = _filter_expression  # type: ignore[attr-defined]
    moto.dynamodb.responses.create_condition_expression_parser = _condition_parser


class _ParsedCondition:
    """A moto ``ConditionExpressionParser`` that has parsed: ``parse()`` returns its tree, and every
    other attribute is the parser's (a list as a copy: moto's callers extend the names and values
    found)."""

    def __init__(self, parser: Any):
        self._parser, self._tree = parser, parser.parse()

    def parse(self) -> Any:
        return self._tree

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._parser, name)
        return list(value) if isinstance(value, list) else value


def _condition_parser(expression: Any, names: Any, values: Any) -> Any:
    """moto's condition parser, parsed once per (expression, names, values): the tree depends only
    on those three, and evaluating it against an item changes nothing. Input that is not plain JSON
    (and an expression moto refuses: nothing is cached) goes to moto's parser as before."""
    try:
        key = json.dumps([expression, names, values], sort_keys=True)
    except (TypeError, ValueError):
        from moto.dynamodb.comparisons import create_condition_expression_parser

        return create_condition_expression_parser(expression, names, values)
    return _parsed_condition(key)


def _filter_expression(expression: Any, names: Any, values: Any) -> Any:
    return _condition_parser(expression, names, values).parse()


@functools.lru_cache(maxsize=4096)
def _parsed_condition(key: str) -> _ParsedCondition:
    from moto.dynamodb.comparisons import create_condition_expression_parser

    expression, names, values = json.loads(key)
    return _ParsedCondition(create_condition_expression_parser(expression, names, values))


# DynamoDB cancels a transaction that touches an item another transaction is still running on
# (TransactionConflict). moto runs each one at an instant, so it never does; with
# BILLING_MOTO_TRANSACTION_MS > 0 (the scale model's --tx-ms) each transaction keeps its items that
# long after it ran and one touching them meanwhile is cancelled for them.
TRANSACTION_MS_VARIABLE = "BILLING_MOTO_TRANSACTION_MS"
_ongoing: dict[tuple[str, str], float] = {}  # item -> time.monotonic() its transaction ends


def _transaction_seconds() -> float:
    return float(os.environ.get(TRANSACTION_MS_VARIABLE) or 0) / 1000


def _transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
    """moto's TransactWriteItems without its deep copy of every touched table (O(table size) per
    call, and under concurrency its rollback would put back a stale copy over other requests'
    writes). Run under the lock above: every condition is checked against the state before the
    transaction, then every write is applied, which is DynamoDB's all-or-nothing semantics. An item
    still held by an earlier transaction (``BILLING_MOTO_TRANSACTION_MS``) cancels it with
    ``TransactionConflict`` for that item."""
    from moto.dynamodb.exceptions import (
        MultipleTransactionsException,
        TooManyTransactionsException,
        TransactionCanceledException,
    )

    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    seen: set[tuple[str, str]] = set()
    reasons: list[Any] = []
    operations = []
    now, holds = time.monotonic(), _transaction_seconds()
    for entry in transact_items:
        op_type, op = next(iter(entry.items()))
        table_name = op["TableName"]
        if op_type == "Put":
            key = {k: op["Item"][k] for k in _key_names(self.get_table(table_name))}
        else:
            key = op["Key"]
        marker = (str(table_name), str(dict(sorted(key.items()))))
        if marker in seen:
            raise MultipleTransactionsException()
        seen.add(marker)
        current = self.get_item(table_name, key)
        condition = op.get("ConditionExpression")
        if holds and _ongoing.get(marker, 0.0) > now:
            reasons.append(("TransactionConflict", "Transaction is ongoing for the item", None))
        elif condition is not None and not _filter_expression(
            condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
        ).expr(current):
            old = None
            if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                old = current.to_json()["Attributes"]
            reasons.append(("ConditionalCheckFailed", "The conditional request failed", old))
        else:
            reasons.append((None, None, None))
        operations.append((op_type, op, key))
    if any(code is not None for code, _, _ in reasons):
        raise TransactionCanceledException(reasons)
    if holds:
        if len(_ongoing) > 10_000:
            for ended in [m for m, until in _ongoing.items() if until <= now]:
                del _ongoing[ended]
        _ongoing.update(dict.fromkeys(seen, now + holds))
    for op_type, op, key in operations:
        if op_type == "Put":
            self.put_item(op["TableName"], op["Item"])
        elif op_type == "Delete":
            self.delete_item(op["TableName"], key)
        elif op_type == "Update":
            self.update_item(
                op["TableName"],
                key,
                update_expression=op["UpdateExpression"],
                expression_attribute_names=op.get("ExpressionAttributeNames"),
                expression_attribute_values=op.get("ExpressionAttributeValues"),
            )


def _key_names(table: Any) -> list[str]:
    """A moto table's key attributes: the hash key, then the range key if it has one."""
    return [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr is not None else [])


_PARTIQL_INSERT = re.compile(r'\s*INSERT\s+INTO\s+"([^"]+)"\s+VALUE\s+\{(.*)\}\s*', re.IGNORECASE | re.DOTALL)
_PARTIQL_PARAMETER = re.compile(r"\s*'([^']+)'\s*:\s*\?\s*")


@functools.cache
def _parameterised_insert(statement: str) -> tuple[str, tuple[str, ...]] | None:
    """(table, attribute names) of ``INSERT INTO "t" VALUE {'a': ?, 'b': ?}``; None for any other
    statement (moto's own PartiQL runs those)."""
    match = _PARTIQL_INSERT.fullmatch(statement)
    if match is None:
        return None
    names = []
    for pair in match.group(2).split(","):
        parameter = _PARTIQL_PARAMETER.fullmatch(pair)
        if parameter is None:
            return None
        names.append(parameter.group(1))
    return match.group(1), tuple(names)


def _batch_execute_statement(
    self: Any, statements: list[dict[str, Any]], moto_own: Any
) -> list[dict[str, Any]]:
    """DynamoDB's ``BatchExecuteStatement`` for parameterised PartiQL ``INSERT``s, as the service
    runs them: each statement on its own, an insert of an existing key answered with the statement
    error ``DuplicateItem`` (the others still run), 1 to 25 statements. moto's PartiQL hands every
    item of every table to its parser on every statement (O(table) per claim) and never reports a
    duplicate; any other statement still goes to it (``moto_own``)."""
    from moto.dynamodb.exceptions import MockValidationException

    if not 1 <= len(statements) <= 25:
        raise MockValidationException("1 validation error detected: Statements must have 1 to 25 members")
    inserts = [_parameterised_insert(s["Statement"]) for s in statements]
    if not all(inserts):
        return moto_own(self, statements)  # type: ignore[no-any-return]
    responses: list[dict[str, Any]] = []
    for insert, statement in zip(inserts, statements, strict=True):
        assert insert is not None
        table_name, names = insert
        parameters = statement.get("Parameters") or []
        if table_name not in self.tables:
            responses.append(
                {"Error": {"Code": "ResourceNotFound", "Message": "Requested resource not found"}}
            )
            continue
        table = self.tables[table_name]
        item = dict(zip(names, parameters, strict=False))
        keys = _key_names(table)
        if len(parameters) != len(names) or any(k not in item for k in keys):
            message = (
                "Number of parameters in request and statement don't match, or a key attribute is missing"
            )
            responses.append(
                {"TableName": table_name, "Error": {"Code": "ValidationError", "Message": message}}
            )
        elif self.get_item(table_name, {k: item[k] for k in keys}) is not None:
            message = "Duplicate primary key exists in table"
            responses.append(
                {"TableName": table_name, "Error": {"Code": "DuplicateItem", "Message": message}}
            )
        else:
            self.put_item(table_name, item)
            responses.append({"TableName": table_name})
    return responses


@contextmanager
def local_aws(prefix: str = "billing", journal: AwsJournal | None = None) -> Iterator[dict[str, Any]]:
    """moto for the duration of the block, with the template's resources created. With a
    ``journal``: its calls are replayed first (the state of the last run), and every state-changing
    call of the block, the resources' creation included, is journaled."""
    from moto import mock_aws

    make_moto_dynamodb_atomic()
    fake_credentials()
    with mock_aws():
        from billing.adapters.aws.clients import reset_clients

        reset_clients()
        if journal is not None:
            journal.replay()
            journal.install()
        try:
            yield {**create_resources(prefix), "portal_secret_name": create_portal_secret(prefix)}
        finally:
            if journal is not None:
                journal.uninstall()
            reset_clients()


def resource_environment(resources: dict[str, Any]) -> dict[str, str]:
    """The settings' environment variables that name the resources ``create_resources`` made (what
    the template's ``Ref``/``GetAtt`` give each function in AWS)."""
    return {
        "TENANTS_TABLE": resources["tenants_table"],
        "LEDGER_TABLE": resources["ledger_table"],
        "BILLING_TABLE": resources["billing_table"],
        "FALLBACK_QUEUE_URL": resources["fallback_queue_url"],
        "INVOICING_QUEUE_URL": resources["invoicing_queue_url"],
        "INVOICES_BUCKET": resources["invoices_bucket"],
        "WEBHOOK_DELIVERY_QUEUE_URL": resources.get("webhook_delivery_queue_url", ""),
        "WEBHOOK_DEAD_LETTER_QUEUE_URL": resources.get("webhook_dead_letter_queue_url", ""),
        # the local runtime delivers to a team's app on 127.0.0.1; a deployed stack never does
        "WEBHOOK_ALLOW_LOOPBACK": "true",
        **(
            {"PORTAL_SECRET_NAME": resources["portal_secret_name"]}
            if "portal_secret_name" in resources
            else {}
        ),
    }
