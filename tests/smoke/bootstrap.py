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


# The action IAM authorizes each item of a transaction as; the operations that write
_TRANSACT_ACTION = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}
_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "ConditionCheckItem", "BatchWriteItem"}


def _value(attribute):
    """The scalar of a DynamoDB attribute value ({"S": "EVT#..."} -> "EVT#...")."""
    return str(next(iter(attribute.values())))


def _query_key(params, hash_key):
    """The partition key value a Query's key condition names (``pk = :v`` or ``#k = :v``)."""
    names = params.get("ExpressionAttributeNames", {})
    for name, placeholder in re.findall(r"(#?\w+)\s*=\s*(:\w+)", params.get("KeyConditionExpression", "")):
        if names.get(name, name) == hash_key:
            return _value(params["ExpressionAttributeValues"][placeholder])
    return None


def _dynamodb(operation, params, partition_keys):
    """One DynamoDB request as IAM sees it: its table(s) and index, ``LeadingKeys`` (table -> the
    partition key values of the items it reads or writes: every item of a batch), and for a write
    ``Attributes`` and ``ReturnValues``. A request naming no item (Scan) records no LeadingKeys."""
    call = {"service": "dynamodb", "operation": operation}
    leading = {}
    if "RequestItems" in params:  # BatchGetItem, BatchWriteItem
        call["Tables"] = sorted(params["RequestItems"])
        attributes = set()
        for table, request in params["RequestItems"].items():
            hash_key = partition_keys.get(table, {}).get("")
            if isinstance(request, dict):  # BatchGetItem: {"Keys": [...]}
                items = request.get("Keys", [])
            else:  # BatchWriteItem: [{"PutRequest": {"Item": ...}} | {"DeleteRequest": {"Key": ...}}]
                items = [next(iter(next(iter(w.values())).values())) for w in request]
            if hash_key:
                leading[table] = [_value(item[hash_key]) for item in items]
            attributes |= {name for item in items for name in item}
        if operation in _WRITES:
            call["Attributes"] = sorted(attributes)
    else:
        table = params["TableName"]
        call["TableName"] = table
        index = params.get("IndexName")
        if index:
            call["IndexName"] = index
        hash_key = partition_keys.get(table, {}).get(index or "")
        item = params.get("Key") or params.get("Item")
        if item is not None and hash_key:
            leading[table] = [_value(item[hash_key])]
        elif operation == "Query" and hash_key:
            value = _query_key(params, hash_key)
            if value is not None:
                leading[table] = [value]
        if operation in _WRITES:
            call["Attributes"] = _attributes(params)
            call["ReturnValues"] = params.get("ReturnValues", "NONE")
    if leading:
        call["LeadingKeys"] = leading
    return call


def _partiql(statement, partition_keys):
    """One PartiQL statement as IAM authorizes it: PartiQLInsert, ... on its table; an INSERT's
    LeadingKeys is the partition key value in its item (a literal or its bound parameter)."""
    text = statement["Statement"]
    verb = text.split(None, 1)[0].capitalize()
    table = re.search(r'(?:INTO|FROM|UPDATE)\s+"([^"]+)"', text, re.I).group(1)
    call = {"service": "dynamodb", "operation": f"PartiQL{verb}", "TableName": table}
    if verb == "Insert":
        parameters = iter(statement.get("Parameters") or [])
        item = {}
        for name, value in re.findall(r"'([^']+)'\s*:\s*(\?|'[^']*'|[-+\d.eE]+)", text):
            item[name] = _value(next(parameters)) if value == "?" else value.strip("'")
        call["Attributes"] = sorted(item)
        if partition_keys.get(table, {}).get("") in item:
            hash_key = partition_keys[table][""]
            call["LeadingKeys"] = {table: [item[hash_key]]}
    return call


def describe(service, operation, params, partition_keys):
    """The requests IAM authorizes for one API call, each {"service", "operation" (named as its IAM
    action), the resources it names, and for DynamoDB the condition keys the template's policies
    use}. ``partition_keys``: table name -> {"": its partition key, index name: the index's}.
    A transaction is authorized item by item (PutItem, UpdateItem, DeleteItem, ConditionCheckItem)
    and a PartiQL batch statement by statement (PartiQLInsert, ...): each becomes its own request."""
    if service == "dynamodb":
        if operation == "BatchExecuteStatement":
            return [_partiql(s, partition_keys) for s in params.get("Statements", [])]
        if operation == "ExecuteStatement":
            return [_partiql(params, partition_keys)]
        if operation in ("TransactWriteItems", "TransactGetItems"):
            calls = []
            for item in params.get("TransactItems", []):
                ((kind, request),) = item.items()
                calls.append(_dynamodb(_TRANSACT_ACTION[kind], request, partition_keys))
            return calls
        return [_dynamodb(operation, params, partition_keys)]
    names = {k: params[k] for k in ("QueueUrl", "Bucket", "Key", "SecretId", "usagePlanId") if k in params}
    if service == "secretsmanager" and operation == "CreateSecret":  # names the secret it creates
        names["SecretId"] = params["Name"]
    if "Entries" in params:  # EventBridge PutEvents: the buses its entries go to
        names["Buses"] = sorted({e.get("EventBusName", "default") for e in params["Entries"]})
    return [{"service": service, "operation": operation, **names}]


def _record_aws_calls(calls, partition_keys):
    """Every AWS API call the handler makes (``describe``), so the test can check each one against
    the function's IAM role from the translated template. Installed after the import is timed;
    botocore comes from the layer. Returns a function that uninstalls it."""
    try:
        from botocore.client import BaseClient
    except ImportError:
        return lambda: None
    original = BaseClient._make_api_call

    def recording(self, operation_name, api_params):
        model = self.meta.service_model
        service = model.signing_name or model.endpoint_prefix
        calls.extend(describe(service, operation_name, api_params, partition_keys))
        return original(self, operation_name, api_params)

    BaseClient._make_api_call = recording

    def uninstall():
        BaseClient._make_api_call = original

    return uninstall


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
        _record_aws_calls(result["aws_calls"], spec["partition_keys"])
        result["response"] = handler(spec["event"], Context(spec))
    except BaseException as exc:  # what Lambda would report as the invocation's error
        result["error"] = {"type": type(exc).__name__, "message": str(exc), "trace": traceback.format_exc()}
    result["modules"] = sorted({name.split(".")[0] for name in sys.modules})
    with open(spec["result"], "w") as out:
        json.dump(result, out, default=str)


if __name__ == "__main__":
    main()
