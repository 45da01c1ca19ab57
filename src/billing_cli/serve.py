"""``billing serve``: the whole API on localhost; ``billing local ...``: talk to a running one
(tenant API keys, schedules, the fallback replay); ``forward``: what ``--local DIR`` does."""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import typer

from billing_cli import TRY, app
from billing_cli.errors import CliFailure, ExitCode
from billing_cli.output import emit, json_option

DEFAULT_DATA = Path(".data/serve")
local_app = typer.Typer(
    help="Operate a running `billing serve` (found with --data DIR, --local DIR or BILLING_LOCAL).",
    no_args_is_help=True,
)
app.add_typer(local_app, name="local", rich_help_panel=TRY)


@app.command("serve", rich_help_panel=TRY)
def serve(
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8787, help="port to listen on (0: any free port)"),
    data: Path = typer.Option(
        DEFAULT_DATA,
        "--data",
        help="directory of the server's state (ClickHouse, the AWS journal, Stripe, the keys); kept across restarts",
    ),
    api_key: str = typer.Option(
        None, "--api-key", help="the platform API key (random and printed when not given)"
    ),
    schedules: bool = typer.Option(
        False, "--schedules", help="run the template's schedules (close, dunning)"
    ),
    verbose: bool = typer.Option(False, "--verbose", help="also print the handlers' JSON logs and metrics"),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="once listening, print one JSON document (url, api_key, pid, data) on stdout; every "
        "other line goes to stderr",
    ),
) -> None:
    """Serve every API route of template.yaml with the real handlers, on embedded ClickHouse at DATA
    and in-process AWS; stops on SIGTERM / Ctrl-C.

    Without --json its lines are its output: the
    first is `billing serve: URL`."""
    from billing_cli import run
    from billing_local.serve import serve as run_server
    from billing_local.serve_guard import ServeError

    if as_json:  # Powertools prints EMF metrics on stdout, which holds the one document
        os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"

    def say(line: str) -> None:
        if not as_json:
            print(line, flush=True)
            return
        print(line, file=sys.stderr, flush=True)
        if line.startswith("billing serve: http"):  # listening: serve.json names it
            state = json.loads((data / "serve.json").read_text())
            emit({**state, "data": str(data)}, as_json=True)

    def run_here(argv: list[str]) -> int:
        return run(argv, allow_forward=False)  # the server is where a forwarded command lands

    try:
        run_server(
            host=host,
            port=port,
            data_dir=data,
            api_key=api_key,
            schedules=schedules,
            print_line=say,
            cli=run_here,
            quiet_handlers=not verbose,
        )
    except ServeError as error:
        raise CliFailure(str(error), ExitCode.USAGE) from None


# ------------------------------------------------------------------------------------------ client side
def locate(local: str | None) -> tuple[str, str]:
    """(base URL, platform key) of the running server named by a DIR (its serve.json) or a URL
    (key from BILLING_LOCAL_KEY)."""
    target = local or os.environ.get("BILLING_LOCAL") or str(DEFAULT_DATA)
    if target.startswith(("http://", "https://")):
        key = os.environ.get("BILLING_LOCAL_KEY")
        if not key:
            raise typer.BadParameter("set BILLING_LOCAL_KEY to the platform key when --local is a URL")
        return target.rstrip("/"), key
    state = Path(target) / "serve.json"
    if not state.exists():
        raise CliFailure(
            f"no `billing serve` is running on {target}: start `billing serve --data {target}`",
            ExitCode.UNREACHABLE,
        )
    data = json.loads(state.read_text())
    return data["url"], data["api_key"]


def call(
    local: str | None, method: str, path: str, body: Any = None, timeout: float = 600
) -> tuple[int, Any]:
    url, key = locate(local)
    request = urllib.request.Request(
        url + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"x-api-key": key, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise CliFailure(
            f"`billing serve` at {url} does not answer ({reason}): is it running?", ExitCode.UNREACHABLE
        ) from None


def _absolute(argv: list[str]) -> list[str]:
    """Paths resolved here, since the server does not share this shell's working directory."""
    out, value_of_path = [], False
    for arg in argv:
        if value_of_path or (not arg.startswith("-") and os.path.exists(arg)):
            arg = os.path.abspath(arg)
        value_of_path = arg in ("--out", "-o", "--output", "--lines", "--tenants", "--events")
        out.append(arg)
    return out


def forward(local: str, argv: list[str]) -> int:
    """Run ``billing ARGV`` inside the running server; prints its output, returns its exit code."""
    status, body = call(local, "POST", "/_local/cli", {"argv": _absolute(argv)})
    if status != 200:
        raise CliFailure(f"`billing serve` refused the command: {status} {body}")
    sys.stdout.write(body["stdout"])
    sys.stderr.write(body["stderr"])
    return int(body["exit_code"])


def _local_option() -> Any:
    return typer.Option(
        None, "--data", help="the server's --data DIR (default: BILLING_LOCAL or .data/serve)"
    )


def _answer(status: int, body: Any, *, as_json: bool) -> None:
    """The server's answer: its body (a table of its fields for a person), or its error with the exit
    code of its status."""
    if status >= 400:
        from billing_cli.errors import exit_code_of_status

        message = body.get("message") if isinstance(body, dict) else body
        print(f"billing: {message} ({status})", file=sys.stderr)
        raise typer.Exit(exit_code_of_status(status))
    emit(body, as_json=as_json)


@local_app.command("key")
def key(
    tenant_id: str = typer.Argument(..., help="tenant the key belongs to"),
    data: str = _local_option(),
    as_json: bool = json_option(),
) -> None:
    """Create an API key for a tenant (its id goes on the tenant's api_key_ids); prints it once."""
    _answer(*call(data, "POST", "/_local/keys", {"tenant_id": tenant_id}), as_json=as_json)


@local_app.command("schedule")
def schedule(
    function: str = typer.Argument(
        ..., help="monthly_close, dunning, alert_evaluation or portal_warm (the template's Schedule events)"
    ),
    month: str = typer.Option(
        None, "--month", help="monthly_close: the month to close (default: the previous)"
    ),
    data: str = _local_option(),
    as_json: bool = json_option(),
) -> None:
    """Run a scheduled function now, with the EventBridge event its rule sends."""
    detail = {"month": month} if month else {}
    _answer(*call(data, "POST", f"/_local/schedules/{function}", {"detail": detail}), as_json=as_json)


@local_app.command("replay")
def replay(data: str = _local_option(), as_json: bool = json_option()) -> None:
    """Deliver the fallback queue to the replay function now (the server also does it every second)."""
    _answer(*call(data, "POST", "/_local/replay", {}), as_json=as_json)
