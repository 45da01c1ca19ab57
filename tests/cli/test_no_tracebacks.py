"""Every `billing` command, run as a new user would without configuration (no AWS region, an
unmigrated ClickHouse database, no running `billing serve`) and with a bad argument, ends in a
one-line error that says what to do, with the exit code of its kind (``billing_cli.errors.ExitCode``:
4 not configured, 3 unreachable, 2 usage error, ...); never a traceback."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer

from billing.runtime import container
from billing_cli import _load, app, run
from billing_cli.errors import ExitCode
from tests.conftest import CHDB_PATH, ENV_KEYS

# Commands that serve or run their own whole environment: only their argument errors are run here
# (serve and the portal server block; demo and simulate run the pipeline; tests/serve runs serve).
LONG_RUNNING = {("serve",), ("demo",), ("portal", "serve"), ("simulate",)}


def leaf_commands() -> list[tuple[tuple[str, ...], typer.main.click.Command]]:  # type: ignore[name-defined]
    _load()
    root = typer.main.get_command(app)
    found = []

    def walk(command, path):  # noqa: ANN001, ANN202 - click's own types
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in sorted(subcommands.items()):
                walk(sub, (*path, name))
        else:
            found.append((path, command))

    walk(root, ())
    return found


COMMANDS = leaf_commands()


def placeholder_args(command) -> list[str]:  # noqa: ANN001
    """Required arguments and options filled with plausible values (paths that exist)."""
    argv: list[str] = []
    for param in command.params:
        if not param.required:
            continue
        kind = getattr(getattr(param, "type", None), "name", "")
        name = param.name or ""
        value = "2025-11" if "month" in name else "1" if kind == "integer" else "x"
        if kind == "path":
            value = str(Path(__file__))
        if param.param_type_name == "argument":
            argv.append(value)
        else:
            argv += [param.opts[0], value]
    return argv


@pytest.fixture
def unconfigured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No AWS region or credentials, no tables, an unmigrated ClickHouse database, no server."""
    for key in (
        *ENV_KEYS,
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_PROFILE",
        "BILLING_LOCAL",
        "AWS_ENDPOINT_URL",
    ):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("CLICKHOUSE_URL", f"chdb://{CHDB_PATH}")
    monkeypatch.setenv("CLICKHOUSE_DATABASE", f"unmigrated_{uuid.uuid4().hex[:8]}")
    monkeypatch.chdir(tmp_path)
    container.reset()
    yield
    container.reset()


def assert_one_line_error(code: int, err: str, out: str, *, expected: set[int]) -> None:
    assert "Traceback" not in err + out, err + out
    assert code in expected, (code, err, out)
    if code not in (ExitCode.OK, ExitCode.USAGE):
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("billing: "), err


@pytest.mark.parametrize("path,command", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_a_bad_option_is_a_usage_error(path, command, unconfigured, capsys):
    # When any command gets an option it does not have
    code = run([*path, "--no-such-option"])
    captured = capsys.readouterr()
    # Then it is exit 2 with click's usage message, no traceback
    assert_one_line_error(code, captured.err, captured.out, expected={2})


@pytest.mark.parametrize(
    "path,command",
    [(p, c) for p, c in COMMANDS if p not in LONG_RUNNING],
    ids=[" ".join(p) for p, _ in COMMANDS if p not in LONG_RUNNING],
)
def test_without_configuration_every_command_says_what_to_do(path, command, unconfigured, capsys):
    # When a command runs with its required arguments but nothing configured
    code = run([*path, *placeholder_args(command)])
    captured = capsys.readouterr()
    # Then it fails in one line as not configured (or unreachable, or refuses its arguments), never
    # with a traceback (`db migrate` succeeds: the default ClickHouse is embedded)
    failures = {ExitCode.NOT_CONFIGURED, ExitCode.UNREACHABLE, ExitCode.USAGE}
    assert_one_line_error(
        code, captured.err, captured.out, expected={0} if path == ("db", "migrate") else failures
    )


def test_the_messages_name_the_fix(unconfigured, capsys, tmp_path):
    assert run(["tenant", "status", "x"]) == ExitCode.NOT_CONFIGURED
    assert "no AWS region is configured" in capsys.readouterr().err
    assert run(["usage", "--tenant", "x", "--month", "2025-11"]) == ExitCode.NOT_CONFIGURED
    assert "run `billing db migrate`" in capsys.readouterr().err
    assert run(["usage", "--tenant", "x", "--month", "2025-13"]) == 2
    assert "--month" in capsys.readouterr().err
    assert run(["--local", str(tmp_path / "nothing"), "tenant", "status", "x"]) == ExitCode.UNREACHABLE
    assert "no `billing serve` is running" in capsys.readouterr().err
    assert run(["db", "migrate"]) == 0 and "applied" in capsys.readouterr().out
    # migrated: usage reads ClickHouse, then the tenant store to tell an unknown tenant from an idle one
    assert run(["usage", "--tenant", "x", "--month", "2025-11"]) == ExitCode.NOT_CONFIGURED
    assert "no AWS region is configured" in capsys.readouterr().err
    import os

    os.environ["CLICKHOUSE_URL"] = "ftp://nowhere"
    container.reset()
    assert run(["db", "migrate"]) == ExitCode.NOT_CONFIGURED
    assert "unsupported CLICKHOUSE_URL scheme" in capsys.readouterr().err
    assert run(["--local", "http://127.0.0.1:9", "local", "replay"]) in (ExitCode.UNREACHABLE, ExitCode.USAGE)
    assert "Traceback" not in capsys.readouterr().err


def test_debug_shows_the_traceback(unconfigured):
    from botocore.exceptions import NoRegionError

    with pytest.raises(NoRegionError):
        run(["tenant", "status", "x", "--debug"])
