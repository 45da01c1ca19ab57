"""The operator CLI, ``billing``. One module per command group; each registers itself on ``app``."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    help="Usage metering, rating, invoicing and dunning.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

# Command groups, each in its own module. Missing modules are skipped so the CLI grows by file.
_GROUPS = [
    "db",
    "usage",
    "ingest",
    "demo",
    "invoice",
    "invoice_push",
    "simulate",
    "tenant",
    "portal",
    "quota",
]


def _load() -> None:
    for name in _GROUPS:
        try:
            importlib.import_module(f"billing_cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"billing_cli.{name}":
                raise


def main() -> None:
    _load()
    app()
