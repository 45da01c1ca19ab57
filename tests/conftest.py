"""Shared fixtures: real ClickHouse (chdb, one data path per process, one database per test),
in-process AWS (moto, tables built from template.yaml), and one Lambda context."""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from billing.adapters.clickhouse.usage_store import ClickHouseUsageStore
from billing.runtime import container
from billing.runtime.settings import Settings
from billing_local.aws import local_aws, resource_environment
from billing_local.environ import SETTINGS_KEYS
from billing_local.runner import LocalContext, api_gateway_event

PROJECT_ROOT = Path(__file__).resolve().parents[1]
EVENTS_DIR = PROJECT_ROOT / "events"
FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"
CHDB_PATH = Path(tempfile.gettempdir()) / f"billing-tests-chdb-{os.getpid()}"

ENV_KEYS = SETTINGS_KEYS  # every variable Settings reads starts unset in a test


@dataclass
class Env:
    """What a test gets: the settings in force, the migrated ClickHouse store and queue URLs."""

    settings: Settings
    store: ClickHouseUsageStore
    queue_urls: dict[str, str]


@pytest.fixture
def lambda_context() -> LocalContext:
    return LocalContext(function_name="test-function")


@pytest.fixture
def clickhouse_database() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def env(clickhouse_database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    """Given a fresh AWS account (moto) and a fresh, migrated ClickHouse database."""
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    with local_aws(prefix=f"t{uuid.uuid4().hex[:8]}") as resources:
        values = {
            "CLICKHOUSE_URL": f"chdb://{CHDB_PATH}",
            "CLICKHOUSE_DATABASE": clickhouse_database,
            **resource_environment(resources),
            "PLATFORM_API_KEY_IDS": "platform-key",  # as the template's Join renders it
        }
        for key, value in values.items():
            monkeypatch.setenv(key, value)
        container.reset()
        store = container.usage_store()
        store.migrate()
        yield Env(settings=container.settings(), store=store, queue_urls=resources["queue_urls"])
        container.reset()


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS_DIR / name).read_text())


def api_event(body: Any, **kwargs: Any) -> dict[str, Any]:
    """An API Gateway (REST, proxy) event as Lambda receives it (see billing_local.runner)."""
    return api_gateway_event(body, **kwargs)


def pytest_unconfigure(config: pytest.Config) -> None:
    """This process's embedded ClickHouse data is throwaway: remove it when the session ends."""
    import shutil

    shutil.rmtree(CHDB_PATH, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The deploy smoke test's one line per function (built how, cold import, status), when it ran
    in this session (it runs in a worker under xdist, so its own print is not seen)."""
    report = PROJECT_ROOT / ".aws-sam" / "smoke" / "report.txt"
    started = getattr(config, "_billing_started", None)
    if report.exists() and started is not None and report.stat().st_mtime >= started:
        terminalreporter.write_sep("-", "deploy smoke test")
        terminalreporter.write(report.read_text())


def pytest_configure(config: pytest.Config) -> None:
    import time

    config._billing_started = time.time()  # type: ignore[attr-defined]
