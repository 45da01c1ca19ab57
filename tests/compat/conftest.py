"""One `billing serve` for the peer SDK tests: two tenants on the Pro plan (no trial, since the
first of the month), each with a tenant key of its own, and the server's platform key."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from billing_local.serve_process import ServeProcess

ROOT = Path(__file__).resolve().parents[2]
PLATFORM_KEY = "compat-platform-key"


@dataclass
class Peers:
    server: ServeProcess
    keys: dict[str, str]  # tenant id -> its tenant key

    @property
    def url(self) -> str:
        return self.server.url

    def queries(self, tenant_id: str) -> int:
        """The queries this month's statement preview bills the tenant."""
        month = datetime.now(UTC).strftime("%Y-%m")
        status, body = self.server.call("GET", f"/v1/tenants/{tenant_id}/statements/{month}")
        assert status == 200, body
        return int(
            sum(
                Decimal(str(line["quantity"]))
                for line in body["statement"]["lines"]
                if line["line_id"].startswith("queries:")
            )
        )


@pytest.fixture(scope="package")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    server = ServeProcess(tmp_path_factory.mktemp("compat") / "data", PLATFORM_KEY, cwd=ROOT)
    month = datetime.now(UTC).strftime("%Y-%m")
    keys = {}
    try:
        for tenant in ("acme", "globex", "initech"):
            status, body = server.call(
                "POST",
                "/v1/tenants",
                {
                    "id": tenant,
                    "name": tenant.title(),
                    "email": f"billing@{tenant}.example",
                    "plan": "pro",
                    "trial": False,
                    "effective_at": f"{month}-01T00:00:00Z",
                },
            )
            assert status in (200, 201), body
            status, body = server.call("POST", "/_local/keys", {"tenant_id": tenant})
            assert status == 201, body
            keys[tenant] = body["api_key"]
        yield Peers(server, keys)
    finally:
        server.stop()
