"""Process environment for local runs: which variables configure the billing package, and a block that
sets some and restores exactly what was there before (tests, the sandbox, benches, the smoke test)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

from billing.runtime.settings import Settings

# Every variable Settings reads (pydantic-settings: the field name, upper-cased).
SETTINGS_KEYS: tuple[str, ...] = tuple(name.upper() for name in Settings.model_fields)


@contextmanager
def patched_environ(
    values: Mapping[str, str] | None = None, *, unset: Iterable[str] = (), restore: Iterable[str] = ()
) -> Iterator[None]:
    """Set ``values`` and remove ``unset`` for the block; afterwards those and the ``restore`` variables
    (which the block may change itself) are back to what they were (removed again if they were absent)."""
    values = values or {}
    unset = tuple(unset)
    touched = {*values, *unset, *restore}
    saved = {key: os.environ.get(key) for key in touched}
    for key in unset:
        os.environ.pop(key, None)
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
