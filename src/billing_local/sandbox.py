"""A throwaway local environment: embedded ClickHouse (fresh database) and in-process AWS (moto).

Used by ``billing simulate``. chdb allows one data path per process, so a fresh database (dropped at
the end) goes into the path this process already opened, else into CLICKHOUSE_URL when it is a
chdb:// URL, else into a new temp directory.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from billing import container
from billing.adapters import clickhouse
from billing_local.aws import local_aws, resource_environment
from billing_local.environ import SETTINGS_KEYS, patched_environ


def _open_chdb_url() -> str | None:
    for url, _database in list(clickhouse._clients):
        if url.startswith("chdb://"):
            return url
    return None


@contextmanager
def sandbox(
    *, plans_path: Path | None = None, pricebook_path: Path | None = None
) -> Iterator[dict[str, Any]]:
    with (
        tempfile.TemporaryDirectory(prefix="billing-sim-") as tmp,
        patched_environ(unset=["CLICKHOUSE_URL_SECRET"], restore=SETTINGS_KEYS),
    ):
        configured = os.environ.get("CLICKHOUSE_URL", "")
        url = _open_chdb_url() or (
            configured if configured.startswith("chdb://") else f"chdb://{Path(tmp) / 'chdb'}"
        )
        try:
            with local_aws(prefix=f"sim{uuid.uuid4().hex[:8]}") as resources:
                values = {
                    "CLICKHOUSE_URL": url,
                    "CLICKHOUSE_DATABASE": f"sim_{uuid.uuid4().hex[:12]}",
                    **resource_environment(resources),
                    "PLATFORM_API_KEY_IDS": "[]",
                }
                if plans_path:
                    values["PLANS_PATH"] = str(Path(plans_path).resolve())
                if pricebook_path:
                    values["PRICEBOOK_PATH"] = str(Path(pricebook_path).resolve())
                os.environ.update(values)
                container.reset()
                container.usage_store().migrate()
                try:
                    yield {**resources, **values}
                finally:
                    try:
                        container.usage_store().client.command(
                            f"DROP DATABASE IF EXISTS {values['CLICKHOUSE_DATABASE']}"
                        )
                    except Exception:  # noqa: BLE001 - best-effort cleanup of a throwaway database
                        pass
        finally:
            container.reset()
