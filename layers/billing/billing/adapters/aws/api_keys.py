"""The API keys API Gateway accepts on a stage, read from API Gateway (``KeyDirectory``).

Used by the peer formats' Lambda authorizer: API Gateway checks ``x-api-key`` itself, but Bearer
and Basic credentials reach us as text, so the authorizer looks the key up here. Invariants: a key
counts only while it is enabled and in a usage plan of the request's stage (what API Gateway asks
of ``x-api-key``); a stage's table is read at most every ``ttl_s`` seconds (keys added or disabled
take effect within it), and an unknown key never triggers a read sooner than ``miss_refresh_s``
after the last one, so random keys cannot make us page through API Gateway at their rate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from billing.adapters.aws.clients import BOTO_CONFIG

PAGE = {"PageSize": 500}  # API Gateway's largest page (its default is 25)


class ApiGatewayKeys:
    def __init__(
        self,
        *,
        client: Any = None,
        ttl_s: float = 300.0,
        miss_refresh_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._client = client
        self.ttl_s, self.miss_refresh_s, self.clock = ttl_s, miss_refresh_s, clock
        self._stages: dict[tuple[str, str], tuple[float, dict[str, str]]] = {}  # -> (read at, value -> id)
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("apigateway", config=BOTO_CONFIG)
        return self._client

    def key_id(self, value: str, *, api_id: str, stage: str) -> str | None:
        with self._lock:
            now = self.clock()
            read_at, keys = self._stages.get((api_id, stage), (None, {}))
            age = None if read_at is None else now - read_at
            if age is None or age >= self.ttl_s or (value not in keys and age >= self.miss_refresh_s):
                keys = self._read(api_id, stage)
                self._stages[(api_id, stage)] = (now, keys)
            return keys.get(value)

    def _read(self, api_id: str, stage: str) -> dict[str, str]:
        in_plans: dict[str, str] = {}  # key id -> value
        for page in self.client.get_paginator("get_usage_plans").paginate(PaginationConfig=PAGE):
            for plan in page.get("items", []):
                stages = plan.get("apiStages", [])
                if not any(s.get("apiId") == api_id and s.get("stage") == stage for s in stages):
                    continue
                for keys in self.client.get_paginator("get_usage_plan_keys").paginate(
                    usagePlanId=plan["id"], PaginationConfig=PAGE
                ):
                    for item in keys.get("items", []):
                        if item.get("type", "API_KEY") == "API_KEY" and item.get("value"):
                            in_plans[item["id"]] = item["value"]
        enabled: set[str] = set()
        for page in self.client.get_paginator("get_api_keys").paginate(
            includeValues=False, PaginationConfig=PAGE
        ):
            enabled.update(item["id"] for item in page.get("items", []) if item.get("enabled"))
        return {value: key_id for key_id, value in in_plans.items() if key_id in enabled}
