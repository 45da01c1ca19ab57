"""Is an AWS call a function made allowed by its role? The role is the one aws-sam-translator
generates from template.yaml (tests/infra/translated.py), its intrinsics resolved against the
smoke stack; the call is what tests/smoke/bootstrap.py recorded (``describe``). Only what the
template uses is modelled: Allow statements, exact actions, resource ARNs with wildcards, and the
conditions

- ``ForAllValues:StringLike dynamodb:LeadingKeys``: every partition key value of the items the
  request touches on that table (each item of a BatchGetItem or BatchWriteItem; each item of a
  transaction and each PartiQL statement is a request of its own) matches one of the patterns;
- ``ForAllValues:StringEquals dynamodb:Attributes``: every attribute name a write touches (the key,
  the item, the names its update and condition expressions use) is listed;
- ``StringEqualsIfExists dynamodb:ReturnValues`` (a write always carries it: NONE by default).

ForAllValues over a key the request does not carry is true in IAM: a Scan carries no LeadingKeys,
so a LeadingKeys condition does not restrict it and no key-bound statement may grant it. Here an
item-level request recorded without its keys is a model error, not an allowed call."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from billing_local.template import load_template, resources_of_type
from tests.infra.translated import role_statements, translated
from tests.smoke.stack import ACCOUNT, REGION, Resolver, Stack

# Operations authorized by another action's name.
IAM_ACTION = {("s3", "HeadObject"): "s3:GetObject", ("s3", "ListObjectsV2"): "s3:ListBucket"}
# DynamoDB actions whose requests name their items, so IAM evaluates dynamodb:LeadingKeys for them
# (the Service Authorization Reference lists the key for each of them, not for Scan).
KEYED_ACTIONS = frozenset(
    f"dynamodb:{a}"
    for a in (
        "GetItem",
        "BatchGetItem",
        "Query",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "BatchWriteItem",
        "ConditionCheckItem",
        "PartiQLInsert",
        "PartiQLUpdate",
        "PartiQLDelete",
    )
)


def action_of(call: dict[str, Any]) -> str:
    if call["service"] == "apigateway":  # API Gateway's management API: IAM actions are its HTTP verbs
        return "apigateway:GET" if call["operation"].startswith("Get") else f"apigateway:{call['operation']}"
    return IAM_ACTION.get((call["service"], call["operation"]), f"{call['service']}:{call['operation']}")


def partition_keys(stack: Stack) -> dict[str, dict[str, str]]:
    """Physical table name -> {"": its partition key, index name: the index's}: what the recorder
    needs to find each item's LeadingKeys value (the template's KeySchema)."""
    found: dict[str, dict[str, str]] = {}
    for logical_id, table in resources_of_type(load_template(), "AWS::DynamoDB::Table").items():
        props = table["Properties"]
        schemas = {"": props["KeySchema"]}
        schemas.update({i["IndexName"]: i["KeySchema"] for i in props.get("GlobalSecondaryIndexes", [])})
        found[stack.ref(logical_id)] = {
            index: next(k["AttributeName"] for k in schema if k["KeyType"] == "HASH")
            for index, schema in schemas.items()
        }
    return found


def resources_of(call: dict[str, Any], stack: Stack) -> list[str]:
    """The ARNs a call acts on."""
    service = call["service"]
    if service == "dynamodb":
        tables = call.get("Tables") or [call["TableName"]]
        arns = [_physical(stack, "Ref", table)["Arn"] for table in tables]
        return [f"{arn}/index/{call['IndexName']}" for arn in arns] if call.get("IndexName") else arns
    if service == "sqs":
        return [_physical(stack, "Ref", call["QueueUrl"])["Arn"]]
    if service == "s3":
        bucket = f"arn:aws:s3:::{call['Bucket']}"
        return [f"{bucket}/{call['Key']}"] if "Key" in call else [bucket]
    if service == "secretsmanager":
        # A secret named rather than given by ARN is authorized as the ARN its name makes.
        secret = call["SecretId"]
        return [
            secret
            if secret.startswith("arn:")
            else f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{secret}"
        ]
    if service == "events":
        return [_physical(stack, "Ref", bus)["Arn"] for bus in call["Buses"]]
    if service == "apigateway":  # the resource is the management API's path
        paths = {"GetUsagePlans": "/usageplans", "GetApiKeys": "/apikeys"}
        if call["operation"] == "GetUsagePlanKeys":
            return [f"arn:aws:apigateway:{REGION}::/usageplans/{call['usagePlanId']}/keys"]
        if call["operation"] in paths:
            return [f"arn:aws:apigateway:{REGION}::{paths[call['operation']]}"]
    raise AssertionError(f"no IAM model for {service}:{call['operation']}")


def _physical(stack: Stack, attribute: str, value: str) -> dict[str, str]:
    for physical in stack.physical.values():
        if physical.get(attribute) == value:
            return physical
    raise AssertionError(f"{value} is no resource of the stack")


def role_of(function_id: str, stack: Stack, parameters: dict[str, Any]) -> list[dict[str, Any]]:
    template = translated()
    resolve = Resolver(template, stack, parameters)
    return [resolve(statement) for statement in role_statements(template, function_id)]


def allows(statements: list[dict[str, Any]], call: dict[str, Any], stack: Stack) -> bool:
    """Every resource the call names is allowed by some statement (IAM evaluates each resource)."""
    return all(allowing(statements, call, arn) for arn in resources_of(call, stack))


def allowing(statements: list[dict[str, Any]], call: dict[str, Any], arn: str) -> list[dict[str, Any]]:
    """The statements that allow the call on ``arn``."""
    action = action_of(call)
    return [s for s in statements if _matches(s, action, arn, call)]


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@cache
def _pattern(pattern: str) -> re.Pattern[str]:
    """IAM's wildcard match (ARNs, StringLike): ``*`` any run of characters, ``?`` one; nothing else."""
    return re.compile("".join({"*": ".*", "?": "."}.get(c, re.escape(c)) for c in pattern), re.S)


def string_like(value: str, patterns: list[str]) -> bool:
    return any(_pattern(p).fullmatch(value) for p in patterns)


def _table_of(arn: str) -> str:
    return arn.split(":table/", 1)[1].split("/", 1)[0]


def _matches(statement: dict[str, Any], action: str, arn: str, call: dict[str, Any]) -> bool:
    if statement.get("Effect") != "Allow" or action not in _listed(statement["Action"]):
        return False
    if not string_like(arn, _listed(statement["Resource"])):
        return False
    for operator, conditions in statement.get("Condition", {}).items():
        for key, patterns in conditions.items():
            if (operator, key) == ("ForAllValues:StringLike", "dynamodb:LeadingKeys"):
                keys = call.get("LeadingKeys", {}).get(_table_of(arn))
                if keys is None and action in KEYED_ACTIONS:
                    raise AssertionError(f"{action} on {arn} recorded without its partition keys: {call}")
                if not all(string_like(k, _listed(patterns)) for k in keys or []):
                    return False
            elif (operator, key) == ("ForAllValues:StringEquals", "dynamodb:Attributes"):
                if "Attributes" not in call:
                    raise AssertionError(f"{action} on {arn} recorded without its attributes: {call}")
                if not set(call["Attributes"]) <= set(_listed(patterns)):
                    return False
            elif (operator, key) == ("StringEqualsIfExists", "dynamodb:ReturnValues"):
                if call.get("ReturnValues", "NONE") not in _listed(patterns):
                    return False
            else:
                raise AssertionError(f"no IAM model for the condition {operator} {key}")
    return True
