"""The local runner: loads Lambda handlers from functions/<name>/app.py and feeds them events, as
Lambda would (moto does not run Lambda code). ``invoke`` runs one event at a time in the process."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any

import boto3

from billing_local.template import PROJECT_ROOT


@dataclass
class LocalContext:
    function_name: str = "local"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:local"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


def load_module(name: str) -> ModuleType:
    """A fresh copy of functions/<name>/app.py, as a new Lambda execution environment loads it."""
    path = PROJECT_ROOT / "functions" / name / "app.py"
    spec = importlib.util.spec_from_file_location(f"functions.{name}.app", path)
    assert spec and spec.loader, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def load_function(name: str) -> ModuleType:
    """The handler module of functions/<name>/app.py, loaded once (a warm Lambda)."""
    return load_module(name)


# Lambda gives each execution environment one event at a time, and the handlers rely on it:
# Powertools' event handler keeps the event being resolved on a class attribute that every resolver
# of the process shares (``BaseRouter.current_event``), so two handlers running at once on two
# threads, of one function or of two, read each other's request. The process is therefore one
# environment: every invocation through ``invoke`` waits for the one running.
_one_event_at_a_time = threading.Lock()


def invoke(
    function: str,
    event: Any,
    context: LocalContext | None = None,
    *,
    prepare: Callable[[], None] | None = None,
) -> Any:
    """The answer of functions/<function>/app.py's handler to ``event``, run alone in the process
    (``prepare``: run first, alone too, e.g. to wire what the local API stands in for)."""
    with _one_event_at_a_time:
        if prepare is not None:
            prepare()
        _skip_cold_start_metric_when_disabled()
        return load_function(function).handler(event, context or LocalContext(function_name=function))


def _skip_cold_start_metric_when_disabled() -> None:
    """Powertools prints the ColdStart metric through ``single_metric``, which ignores
    POWERTOOLS_METRICS_DISABLED (only ``flush_metrics`` checks it): with metrics disabled (the demo,
    ``billing serve``) the process counts as warm, so no EMF line reaches their console."""
    from aws_lambda_powertools.metrics.functions import is_metrics_disabled
    from aws_lambda_powertools.metrics.provider import cold_start

    if is_metrics_disabled():
        cold_start.is_cold_start = False


def sqs_records(
    messages: list[dict[str, Any]], queue_arn: str = "arn:aws:sqs:us-east-1:123456789012:local"
) -> dict:
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {
                    "ApproximateReceiveCount": m.get("Attributes", {}).get("ApproximateReceiveCount", "1")
                },
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


def drain_queue(queue_url: str, function: str, *, max_rounds: int = 1000) -> tuple[int, int]:
    """Deliver every message of a queue to a function's handler, deleting what it processed, the
    way the SQS event source mapping does with ReportBatchItemFailures. Returns (processed, failed)."""
    sqs = boto3.client("sqs")
    processed = failed = 0
    for _ in range(max_rounds):
        messages = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=0,
            AttributeNames=["ApproximateReceiveCount"],
        ).get("Messages", [])
        if not messages:
            break
        response = invoke(function, sqs_records(messages))
        failures = {f["itemIdentifier"] for f in (response or {}).get("batchItemFailures", [])}
        for message in messages:
            if message["MessageId"] in failures:
                failed += 1
            else:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
                processed += 1
        if failures:
            break  # leave failed messages for a later drain (SQS would redeliver after the timeout)
    return processed, failed


def api_gateway_event(
    body: Any,
    *,
    path: str = "/v1/events",
    method: str = "POST",
    api_key_id: str | None = "platform-key",
    content_type: str = "application/json",
    base64: bool = False,
    headers: dict[str, str] | None = None,
    path_parameters: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An API Gateway REST (proxy integration) event, as Lambda receives it."""
    import base64 as b64
    import json

    raw = body if isinstance(body, (str, bytes)) else json.dumps(body)
    raw_bytes = raw.encode() if isinstance(raw, str) else raw
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": {"Content-Type": content_type, **(headers or {})},
        "multiValueHeaders": {},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": None,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "resourceId": "local",
            "resourcePath": path,
            "httpMethod": method,
            "path": f"/dev{path}",
            "stage": "dev",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "requestTimeEpoch": 1762171200000,
            "identity": {"apiKeyId": api_key_id, "sourceIp": "127.0.0.1", "userAgent": "billing-local"},
        },
        "body": b64.b64encode(raw_bytes).decode() if base64 else raw_bytes.decode(),
        "isBase64Encoded": base64,
    }


def response_headers(response: dict[str, Any]) -> dict[str, str]:
    """Single- and multi-value headers of a proxy response, merged."""
    return {
        **{k: v[-1] for k, v in (response.get("multiValueHeaders") or {}).items()},
        **(response.get("headers") or {}),
    }
