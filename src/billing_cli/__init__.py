"""The operator CLI, ``billing``. One module per command group; each registers itself on ``app``.

``run`` is the entry point's body and holds two promises:
- no command ends in a traceback: a failure is one line on stderr saying what to do, exit 1; a
  usage error (bad option, bad argument) exit 2; ``--debug`` (anywhere on the line) re-raises so
  the traceback shows;
- ``--local DIR`` (or ``BILLING_LOCAL=DIR``) points a command at a running ``billing serve``: the
  command runs inside that server's process, where its state lives (see ``billing_local.serve``).
"""

from __future__ import annotations

import importlib
import os
import sys

import typer

app = typer.Typer(
    help="Usage metering, rating, invoicing and dunning. Global options: --local DIR (or BILLING_LOCAL) "
    "runs a command inside a running `billing serve`; --debug shows tracebacks.",
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
    "serve",
    "stripe_catalog",
]
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
    """Run one command line; returns the exit code (0 ok, 1 failure, 2 usage error).
    ``allow_forward=False``: run here even under BILLING_LOCAL (what the server itself does)."""
    from billing_cli.errors import CliFailure, explain

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
        if local and argv and not _self_contained(argv) and "--help" not in argv:
            from billing_cli.serve import forward

            return forward(local, argv)
        if local:  # `billing local ...` finds the server through it
            os.environ["BILLING_LOCAL"] = local
        result = app(args=argv, prog_name="billing", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        print("billing: aborted", file=sys.stderr)
        return 1
    except ClickException as exc:
        exc.show()
        return exc.exit_code
    except CliFailure as exc:
        if debug:
            raise
        print(f"billing: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the one place every failure becomes one line
        if debug:
            raise
        print(f"billing: {explain(exc)} (--debug shows the traceback)", file=sys.stderr)
        return 1


def main() -> None:
    sys.exit(run())
