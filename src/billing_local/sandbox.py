"""A throwaway local environment: embedded ClickHouse (fresh database) and in-process AWS (moto).

``clickhouse_sandbox`` is the ClickHouse half alone (``billing simulate`` runs on it with in-memory
stores); ``sandbox`` adds moto's tables, queues and bucket (the demo). chdb allows one data path per
process, so a fresh database (dropped at the end) goes into the path this process already opened,
else into CLICKHOUSE_URL when it is a chdb:// URL, else into a new temp directory.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from billing.adapters.clickhouse import usage_store as clickhouse
from billing.runtime import container
from billing_local.aws import local_aws, resource_environment
from billing_local.environ import SETTINGS_KEYS, patched_environ


def _process_chdb_url() -> str:
    """A data path for this process's embedded ClickHouse, removed when the process exits (chdb keeps
    the path it opened first for the life of the process)."""
    if not _process_dir:
        _process_dir.append(tempfile.mkdtemp(prefix="billing-sim-"))
        atexit.register(shutil.rmtree, _process_dir[0], True)
    return f"chdb://{Path(_process_dir[0]) / 'chdb'}"


_process_dir: list[str] = []


def _open_chdb_url() -> str | None:
    for url in clickhouse.connected_urls():
        if url.startswith("chdb://"):
            return url
    return None


@contextmanager
def _restored_env() -> Iterator[None]:
    try:
        with patched_environ(unset=["CLICKHOUSE_URL_SECRET"], restore=SETTINGS_KEYS):
            yield
    finally:
        container.reset()


@contextmanager
def clickhouse_sandbox(
    *,
    plans_path: Path | None = None,
    pricebook_path: Path | None = None,
    url: str | None = None,
    database: str | None = None,
) -> Iterator[dict[str, str]]:
    """A fresh, migrated ClickHouse database (dropped at the end) and the given plans and price book
    as the settings in force; ``url`` picks the ClickHouse (default: embedded, see the module);
    ``database``: one ``migrated_database`` made beforehand, to use instead of a new one."""
    with _restored_env():
        values = {"CLICKHOUSE_URL": _sandbox_url(url), "CLICKHOUSE_DATABASE": database or _new_name()}
        if plans_path:
            values["PLANS_PATH"] = str(Path(plans_path).resolve())
        if pricebook_path:
            values["PRICEBOOK_PATH"] = str(Path(pricebook_path).resolve())
        _use_migrated(values)
        try:
            yield values
        finally:
            try:
                container.usage_store().client.command(
                    f"DROP DATABASE IF EXISTS {values['CLICKHOUSE_DATABASE']}"
                )
            except Exception:  # noqa: BLE001 - best-effort cleanup of a throwaway database
                pass


def _sandbox_url(url: str | None) -> str:
    configured = os.environ.get("CLICKHOUSE_URL", "")
    return (
        url or _open_chdb_url() or (configured if configured.startswith("chdb://") else _process_chdb_url())
    )


def _new_name() -> str:
    return f"sim_{uuid.uuid4().hex[:12]}"


def _use_migrated(values: dict[str, str]) -> None:
    """These settings in force (the ClickHouse URL from them, never a secret's) and their database
    migrated (a no-op for one migrated already)."""
    os.environ.pop("CLICKHOUSE_URL_SECRET", None)
    os.environ.update(values)
    container.reset()
    container.usage_store().migrate()


def migrated_database(url: str | None = None) -> str:
    """Create and migrate a fresh database for a later ``clickhouse_sandbox(database=...)`` (a
    simulation worker does it while the parent indexes the events file); returns its name."""
    name = _new_name()
    with _restored_env():
        _use_migrated({"CLICKHOUSE_URL": _sandbox_url(url), "CLICKHOUSE_DATABASE": name})
    return name


@contextmanager
def sandbox(
    *, plans_path: Path | None = None, pricebook_path: Path | None = None
) -> Iterator[dict[str, Any]]:
    with _restored_env(), local_aws(prefix=f"sim{uuid.uuid4().hex[:8]}") as resources:
        values = {**resource_environment(resources), "PLATFORM_API_KEY_IDS": "[]"}
        os.environ.update(values)
        with clickhouse_sandbox(plans_path=plans_path, pricebook_path=pricebook_path) as clickhouse_values:
            yield {**resources, **values, **clickhouse_values}
