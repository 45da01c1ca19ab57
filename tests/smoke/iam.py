"""Is an AWS call a function made allowed by its role? The role is the one aws-sam-translator
generates from template.yaml (tests/infra/translated.py), its intrinsics resolved against the
smoke stack; the call is what tests/smoke/bootstrap.py recorded. Only what the template uses is
modelled: Allow statements, exact actions, resource ARNs with wildcards, and the conditions
ForAllValues:StringLike dynamodb:LeadingKeys (on the partition key value of an item's key, a put item's
first attribute or a query's key condition), ForAllValues:StringEquals dynamodb:Attributes (the
attribute names a write touches) and StringEqualsIfExists dynamodb:ReturnValues."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from tests.infra.translated import role_statements, translated
from tests.smoke.stack import Resolver, Stack

# Operations authorized by another action's name.
IAM_ACTION = {("s3", "HeadObject"): "s3:GetObject", ("s3", "ListObjectsV2"): "s3:ListBucket"}


def action_of(call: dict[str, Any]) -> str:
    return IAM_ACTION.get((call["service"], call["operation"]), f"{call['service']}:{call['operation']}")


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
        return [call["SecretId"]]
    if service == "events":
        return [_physical(stack, "Ref", bus)["Arn"] for bus in call["Buses"]]
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
    action = action_of(call)
    for arn in resources_of(call, stack):
        if not any(_matches(statement, action, arn, call) for statement in statements):
            return False
    return True


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _matches(statement: dict[str, Any], action: str, arn: str, call: dict[str, Any]) -> bool:
    if statement.get("Effect") != "Allow" or action not in _listed(statement["Action"]):
        return False
    if not any(fnmatchcase(arn, pattern) for pattern in _listed(statement["Resource"])):
        return False
    for operator, conditions in statement.get("Condition", {}).items():
        for key, patterns in conditions.items():
            if (operator, key) == ("ForAllValues:StringLike", "dynamodb:LeadingKeys"):
                if not any(fnmatchcase(str(call.get("Key", "")), p) for p in _listed(patterns)):
                    return False
            elif (operator, key) == ("ForAllValues:StringEquals", "dynamodb:Attributes"):
                if not set(call.get("Attributes", [])) <= set(_listed(patterns)):
                    return False
            elif (operator, key) == ("StringEqualsIfExists", "dynamodb:ReturnValues"):
                if call.get("ReturnValues", "NONE") not in _listed(patterns):
                    return False
            else:
                raise AssertionError(f"no IAM model for the condition {operator} {key}")
    return True
