"""Shared AWS client setup: one botocore config and one cached client per service, for every adapter.

Clients are created lazily (a function that never calls SQS never builds an SQS client) and cached per
process; ``reset_clients`` forgets them (tests and the local runner switch AWS endpoints between runs).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

BOTO_CONFIG = Config(retries={"max_attempts": 5, "mode": "adaptive"}, max_pool_connections=50)


@cache
def dynamodb_client() -> Any:
    return boto3.client("dynamodb", config=BOTO_CONFIG)


@cache
def sqs_client() -> Any:
    return boto3.client("sqs", config=BOTO_CONFIG)


@cache
def s3_client() -> Any:
    return boto3.client("s3", config=BOTO_CONFIG)


@cache
def events_client() -> Any:
    return boto3.client("events", config=BOTO_CONFIG)


@cache
def secretsmanager_client() -> Any:
    return boto3.client("secretsmanager", config=BOTO_CONFIG)


def reset_clients() -> None:
    """Forget cached boto3 clients (tests switch AWS mocks between runs)."""
    for client in (dynamodb_client, sqs_client, s3_client, events_client, secretsmanager_client):
        client.cache_clear()
