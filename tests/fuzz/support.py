"""What every fuzz suite shares: hostile request strategies, the whole observable state of the
system (to prove a refused request changed nothing), and the example budget.

``FUZZ_EXAMPLES`` (default 25) sets the number of examples per property; CI's default keeps
``make test`` quick, ``FUZZ_EXAMPLES=2000 pytest tests/fuzz`` is the long run.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import boto3
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from billing.runtime import container
from billing_local.runner import api_gateway_event

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
    derandomize=os.environ.get("FUZZ_SEED") is None,
)

# Any JSON value, nested a little (deep nesting has its own strategy below).
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
# Values that look almost right: the shapes hostile clients send for strings, numbers and instants.
tricky_values = st.sampled_from(
    [
        "",
        " ",
        "yes",
        "5",
        "1e400",
        "٢٠٢٥-١١",
        "2025-11-03 12:00:00Z",
        "20251103T120000Z",
        "2025-W45-1T12:00:00Z",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "2025-11-03T12:00:00+01:00:30",
        "x" * 2000,
        "\udcff",
        "\x00",
        2**64,
        -(2**63) - 1,
        10**30,
        -1,
        1.5,
        True,
        None,
        [],
        {},
        {"$gt": ""},
    ]
)
hostile_values = json_values | tricky_values


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def mutate(document: dict[str, Any], draw) -> dict[str, Any]:
    """One field of ``document`` replaced, removed or added, or its whole structure kept."""
    document = json.loads(json.dumps(document))
    action = draw(st.sampled_from(["replace", "remove", "add", "keep"]))
    keys = list(document)
    if action == "replace" and keys:
        document[draw(st.sampled_from(keys))] = draw(hostile_values)
    elif action == "remove" and keys:
        document.pop(draw(st.sampled_from(keys)))
    elif action == "add":
        document[draw(st.text(min_size=1, max_size=12))] = draw(hostile_values)
    return document


@st.composite
def raw_bodies(draw, valid: Any) -> bytes:
    """Bodies of every kind: a mutation of a valid document, any JSON, deep JSON, invalid UTF-8,
    not JSON at all."""
    kind = draw(st.sampled_from(["mutated", "mutated", "mutated", "json", "deep", "bytes", "text"]))
    if kind == "mutated":
        return json.dumps(valid(draw)).encode()
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "deep":
        return deep(draw(st.sampled_from([33, 200, 1000, 5000]))).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=200)) + b"\xe9\xff"
    return draw(st.text(max_size=200)).encode("utf-8", "surrogatepass")


content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/json; charset=latin-1",
        "text/plain",
        "",
        "application/json;;",
        "APPLICATION/JSON",
    ]
)


@st.composite
def api_events(draw, *, path: str, method: str, body: bytes, path_parameters=None) -> dict[str, Any]:
    """An API Gateway REST event, mostly as API Gateway sends it (base64 body, a key), sometimes
    not (no requestContext, no key, a body flagged base64 that is not, headers missing)."""
    event = api_gateway_event(
        body,
        path=path,
        method=method,
        api_key_id=draw(st.sampled_from(["platform-key", "platform-key", "acme-key", "stranger-key", None])),
        content_type=draw(content_types),
        base64=draw(st.booleans()) or not _is_utf8(body),  # a text body must be text
        path_parameters=path_parameters,
    )
    damage = draw(
        st.sampled_from(["none", "none", "none", "no_context", "bad_base64", "no_headers", "body_none"])
    )
    if damage == "no_context":
        del event["requestContext"]
    elif damage == "bad_base64":
        event["isBase64Encoded"] = True
        event["body"] = "%%" + base64.b64encode(body).decode()[:20]
    elif damage == "no_headers":
        event["headers"] = None
    elif damage == "body_none":
        event["body"] = None
    return event


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def snapshot(env) -> dict[str, Any]:
    """Everything a request could change: ClickHouse rows and rollups, every DynamoDB item, the
    depth of every queue."""
    ch = {
        table: env.store.query(f"SELECT count(), sum(input_tokens), sum(bytes) FROM {table}")[0]
        for table in ("usage_events", "usage_hourly", "usage_daily")
    }
    ddb = boto3.client("dynamodb")
    s = container.settings()
    tables = {}
    for table in (s.tenants_table, s.ledger_table, s.billing_table):
        items = ddb.scan(TableName=table, ConsistentRead=True)["Items"]
        tables[table] = sorted(json.dumps(i, sort_keys=True) for i in items)
    sqs = boto3.client("sqs")
    queues = {
        url: sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        for url in (s.fallback_queue_url, s.invoicing_queue_url)
    }
    return {"clickhouse": ch, "dynamodb": tables, "sqs": queues}


def check_response(response: Any, before: dict[str, Any], env) -> int:
    """The properties every HTTP function keeps: a JSON response, never a 5xx for any input, and a
    refused request (4xx) changes nothing."""
    assert isinstance(response, dict) and "statusCode" in response, response
    status = response["statusCode"]
    assert status < 500, response
    json.loads(response["body"])
    if status >= 400:
        assert snapshot(env) == before, response
    return status
