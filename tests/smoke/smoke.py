"""A deployment of what ships, run as Lambda runs it (see tests/smoke/test_deploy_smoke.py).

Each invocation is a fresh interpreter (tests/smoke/bootstrap.py, ``-I -S``) whose import path is
only the built function code, the built layer and the stand-in ClickHouse engine (chdb), with only
the Lambda runtime's own variables plus exactly the template's environment for that function.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from billing_local.environ import SETTINGS_KEYS
from billing_local.template import PROJECT_ROOT, load_template
from tests.smoke.build import Artifacts
from tests.smoke.iam import partition_keys
from tests.smoke.stack import (
    FAKE_CREDENTIALS,
    REGION,
    Resolver,
    Stack,
    function_environment,
    function_setting,
)

BOOTSTRAP = Path(__file__).with_name("bootstrap.py")
TRACE_ID = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"


def engine_dir(into: Path) -> Path:
    """A folder holding only the embedded ClickHouse engine (chdb's own files, linked from the dev
    virtualenv): the test's stand-in for a ClickHouse server, never part of the layer."""
    into.mkdir(parents=True, exist_ok=True)
    for dist in ("chdb", "chdb-core"):  # chdb-core holds the engine since chdb 4; older chdb had it inside
        try:
            distribution = importlib.metadata.distribution(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
        tops = {Path(str(f)).parts[0] for f in distribution.files or []}
        for top in tops:
            if top.endswith(".dist-info") or top.startswith("..") or top == "__pycache__":
                continue
            source = Path(str(distribution.locate_file(top)))
            link = into / top
            if source.exists() and not link.exists():
                link.symlink_to(source)
    return into


@dataclass
class Invocation:
    function: str
    status: str
    import_ms: float | None
    response: Any = None
    error: dict[str, Any] | None = None
    modules: list[str] = field(default_factory=list)
    log: str = ""
    logical_id: str = ""
    aws_calls: list[dict[str, Any]] = field(default_factory=list)

    def line(self, how: str) -> str:
        cold = f"{self.import_ms:7.0f} ms" if self.import_ms is not None else "      - ms"
        return f"{self.function:<24} {how:<44} cold import {cold}   {self.status}"


@dataclass
class Deployment:
    artifacts: Artifacts
    stack: Stack
    engines: Path
    work: Path
    parameters: dict[str, Any]
    invocations: list[Invocation] = field(default_factory=list)
    template: dict[str, Any] = field(default_factory=load_template)

    def environment(self, logical_id: str, parameters: dict[str, Any] | None = None) -> dict[str, str]:
        """The Lambda runtime's variables, then exactly the template's (the latter win, as in Lambda
        reserved ones cannot be set by a template anyway)."""
        resolver = Resolver(self.template, self.stack, {**self.parameters, **(parameters or {})})
        name = f"{self.stack.prefix}-{logical_id}"
        runtime = {
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function_setting(self.template, logical_id, "MemorySize")),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": "smoke",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{self.template['Globals']['Function']['Runtime']}",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            **FAKE_CREDENTIALS,
            "LAMBDA_TASK_ROOT": str(self.artifacts.code_dir(logical_id)),
            "LAMBDA_RUNTIME_DIR": str(BOOTSTRAP.parent),
            "_HANDLER": self.template["Resources"][logical_id]["Properties"]["Handler"],
            "_X_AMZN_TRACE_ID": TRACE_ID,
            "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
            "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
            "TZ": ":UTC",
            "LANG": "en_US.UTF-8",
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "TMPDIR": str(self.work / "tmp"),
            # The one stand-in: AWS is moto's server, reached by the functions' ordinary clients.
            "AWS_ENDPOINT_URL": self.stack.endpoint,
        }
        return {**runtime, **function_environment(self.template, logical_id, resolver)}

    def invoke(
        self,
        logical_id: str,
        event: dict[str, Any],
        *,
        parameters: dict[str, Any] | None = None,
        label: str | None = None,
    ) -> Invocation:
        label = label or logical_id
        run = self.work / "runs" / f"{len(self.invocations):02d}-{label}"
        run.mkdir(parents=True)
        (self.work / "tmp").mkdir(exist_ok=True)
        spec = {
            "code_dir": str(self.artifacts.code_dir(logical_id)),
            "layer_dir": str(self.artifacts.layer_dir),
            "engine_dirs": [str(self.engines)],
            "handler": self.template["Resources"][logical_id]["Properties"]["Handler"],
            "event": event,
            "function_name": f"{self.stack.prefix}-{logical_id}",
            "memory_mb": int(function_setting(self.template, logical_id, "MemorySize")),
            "timeout_s": int(function_setting(self.template, logical_id, "Timeout")),
            "result": str(run / "result.json"),
            "partition_keys": partition_keys(self.stack),
        }
        (run / "spec.json").write_text(json.dumps(spec))
        env = self.environment(logical_id, parameters)
        (run / "environment.json").write_text(json.dumps(env, indent=1, sort_keys=True))
        done = subprocess.run(
            [str(self.artifacts.python), "-I", "-S", "-B", str(BOOTSTRAP), str(run / "spec.json")],
            env=env,
            cwd=spec["code_dir"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        (run / "output.log").write_text(done.stdout + done.stderr)
        result = (
            json.loads((run / "result.json").read_text())
            if (run / "result.json").exists()
            else {
                "error": {
                    "type": "interpreter exited",
                    "message": f"exit {done.returncode}: {done.stderr[-2000:]}",
                }
            }
        )
        invocation = Invocation(
            function=label,
            status=_status(result),
            import_ms=result.get("import_ms"),
            response=result.get("response"),
            error=result.get("error"),
            modules=result.get("modules", []),
            log=done.stdout + done.stderr,
            logical_id=logical_id,
            aws_calls=result.get("aws_calls", []),
        )
        self.invocations.append(invocation)
        return invocation

    def report(self) -> list[str]:
        return [i.line(self.artifacts.how) for i in self.invocations]


def _status(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"ERROR {result['error']['type']}: {result['error']['message'][:120]}"
    response = result.get("response")
    if isinstance(response, dict) and "statusCode" in response:
        return f"HTTP {response['statusCode']}"
    if isinstance(response, dict) and "batchItemFailures" in response:
        return f"{len(response['batchItemFailures'])} batch item failures"
    return "returned " + json.dumps(response, default=str)[:80]


def migrate_clickhouse(url: str, database: str) -> None:
    """What a team runs once per ClickHouse database before the first deploy: ``billing db migrate``."""
    cli = Path(sys.executable).with_name("billing")
    # Only what the operator sets: no settings or `billing serve` pointer left by earlier tests.
    inherited = {
        k: v for k, v in os.environ.items() if k not in SETTINGS_KEYS and not k.startswith("BILLING_LOCAL")
    }
    env = {**inherited, "CLICKHOUSE_URL": url, "CLICKHOUSE_DATABASE": database}
    done = subprocess.run(
        [str(cli), "db", "migrate"], env=env, capture_output=True, text=True, cwd=PROJECT_ROOT
    )
    assert done.returncode == 0, f"billing db migrate failed ({done.returncode}): {done.stderr}{done.stdout}"


def new_prefix() -> str:
    return f"smoke{uuid.uuid4().hex[:6]}"
