"""The stack the template describes, in moto's server on 127.0.0.1: tables, queues and the bucket
(billing_local.aws builds them from the template), real Secrets Manager secrets, and the
template's intrinsics resolved against them, so each function gets exactly its deployed environment.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3

from billing_local.aws import REGION, create_resources
from billing_local.environ import patched_environ
from billing_local.template import load_template, resources_of_type

ACCOUNT = "123456789012"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "smoke",
    "AWS_SECRET_ACCESS_KEY": "smoke",
    "AWS_SESSION_TOKEN": "smoke",
}


@dataclass
class Stack:
    endpoint: str
    prefix: str
    # logical id -> {"Ref": ..., "Arn": ..., "QueueName": ...}
    physical: dict[str, dict[str, str]] = field(default_factory=dict)

    def ref(self, logical_id: str) -> str:
        return self.attribute(logical_id, "Ref")

    def attribute(self, logical_id: str, name: str) -> str:
        """A resource the smoke stack does not create (topic, alarms, roles) gets a name that can
        match no call, so a policy naming it still resolves."""
        return self.physical.get(logical_id, {}).get(name, f"arn:aws:not-created:::{logical_id}/{name}")

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=self.endpoint,
            aws_access_key_id="smoke",
            aws_secret_access_key="smoke",
            aws_session_token="smoke",
        )


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's server on a free loopback port; its endpoint URL. Its DynamoDB behaves as the service
    where ingest relies on it (atomic conditional writes, PartiQL INSERT batches): the patches are
    installed here, not left to whichever test happened to install them first in this process."""
    from moto.server import ThreadedMotoServer

    from billing_local.aws import make_moto_dynamodb_atomic

    make_moto_dynamodb_atomic()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@contextmanager
def _pointed_at(endpoint: str) -> Iterator[None]:
    with patched_environ({"AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": REGION, **FAKE_CREDENTIALS}):
        yield


def create_stack(endpoint: str, prefix: str, secret_values: dict[str, str]) -> Stack:
    """Every table, queue, the bucket and every secret of the template. A secret gets the value
    given for its logical id, else a generated one (as GenerateSecretString does on deploy)."""
    template = load_template()
    stack = Stack(endpoint=endpoint, prefix=prefix)
    with _pointed_at(endpoint):
        created = create_resources(prefix)
    for logical_id in resources_of_type(template, "AWS::DynamoDB::Table"):
        name = f"{prefix}-{logical_id}"
        stack.physical[logical_id] = {"Ref": name, "Arn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"}
    sqs = stack.client("sqs")
    for logical_id, url in created["queue_urls"].items():
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        stack.physical[logical_id] = {"Ref": url, "Arn": arn, "QueueName": arn.rsplit(":", 1)[1]}
    for logical_id in resources_of_type(template, "AWS::S3::Bucket"):
        bucket = created["invoices_bucket"]
        stack.physical[logical_id] = {"Ref": bucket, "Arn": f"arn:aws:s3:::{bucket}"}
    manager = stack.client("secretsmanager")
    for logical_id in resources_of_type(template, "AWS::SecretsManager::Secret"):
        value = secret_values.get(logical_id, secrets.token_urlsafe(24))
        arn = manager.create_secret(Name=f"{prefix}-{logical_id}", SecretString=value)["ARN"]
        stack.physical[logical_id] = {"Ref": arn, "Arn": arn}
    events = stack.client("events")
    for logical_id in resources_of_type(template, "AWS::Events::EventBus"):
        name = f"{prefix}-{logical_id}"
        arn = events.create_event_bus(Name=name)["EventBusArn"]
        stack.physical[logical_id] = {"Ref": name, "Arn": arn, "Name": name}
    return stack


# ------------------------------------------------------------------------------ intrinsics
class Resolver:
    """CloudFormation's intrinsic functions over a template, parameter values and a stack."""

    def __init__(self, template: dict[str, Any], stack: Stack, parameters: dict[str, Any]):
        self.template = template
        self.stack = stack
        self.parameters = {
            name: parameters.get(name, spec.get("Default"))
            for name, spec in template.get("Parameters", {}).items()
        }
        self.types = {name: spec["Type"] for name, spec in template.get("Parameters", {}).items()}

    def parameter(self, name: str) -> Any:
        value = self.parameters[name]
        if self.types[name] == "CommaDelimitedList":
            if isinstance(value, list):
                return value
            return [] if value in ("", None) else [part.strip() for part in str(value).split(",")]
        return value

    def condition(self, name: str) -> bool:
        return bool(self(self.template["Conditions"][name]))

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {k: self(v) for k, v in value.items()}
        ((name, arg),) = value.items()
        if name == "Ref":
            if arg in self.parameters:
                return self.parameter(arg)
            if arg == "AWS::Region":
                return REGION
            if arg == "AWS::AccountId":
                return ACCOUNT
            if arg == "AWS::StackName":
                return self.stack.prefix
            return self.stack.ref(arg)
        if name == "Fn::GetAtt":
            logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
            return self.stack.attribute(logical_id, attribute)
        if name == "Fn::Join":
            separator, items = arg
            return separator.join(str(v) for v in self(items))
        if name == "Fn::If":
            condition, when_true, when_false = arg
            return self(when_true if self.condition(condition) else when_false)
        if name == "Fn::Equals":
            left, right = self(arg)
            return str(left) == str(right)
        if name == "Fn::Sub":
            text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self(arg[1]))

            def one(match: re.Match[str]) -> str:
                key = match.group(1)
                if key in variables:
                    return str(variables[key])
                if key == "AWS::Partition":
                    return "aws"
                return str(self({"Fn::GetAtt": key.split(".", 1)}) if "." in key else self({"Ref": key}))

            return re.sub(r"\$\{([^}]+)\}", one, text)
        return {k: self(v) for k, v in value.items()}


def function_environment(template: dict[str, Any], logical_id: str, resolver: Resolver) -> dict[str, str]:
    """Globals' variables overlaid with the function's own, resolved, as Lambda sees them (strings)."""
    variables = dict(
        template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    )
    props = template["Resources"][logical_id]["Properties"]
    variables.update(props.get("Environment", {}).get("Variables", {}))
    return {name: _lambda_string(resolver(value)) for name, value in variables.items()}


def _lambda_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def function_setting(template: dict[str, Any], logical_id: str, key: str) -> Any:
    props = template["Resources"][logical_id]["Properties"]
    return props.get(key, template.get("Globals", {}).get("Function", {}).get(key))


def fresh_template() -> dict[str, Any]:
    return load_template()
