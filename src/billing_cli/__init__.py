"""The operator CLI, ``billing``. One module per command group; each registers itself on ``app``.

``run`` is the entry point's body and holds three promises:
- no command ends in a traceback: a failure is one line on stderr saying what to do, with the exit
  code of its kind (``errors.ExitCode``: the same situation is the same code in every command); a
  usage error (bad option, bad argument) exit 2; ``--debug`` (anywhere on the line) re-raises so
  the traceback shows;
- stdout is the result only (``output.emit``: a table, or one JSON document with ``--json``);
  progress and the domain code's JSON logs go to stderr;
- ``--local DIR`` (or ``BILLING_LOCAL=DIR``) points a command at a running ``billing serve``: the
  command runs inside that server's process, where its state lives (see ``billing_local.serve``).
"""

from __future__ import annotations

import importlib
import os
import sys

import typer
from typer.core import TyperGroup

try:  # typer vendors its own click since 0.2x
    import typer._click as click
except ImportError:  # pragma: no cover - older typer on plain click
    import click  # type: ignore[no-redef]

# The top-level commands in help order (rich lists panels in the order of their first command).
HELP_ORDER = [
    "demo",
    "serve",
    "local",
    "db",
    "stripe",
    "tenant",
    "portal",
    "webhooks",
    "ingest",
    "usage",
    "events",
    "reconcile",
    "quota",
    "corrections",
    "invoice",
    "simulate",
]


class _HelpOrder(TyperGroup):
    def list_commands(self, ctx: click.Context) -> list[str]:
        names = super().list_commands(ctx)
        return sorted(names, key=lambda n: HELP_ORDER.index(n) if n in HELP_ORDER else len(HELP_ORDER))


app = typer.Typer(
    cls=_HelpOrder,
    help="Usage metering, rating, invoicing and dunning. Every command prints a table, or one JSON "
    "document with --json; exit codes are the same in every command (docs/cli.md).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

# The help's panels, in the order a team meets them: try it locally, set the environment up, onboard
# tenants, meter usage, close the month, then price what-ifs. Each command names its panel.
TRY = "Try it locally"
SET_UP = "Set up"
TENANTS = "Tenants"
USAGE = "Usage"
MONTH_END = "Month end"
PRICING = "Pricing"


# Command groups, each in its own module. Missing modules are skipped so the CLI grows by file.
_GROUPS = [
    "demo",
    "serve",
    "db",
    "stripe_catalog",
    "tenant",
    "portal",
    "webhooks",
    "ingest",
    "usage",
    "receipts",
    "quota",
    "corrections",
    "invoice",
    "invoice_push",
    "simulate",
]


@app.callback()
def global_options(
    local: str = typer.Option(
        None,
        "--local",
        metavar="DIR",
        envvar="BILLING_LOCAL",
        help="run the command inside a running `billing serve` (its --data DIR or URL); also after the command",
    ),
    debug: bool = typer.Option(
        False, "--debug", help="show the traceback of a failure; also after the command"
    ),
) -> None:
    """Both are taken off the command line by ``run`` before Typer parses it; declared here so that
    ``billing --help`` shows them."""
    logs_to_stderr()


class _Stderr:
    """A stream that is whatever ``sys.stderr`` is when written to (tests swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def logs_to_stderr() -> None:
    """The domain code's Powertools logger writes JSON lines to stdout (what Lambda collects); in the
    CLI stdout is the result, so they go to stderr."""
    import logging

    from billing.runtime.observability import logger

    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setStream(_Stderr())


# Commands that build their own environment (or talk to the server themselves): never forwarded.
SELF_CONTAINED = {"serve", "local", "demo", "simulate", ("portal", "serve"), ("tenant", "sign-webhook")}


def _load() -> None:
    for name in _GROUPS:
        try:
            importlib.import_module(f"billing_cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"billing_cli.{name}":
                raise


def _pop_option(argv: list[str], name: str) -> str | None:
    """Remove ``name VALUE`` / ``name=VALUE`` from argv (before the command or after it)."""
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            value = argv[i + 1]
            del argv[i : i + 2]
            return value
        if arg.startswith(name + "="):
            del argv[i]
            return arg.split("=", 1)[1]
    return None


def _self_contained(argv: list[str]) -> bool:
    words = [a for a in argv if not a.startswith("-")][:2]
    return bool(words) and (words[0] in SELF_CONTAINED or tuple(words) in SELF_CONTAINED)


def run(argv: list[str] | None = None, *, allow_forward: bool = True) -> int:
    """Run one command line; returns the exit code (``errors.ExitCode``).
    ``allow_forward=False``: run here even under BILLING_LOCAL (what the server itself does)."""
    from billing_cli.errors import ExitCode, classify

    try:  # typer vendors its own click since 0.2x; its exceptions are the ones raised
        from typer._click.exceptions import ClickException
    except ImportError:  # pragma: no cover - older typer on plain click
        from click import ClickException  # type: ignore[assignment]

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    local = _pop_option(argv, "--local") or os.environ.get("BILLING_LOCAL") or None
    if not allow_forward:
        local = None
    try:
        _load()
        logs_to_stderr()
        if local and argv and not _self_contained(argv) and "--help" not in argv:
            from billing_cli.serve import forward

            return forward(local, argv)
        if local:  # `billing local ...` finds the server through it
            os.environ["BILLING_LOCAL"] = local
        result = app(args=argv, prog_name="billing", standalone_mode=False)
        return result if isinstance(result, int) else ExitCode.OK
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        print("billing: aborted", file=sys.stderr)
        return ExitCode.FAILED
    except ClickException as exc:
        exc.show()
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - the one place every failure becomes one line
        if debug:
            raise
        message, code = classify(exc)
        hint = "" if type(exc).__name__ == "CliFailure" else " (--debug shows the traceback)"
        print(f"billing: {message}{hint}", file=sys.stderr)
        return code


def main() -> None:
    sys.exit(run())
