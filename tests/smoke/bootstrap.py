"""Runs one Lambda handler the way the Lambda Python runtime does, in a fresh interpreter started
with ``-I -S`` (no site-packages, no user site, no PYTHONPATH): the import path is the function's
code, then the layer, then the test's stand-in engines, and nothing of the dev virtualenv.

``-B``: Lambda's /opt and /var/task are read-only, so nothing compiled here is kept for the next
cold start (a layer without .pyc files compiles its whole import tree on every cold start).

Usage: python -I -S -B bootstrap.py spec.json  (spec: paths, handler, event, context; see smoke.py).
Writes {"import_ms", "import_cpu_ms", "response" | "error"} to spec["result"]. Only the standard
library is used here: this file must not import anything the shipped artifacts do not contain.
"""

import importlib
import json
import re
import socket
import sys
import time
import traceback

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _refuse_remote(event, args):
    """No traffic leaves the machine: a call to Stripe or AWS proper fails at once instead."""
    if event == "socket.getaddrinfo":
        host = args[0]
        if isinstance(host, bytes):
            host = host.decode()
        if host not in LOOPBACK and host is not None:
            raise OSError(f"smoke test: {host} is not reachable from here (loopback only)")
    elif event == "socket.connect":
        sock, address = args
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOOPBACK:
            raise OSError(f"smoke test: {address[0]} is not reachable from here (loopback only)")


class Context:
    """The attributes of the Lambda context object the handlers and Powertools read."""

    def __init__(self, spec):
        self.function_name = spec["function_name"]
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = spec["memory_mb"]
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"
        self.aws_request_id = "5mok3-0000-0000-0000-000000000000"
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "2026/12/01/[$LATEST]smoke"
        self._deadline = time.monotonic() + spec["timeout_s"]

    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))


_EXPRESSION_WORDS = {
    "SET",
    "ADD",
    "REMOVE",
    "DELETE",
    "AND",
    "OR",
    "NOT",
    "IN",
    "BETWEEN",
    "if_not_exists",
    "attribute_exists",
    "attribute_not_exists",
    "attribute_type",
    "begins_with",
    "contains",
    "size",
    "list_append",
}


def _attributes(params):
    """The top-level attribute names a write accesses (IAM's dynamodb:Attributes): the key, the item,
    and every name its expressions use (placeholders resolved)."""
    found = set(params.get("Key", {})) | set(params.get("Item", {}))
    found |= {name.split(".")[0] for name in params.get("ExpressionAttributeNames", {}).values()}
    for key in ("UpdateExpression", "ConditionExpression"):
        for word in re.findall(r"(?<![:#\w])[A-Za-z_][A-Za-z0-9_]*", params.get(key, "")):
            if word not in _EXPRESSION_WORDS:
                found.add(word)
    return sorted(found)


def _record_aws_calls(calls):
    """Every AWS API call the handler makes (service, operation, the resources it names), so the
    test can check each one against the function's IAM role from the translated template. Installed
    after the import is timed; botocore comes from the layer."""
    try:
        from botocore.client import BaseClient
    except ImportError:
        return
    original = BaseClient._make_api_call

    def named(service, operation, params):
        names = {
            k: params[k]
            for k in ("TableName", "IndexName", "QueueUrl", "Bucket", "Key", "SecretId")
            if k in params
        }
        if "RequestItems" in params:
            names["Tables"] = sorted(params["RequestItems"])
        if "Entries" in params:  # EventBridge PutEvents: the buses its entries go to
            names["Buses"] = sorted({e.get("EventBusName", "default") for e in params["Entries"]})
        if isinstance(names.get("Key"), dict):  # DynamoDB key: its partition key value
            names["Key"] = next(iter(next(iter(names["Key"].values())).values()))
        if "Item" in params and "Key" not in names and params["Item"]:  # a Put: its first key attribute
            names["Key"] = next(iter(next(iter(params["Item"].values())).values()))
        condition = re.match(r"\s*#?\w+\s*=\s*(:\w+)", params.get("KeyConditionExpression", ""))
        if condition and "Key" not in names:  # a Query: the partition key value it names
            names["Key"] = next(iter(params["ExpressionAttributeValues"][condition.group(1)].values()))
        if service == "dynamodb" and operation in ("PutItem", "UpdateItem"):
            names["Attributes"] = _attributes(params)
            names["ReturnValues"] = params.get("ReturnValues", "NONE")
        return {"service": service, "operation": operation, **names}

    def recording(self, operation_name, api_params):
        model = self.meta.service_model
        service = model.signing_name or model.endpoint_prefix
        if operation_name == "BatchExecuteStatement":
            # IAM authorizes each PartiQL statement by its verb (PartiQLInsert, ...) on its table
            for statement in api_params.get("Statements", []):
                verb, table = re.match(
                    r'\s*(\w+)\s+(?:INTO\s+|FROM\s+)?"([^"]+)"', statement["Statement"], re.I
                ).groups()
                first = (statement.get("Parameters") or [{}])[0]
                call = {"service": service, "operation": f"PartiQL{verb.capitalize()}", "TableName": table}
                calls.append({**call, "Key": next(iter(first.values()))} if first else call)
        elif operation_name == "TransactWriteItems":
            # IAM authorizes each item by the action it performs (PutItem, UpdateItem, ... )
            for item in api_params.get("TransactItems", []):
                ((kind, params),) = item.items()
                operation = {"ConditionCheck": "ConditionCheckItem"}.get(kind, f"{kind}Item")
                calls.append(named(service, operation, params))
        else:
            calls.append(named(service, operation_name, api_params))
        return original(self, operation_name, api_params)

    BaseClient._make_api_call = recording


def main():
    spec = json.load(open(sys.argv[1]))
    sys.path[:0] = [spec["code_dir"], spec["layer_dir"]]
    sys.path.extend(spec["engine_dirs"])
    sys.addaudithook(_refuse_remote)
    result = {}
    module_name, function_name = spec["handler"].rsplit(".", 1)
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        module = importlib.import_module(module_name)
        result["import_ms"] = round((time.perf_counter() - wall) * 1000, 1)
        result["import_cpu_ms"] = round((time.process_time() - cpu) * 1000, 1)
        handler = getattr(module, function_name)
        result["aws_calls"] = []
        _record_aws_calls(result["aws_calls"])
        result["response"] = handler(spec["event"], Context(spec))
    except BaseException as exc:  # what Lambda would report as the invocation's error
        result["error"] = {"type": type(exc).__name__, "message": str(exc), "trace": traceback.format_exc()}
    result["modules"] = sorted({name.split(".")[0] for name in sys.modules})
    with open(spec["result"], "w") as out:
        json.dump(result, out, default=str)


if __name__ == "__main__":
    main()
