"""How every ``billing`` command prints, so that a person and a script can both read it.

Invariants:
- stdout carries the command's result and nothing else: a rich table or short text for a person,
  or, with ``--json``, exactly one JSON document (money and other Decimals as strings, instants as
  ISO 8601 in UTC with a ``Z``);
- progress (bars, spinners, "closed in 2.1 s"), narration and diagnostics go to stderr
  (``progress_console``), as do the domain code's JSON logs (``billing_cli.run`` points them there).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import typer
from rich.console import Console, RenderableType
from rich.table import Table

from billing.kernel.periods import Month

JSON_HELP = "print one JSON document on stdout (for scripts) instead of a table"


def json_option() -> Any:
    """The ``--json`` option every command takes."""
    return typer.Option(False, "--json", help=JSON_HELP)


def progress_console() -> Console:
    """Where progress, narration and diagnostics go: stderr, never the result's stdout."""
    return Console(stderr=True, highlight=False)


def instant(value: datetime) -> str:
    """ISO 8601 in UTC with a ``Z`` (a naive datetime is taken as UTC, as the domain stores them)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def to_jsonable(value: Any) -> Any:
    """``value`` as plain JSON types: Decimal as its exact string, datetimes as ``instant``, dates as
    YYYY-MM-DD, months as YYYY-MM, pydantic models and dataclasses as their fields, sets sorted."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):  # not money: ratios and seconds only
        return value
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return instant(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if isinstance(value, Path | Month):  # a Month is its YYYY-MM
        return str(value)
    if isinstance(value, bytes):
        return value.decode()
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump):
        return to_jsonable(model_dump(mode="json"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted(to_jsonable(v) for v in value)
    if isinstance(value, Iterable):
        return [to_jsonable(v) for v in value]
    return str(value)


def dumps(value: Any) -> str:
    return json.dumps(to_jsonable(value), indent=2, ensure_ascii=False)


def key_value_table(data: Mapping[str, Any], title: str | None = None) -> Table:
    """A dict for a person: one row per key (nested values as compact JSON)."""
    table = Table("field", "value", title=title, show_header=False)
    for key, value in data.items():
        plain = to_jsonable(value)
        table.add_row(str(key), plain if isinstance(plain, str) else json.dumps(plain))
    return table


Human = RenderableType | list[RenderableType] | Callable[[], RenderableType | list[RenderableType]] | None


def emit(data: Any, human: Human = None, *, as_json: bool) -> None:
    """Print a command's result on stdout: ``data`` as one JSON document with ``--json``, otherwise
    ``human`` (a renderable, several, or a function making them; a dict's fields by default)."""
    if as_json:
        sys.stdout.write(dumps(data) + "\n")
        sys.stdout.flush()
        return
    if callable(human):
        human = human()
    if human is None:
        plain = to_jsonable(data)
        human = key_value_table(plain) if isinstance(plain, dict) else json.dumps(plain, indent=2)
    console = Console(soft_wrap=True)
    for renderable in human if isinstance(human, list) else [human]:
        console.print(renderable)
