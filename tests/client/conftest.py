"""Fixtures for the usage_tracker client: a real HTTP fake of the billing API in this process
(usage_tracker.testing) and trackers tuned for quick tests (short batch age and backoff)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from usage_tracker import Problem, Tracker
from usage_tracker.testing import FakeBillingAPI

FAST = dict(flush_interval=0.05, backoff_base=0.02, backoff_max=0.2, exit_timeout=2.0)


@pytest.fixture
def api() -> Iterator[FakeBillingAPI]:
    with FakeBillingAPI(models={"gpt-4o-mini", "text-embedding-3-small"}) as fake:
        yield fake


@pytest.fixture
def problems() -> list[Problem]:
    return []


@pytest.fixture
def make_tracker(
    api: FakeBillingAPI, tmp_path: Path, problems: list[Problem]
) -> Iterator[Callable[..., Tracker]]:
    made: list[Tracker] = []

    def make(**options: Any) -> Tracker:
        settings: dict[str, Any] = {**FAST, "on_error": problems.append, **options}
        endpoint = settings.pop("endpoint", api.url)
        api_key = settings.pop("api_key", api.api_key)
        spool_dir = settings.pop("spool_dir", tmp_path / "spool")
        tracker = Tracker(endpoint, api_key, spool_dir, **settings)
        made.append(tracker)
        return tracker

    yield make
    for tracker in made:
        tracker.close(timeout=0.5)


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll for an outcome of background work (never a speed assertion: the limit is generous)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")
